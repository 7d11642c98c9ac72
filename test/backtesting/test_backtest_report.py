"""Issue 27 §7: the backtest report a trader compares with freqtrade's — Sortino, Calmar, profit factor, SQN,
expectancy, longest drawdown, exposure, monthly returns, per-stock and per-rule tables, refusals by reason, a
benchmark with excess return, and a slippage setting — with hand-computed numbers."""
import csv
import io
import json
import math
from datetime import date

import pytest

import config
import core.perf_stats as perf_stats
from backtest import main as backtest_main, parse_slippage, run_backtest
from backtesting.engine import Slippage
from backtesting.report import Benchmark
from data_test_support import shared_data
from core.models import Rule, Side
from core.perf_stats import EpisodeResult
from test_backtest_scenarios import CODE, E, E1, FALLING_E, PREFIX, QUIET_E, trades_of, write_bars


def test_sortino_counts_only_the_losing_days_in_its_deviation():
    returns = [0.02, -0.01, 0.03, -0.02]  # mean 0.005; downside √((0.0001 + 0.0004) / 4) = 0.01118034
    assert perf_stats.sortino(returns) == round(0.005 / math.sqrt(0.0005 / 4) * math.sqrt(252), 4) == 7.0993
    assert perf_stats.sortino([0.01, 0.02]) is None  # no losing day: undefined


def test_longest_drawdown_and_monthly_returns():
    totals = [100.0, 105.0, 103.0, 101.0, 104.0, 106.0, 99.0]
    assert perf_stats.longest_drawdown_days(100.0, totals) == 3  # 103, 101, 104 below the 105 peak
    days = [date(2024, 1, 30), date(2024, 1, 31), date(2024, 2, 1), date(2024, 2, 29), date(2024, 3, 1),
            date(2024, 3, 4), date(2024, 3, 29)]
    assert perf_stats.monthly_returns(100.0, days, totals) == {"2024-01": 0.05, "2024-02": round(101 / 105 - 1, 6),
                                                               "2024-03": round(99 / 101 - 1, 6)}


def test_trade_quality_of_closed_episodes():
    episodes = [EpisodeResult("600036.SH", date(2024, 1, 2), date(2024, 1, 9), 1000.0, 1300.0),  # +300
                EpisodeResult("600036.SH", date(2024, 2, 1), date(2024, 2, 9), 1000.0, 900.0),  # −100
                EpisodeResult("000001.SZ", date(2024, 3, 1), date(2024, 3, 8), 1000.0, 1100.0)]  # +100
    # profit factor 400 / 100; expectancy 300 / 3; SQN √3 × 100 / sample std 200 (√((200² + 200² + 0) / 2))
    assert perf_stats.trade_quality(episodes) == {"profit_factor": 4.0, "expectancy": 100.0,
                                                  "sqn": round(math.sqrt(3) * 100 / 200, 4)}
    assert perf_stats.trade_quality(episodes[:1]) == {"profit_factor": None, "expectancy": 300.0, "sqn": None}
    assert perf_stats.calmar(0.12, 0.08) == 1.5 and perf_stats.calmar(0.12, 0.0) is None


def test_benchmark_line_starts_at_the_close_before_the_first_day():
    bench = Benchmark("idx", {date(2024, 1, 2): 100.0, date(2024, 1, 3): 110.0, date(2024, 1, 5): 99.0})
    # 01-04 has no index bar: it keeps 01-03's close
    assert bench.line([date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)], 1000.0) == [1100.0, 1100.0, 990.0]


def test_slippage_refusals_and_benchmark_in_one_run(tmp_path):
    """The entry at E's 10.00 open with 2 ticks of slippage fills at 10.02 (20000 / 10.02 → 1900 shares); the
    stop of E+1 (O 9.40 → H 9.45 → L 9.00) is crossed at 9.06 (cost (19038.00 + 5.91) / 1900 = 10.0231 × 0.905
    = 9.0709 → 9.07 on the path) and fills 2 ticks lower at 9.05."""
    folder = tmp_path / "bars"
    days = write_bars(folder, CODE, PREFIX + [QUIET_E, (9.40, 9.45, 9.00, 9.02)])
    index = tmp_path / "index.csv"
    index.write_text("date,close\n" + "\n".join(f"{d.isoformat()},{1000 + i}" for i, d in enumerate(days)) + "\n",
                     encoding="utf-8")
    run = run_backtest(folder, {**config.DEFAULTS, "ENABLE_ADD_POSITION": False}, plot=False,
                       slippage=Slippage(ticks=2), benchmark=Benchmark.read(index), out=tmp_path / "out")
    assert trades_of(run) == [(E, Side.BUY, 10.02, 1900, 19038.00, 5.90, Rule.MACD_BUY),
                              (E1, Side.SELL, 9.05, 1900, 17195.00, 13.93, Rule.STOP_LOSS)]
    bench = run.summary.benchmark  # the index went from 1000 (first day's previous close: none) …
    assert bench["total_return"] == round((1000 + len(days) - 1) / 1000 - 1, 6)
    assert bench["excess_return"] == round(run.summary.total_return - bench["total_return"], 6)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["slippage"] == {"ticks": 2, "bps": 0.0} and summary["closed_episodes"] == 1
    with open(tmp_path / "out" / "per_rule.csv", encoding="utf-8") as handle:
        assert {row["rule"]: row["rule_label"] for row in csv.DictReader(handle)} == {
            "macd_buy": "MACD买入", "stop_loss": "止损"}


def test_refusals_are_counted_by_reason_once_per_stock_and_day(tmp_path):
    folder = tmp_path / "bars"
    # the entry opens at limit-up 10.78 (refused), the next day sealed: MACD entries trade only at the next open
    write_bars(folder, CODE, PREFIX + [(10.78, 10.78, 10.78, 10.78), QUIET_E])
    run = run_backtest(folder, dict(config.DEFAULTS), plot=False)
    assert run.summary.refusals == {"cash": 0, "cap": 0, "limit_up": 1, "t1": 0, "limit_down": 0}
    folder2 = tmp_path / "bars2"  # bought at E's open, the stop is crossed the same day: T+1 blocks it once
    write_bars(folder2, CODE, PREFIX + [(10.00, 10.02, 9.00, 9.00), (8.95, 9.10, 8.90, 9.05)])
    run = run_backtest(folder2, {**config.DEFAULTS, "ENABLE_ADD_POSITION": False}, plot=False)
    # held at E's close only (sold at E+1's open): one day of the run ended with a position
    assert run.summary.refusals["t1"] == 1 and run.summary.exposure == round(1 / len(run.result.equity), 6)


@pytest.mark.parametrize("text, expected", [("2t", Slippage(ticks=2)), ("5bp", Slippage(bps=5.0)),
                                            ("7.5bps", Slippage(bps=7.5))])
def test_slippage_option_reads_ticks_or_basis_points(text, expected):
    assert parse_slippage(text) == expected


def test_cli_report_with_the_csi300_benchmark(tmp_path):
    out = tmp_path / "out"
    stdout = io.StringIO()
    code = backtest_main(["--data", str(shared_data("daily")), "--benchmark",
                          str(shared_data("full", "benchmark", "000300.SH_csi300.csv")), "--out", str(out),
                          "--no-plot", "--no-cache", "--workers", "1", "--start", "2021-01-04", "--end", "2021-12-31"],
                         stdout, io.StringIO())
    assert code == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    # CSI 300: 2020-12-31 close 5211.289 → 2021-12-31 close 4940.373
    assert summary["benchmark"]["total_return"] == round(4940.373 / 5211.289 - 1, 6)
    assert set(summary["monthly_returns"]) == {f"2021-{m:02d}" for m in range(1, 13)}
    text = stdout.getvalue()
    assert "超额收益" in text and "月度收益" in text and "按规则" in text and "索提诺比率" in text
    assert (out / "per_stock.csv").exists() and (out / "monthly_returns.csv").exists()
