"""DESIGN §7 decided cases on real days of ../shared/data/full/daily (issue 27, "Semantics"): the portfolio cap
values a same-day entry at its previous close; no add while a sell-all exit holds but cannot fill (limit-down,
T+1); a sell blocked at limit-down fills at the first price above it on a rising segment. Each case is pinned by
the engine's exact trades over the 240 stocks (ENABLE_MA_FILTER off, defaults otherwise: 1,000,000 CNY, 20,000
per entry, cap 95 %, stop −9.5 %, add levels 0.93 / 0.88 of the first buy price), then the decisive moment is
replayed through the live rule functions and the sim account at the same prices."""
from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest

import config
import market_rules
import strategy
from backtesting.data import load_bars
from backtesting.engine import BacktestEngine
from data_test_support import shared_data
from core.models import Rule, Side

SETTINGS = {**config.DEFAULTS, "ENABLE_MA_FILTER": False}
PARAMS = strategy.RuleParams.from_settings(SETTINGS)
BUY, SELL = Side.BUY, Side.SELL


@pytest.fixture(scope="module")
def market():
    return {s.code: s for s in load_bars(shared_data("full", "daily")).stocks}


@pytest.fixture(scope="module")
def run(market):
    return BacktestEngine(list(market.values()), SETTINGS).run()


def trades_of(run, code, first, last):
    return [(t.day.isoformat(), t.side, t.price, t.volume, t.fees, t.rule) for t in run.trades
            if t.stock_code == code and date.fromisoformat(first) <= t.day <= date.fromisoformat(last)]


def bar(market, code, day):
    """(open, high, low, close, previous close) of `code` on `day`."""
    stocks = market[code]
    i = int(np.nonzero(stocks.dates == np.datetime64(day))[0][0])
    return (float(stocks.open[i]), float(stocks.high[i]), float(stocks.low[i]), float(stocks.close[i]),
            float(stocks.close[i - 1]))


def limit_down(market, code, day):
    return market_rules.price_limits(code, bar(market, code, day)[4], day=date.fromisoformat(day))[0]


def replayed_position(run, code, first, last):
    """The position after the engine's trades of `code` from `first` to `last` (one episode)."""
    position = None
    for t in run.trades:
        if t.stock_code != code or not date.fromisoformat(first) <= t.day <= date.fromisoformat(last):
            continue
        if position is not None and position.open_date != t.day:
            position.available = position.volume  # T+1: what was bought before today is sellable
        if t.side is BUY:
            level = strategy.next_add_level(position, PARAMS)[0] if t.rule is Rule.ADD_POSITION else None
            position = strategy.apply_buy(position, code, t.price, t.volume, t.fees, t.day, level_index=level)
        else:
            position = strategy.apply_sell(position, t.volume, t.rule)
    return position


# ---- (b) no add while a sell-all exit holds but cannot fill --------------------------------------------

def test_no_add_on_a_limit_down_day_while_the_stop_loss_holds(market, run):
    """002555.SZ: entry 700 @ 25.55 (03-08), add level 1 (25.55 × 0.93 = 23.7615) 800 @ 23.76 (03-12): cost
    (17,885 + 5.55 + 19,008 + 5.89) / 1,500 = 24.6030, stop 24.6030 × 0.905 = 22.2657; the next add level is
    25.55 × 0.88 = 22.484. On 03-15 the stock trades at one price, 21.46 = limit-down (23.84 × 0.9 = 21.456 →
    21.46): the stop holds but cannot sell, the add level holds too, and no add is made. 03-16 opens at 19.58
    (limit-down 21.46 × 0.9 = 19.31): the stop sells all 1,500."""
    assert bar(market, "002555.SZ", "2021-03-15") == (21.46, 21.46, 21.46, 21.46, 23.84)
    assert limit_down(market, "002555.SZ", "2021-03-15") == 21.46
    assert trades_of(run, "002555.SZ", "2021-03-08", "2021-03-17") == [
        ("2021-03-08", BUY, 25.55, 700, 5.55, Rule.MACD_BUY),
        ("2021-03-12", BUY, 23.76, 800, 5.89, Rule.ADD_POSITION),
        ("2021-03-16", SELL, 19.58, 1500, 23.79, Rule.STOP_LOSS),  # 29,370: commission 8.81, stamp 14.69, transfer 0.29
    ]
    position = replayed_position(run, "002555.SZ", "2021-03-08", "2021-03-12")
    position.available = position.volume
    triggers = strategy.trigger_prices(position, PARAMS)
    assert (round(triggers.stop_loss_price, 4), triggers.next_add_price) == (22.2657, 22.484)
    # live: the monitor asks strategy.evaluate at 21.46 — the answer is the stop-loss, never an add; the sim
    # account then refuses that sell at limit-down (test_limit_down_stop_is_sent_at_the_first_price_above_it)
    assert strategy.evaluate(position, 21.46, PARAMS) == [
        strategy.Action(Rule.STOP_LOSS, 1500, triggers.stop_loss_price)]


def test_no_add_on_the_entry_day_while_t_plus_1_blocks_the_stop_loss(market, run):
    """600161.SH: entry 700 @ 27.45 at the 2020-10-27 open, cost (19,215 + 5.95) / 700 = 27.4585, stop
    24.8499, add level 1 27.45 × 0.93 = 25.5285. The day falls to 24.84 = limit-down (27.60 × 0.9): the stop
    holds (T+1: nothing available), the add level holds, no add. 10-28 opens at 24.50: the stop sells 700."""
    assert bar(market, "600161.SH", "2020-10-27")[:3] == (27.45, 27.72, 24.84)
    assert trades_of(run, "600161.SH", "2020-10-20", "2020-11-05") == [
        ("2020-10-27", BUY, 27.45, 700, 5.95, Rule.MACD_BUY),
        ("2020-10-28", SELL, 24.50, 700, 13.90, Rule.STOP_LOSS),
    ]
    position = replayed_position(run, "600161.SH", "2020-10-27", "2020-10-27")
    triggers = strategy.trigger_prices(position, PARAMS)
    assert (round(triggers.stop_loss_price, 4), triggers.next_add_price) == (24.8499, 25.5285)
    assert position.available == 0
    # live: above the stop the add level alone buys; at 24.84 the stop holds too and nothing is added
    assert strategy.evaluate(position, 24.85, PARAMS) == [
        strategy.Action(Rule.ADD_POSITION, 800, 25.5285, 20_000.0, 1)]  # 20,000 / 24.85 → 800
    assert strategy.evaluate(position, 24.84, PARAMS) == []


# ---- (c) a limit-down-blocked sell fills at the first price above limit-down on a rising segment -------

@pytest.mark.parametrize("code, first, day, expected, blocked_stop", [
    # 002841.SZ: 100 @ 104.83 + add 200 @ 97.49 (level 104.83 × 0.93 = 97.4919): cost 99.9738, stop 90.4763;
    # 08-30 opens at limit-down 88.68 (98.53 × 0.9 = 88.677), rises to 90.87: sold at 88.69. At the open the
    # next add level 104.83 × 0.88 = 92.2504 held as well and nothing was added (case b).
    ("002841.SZ", "2021-08-11", "2021-08-30", [
        ("2021-08-11", BUY, 104.83, 100, 5.10, Rule.MACD_BUY),
        ("2021-08-26", BUY, 97.49, 200, 6.04, Rule.ADD_POSITION),
        ("2021-08-30", SELL, 88.69, 300, 21.55, Rule.STOP_LOSS)], 90.4763),
    # 600009.SH: 200 @ 73.83, take-profit 100 @ 78.29 (cost 73.8558 × 1.06 = 78.2871); stop 66.8395. Limit-down
    # one-price days 02-01 (69.98, above the stop) and 02-02 (62.98, stop blocked); 02-03 opens at limit-down
    # 56.68 (62.98 × 0.9 = 56.682), rises to 59.45: sold at 56.69.
    ("600009.SH", "2021-01-28", "2021-02-03", [
        ("2021-01-28", BUY, 73.83, 200, 5.15, Rule.MACD_BUY),
        ("2021-01-29", SELL, 78.29, 100, 8.99, Rule.TAKE_PROFIT),
        ("2021-02-03", SELL, 56.69, 100, 7.89, Rule.STOP_LOSS)], 66.8395),
    # 603259.SH: 300 @ 51.24 (cost 51.2572), take-profit 100 @ 54.34 on 03-04 whose high 57.59 is +12.35 %:
    # row (0.10, 0.93) → dynamic stop 57.59 × 0.93 = 53.5587. 03-07 opens at limit-down 50.30
    # (55.89 × 0.9 = 50.301), rises to 52.31: the dynamic take-profit sells the 200 at 50.31.
    ("603259.SH", "2024-02-26", "2024-03-07", [
        ("2024-02-26", BUY, 51.24, 300, 5.15, Rule.MACD_BUY),
        ("2024-03-04", SELL, 54.34, 100, 7.77, Rule.TAKE_PROFIT),
        ("2024-03-07", SELL, 50.31, 200, 10.13, Rule.DYNAMIC_STOP)], None),
])
def test_sell_blocked_at_limit_down_fills_one_tick_above_on_the_rise(market, run, code, first, day, expected,
                                                                     blocked_stop):
    down = limit_down(market, code, day)
    open_, high, low, _close, _prev = bar(market, code, day)
    assert open_ == low == down < high  # the day opens at limit-down, then only rises from there
    assert trades_of(run, code, first, day) == expected
    assert expected[-1][2] == round(down + 0.01, 2)
    if blocked_stop is not None:
        position = replayed_position(run, code, first, expected[-2][0])
        assert round(strategy.stop_loss_price(position.cost_price, PARAMS), 4) == blocked_stop


# ---- (a) the cap values a same-day entry at its previous close -----------------------------------------

SAME_DAY_ENTRIES = {  # 2020-11-10 opens before 600570.SH: code -> (volume, fill = open, previous close)
    "000786.SZ": (600, 33.06, 33.06), "002049.SZ": (200, 79.47, 81.62), "002129.SZ": (1000, 18.66, 18.68),
    "002475.SZ": (300, 57.65, 58.23), "002555.SZ": (800, 24.06, 24.19)}


def test_cap_values_same_day_entries_at_their_previous_close(market, run):
    """2020-11-10: five MACD entries fill at the open, then 600570.SH (300 × 50.83 = 15,249, fees 5.15) is
    checked against the 95 % cap. With the five valued at their previous closes it is over the cap by 34.13;
    valued at their fill prices (728.00 lower) it would be inside by 2.28. The engine refuses it, and still
    buys 601318.SH (200 × 67.61 = 13,522), which fits at the previous closes."""
    day = date(2020, 11, 10)
    for code, (volume, fill, previous) in SAME_DAY_ENTRIES.items():
        assert bar(market, code, "2020-11-10")[0::4] == (fill, previous)
    before = []  # every trade done before 600570.SH is checked: all earlier days, then 11-10 up to 002555.SZ
    for t in run.trades:
        before.append(t)
        if t.day == day and t.stock_code == "002555.SZ":
            break
    assert [(t.stock_code, t.price, t.volume) for t in before if t.day == day and t.side is BUY] == [
        (code, fill, volume) for code, (volume, fill, _) in SAME_DAY_ENTRIES.items()]
    cash = round(config.DEFAULTS["SIMULATION_BALANCE"] + sum(
        (t.amount - t.fees) if t.side is SELL else -(t.amount + t.fees) for t in before), 2)
    held: dict[str, int] = {}
    for t in before:
        held[t.stock_code] = held.get(t.stock_code, 0) + (t.volume if t.side is BUY else -t.volume)
    at_previous_close = round(sum(volume * bar_before(market, code, day) for code, volume in held.items()), 2)
    at_fill = round(at_previous_close - sum(v * (p - f) for v, f, p in SAME_DAY_ENTRIES.values()), 2)
    assert (cash, at_previous_close, at_fill) == (80_481.65, 1_224_756.00, 1_224_028.00)

    open_ = bar(market, "600570.SH", "2020-11-10")[0]
    amount, fees = strategy.trade_amount(open_, 300), 5.15  # commission min 5 + transfer 15,249 × 0.00001
    assert (open_, amount) == (50.83, 15_249.0)
    assert market_rules.buy_volume_for_amount("600570.SH", 20_000, open_) == 300
    ratio = config.DEFAULTS["MAX_TOTAL_POSITION_RATIO"]

    def room(market_value):  # cap − (held + this buy); total assets = cash after fees + holdings
        return round(ratio * (cash + market_value - fees) - (market_value + amount), 3)

    assert room(at_previous_close) == -34.125  # 0.95 × 1,305,232.50 = 1,239,970.875 < 1,240,005
    assert room(at_fill) == 2.275  # 0.95 × 1,304,504.50 = 1,239,279.275 ≥ 1,239,277
    assert trades_of(run, "600570.SH", "2020-11-10", "2020-11-10") == []
    assert trades_of(run, "601318.SH", "2020-11-10", "2020-11-10") == [
        ("2020-11-10", BUY, 67.61, 200, 5.14, Rule.MACD_BUY)]
    assert ratio * (cash + at_previous_close - 5.14) - (at_previous_close + 13_522.0) > 0


def bar_before(market, code, day):
    """The close of `code`'s last bar before `day` (a suspended stock keeps its last close)."""
    stocks = market[code]
    earlier = np.nonzero(stocks.dates < np.datetime64(day))[0]
    return float(stocks.close[earlier[-1]])


# ---- the live path at the same moments -------------------------------------------------------------------

def live_engine(tmp_path, monkeypatch, start):
    """test_live_engine's monitor + runner + sim account, its market clock starting at `start`, and a signal
    store whose real-time clock the test moves (the exit retry waits EXIT_RETRY_SECONDS of real time)."""
    import test_live_engine
    from market.clock import ReplayClock
    from core.position_monitor import PositionMonitor
    from core.signal_store import SignalStore
    from core.strategy_runner import StrategyRunner
    from test_protective_exits import WallClock

    monkeypatch.setattr(test_live_engine, "ReplayClock", lambda _start: ReplayClock(start))
    engine = test_live_engine.Engine(tmp_path, auto=True)
    engine.wall = WallClock()
    engine.signals = SignalStore(engine.core.db, engine.clock, wall_clock=engine.wall)
    engine.monitor = PositionMonitor(engine.core.positions, engine.hub, engine.signals, engine.core.executor,
                                     engine.settings, engine.clock)
    engine.runner = StrategyRunner(engine.signals, engine.core.positions, engine.core.executor, engine.hub,
                                   engine.settings, engine.clock)
    return engine


def test_live_stop_refused_at_limit_down_is_sent_at_the_first_price_above_it_with_no_add(
        market, tmp_path, monkeypatch):
    """002841.SZ through the live monitor, strategy runner and sim account at the engine's prices: the same
    episode (100 @ 104.83, add 200 @ 97.49, cost 99.9738, stop 90.4763). On 2021-08-30 at 88.68 = limit-down
    the stop-loss holds and so does the next add level (92.2504): the sim account refuses the sell, nothing
    is added, the exit stays queued (no cooldown) and is refused again at 88.68; at 88.69 it is sent, its limit
    price 88.69 × 0.998 = 88.51 raised to the limit-down 88.68, and fills at 88.69 like the backtest."""
    code = "002841.SZ"
    engine = live_engine(tmp_path, monkeypatch, datetime(2021, 8, 11, 9, 25))
    engine.prev_close[code] = bar(market, code, "2021-08-11")[4]
    engine.quote(code, 104.83, "2021-08-11T09:30")
    engine.core.executor.buy_stock(code, amount=20_000)
    engine.prev_close[code] = bar(market, code, "2021-08-26")[4]
    engine.quote(code, 97.49, "2021-08-26T10:00")  # ≤ 97.4919: add level 1, 20,000 / 97.68 → 200
    position = engine.core.positions.get(code)
    assert (position.volume, position.cost_price, round(position.stop_loss_price, 4)) == (300, 99.9738, 90.4763)
    engine.prev_close[code] = bar(market, code, "2021-08-30")[4]  # 98.53 → limit-down 88.68
    engine.quote(code, 88.68, "2021-08-30T09:30")
    [held] = engine.signals.pending()
    assert (held.rule, held.hold_count) == (Rule.STOP_LOSS, 1) and "已跌停（88.68 元）" in held.reason
    engine.wall.advance(3)
    engine.quote(code, 88.68, "2021-08-30T09:30:03")
    assert engine.signals.pending()[0].hold_count == 2
    engine.wall.advance(3)
    engine.quote(code, 88.69, "2021-08-30T09:30:06")
    assert engine.orders() == [(code, "buy", "manual", 100, 105.04, "filled"),
                               (code, "buy", "add_position", 200, 97.68, "filled"),
                               (code, "sell", "stop_loss", 300, 88.68, "filled")]
    assert engine.trades() == [(code, "buy", "manual", 100, 104.83, 5.10),
                               (code, "buy", "add_position", 200, 97.49, 6.04),
                               (code, "sell", "stop_loss", 300, 88.69, 21.55)]  # as the backtest
    assert engine.signals.pending() == []


def test_live_cap_check_values_the_same_day_entries_at_their_previous_close(tmp_path):
    """The sim account at the moment of 2020-11-10 when 600570.SH is checked: cash 80,481.65 and holdings worth
    1,224,756.00 at previous closes — the five entries bought at this open at their real fill prices, the
    other 1,133,095.00 (about fifty stocks in the backtest) stood in for by one holding bought the day before.
    The executor values the five at their previous closes (at their fills it would be 1,224,028.00): buying
    300 × 50.83 (limit 50.93) is refused, as in the backtest, then 200 × 67.61 of 601318.SH is bought."""
    from core.models import OrderRejected, OrderStatus
    from test_trading_executor import DAY2, Env

    rest, rest_cost = ("600519.SH", 500, 2_266.19), 1_133_095.00 + 351.26  # commission 339.93 + transfer 11.33
    entries_cost = 90_933.00 + 28.42  # the five fills and their fees
    env = Env(tmp_path, SIMULATION_BALANCE=round(80_481.65 + entries_cost + rest_cost, 2),
              MAX_TOTAL_POSITION_RATIO=0.95, MAX_ORDER_VALUE=2_000_000.0)
    code, volume, price = rest
    env.quotes.set(code, price, price)
    assert env.ex.buy_stock(code, volume=volume).status is OrderStatus.FILLED
    env.clock.set(DAY2)
    env.quotes.set(code, price, price)
    for entry, (volume, fill, previous) in SAME_DAY_ENTRIES.items():
        env.quotes.set(entry, fill, previous)
        assert env.ex.buy_stock(entry, volume=volume).status is OrderStatus.FILLED
    assert env.ex.account().cash == 80_481.65
    env.quotes.set("600570.SH", 50.83, 50.85)
    with pytest.raises(OrderRejected) as info:
        env.ex.buy_stock("600570.SH", volume=300)
    # total assets after this buy's fees (5.15), as the engine: 80,481.65 + 1,224,756.00 − 5.15 = 1,305,232.50;
    # (1,224,756.00 + 15,279.00) / 1,305,232.50 = 95.005 % > 95 %
    assert info.value.code == "POSITION_RATIO"
    assert "持仓按昨收计市值 1224756.00 元，总资产 1305232.50 元" in info.value.message
    env.quotes.set("601318.SH", 67.61, 66.59)
    assert env.ex.buy_stock("601318.SH", volume=200).status is OrderStatus.FILLED  # 1,238,306 / 1,305,237.65
