"""Hand-computed backtest scenarios on tiny bar sets (DESIGN §7), and the same bars stepped tick by tick
through the rule functions the way the live engine sees quotes: both must take the same decisions."""
from datetime import date

import pytest

import config
import market_rules
import strategy
from backtest import run_backtest
from core.models import Rule, Side
from strategy import RuleParams

CODE = "600036.SH"
# 70 flat bars make the MACD histogram exactly 0 (and MA10 = MA20 = MA30 = MA60 = 9.50); the jump to 9.80 on
# bar 70 (2024-04-09) turns it positive — a golden cross — and lifts MA10 9.53 > MA20 9.515 > MA30 9.51 >
# MA60 9.505, so the entry buys at the next open: bar 71, 2024-04-10 ("E"), at 10.00.
PREFIX = [(9.50, 9.50, 9.50, 9.50)] * 70 + [(9.50, 9.80, 9.50, 9.80)]
E, E1, E2 = date(2024, 4, 10), date(2024, 4, 11), date(2024, 4, 12)
# 20000 / 10.00 = 2000 shares: 20000.00 + commission 6.00 + transfer 0.20 = 20006.20, cost 10.0031.
# stop = 10.0031 × 0.905 = 9.0528 → fills at 9.05; take-profit = 10.0031 × 1.06 = 10.6033 → fills at 10.61;
# add levels 10.00 × 0.93 = 9.30 and × 0.88 = 8.80.
ENTRY = (E, Side.BUY, 10.00, 2000, 20000.00, 6.20, Rule.MACD_BUY)
QUIET_E = (10.00, 10.05, 9.95, 10.00)
FALLING_E = (10.00, 10.02, 9.55, 9.60)  # falls to 9.55: above the 9.30 add level; closes 9.60


def business_days(count: int, first: str = "2024-01-02") -> list[date]:
    import pandas as pd

    return [d.date() for d in pd.bdate_range(first, periods=count)]


def write_bars(folder, code, bars, days=None):
    folder.mkdir(parents=True, exist_ok=True)
    days = days or business_days(len(bars))
    lines = ["date,open,high,low,close,volume"]
    lines += [f"{day.isoformat()},{o:.2f},{h:.2f},{l:.2f},{c:.2f},100000" for day, (o, h, l, c) in zip(days, bars)]
    (folder / f"{code}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return days


def backtest(tmp_path, bars, **overrides):
    folder = tmp_path / "bars"
    write_bars(folder, CODE, PREFIX + bars)
    return run_backtest(folder, {**config.DEFAULTS, **overrides}, plot=False)


def trades_of(run):
    return [(t.day, t.side, t.price, t.volume, t.amount, t.fees, t.rule) for t in run.result.trades]


SCENARIOS = {
    # Gap below the stop at the open (limit-down 9.60 × 0.9 = 8.64): the whole position goes at the open
    # 8.70, before the add levels that also hold there. 17400.00: commission 5.22, stamp 8.70, transfer 0.17.
    "gap through the stop at the open": (
        [FALLING_E, (8.70, 8.90, 8.65, 8.80)], {},
        [ENTRY, (E1, Side.SELL, 8.70, 2000, 17400.00, 14.09, Rule.STOP_LOSS)]),
    # O→H→L→C: 9.40 → 9.45 → 9.00; the stop 9.0528 is first reached at 9.05.
    # 18100.00: commission 5.43, stamp 9.05, transfer 0.18 (0.181).
    "stop hit inside a falling segment": (
        [QUIET_E, (9.40, 9.45, 9.00, 9.02)], {"ENABLE_ADD_POSITION": False},
        [ENTRY, (E1, Side.SELL, 9.05, 2000, 18100.00, 14.66, Rule.STOP_LOSS)]),
    # O→H→L→C: rising 10.20 → 11.00 takes 60 % at 10.61 (12732.00: 5.00 + 6.37 + 0.13); highest 11.00 is
    # +9.97 % over cost → row 0.05 → stop 11.00 × 0.96 = 10.56, hit falling to 10.10 (8448.00: 5.00 + 4.22 + 0.08).
    "first take-profit on a rising segment then dynamic stop": (
        [QUIET_E, (10.20, 11.00, 10.10, 10.15)], {},
        [ENTRY, (E1, Side.SELL, 10.61, 1200, 12732.00, 11.50, Rule.TAKE_PROFIT),
         (E1, Side.SELL, 10.56, 800, 8448.00, 9.30, Rule.DYNAMIC_STOP)]),
    # Falling 9.55 → 8.70: level 0.93 at 9.30 buys 20000 worth = 2100 (19530.00: 5.86 + 0.20); cost becomes
    # 39542.26 / 4100 = 9.6445, stop 8.7282; level 0.88 at 8.80 buys 50000 − 39542.26 = 10457.74 worth = 1100
    # (9680.00: 5.00 + 0.10); the new stop 9.4668 × 0.905 = 8.5675 is not reached.
    "two add levels in one falling segment": (
        [FALLING_E, (9.50, 9.55, 8.70, 8.75)], {},
        [ENTRY, (E1, Side.BUY, 9.30, 2100, 19530.00, 6.06, Rule.ADD_POSITION),
         (E1, Side.BUY, 8.80, 1100, 9680.00, 5.10, Rule.ADD_POSITION)]),
    # Bought at E's open, the stop is crossed the same day (9.00 ≤ 9.05) but nothing is available (T+1);
    # the sell waits for the next price where the stop still holds: E+1's open 8.95 (5.37 + 8.95 + 0.18).
    "T+1 blocks a same-day stop": (
        [(10.00, 10.02, 9.00, 9.00), (8.95, 9.10, 8.90, 9.05)], {"ENABLE_ADD_POSITION": False},
        [ENTRY, (E1, Side.SELL, 8.95, 2000, 17900.00, 14.50, Rule.STOP_LOSS)]),
    # E+1 sealed at limit-down 8.64 all day: the stop cannot sell and, while it holds, nothing is added.
    # E+2 (limit-down 7.78) opens at 8.30: sold there (16600.00: 5.00 + 8.30 + 0.17).
    "limit-down all day blocks the sell": (
        [FALLING_E, (8.64, 8.64, 8.64, 8.64), (8.30, 8.50, 8.20, 8.40)], {},
        [ENTRY, (E2, Side.SELL, 8.30, 2000, 16600.00, 13.47, Rule.STOP_LOSS)]),
    # E+1 opens at limit-down 8.64 and rises (O→L→H→C): the first tick above limit-down, 8.65, still
    # satisfies the stop, so the sell fills there (17300.00: 5.19 + 8.65 + 0.17).
    "limit-down open blocks the sell until the first tick above": (
        [FALLING_E, (8.64, 8.90, 8.64, 8.80)], {},
        [ENTRY, (E1, Side.SELL, 8.65, 2000, 17300.00, 14.01, Rule.STOP_LOSS)]),
    # C ≥ O, so the path is O → L → H → C: the dip to 9.25 adds 2100 at 9.30 first (cost 9.6445), then the
    # rise reaches the new take-profit 9.6445 × 1.06 = 10.2231 → 10.23 and sells 60 % of the 2000 available
    # (today's 2100 are not): 12276.00, fees 5.00 + 6.14 + 0.12.
    "a rising day goes down first": (
        [QUIET_E, (10.00, 10.70, 9.25, 10.50)], {},
        [ENTRY, (E1, Side.BUY, 9.30, 2100, 19530.00, 6.06, Rule.ADD_POSITION),
         (E1, Side.SELL, 10.23, 1200, 12276.00, 11.26, Rule.TAKE_PROFIT)]),
    # Take-profit at 10.61 on E+1; E+2 gaps up to 11.50, which becomes the highest at the open: +14.96 % →
    # row 0.10 → stop 11.50 × 0.93 = 10.695, hit at 10.69 on the way down to 10.60 (8552.00: 5.00 + 4.28 + 0.09).
    "the open sets the highest price before the day falls": (
        [QUIET_E, (10.30, 10.70, 10.25, 10.65), (11.50, 11.60, 10.60, 11.55)], {},
        [ENTRY, (E1, Side.SELL, 10.61, 1200, 12732.00, 11.50, Rule.TAKE_PROFIT),
         (E2, Side.SELL, 10.69, 800, 8552.00, 9.37, Rule.DYNAMIC_STOP)]),
    # Both add levels gapped through at the open 8.70 (stop moved to −20 % out of the way): the checks repeat
    # at the open price, highest level first: 20000 / 8.70 → 2200 (19140.00: 5.74 + 0.19), then the rest of
    # the budget 50000 − 39152.13 = 10847.87 → 1200 (10440.00: 5.00 + 0.10).
    "two add levels gapped through at the open": (
        [FALLING_E, (8.70, 8.90, 8.66, 8.85)], {"STOP_LOSS_RATIO": -0.2},
        [ENTRY, (E1, Side.BUY, 8.70, 2200, 19140.00, 5.93, Rule.ADD_POSITION),
         (E1, Side.BUY, 8.70, 1200, 10440.00, 5.10, Rule.ADD_POSITION)]),
    # A gap down to 9.20 on E+1's open: 9.20 ≤ 9.30 so level 0.93 fills at the open price, not at 9.30.
    # 20000 / 9.20 = 2173 → 2100 (19320.00: 5.80 + 0.19).
    "add level gapped at the open fills at the open": (
        [QUIET_E, (9.20, 9.25, 9.10, 9.15)], {},
        [ENTRY, (E1, Side.BUY, 9.20, 2100, 19320.00, 5.99, Rule.ADD_POSITION)]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_trades_exactly(tmp_path, name):
    bars, overrides, expected = SCENARIOS[name]
    assert trades_of(backtest(tmp_path, bars, **overrides)) == expected


def test_gap_scenario_equity_and_summary(tmp_path):
    bars, overrides, _ = SCENARIOS["gap through the stop at the open"]
    run = backtest(tmp_path, bars, **overrides)
    last_three = [(p.day, p.cash, p.market_value, p.total) for p in run.result.equity[-3:]]
    assert last_three == [
        (date(2024, 4, 9), 1_000_000.00, 0.00, 1_000_000.00),
        (E, 979_993.80, 19_200.00, 999_193.80),  # 2000 × close 9.60
        (E1, 997_379.71, 0.00, 997_379.71),  # + 17400.00 − 14.09
    ]
    summary = run.summary
    assert (summary.final_equity, summary.total_return, summary.max_drawdown) == (997_379.71, -0.00262, 0.00262)
    assert (summary.trade_count, summary.closed_episodes, summary.winning_episodes, summary.win_rate,
            summary.fees_paid) == (2, 1, 0, 0.0, 20.29)
    assert run.result.closed_episodes[0].profit == -2620.29  # 17385.91 − 20006.20


def test_positions_left_open_after_two_adds(tmp_path):
    bars, overrides, _ = SCENARIOS["two add levels in one falling segment"]
    run = backtest(tmp_path, bars, **overrides)
    (position,) = run.result.open_positions
    assert (position.volume, position.base_cost_price, position.used_add_levels) == (5200, 10.00, (1, 2))
    assert position.cost_price == pytest.approx(49227.36 / 5200, abs=1e-12)
    assert run.summary.closed_episodes == 0 and run.summary.win_rate is None


def test_winning_episode_counts(tmp_path):
    bars, overrides, _ = SCENARIOS["first take-profit on a rising segment then dynamic stop"]
    run = backtest(tmp_path, bars, **overrides)
    (episode,) = run.result.closed_episodes
    # proceeds 12732.00 − 11.50 + 8448.00 − 9.30 = 21159.20; invested 20006.20
    assert (episode.open_date, episode.close_date, episode.profit) == (E, E1, 1153.00)
    assert run.summary.win_rate == 1.0


# ---- MACD entries -----------------------------------------------------------------------------------

def test_macd_entry_buys_at_the_next_open(tmp_path):
    run = backtest(tmp_path, [(10.00, 10.05, 9.95, 10.00)])
    assert trades_of(run) == [ENTRY]  # signal on 2024-04-09's close, bought 2024-04-10 at its open


def test_ma_filter_needs_sixty_bars_of_alignment(tmp_path):
    short_prefix = PREFIX[30:]  # 40 flat bars: MA60 does not exist yet on the cross bar
    folder = tmp_path / "bars"
    days = write_bars(folder, CODE, short_prefix + [QUIET_E])
    assert run_backtest(folder, dict(config.DEFAULTS), plot=False).result.trades == []
    unfiltered = run_backtest(folder, {**config.DEFAULTS, "ENABLE_MA_FILTER": False}, plot=False)
    assert trades_of(unfiltered) == [(days[-1],) + ENTRY[1:]]


def test_macd_buy_switched_off_means_no_entry(tmp_path):
    assert backtest(tmp_path, [QUIET_E], ENABLE_MACD_BUY=False).result.trades == []


def test_limit_up_open_blocks_the_entry(tmp_path):
    # limit-up from 9.80 is 10.78; an open there cannot be bought
    assert backtest(tmp_path, [(10.78, 10.78, 10.78, 10.78)]).result.trades == []


@pytest.mark.parametrize("balance, cap, bought", [
    (20_000.0, 1.0, False),  # 20000.00 + 6.20 fees do not fit in 20000 cash
    (21_000.0, 0.95, False),  # cash fits, but 20000 > 95 % of 20993.80 total assets after fees
    (21_000.0, 1.0, True),
])
def test_entry_needs_cash_plus_fees_and_the_portfolio_cap(tmp_path, balance, cap, bought):
    run = backtest(tmp_path, [QUIET_E], SIMULATION_BALANCE=balance, MAX_TOTAL_POSITION_RATIO=cap)
    assert trades_of(run) == ([ENTRY] if bought else [])


def test_entries_in_code_order_while_cash_lasts(tmp_path):
    folder = tmp_path / "bars"
    days = write_bars(folder, "600000.SH", PREFIX + [QUIET_E, QUIET_E])
    write_bars(folder, "000001.SZ", PREFIX + [QUIET_E, (10.00, 10.10, 9.90, 10.05)])
    write_bars(folder, "601318.SH", PREFIX + [(10.00, 10.05, 9.95, 10.02)], days[:-1])  # suspended on E+1
    run = run_backtest(folder, {**config.DEFAULTS, "SIMULATION_BALANCE": 45_000.0, "MAX_TOTAL_POSITION_RATIO": 1.0},
                       plot=False)
    # 45000 buys two units (2 × 20006.20); the third in code order (601318.SH) finds 4987.60 cash.
    assert [(t.stock_code, t.day) for t in run.result.trades] == [("000001.SZ", E), ("600000.SH", E)]
    last = run.result.equity[-1]
    assert (last.cash, last.market_value) == (4_987.60, 40_100.00)  # 2000 × 10.05 + 2000 × 10.00


def test_suspended_holding_does_nothing_and_keeps_its_last_close(tmp_path):
    folder = tmp_path / "bars"
    days = business_days(len(PREFIX) + 3)
    write_bars(folder, "000001.SZ", PREFIX + [QUIET_E, (10.00, 10.05, 9.95, 10.00), (10.00, 10.05, 9.95, 10.00)],
               days)
    # 600036.SH bought on E, suspended on E+1 (no row), then reopens at 8.70 on E+2: the stop fills there.
    write_bars(folder, CODE, PREFIX + [FALLING_E, (8.70, 8.90, 8.65, 8.80)], days[:-2] + days[-1:])
    run = run_backtest(folder, dict(config.DEFAULTS), plot=False)
    sells = [(t.stock_code, t.day, t.price, t.rule) for t in run.result.trades if t.side is Side.SELL]
    assert sells == [(CODE, E2, 8.70, Rule.STOP_LOSS)]
    on_suspension_day = run.result.equity[-2]
    assert on_suspension_day.day == E1
    assert on_suspension_day.market_value == 2000 * 10.00 + 2000 * 9.60  # 600036.SH at its E close 9.60


def test_macd_exit_sells_at_the_next_open_when_enabled(tmp_path):
    # Closes 9.80 (cross up), 9.50 on E, 9.30 on E+1: the histogram turns negative on E+1's close, so with
    # ENABLE_MACD_SELL the position is sold at E+2's open 9.35 (18700.00: 5.61 + 9.35 + 0.19).
    bars = [(10.00, 10.02, 9.45, 9.50), (9.45, 9.50, 9.28, 9.30), (9.35, 9.40, 9.30, 9.38)]
    assert trades_of(backtest(tmp_path, bars, ENABLE_ADD_POSITION=False)) == [ENTRY]
    with_exit = backtest(tmp_path, bars, ENABLE_ADD_POSITION=False, ENABLE_MACD_SELL=True)
    assert trades_of(with_exit) == [ENTRY, (E2, Side.SELL, 9.35, 2000, 18700.00, 15.15, Rule.MACD_SELL)]


# ---- the same bars through the rule functions, tick by tick, as the live engine sees quotes ----------

def tick_path(o, h, l, c):
    """Every price of the day in order: O → L → H → C when C ≥ O, else O → H → L → C."""
    points = (o, l, h, c) if c >= o else (o, h, l, c)
    prices = [o]
    for start, end in zip(points, points[1:]):
        step = 1 if end >= start else -1
        cents = range(round(start * 100) + step, round(end * 100) + step, step)
        prices += [n / 100 for n in cents]
    return prices


def step_through_ticks(code, bars, entry_bar, settings):
    """Buy at the open of `entry_bar` like the MACD entry, then feed every tick to strategy.evaluate and
    fill what it returns, within limits and T+1 — no trigger arithmetic of its own."""
    params = RuleParams.from_settings(settings)
    trades, position = [], None
    for index in range(entry_bar, len(bars)):
        o, h, l, c = bars[index]
        limit_down, limit_up = market_rules.price_limits(code, bars[index - 1][3])
        if position is not None:
            position = position.copy(available=position.volume)
        elif index == entry_bar:
            volume = market_rules.buy_volume_for_amount(code, settings["POSITION_UNIT"], o)
            fees = market_rules.fees(code, "buy", o, volume, settings)["total"]
            position = strategy.apply_buy(None, code, o, volume, fees, date(2000, 1, 1))
            trades.append((index, Side.BUY, o, volume, fees, Rule.MACD_BUY))
        for price in tick_path(o, h, l, c):
            if position is None:
                break
            position = position.copy(highest_price=max(position.highest_price, price))
            while position is not None and (actions := strategy.evaluate(position, price, params)):
                action = actions[0]
                side = action.rule.side
                if (side is Side.SELL and price <= limit_down) or (side is Side.BUY and price >= limit_up):
                    break
                fees = market_rules.fees(code, side.value, price, action.volume, settings)["total"]
                trades.append((index, side, price, action.volume, fees, action.rule))
                if side is Side.SELL:
                    position = strategy.apply_sell(position, action.volume, action.rule)
                    position = position if position.volume > 0 else None
                else:
                    position = strategy.apply_buy(position, code, price, action.volume, fees, date(2000, 1, 1),
                                                  action.level_index)
    return trades


def engine_decisions(run, days):
    index_of = {day: i for i, day in enumerate(days)}
    return [(index_of[t.day], t.side, t.price, t.volume, t.fees, t.rule) for t in run.result.trades]


@pytest.mark.parametrize("name", [n for n in SCENARIOS])
def test_tick_by_tick_rule_calls_take_the_same_decisions(tmp_path, name):
    bars, overrides, _ = SCENARIOS[name]
    settings = {**config.DEFAULTS, **overrides}
    folder = tmp_path / "bars"
    days = write_bars(folder, CODE, PREFIX + bars)
    run = run_backtest(folder, settings, plot=False)
    assert engine_decisions(run, days) == step_through_ticks(CODE, PREFIX + bars, len(PREFIX), settings)


@pytest.mark.parametrize("first_day, st, bought", [
    ("2024-01-02", False, True),  # limit-up 9.80 × 1.10 = 10.78: the entry fills at the 10.30 open
    ("2024-01-02", True, False),  # ST before 2026-07-06: limit-up 9.80 × 1.05 = 10.29, the open is sealed
    ("2026-03-27", True, True),  # ST, entry on 2026-07-06: limit-up 9.80 × 1.10 = 10.78 again
])
def test_st_band_follows_the_bar_date(tmp_path, first_day, st, bought):
    """Issue 33: the backtest applies the ST band of each bar's date (names.csv marks ST stocks)."""
    folder = tmp_path / "bars"
    days = write_bars(folder, CODE, PREFIX + [(10.30, 10.40, 10.20, 10.30), QUIET_E],
                      business_days(len(PREFIX) + 2, first_day))
    if st:
        (folder / "names.csv").write_text("code,name\n600036,*ST测试\n", encoding="utf-8")
    run = run_backtest(folder, dict(config.DEFAULTS), plot=False)
    entries = [(t.day, t.price, t.volume) for t in run.result.trades if t.rule is Rule.MACD_BUY]
    assert entries == ([(days[len(PREFIX)], 10.30, 1900)] if bought else [])
    assert days[len(PREFIX)] == (date(2026, 7, 6) if first_day.startswith("2026") else date(2024, 4, 10))
