"""The backtest on real market data from ../shared/data: the event-driven walk equals walking every bar, equals
feeding every tick to the rule functions; TDX input read offline."""
from datetime import date
from pathlib import Path

import numpy as np
import pytest

import config
import market_rules
from backtest import run_backtest
from backtesting.data import load_bars
from backtesting.engine import BacktestEngine
from core.models import Rule, Side
from test_backtest_scenarios import step_through_ticks

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
DAILY = DATA / "daily"
TDX = DATA / "tdx"

needs_daily = pytest.mark.skipif(not DAILY.is_dir(), reason=f"真实行情数据目录不存在：{DAILY}")
needs_tdx = pytest.mark.skipif(not (TDX / "vipdoc").is_dir(), reason=f"通达信数据目录不存在：{TDX}")


@pytest.fixture(scope="module")
def daily_stocks():
    if not DAILY.is_dir():
        pytest.skip(f"真实行情数据目录不存在：{DAILY}")
    return load_bars(DAILY).stocks


@needs_daily
@pytest.mark.parametrize("overrides", [
    {},
    {"ENABLE_MA_FILTER": False, "ENABLE_MACD_SELL": True, "SIMULATION_BALANCE": 300_000.0},
])
def test_skipping_quiet_days_changes_nothing(daily_stocks, overrides):
    settings = {**config.DEFAULTS, **overrides}
    fast = BacktestEngine(daily_stocks, settings).run()
    full = BacktestEngine(daily_stocks, settings, fast_path=False).run()
    assert len(fast.trades) > 100
    assert fast.trades == full.trades
    assert fast.equity == full.equity


@needs_daily
@pytest.mark.parametrize("code", ["600036.SH", "000792.SZ"])
def test_engine_equals_tick_by_tick_rule_calls_on_real_bars(daily_stocks, code):
    """One stock, ample cash: every decision after each entry matches feeding every 0.01 tick of the
    O→L→H→C / O→H→L→C path to strategy.evaluate (000792.SZ includes a +306 % reopening gap)."""
    (bars,) = [s for s in daily_stocks if s.code == code]
    settings = {**config.DEFAULTS, "ENABLE_MA_FILTER": False}
    end_day = np.datetime64("2022-06-30")
    result = BacktestEngine([bars], settings, end=end_day.item()).run()
    rows = list(zip(bars.open.tolist(), bars.high.tolist(), bars.low.tolist(), bars.close.tolist()))
    index_of = {d.item(): i for i, d in enumerate(bars.dates)}
    decisions = [(index_of[t.day], t.side, t.price, t.volume, t.fees, t.rule) for t in result.trades]
    entries = [i for i, (bar, *_rest, rule) in enumerate(decisions) if rule is Rule.MACD_BUY]
    assert len(entries) >= 3
    for number, start in enumerate(entries):
        stop = entries[number + 1] if number + 1 < len(entries) else len(decisions)
        episode = decisions[start:stop]
        last_bar = episode[-1][0] if number + 1 < len(entries) else int((bars.dates <= end_day).sum()) - 1
        reference = step_through_ticks(code, rows[:last_bar + 1], episode[0][0], settings)
        assert episode == reference, f"{code} episode from {bars.dates[episode[0][0]]}"


@needs_daily
def test_real_run_respects_bars_lots_limits_fees_and_t_plus_1(daily_stocks):
    run = BacktestEngine(daily_stocks, config.DEFAULTS).run()
    bars_of = {s.code: s for s in daily_stocks}
    held: dict[str, int] = {}
    day = None
    for trade in run.trades:
        if trade.day != day:
            day, morning, sold = trade.day, dict(held), {}  # what was held at the start of the day
        bars = bars_of[trade.stock_code]
        index = int((bars.dates == trade.day).nonzero()[0][0])
        assert bars.low[index] <= trade.price <= bars.high[index]
        down, up = market_rules.price_limits(trade.stock_code, float(bars.close[index - 1]))
        expected_fees = market_rules.fees(trade.stock_code, trade.side, trade.price, trade.volume, config.DEFAULTS)
        assert trade.fees == expected_fees["total"]
        if trade.side is Side.BUY:
            assert trade.volume % 100 == 0 and trade.price < up
            held[trade.stock_code] = held.get(trade.stock_code, 0) + trade.volume
        else:
            assert trade.price > down
            held[trade.stock_code] -= trade.volume
            sold[trade.stock_code] = sold.get(trade.stock_code, 0) + trade.volume
            assert sold[trade.stock_code] <= morning.get(trade.stock_code, 0)  # T+1: only the morning's shares
            assert held[trade.stock_code] >= 0


@needs_tdx
def test_tdx_folder_is_read_offline_with_volume_in_shares():
    loaded = load_bars(TDX)
    assert [s.code for s in loaded.stocks] == ["000001.SZ", "600000.SH", "600519.SH"]
    bars = loaded.stocks[1]
    # first record of sh600000.day: 1999-11-10 29.50 29.80 27.00 27.75, 1,740,850 lots = 174,085,000 shares
    assert (str(bars.dates[0]), bars.open[0], bars.high[0], bars.low[0], bars.close[0], bars.volume[0]) == \
        ("1999-11-10", 29.50, 29.80, 27.00, 27.75, 174_085_000.0)


@needs_tdx
def test_backtest_runs_on_a_tdx_folder(tmp_path):
    run = run_backtest(TDX, {**config.DEFAULTS, "ENABLE_MA_FILTER": False}, start=date(2021, 8, 2),
                       end=date(2024, 12, 31), out=tmp_path / "out", plot=False)
    assert run.summary.stocks == 3 and run.summary.start == date(2021, 8, 2)
    assert run.summary.trade_count == len(run.result.trades) > 0
    assert (tmp_path / "out" / "trades.csv").read_text(encoding="utf-8").count("\n") == run.summary.trade_count + 1
