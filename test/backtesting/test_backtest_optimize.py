"""`backtest.py optimize` (issue 20): a small search on real bars through a LocalCluster and through real
`dask scheduler` / `dask worker` processes on loopback gives the same trials for the same seed; a stopped
search resumes from its SQLite storage; --apply writes overrides with history only after confirmation."""
import csv
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import backtesting.optimize as backtest_optimize
from persistence.config_store import ConfigStore
from data_test_support import shared_data
from persistence.storage import Database

PROJECT = Path(__file__).resolve().parents[2]
CODES = ["600036.SH", "000001.SZ", "600519.SH", "000002.SZ"]
SPACE = {"STOP_LOSS_RATIO": [-0.12, -0.05], "INITIAL_TAKE_PROFIT_RATIO": [0.03, 0.10],
         "ENABLE_MA_FILTER": [True, False]}
COMPARED = ("number", "state", "value", "param:STOP_LOSS_RATIO", "param:INITIAL_TAKE_PROFIT_RATIO",
            "param:ENABLE_MA_FILTER", "total_return", "max_drawdown", "trades")


def search(tmp_path, name, *extra, trials=6):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE), encoding="utf-8")
    out = tmp_path / name
    argv = ["--data", str(shared_data("daily")), "--space", str(space), "--trials", str(trials), "--batch", "3",
            "--seed", "7", "--out", str(out), "--cache", str(tmp_path / "cache"), "--no-plot",
            "--codes", *CODES, *extra]
    stdout, stderr = io.StringIO(), io.StringIO()
    assert backtest_optimize.main(argv, stdout, stderr) == 0, stderr.getvalue()
    with open(out / "trials.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle)), stdout.getvalue(), stderr.getvalue(), out


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dask_processes():
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1, stopped after the test."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # the code is shipped
    elsewhere = tempfile.mkdtemp(prefix="dask-elsewhere-")  # workers that cannot import the project by themselves
    dask = [sys.executable, "-m", "dask", "scheduler"]  # the `dask` command of this interpreter
    worker = [sys.executable, "-m", "dask", "worker"]
    processes = [subprocess.Popen(dask + ["--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                  cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for _ in range(2):
        processes.append(subprocess.Popen(worker + [address, "--host", "127.0.0.1", "--nthreads", "1",
                                                    "--no-dashboard", "--no-nanny"],
                                          cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        from dask.distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.mark.slow
def test_scheduler_run_equals_local_run_for_the_same_seed(tmp_path, dask_processes):
    local, out_text, progress, out = search(tmp_path, "local", "--workers", "2")
    remote, _, _, _ = search(tmp_path, "remote", "--scheduler", dask_processes)
    assert len(local) == len(remote) == 6
    assert [{k: row[k] for k in COMPARED} for row in local] == [{k: row[k] for k in COMPARED} for row in remote]
    assert all(row["state"] == "COMPLETE" for row in remote)
    # every worker process loaded the bars once, whatever number of trials it ran
    assert {row["worker_loads"] for row in local + remote} == {"1"}
    assert len({row["worker_pid"] for row in remote}) == 2
    assert "优化进度 [backtest] 3/6" in progress and "优化进度 [backtest] 6/6" in progress
    best = json.loads((out / "best_params.json").read_text(encoding="utf-8"))
    assert best["value"] == max(float(row["value"]) for row in local)


def test_stopped_search_resumes_without_repeating_finished_trials(tmp_path):
    """Issue 27 §3: a search killed mid-batch and run again asks for exactly the trials the uninterrupted search
    asks for (same seed → same trials, same best), counts only the trials it ran, and reports no phantom rows."""
    uninterrupted, _, _, whole_out = search(tmp_path, "whole", "--workers", "1", trials=6)
    first, _, _, out = search(tmp_path, "run", "--workers", "1", trials=3)
    import optuna

    storage = backtest_optimize.open_storage(str((out / "optuna.log").resolve()))
    study = optuna.load_study(study_name="backtest", storage=storage)
    study.ask()  # a trial a killed search left running
    again, report, progress, _ = search(tmp_path, "run", "--workers", "1", trials=6)
    assert [row["state"] for row in again] == ["COMPLETE"] * 6
    assert [{k: row[k] for k in COMPARED} for row in again[:3]] == [{k: row[k] for k in COMPARED} for row in first]
    without_number = [k for k in COMPARED if k != "number"]  # the killed trial took one number
    assert [{k: row[k] for k in without_number} for row in again] == \
        [{k: row[k] for k in without_number} for row in uninterrupted]
    assert json.loads((out / "best_params.json").read_text(encoding="utf-8"))["params"] == \
        json.loads((whole_out / "best_params.json").read_text(encoding="utf-8"))["params"]
    assert "优化进度 [backtest] 6/6" in progress and "3/6" not in progress  # only the missing three ran
    assert "共 6 次试验" in report
    for row in again:  # on the dimension's step (0.0001 for a 0.07 wide range), never with 17 digits
        assert len(row["param:STOP_LOSS_RATIO"].split(".")[1]) <= 4


def test_no_set_within_the_drawdown_cap_applies_nothing(tmp_path):
    """Issue 27 §1: `--max-drawdown 0.001 --apply` has no feasible set: a Chinese message, no penalty value
    shown as a result, nothing written to config.db, a non-zero exit."""
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    argv = ["--data", str(shared_data("daily")), "--space", str(space), "--trials", "3", "--workers", "1",
            "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--codes", *CODES, "--no-plot",
            "--max-drawdown", "0.001", "--apply", "--yes", "--data-dir", str(tmp_path / "data")]
    assert backtest_optimize.main(argv, out, err) == 2
    assert "没有满足约束的参数组" in err.getvalue() and "超过上限 0.10%" in err.getvalue()
    assert "-1000000" not in err.getvalue() + out.getvalue() and "尚无满足约束的参数组" in err.getvalue()
    assert not (tmp_path / "data" / "config.db").exists()


def test_walk_forward_folds_are_seeded_differently_but_reproducibly():
    seeds = [backtest_optimize._batch_seed(7, f"backtest-wf{fold}", 0) for fold in (1, 2, 3)]
    assert len(set(seeds)) == 3 and seeds == [backtest_optimize._batch_seed(7, f"backtest-wf{fold}", 0)
                                              for fold in (1, 2, 3)]


def test_ctrl_c_ends_with_a_chinese_line_and_keeps_the_trials(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(backtest_optimize, "run_search", interrupted)
    monkeypatch.setattr(backtest_optimize, "open_client", lambda scheduler, workers: (_Closable(), None))
    space = _write(SPACE)
    err = io.StringIO()
    argv = ["--data", str(tmp_path), "--space", str(space), "--trials", "2", "--out", str(tmp_path / "out")]
    assert backtest_optimize.main(argv, io.StringIO(), err) == 130
    assert "已中断" in err.getvalue() and "Traceback" not in err.getvalue()


class _Closable:
    def close(self):
        pass


def test_apply_writes_overrides_with_history_only_after_confirmation(tmp_path):
    params = {"STOP_LOSS_RATIO": -0.07, "ENABLE_MA_FILTER": False}
    out = io.StringIO()
    assert backtest_optimize.apply_best(params, tmp_path / "data", lambda prompt: False, out) is False
    assert not (tmp_path / "data" / "config.db").exists()
    prompts = []
    assert backtest_optimize.apply_best(params, tmp_path / "data", lambda p: prompts.append(p) or True, out)
    assert "STOP_LOSS_RATIO=-0.07" in prompts[0]
    db = Database(tmp_path / "data" / "config.db")
    try:
        store = ConfigStore(db)
        assert store.get("STOP_LOSS_RATIO") == -0.07 and store.get("ENABLE_MA_FILTER") is False
        assert {entry["key"] for entry in store.history()} >= {"STOP_LOSS_RATIO", "ENABLE_MA_FILTER"}
        store.rollback()
    finally:
        db.close()


def test_space_file_is_checked():
    with pytest.raises(backtest_optimize.OptimizeError, match="不是已知参数"):
        backtest_optimize.load_space(_write({"NO_SUCH_KEY": [1, 2]}))
    with pytest.raises(backtest_optimize.OptimizeError, match="下限"):
        backtest_optimize.load_space(_write({"STOP_LOSS_RATIO": [-0.05, -0.12]}))
    dims = backtest_optimize.load_space(_write({"POSITION_UNIT": [10000, 30000], "BUY_GRID_LEVELS": [[1.0, 0.9],
                                                                                                     [1.0, 0.95]]}))
    assert [(d.name, d.integer, d.choices) for d in dims] == [
        ("POSITION_UNIT", False, None), ("BUY_GRID_LEVELS", False, ("[1.0, 0.9]", "[1.0, 0.95]"))]


def test_walk_forward_periods_cut_the_calendar_into_windows():
    from datetime import date, timedelta

    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(10)]
    assert backtest_optimize.walk_forward_periods(days, 2) == [
        (("2024-01-01", "2024-01-03"), ("2024-01-04", "2024-01-06")),
        (("2024-01-04", "2024-01-06"), ("2024-01-07", "2024-01-10"))]


def _write(document) -> Path:
    import tempfile

    handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8")
    json.dump(document, handle)
    handle.close()
    return Path(handle.name)


def test_invalid_parameter_sets_fail_with_their_reason(tmp_path):
    """A stop-loss above cost is refused by the config check: every trial fails with that reason, stored in the
    study, and the search ends with a Chinese message instead of a best set."""
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"STOP_LOSS_RATIO": [0.01, 0.05]}), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    argv = ["--data", str(shared_data("daily")), "--space", str(space), "--trials", "2", "--workers", "1",
            "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--codes", *CODES, "--no-plot"]
    assert backtest_optimize.main(argv, out, err) == 2
    assert "没有成功完成的试验" in err.getvalue() and "超出范围" in err.getvalue()  # the recorded reason
    import optuna

    study = optuna.load_study(study_name="backtest",
                              storage=backtest_optimize.open_storage(str(tmp_path / "out" / "optuna.log")))
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert all("STOP_LOSS_RATIO" in t.user_attrs["error"] for t in study.trials)


@pytest.mark.parametrize("ahead", [(), ("--ask-ahead",)], ids=["batch-by-batch", "ask-ahead"])
def test_search_stopped_mid_batch_resumes_with_the_trials_of_the_uninterrupted_one(tmp_path, ahead):
    """Issue 27 §8: a search stopped after 4 of 6 trials (one into its second batch of 3) finishes with exactly
    the trials and the best set of the uninterrupted search, on another number of workers, and runs only the 2
    missing trials; also when batches are asked one ahead of the results (batch b once batch b - 2 is booked)."""
    whole, _, _, whole_out = search(tmp_path, "whole", "--workers", "2", *ahead, trials=6)
    search(tmp_path, "run", "--workers", "1", *ahead, trials=4)
    again, report, progress, out = search(tmp_path, "run", "--workers", "1", *ahead, trials=6)
    assert [{k: row[k] for k in COMPARED} for row in again] == [{k: row[k] for k in COMPARED} for row in whole]
    assert json.loads((out / "best_params.json").read_text(encoding="utf-8"))["params"] == \
        json.loads((whole_out / "best_params.json").read_text(encoding="utf-8"))["params"]
    assert "优化进度 [backtest] 6/6" in progress and "优化进度 [backtest] 3/6" not in progress
    assert "共 6 次试验" in report
    assert (out / "optuna.log").is_file() and not (out / "optuna.db").exists()  # the journal is the default
    assert all(float(row["worker_seconds"]) > 0 for row in again)


def test_grid_search_visits_every_point_once_although_batches_are_asked_ahead(tmp_path):
    """A 5 × 2 grid in 10 trials, batches of 3 asked before the previous batch's results (--ask-ahead): every
    point once."""
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"STOP_LOSS_RATIO": [-0.12, -0.05], "ENABLE_MA_FILTER": [True, False]}),
                     encoding="utf-8")
    argv = ["--data", str(shared_data("daily")), "--space", str(space), "--trials", "10", "--batch", "3",
            "--sampler", "grid", "--ask-ahead", "--workers", "1", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"),
            "--no-plot", "--codes", *CODES]
    err = io.StringIO()
    assert backtest_optimize.main(argv, io.StringIO(), err) == 0, err.getvalue()
    with open(tmp_path / "out" / "trials.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    points = sorted((float(r["param:STOP_LOSS_RATIO"]), r["param:ENABLE_MA_FILTER"]) for r in rows)
    assert points == sorted((stop, flag) for stop in (-0.12, -0.1025, -0.085, -0.0675, -0.05)
                            for flag in ("True", "False"))


def test_the_best_sets_equity_comes_from_its_trial_not_from_a_second_run(tmp_path, monkeypatch):
    """run_search keeps the equity of the best trial it ran instead of backtesting the best set once more:
    the same curve as scoring that set again."""
    from dask.distributed import Client, LocalCluster

    space = [backtest_optimize.Dimension("STOP_LOSS_RATIO", -0.12, -0.05)]
    settings = backtest_optimize.SearchSettings(str(shared_data("daily")), space, 3, batch=2, codes=tuple(CODES),
                                                cache_dir=str(tmp_path / "cache"))
    timing = backtest_optimize.SearchTiming()
    storage = str(tmp_path / "search.log")
    score = backtest_optimize.Search.score
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with monkeypatch.context() as patch:
            patch.setattr(backtest_optimize.Search, "score", lambda *args: pytest.fail("the best set ran twice"))
            fold, = backtest_optimize.run_search(settings, client, storage, "backtest", timing=timing)
        again = score(backtest_optimize.Search(settings, client, storage), fold.best_params, (None, None))
    assert timing.trials == 3 and timing.compute > 0 and timing.driver > 0
    assert len(fold.test_equity) == len(again["equity"]) > 100
    assert fold.test_equity == again["equity"]


def test_storage_text_from_the_command_line(tmp_path):
    assert backtest_optimize.storage_spec(None, tmp_path) == str((tmp_path / "optuna.log").resolve())
    assert backtest_optimize.storage_spec("postgresql://db/x", tmp_path) == "postgresql://db/x"
    assert backtest_optimize.storage_spec(str(tmp_path / "s.db"), tmp_path) == \
        f"sqlite:///{(tmp_path / 's.db').resolve()}"
    (tmp_path / "optuna.db").write_bytes(b"")  # a search an earlier version began here continues there
    assert backtest_optimize.storage_spec(None, tmp_path) == f"sqlite:///{(tmp_path / 'optuna.db').resolve()}"
    (tmp_path / "optuna.log").write_bytes(b"")
    assert backtest_optimize.storage_spec(None, tmp_path) == str((tmp_path / "optuna.log").resolve())


def test_shipped_project_is_unpacked_so_files_beside_the_modules_can_be_read(tmp_path, monkeypatch):
    """A module that reads a data file next to it (market_rules reads market/t0_etfs.csv) works on a worker
    that got the project from ship_project: the bundle is unpacked into a folder, not imported from a zip."""
    import zipfile

    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("shippedpkg/__init__.py", "from pathlib import Path\n"
                         "TABLE = (Path(__file__).parent / 'table.csv').read_text()\n")
        archive.writestr("shippedpkg/table.csv", "code\n510300.SH\n")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    install = backtest_optimize._installer(bundle.getvalue())
    folder = install()
    assert install() == folder and sys.path[0] == folder and sys.path.count(folder) == 1
    import importlib

    try:
        assert importlib.import_module("shippedpkg").TABLE == "code\n510300.SH\n"
    finally:
        sys.modules.pop("shippedpkg", None)
    shipped = {p.relative_to(backtest_optimize.PROJECT_DIR).as_posix() for p in backtest_optimize.project_modules()}
    assert {"config.py", "backtesting/optimize.py", "backtesting/__init__.py"} <= shipped
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in shipped)


def test_an_unreadable_instrument_file_stops_the_search_before_any_trial(tmp_path):
    """Issue 28: the search reads the same T+0 table and listing dates as a plain backtest and the daemon; a file
    that cannot be read is named in Chinese and no trial runs (nothing is written)."""
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    argv = ["--data", str(tmp_path), "--space", str(space), "--trials", "2", "--out", str(tmp_path / "out"),
            "--no-plot", "--set", f"T0_ETF_FILE={tmp_path / 'missing.csv'}"]
    assert backtest_optimize.main(argv, out, err) == 2
    assert "优化失败：品种数据文件" in err.getvalue() and "missing.csv" in err.getvalue()
    assert not (tmp_path / "out").exists()


def test_a_worker_installs_the_searchs_t0_table_once(tmp_path):
    import market_rules

    table = tmp_path / "t0.csv"
    table.write_text("# test table\ncode\n510300.SH\n", encoding="utf-8")  # a stock-index ETF made T+0 here
    before = market_rules.instrument_data()
    try:
        backtest_optimize.install_instruments({"T0_ETF_FILE": str(table), "LISTING_DATES_FILE": ""})
        assert market_rules.is_t0("510300.SH") and not market_rules.is_t0("511880.SH")
        table.unlink()  # read once per pair of files: a second trial does not read it again
        backtest_optimize.install_instruments({"T0_ETF_FILE": str(table), "LISTING_DATES_FILE": ""})
        assert market_rules.is_t0("510300.SH")
    finally:
        market_rules.use_instrument_data(before)
        backtest_optimize._INSTRUMENTS.clear()
