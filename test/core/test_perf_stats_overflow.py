"""Issue 26 item 15 (found by schemathesis): an annualized return beyond float range (a huge gain over a few days,
e.g. against a tiny initial capital) is reported as unknown (None), never an OverflowError failing the report."""
import core.perf_stats as perf_stats


def test_an_unrepresentable_annualized_return_is_none_and_the_rest_is_reported():
    metrics = perf_stats.equity_metrics(1.0, [1e7])
    assert metrics == {"total_return": 9999999.0, "annualized_return": None, "max_drawdown": 0.0, "sharpe": None}
    assert perf_stats.calmar(None, 0.1) is None


def test_an_ordinary_annualized_return_is_unchanged():
    assert perf_stats.equity_metrics(100.0, [50.0])["annualized_return"] == round(0.5 ** 252 - 1, 6)
    assert perf_stats.equity_metrics(100.0, [0.0])["annualized_return"] == -1.0
    assert perf_stats.calmar(0.2, 0.1) == 2.0
