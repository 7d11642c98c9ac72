"""Issue 28 in the backtest: convertible bonds trade T+0 in lots of 10 张 with their own fees and ±20 % limits,
北交所 stocks buy any whole share from 100 with ±30 % limits and stay T+1 — the same facts as the live checks."""
from __future__ import annotations

import pytest

import config
import strategy
from backtest import run_backtest
from backtesting.engine import StartingState
from core.models import Rule, Side
from test_backtest_scenarios import E, E1, trades_of, write_bars

FLAT = [(100.00, 100.00, 100.00, 100.00)] * 72  # through E; the crash is E1
# one falling day: through both add levels (93, 88) and down to 80, −20 % from the previous close 100
CRASH = (100.00, 100.00, 80.00, 81.00)


def run(tmp_path, code):
    write_bars(tmp_path / "bars", code, FLAT + [CRASH])
    held = strategy.apply_buy(None, code, 100.00, 100, 1.0, E)  # 100 held since the day before, base cost 100
    return run_backtest(tmp_path / "bars", {**config.DEFAULTS, "ENABLE_MACD_BUY": False}, start=E1, plot=False,
                        starting=StartingState(1_000_000.0, (held,)))


def test_bond_adds_and_stops_out_the_same_day(tmp_path):
    backtest = run(tmp_path, "113050.SH")
    # adds of 20,000 round down to 10 张 (215 → 210, 227 → 220), fees 万1 without stamp duty or transfer fee;
    # the stop (cost 92.2545 × 0.905 = 83.490) sells all 530 张 including today's adds: T+0
    assert trades_of(backtest) == [
        (E1, Side.BUY, 93.0, 210, 19_530.0, 1.95, Rule.ADD_POSITION),
        (E1, Side.BUY, 88.0, 220, 19_360.0, 1.94, Rule.ADD_POSITION),
        (E1, Side.SELL, 83.49, 530, 44_249.7, 4.42, Rule.STOP_LOSS)]
    assert backtest.result.open_positions == []


@pytest.mark.parametrize("code, adds, stop", [
    # ChiNext: lots of 100, T+1 — the stop sells only the 100 held from before; fees with the 5 CNY minimum
    ("300750.SZ", [(200, 18_600.0, 5.77), (200, 17_600.0, 5.46)], (83.64, 100, 8_364.0, 9.26)),
    # 北交所: any whole share from 100 (215, 227), T+1
    ("920001.BJ", [(215, 19_995.0, 6.2), (227, 19_976.0, 6.19)], (83.46, 100, 8_346.0, 9.25)),
])
def test_t1_kinds_sell_only_what_was_held_before(tmp_path, code, adds, stop):
    (v1, a1, f1), (v2, a2, f2) = adds
    price, volume, amount, fees = stop
    assert trades_of(run(tmp_path, code)) == [
        (E1, Side.BUY, 93.0, v1, a1, f1, Rule.ADD_POSITION), (E1, Side.BUY, 88.0, v2, a2, f2, Rule.ADD_POSITION),
        (E1, Side.SELL, price, volume, amount, fees, Rule.STOP_LOSS)]


def test_main_board_limit_down_blocks_the_same_fall(tmp_path):
    # ±10 %: the path cannot go below 90.00, so no stop fills at 83.64 on the main board
    trades = trades_of(run(tmp_path, "600036.SH"))
    assert [t[6] for t in trades] == [Rule.ADD_POSITION, Rule.ADD_POSITION]
