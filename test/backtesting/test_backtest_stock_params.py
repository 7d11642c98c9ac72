"""Issue 17: `backtest.py --stock-params FILE` applies a stock's own rule parameters to that stock only, with the
same keys and checks as the daemon's per-stock parameters."""
import io
import json

import backtest
from test_backtest_scenarios import CODE, PREFIX, QUIET_E, write_bars

SEGMENT_BARS = [QUIET_E, (9.40, 9.45, 9.00, 9.02)]


def run_cli(*args):
    out, err = io.StringIO(), io.StringIO()
    code = backtest.main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def last_trade(tmp_path, stock_params: dict) -> str:
    folder, out_dir = tmp_path / "bars", tmp_path / "out"
    write_bars(folder, CODE, PREFIX + SEGMENT_BARS)
    params_file = tmp_path / "stock_params.json"
    params_file.write_text(json.dumps(stock_params), encoding="utf-8")
    code, _, stderr = run_cli("--data", str(folder), "--out", str(out_dir), "--no-plot", "--set",
                              "ENABLE_ADD_POSITION=false", "--stock-params", str(params_file))
    assert code == 0, stderr
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["stock_params"] == stock_params
    return (out_dir / "trades.csv").read_text(encoding="utf-8").splitlines()[-1]


def test_a_stocks_own_stop_is_used_for_it(tmp_path):
    # stop 10.0031 × 0.95 = 9.5029: E+1's open 9.40 is already below it (the global −9.5 % stop is 9.05)
    assert last_trade(tmp_path, {CODE: {"STOP_LOSS_RATIO": -0.05}}) == \
        "2024-04-11,600036.SH,sell,9.40,2000,18800.00,15.23,stop_loss"


def test_another_stocks_parameters_change_nothing_here(tmp_path):
    # the global stop 10.0031 × 0.905 = 9.0528 is reached on the way down to 9.00: sold at 9.05
    assert last_trade(tmp_path, {"000001.SZ": {"STOP_LOSS_RATIO": -0.05}}) == \
        "2024-04-11,600036.SH,sell,9.05,2000,18100.00,14.66,stop_loss"


def test_invalid_stock_params_are_refused(tmp_path):
    folder = tmp_path / "bars"
    write_bars(folder, CODE, PREFIX + SEGMENT_BARS)
    params_file = tmp_path / "bad.json"
    params_file.write_text(json.dumps({CODE: {"STOP_LOSS_RATIO": 0.05}, "000001": {"ENABLE_AUTO_TRADING": True}}),
                           encoding="utf-8")
    code, _, stderr = run_cli("--data", str(folder), "--out", str(tmp_path / "out"), "--stock-params",
                              str(params_file))
    assert code == 2
    assert "个股参数错误 600036.SH:STOP_LOSS_RATIO：STOP_LOSS_RATIO 超出范围" in stderr
    assert "个股参数错误 000001.SZ：ENABLE_AUTO_TRADING 不能按个股设置" in stderr
