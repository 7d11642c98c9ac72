"""equity.png is drawn by a helper process that imports matplotlib while the backtest runs (issue 20: the CLI
time target); whatever happens to the helper — it cannot start, exits with an error, hangs — the PNG is still
written, drawn in the calling process, and no helper outlives its run."""
from __future__ import annotations

import io
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from backtesting.chart import ChartHelper, EquityChart, serve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHART = EquityChart(days=["2024-01-02", "2024-01-03", "2024-01-04"], totals=[1_000_000.0, 990_000.0, 1_010_000.0],
                    drawdowns=[0.0, 0.01, 0.0], initial_capital=1_000_000.0, start="2024-01-02", end="2024-01-04",
                    total_return=0.01, max_drawdown=0.01)


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_SIGNATURE


def test_the_helper_process_draws_the_chart_and_exits(tmp_path, caplog):
    helper = ChartHelper.start()
    process = helper.process
    assert process is not None and process.poll() is None  # waiting for the chart, matplotlib loading
    with caplog.at_level(logging.WARNING, logger="backtesting.chart"):
        job = helper.begin(tmp_path / "equity.png", CHART)
        assert helper.process is None
        assert job() == (tmp_path / "equity.png").resolve()
    assert is_png(tmp_path / "equity.png") and process.returncode == 0
    assert caplog.records == []  # drawn by the helper, not by the fallback


@pytest.mark.parametrize("command, timeout, why", [
    ([sys.executable, "-c", "import sys; sys.exit(3)"], 30.0, "退出码 3"),
    ([sys.executable, "-c", "import time; time.sleep(60)"], 1.0, "无响应"),
    ([str(Path("/nonexistent/python"))], 30.0, "无法启动画图子进程"),
])
def test_a_failing_helper_leaves_the_chart_to_this_process(tmp_path, caplog, command, timeout, why):
    with caplog.at_level(logging.WARNING, logger="backtesting.chart"):
        helper = ChartHelper.start(command, timeout=timeout)
        process = helper.process
        assert helper.begin(tmp_path / "equity.png", CHART)() == (tmp_path / "equity.png").resolve()
    assert is_png(tmp_path / "equity.png")
    assert any(why in record.getMessage() for record in caplog.records)
    assert process is None or process.poll() is not None  # a hung helper is killed, not left behind


def test_a_helper_never_handed_a_chart_is_ended_with_its_run():
    with ChartHelper.start() as helper:
        process = helper.process
    assert process.poll() is not None and helper.process is None


def test_the_helper_program_draws_one_request_and_ignores_an_empty_input(tmp_path):
    request = json.dumps({"path": str(tmp_path / "a.png"), "chart": asdict(CHART)}) + "\n"
    assert serve(io.StringIO(request)) == 0 and is_png(tmp_path / "a.png")
    assert serve(io.StringIO("")) == 0 and not (tmp_path / "b.png").exists()


def test_a_failed_run_ends_its_helper(tmp_path, monkeypatch):
    import backtest

    helper = ChartHelper.start()
    process = helper.process
    monkeypatch.setattr(ChartHelper, "start", classmethod(lambda cls, *args, **kwargs: helper))
    empty = tmp_path / "bars"
    empty.mkdir()
    with pytest.raises(Exception, match="没有找到日线文件"):
        backtest.run_backtest(empty, out=tmp_path / "out")
    assert process.poll() is not None and helper.process is None
