"""The shared performance statistics: exact figures on hand-made fills, and on a real-data backtest the
episodes rebuilt from its fills equal the engine's own, so the 收益 page and the backtest agree."""
from datetime import date
from pathlib import Path

import pytest

import config
import core.perf_stats as perf_stats
from backtest import run_backtest
from backtesting.report import fills_of
from core.perf_stats import Fill

DAILY = Path(__file__).resolve().parents[3] / "shared" / "data" / "daily"
D1, D2, D3, D4 = date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)

FILLS = [
    Fill(D1, "600036.SH", "buy", 1000, 20000.0, 5.2, "macd_buy"),
    Fill(D2, "600036.SH", "buy", 1000, 18600.0, 5.19, "add_position"),
    Fill(D3, "600036.SH", "sell", 2000, 41000.0, 25.91, "take_profit"),  # +2368.70
    Fill(D2, "000001.SZ", "buy", 2000, 20000.0, 5.2, "manual"),
    Fill(D3, "000001.SZ", "sell", 2000, 18000.0, 14.18, "stop_loss"),  # −2019.38
    Fill(D4, "600519.SH", "buy", 100, 150000.0, 46.5, "macd_buy"),  # still open
]


def test_episodes_per_stock_rules_and_fees_from_fills():
    closed, still_open = perf_stats.episodes_from_fills(FILLS)
    assert [(e.stock_code, e.open_date, e.close_date, e.invested, e.proceeds, e.profit) for e in closed] == [
        ("600036.SH", D1, D3, 38610.39, 40974.09, 2363.7),
        ("000001.SZ", D2, D3, 20005.2, 17985.82, -2019.38)]
    assert [(e.stock_code, e.close_date) for e in still_open] == [("600519.SH", None)]
    assert perf_stats.win_stats(closed) == {"closed_episodes": 2, "winning_episodes": 1, "win_rate": 0.5}
    assert perf_stats.per_stock(closed) == [
        {"stock_code": "600036.SH", "episodes": 1, "wins": 1, "realized_pnl": 2363.7},
        {"stock_code": "000001.SZ", "episodes": 1, "wins": 0, "realized_pnl": -2019.38}]
    rules = {r["rule"]: r for r in perf_stats.rule_stats(FILLS, closed)}
    assert rules["macd_buy"] == {"rule": "macd_buy", "fills": 2, "volume": 1100, "amount": 170000.0, "fees": 51.7,
                                 "episodes": 1, "avg_episode_pnl": 2363.7, "win_rate": 1.0}
    assert rules["stop_loss"]["avg_episode_pnl"] == -2019.38 and rules["stop_loss"]["win_rate"] == 0.0
    assert perf_stats.fees_paid(FILLS) == 102.18


def test_equity_metrics_by_hand():
    totals = [1_010_000.0, 990_000.0, 1_020_000.0]
    assert perf_stats.drawdowns(1_000_000.0, totals) == [0.0, pytest.approx(0.0198019802), 0.0]
    # Sharpe (DESIGN §7): returns from the first close, r = (-1.980198 %, +3.030303 %), mean 0.525053 %,
    # population std 2.505251 % → 0.2095808 × √252 = 3.327
    assert perf_stats.equity_metrics(1_000_000.0, totals) == {
        "total_return": 0.02, "annualized_return": 4.277332, "max_drawdown": 0.019802, "sharpe": 3.327}


@pytest.mark.skipif(not DAILY.is_dir(), reason=f"真实行情数据目录不存在：{DAILY}")
def test_episodes_rebuilt_from_a_real_backtests_fills_equal_the_engines():
    settings = {**config.DEFAULTS, "ENABLE_MA_FILTER": False, "ENABLE_MACD_SELL": True}
    run = run_backtest(DAILY, settings, codes=["600036.SH", "000001.SZ", "600519.SH", "000002.SZ"], plot=False)
    fills = fills_of(run.result)
    closed, still_open = perf_stats.episodes_from_fills(fills)
    engine = [(e.stock_code, e.open_date, e.close_date, e.invested, e.proceeds) for e in run.result.closed_episodes]
    assert len(engine) >= 5
    assert [(e.stock_code, e.open_date, e.close_date, e.invested, e.proceeds) for e in closed] == engine
    assert len(still_open) == len(run.result.open_positions)
    wins = perf_stats.win_stats(closed)
    assert (wins["closed_episodes"], wins["winning_episodes"], wins["win_rate"]) == (
        run.summary.closed_episodes, run.summary.winning_episodes, run.summary.win_rate)
    assert perf_stats.fees_paid(fills) == run.summary.fees_paid
