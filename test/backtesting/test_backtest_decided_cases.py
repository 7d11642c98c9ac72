"""DESIGN §7 "Decided cases", each pinned by the exact trades of a tiny hand-computed bar set (issue 20).
The bars reuse the 70-bar MACD prefix of test_backtest_scenarios: the entry buys 2000 shares at 10.00 on E
for 20006.20 (cost 10.0031, stop 9.0528, first take-profit 10.6033, add levels 9.30 / 8.80)."""
import csv

import config
import numpy as np
from backtest import run_backtest
from core.models import Rule, Side
from test_backtest_scenarios import E, E1, ENTRY, PREFIX, QUIET_E, trades_of, write_bars

A, B = "600000.SH", "600036.SH"  # A is walked first (stock code order)


def run(tmp_path, bars_by_code, **overrides):
    folder = tmp_path / "bars"
    for code, bars in bars_by_code.items():
        write_bars(folder, code, PREFIX + bars)
    return run_backtest(folder, {**config.DEFAULTS, **overrides}, plot=False)


def trades_by_code(result):
    return [(t.stock_code,) + trade for t, trade in zip(result.result.trades, trades_of(result))]


def test_no_macd_reentry_on_the_day_of_an_exit(tmp_path):
    """Held at the signal bar's close, sold at the next open: the MACD entry of that open does not buy."""
    # After the entry the price eases (histogram < 0), then one bar up turns it positive again while held;
    # the next open gaps to 9.02 (limit-down 10.00 × 0.9 = 9.00), below the stop 9.0528: the stop sells the whole position.
    drift = [(10.00, 10.00, 9.90, 9.90), (9.90, 9.90, 9.80, 9.80), (9.80, 9.80, 9.70, 9.70),
             (9.70, 9.70, 9.60, 9.60), (9.60, 9.60, 9.50, 9.50), (9.50, 10.05, 9.50, 10.00)]
    after = [(9.02, 9.10, 9.02, 9.05)]
    bars = [QUIET_E] + drift + after
    import talib

    closes = np.array([b[3] for b in PREFIX + bars], dtype=float)
    hist = talib.MACD(closes, 12, 26, 9)[2]
    signal_bar = len(PREFIX) + len(bars) - 2
    assert hist[signal_bar - 1] <= 0 < hist[signal_bar], "the bars must give a golden cross on the last-but-one bar"
    result = run(tmp_path, {B: bars}, ENABLE_MA_FILTER=False, ENABLE_ADD_POSITION=False)
    exit_day = result.result.equity[-1].day
    # 2000 × 9.02 = 18040.00: commission 5.41, stamp 9.02, transfer 0.18
    assert trades_of(result) == [ENTRY, (exit_day, Side.SELL, 9.02, 2000, 18040.00, 14.61, Rule.STOP_LOSS)]


def test_first_take_profit_then_dynamic_stop_at_the_same_price(tmp_path):
    """E reaches 10.78 but T+1 blocks the take-profit; on E1 the rise fills it at 10.61 and the dynamic stop
    (highest 10.78 is +7.77 % → row 0.05 with coefficient 0.99 → 10.6722 ≥ 10.61) sells the rest there too."""
    bars = [(10.00, 10.78, 9.95, 10.70), (10.40, 10.90, 10.35, 10.80)]
    result = run(tmp_path, {B: bars}, ENABLE_ADD_POSITION=False, DYNAMIC_TAKE_PROFIT=[[0.05, 0.99]])
    entry = (E, Side.BUY, 10.00, 2000, 20000.00, 6.20, Rule.MACD_BUY)
    assert trades_of(result) == [entry, (E1, Side.SELL, 10.61, 1200, 12732.00, 11.50, Rule.TAKE_PROFIT),
                                 (E1, Side.SELL, 10.61, 800, 8488.00, 9.32, Rule.DYNAMIC_STOP)]


# Both stocks enter on E at 10.00 and close E at 10.00. On E1 A rises to 10.70 before B's walk reaches its add
# at 9.30 (2100 shares, 19530.00 + 6.06). Cap at previous closes: 40000 + 19530 = 59530 ≤ 0.596 × (100000
# − 40012.40 + 40000 − 6.06) = 59589.0 → allowed. Valued at the prices of the moment (A at 10.70, B at its
# open 9.50) it would be 59930 > 0.596 × 100381.54 = 59827.4 → refused, but only when A is walked first.
CAP_A = [QUIET_E, (10.20, 10.70, 10.15, 10.70)]
CAP_B = [QUIET_E, (9.50, 9.55, 9.25, 9.30)]
CAP_SETTINGS = {"SIMULATION_BALANCE": 100000.0, "MAX_TOTAL_POSITION_RATIO": 0.596, "ENABLE_DYNAMIC_STOP_PROFIT": False}


def test_portfolio_cap_values_holdings_at_the_previous_close(tmp_path):
    result = run(tmp_path, {A: CAP_A, B: CAP_B}, **CAP_SETTINGS)
    adds = [t for t in trades_by_code(result) if t[-1] is Rule.ADD_POSITION]
    assert adds == [(B, E1, Side.BUY, 9.30, 2100, 19530.00, 6.06, Rule.ADD_POSITION)]


def test_cap_result_does_not_depend_on_the_stock_order(tmp_path):
    """The same two series under swapped codes (so the riser is walked second) trade the same."""
    first = run(tmp_path / "one", {A: CAP_A, B: CAP_B}, **CAP_SETTINGS)
    second = run(tmp_path / "two", {A: CAP_B, B: CAP_A}, **CAP_SETTINGS)
    swap = {A: B, B: A}
    assert sorted(trades_by_code(first)) == sorted((swap[t[0]],) + t[1:] for t in trades_by_code(second))
    assert [p.total for p in first.result.equity] == [p.total for p in second.result.equity]


def test_add_refused_for_cash_stays_eligible_later_the_same_day(tmp_path):
    """A (600000) opens E1 at 9.20 below its add level 9.30 but cash (19,000) cannot pay 2100 shares; B
    (600036) opens at 9.02 below its stop and sells (cash 37025.39). A's walk then falls from 9.40 through
    9.30 again: the level was not used by the refusal, so the add fills there."""
    bars_a = [QUIET_E, (9.20, 9.40, 9.00, 9.10)]
    bars_b = [QUIET_E, (9.02, 9.10, 9.00, 9.05)]
    result = run(tmp_path, {A: bars_a, B: bars_b}, SIMULATION_BALANCE=59012.40)
    assert trades_by_code(result) == [
        (A, E, Side.BUY, 10.00, 2000, 20000.00, 6.20, Rule.MACD_BUY),
        (B, E, Side.BUY, 10.00, 2000, 20000.00, 6.20, Rule.MACD_BUY),
        (B, E1, Side.SELL, 9.02, 2000, 18040.00, 14.61, Rule.STOP_LOSS),
        (A, E1, Side.BUY, 9.30, 2100, 19530.00, 6.06, Rule.ADD_POSITION)]
    assert result.result.equity[-1].cash == round(59012.40 - 40012.40 + 18025.39 - 19536.06, 2)


def test_trade_records_name_the_trailing_exit_dynamic_take_profit(tmp_path):
    bars = [QUIET_E, (10.20, 11.00, 10.10, 10.15)]
    folder = tmp_path / "bars"
    write_bars(folder, B, PREFIX + bars)
    run_backtest(folder, dict(config.DEFAULTS), out=tmp_path / "out", plot=False)
    with open(tmp_path / "out" / "trades.csv", encoding="utf-8") as handle:
        rules = [row["rule"] for row in csv.DictReader(handle)]
    assert rules == ["macd_buy", "take_profit", "dynamic_take_profit"]
    assert Rule("dynamic_stop") is Rule.DYNAMIC_STOP  # rows written before the rename still read back
