"""backtest.py as a command: parameters (defaults, --params, --set, validation), output files, progress bar,
summary metrics and the printed table."""
import io
import json
from datetime import date

import pytest

import backtest
import config
from backtesting.engine import EngineResult, EquityPoint
from core.perf_stats import EpisodeResult
from backtesting.report import format_table, summarize
from persistence.config_store import ConfigError
from test_backtest_scenarios import CODE, PREFIX, QUIET_E, SCENARIOS, write_bars

GAP_BARS = SCENARIOS["gap through the stop at the open"][0]
SEGMENT_BARS = [QUIET_E, (9.40, 9.45, 9.00, 9.02)]


def run_cli(*args):
    out, err = io.StringIO(), io.StringIO()
    code = backtest.main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def gap_data(tmp_path):
    folder = tmp_path / "bars"
    write_bars(folder, CODE, PREFIX + GAP_BARS)
    return folder


def test_cli_writes_all_outputs(tmp_path, gap_data):
    out_dir = tmp_path / "out"
    code, stdout, stderr = run_cli("--data", str(gap_data), "--out", str(out_dir))
    assert code == 0, stderr
    assert (out_dir / "trades.csv").read_text(encoding="utf-8").splitlines() == [
        "date,stock_code,side,price,volume,amount,fees,rule",
        "2024-04-10,600036.SH,buy,10.00,2000,20000.00,6.20,macd_buy",
        "2024-04-11,600036.SH,sell,8.70,2000,17400.00,14.09,stop_loss",
    ]
    equity = (out_dir / "equity.csv").read_text(encoding="utf-8").splitlines()
    assert equity[0] == "date,cash,market_value,total" and len(equity) == 1 + len(PREFIX) + 2
    assert equity[-2:] == ["2024-04-10,979993.80,19200.00,999193.80", "2024-04-11,997379.71,0.00,997379.71"]
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    assert {k: summary[k] for k in ("start", "end", "initial_capital", "final_equity", "total_return",
                                    "max_drawdown", "trade_count", "closed_episodes", "win_rate", "fees_paid")} == {
        "start": "2024-01-02", "end": "2024-04-11", "initial_capital": 1_000_000.0, "final_equity": 997_379.71,
        "total_return": -0.00262, "max_drawdown": 0.00262, "trade_count": 2, "closed_episodes": 1,
        "win_rate": 0.0, "fees_paid": 20.29}
    assert summary["parameters_changed"] == {} and summary["data_problems"] == []
    assert (out_dir / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "总收益率" in stdout and "-0.26%" in stdout and "997,379.71" in stdout


def test_set_overrides_a_parameter(tmp_path):
    folder = tmp_path / "bars"
    write_bars(folder, CODE, PREFIX + SEGMENT_BARS)
    out_dir = tmp_path / "out"
    # stop 10.0031 × 0.95 = 9.5029: E+1's open 9.40 is already below it
    code, _, stderr = run_cli("--data", str(folder), "--out", str(out_dir), "--no-plot",
                              "--set", "STOP_LOSS_RATIO=-0.05", "--set", "ENABLE_ADD_POSITION=false")
    assert code == 0, stderr
    assert (out_dir / "trades.csv").read_text(encoding="utf-8").splitlines()[-1] == \
        "2024-04-11,600036.SH,sell,9.40,2000,18800.00,15.23,stop_loss"  # 5.64 + 9.40 + 0.19 (0.188)
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["parameters_changed"] == {"STOP_LOSS_RATIO": -0.05, "ENABLE_ADD_POSITION": False}
    assert not (out_dir / "equity.png").exists()


def test_params_file_then_set_in_that_order(tmp_path):
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps({"STOP_LOSS_RATIO": -0.05, "POSITION_UNIT": 30000}), encoding="utf-8")
    values, warnings = backtest.build_settings(params_file, ["POSITION_UNIT=25000", "BUY_GRID_LEVELS=[1.0, 0.9]"])
    assert (values["STOP_LOSS_RATIO"], values["POSITION_UNIT"], values["BUY_GRID_LEVELS"]) == (-0.05, 25000.0,
                                                                                             [1.0, 0.9])
    assert values["MAX_POSITION_VALUE"] == config.DEFAULTS["MAX_POSITION_VALUE"]
    # a level at 0.9 of the base lies under a 5 % stop: allowed, with config.validate's warning
    assert warnings == ["补仓档位 0.9 低于或等于止损价（成本×0.950），止损会先触发，该档位不可达"]


@pytest.mark.parametrize("args, fragment", [
    (["--set", "STOP_LOSS_RATIO=0.05"], "参数错误 STOP_LOSS_RATIO：STOP_LOSS_RATIO 超出范围"),
    (["--set", "NO_SUCH_KEY=1"], "参数错误 NO_SUCH_KEY：未知参数 NO_SUCH_KEY"),
    (["--set", "ENABLE_MACD_BUY=yes"], "必须是布尔值"),
    (["--set", "BUY_GRID_LEVELS=[0.9, 1.0]"], "必须严格降序"),
    (["--set", "STOP_LOSS_RATIO"], "格式应为 KEY=VALUE"),
])
def test_invalid_parameters_are_refused_in_chinese(gap_data, tmp_path, args, fragment):
    code, stdout, stderr = run_cli("--data", str(gap_data), "--out", str(tmp_path / "out"), *args)
    assert code == 2 and fragment in stderr and stdout == ""
    assert not (tmp_path / "out").exists()


def test_bad_params_file_is_refused(tmp_path, gap_data):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    code, _, stderr = run_cli("--data", str(gap_data), "--params", str(bad))
    assert code == 2 and "必须是 JSON 对象" in stderr
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="不是有效的 JSON"):
        backtest.build_settings(bad)


def test_bad_stock_is_reported_and_the_rest_runs(tmp_path, gap_data):
    (gap_data / "000001.SZ.csv").write_text("date,open,high,low,close,volume\n2024-01-02,10,9,9.5,9.6,100\n",
                                            encoding="utf-8")
    code, stdout, stderr = run_cli("--data", str(gap_data), "--out", str(tmp_path / "out"), "--no-plot")
    assert code == 0
    assert f"数据问题：{gap_data / '000001.SZ.csv'} 第2行：最高价低于最低价（high=9, low=9.5），已跳过该股票" in stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["stocks"] == 1 and summary["skipped_files"] == [str(gap_data / "000001.SZ.csv")]
    assert summary["trade_count"] == 2


def test_codes_start_and_end_select_the_run(tmp_path, gap_data):
    write_bars(gap_data, "000001.SZ", PREFIX + GAP_BARS)
    run = backtest.run_backtest(gap_data, codes=["600036"], start=date(2024, 4, 1), end=date(2024, 4, 10),
                                plot=False)
    assert run.summary.stocks == 1 and (run.summary.start, run.summary.end) == (date(2024, 4, 1), date(2024, 4, 10))
    assert [(t.stock_code, t.day) for t in run.result.trades] == [(CODE, date(2024, 4, 10))]
    code, _, stderr = run_cli("--data", str(gap_data), "--start", "2024-05-01", "--end", "2024-04-01")
    assert code == 2 and "晚于结束日期" in stderr
    code, _, stderr = run_cli("--data", str(gap_data), "--start", "2030-01-01")
    assert code == 2 and "没有行情数据" in stderr


def test_missing_data_folder_is_refused(tmp_path):
    code, _, stderr = run_cli("--data", str(tmp_path / "nowhere"))
    assert code == 2 and "行情目录不存在" in stderr


def test_progress_bar_appears_only_after_the_delay():
    now = [100.0]
    stream = io.StringIO()
    bar = backtest.ProgressBar(stream, delay=2.0, timer=lambda: now[0], width=10)
    bar(1, 4)
    now[0] = 101.9
    bar(2, 4)
    assert stream.getvalue() == "" and not bar.shown
    now[0] = 102.5
    bar(2, 4)
    now[0] = 102.6
    bar(3, 4)  # within 0.2 s of the last drawing: skipped
    now[0] = 102.65
    bar(4, 4)  # the last step is always drawn
    assert stream.getvalue() == "\r回测进度 [#####.....] 2/4 天\r回测进度 [##########] 4/4 天\n"


def test_summary_metrics_by_hand():
    points = [EquityPoint(date(2024, 1, 2), 1_010_000.0, 0.0), EquityPoint(date(2024, 1, 3), 990_000.0, 0.0),
              EquityPoint(date(2024, 1, 4), 1_020_000.0, 0.0)]
    episodes = [EpisodeResult(CODE, date(2024, 1, 2), date(2024, 1, 3), 20_000.0, 20_100.0),
                EpisodeResult(CODE, date(2024, 1, 3), date(2024, 1, 4), 20_000.0, 19_900.0),
                EpisodeResult(CODE, date(2024, 1, 3), date(2024, 1, 4), 20_000.0, 20_000.0)]  # break-even: not a win
    result = EngineResult(1_000_000.0, [], points, episodes, [], 12.34)
    summary = summarize(result, stocks=5)
    # returns from the first close (DESIGN §7): −1.980198 %, +3.030303 %: mean 0.525053 %, population sd
    # 2.505250 % → 0.209581 × √252 = 3.3270
    assert (summary.total_return, summary.annualized_return, summary.max_drawdown, summary.sharpe) == \
        (0.02, 4.277332, 0.019802, 3.327)  # 1.02 ** (252 / 3) − 1; 1 − 990000 / 1010000
    assert (summary.closed_episodes, summary.winning_episodes, summary.win_rate) == (3, 1, 0.333333)
    assert summary.trading_days == 3 and summary.fees_paid == 12.34
    table = format_table(summary)
    for line in ("总收益率        2.00%", "最大回撤        1.98%", "夏普比率        3.33", "胜率            33.33%"):
        assert line in table


def test_flat_equity_has_no_sharpe():
    points = [EquityPoint(date(2024, 1, d), 1_000_000.0, 0.0) for d in (2, 3, 4)]
    summary = summarize(EngineResult(1_000_000.0, [], points, [], [], 0.0), stocks=1)
    assert (summary.total_return, summary.max_drawdown, summary.sharpe, summary.win_rate) == (0.0, 0.0, None, None)
    assert "夏普比率        —" in format_table(summary)
