"""The doctor: each check's failure simulated through its DoctorEnv (old or 32-bit Python, a missing dependency,
TA-Lib's C library missing, xtquant's native parts missing in live mode, no QMT folder with every path tried,
miniQMT hanging past the deadline or refusing, an unwritable data dir, a full disk, a taken port, a clock off
against the quote time, an invalid config, a corrupt database, a big log dir), and `main.py --doctor`'s exit
code as a real process."""
import socket
import subprocess
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

import config
import doctor.checks as doctor
from daemon_support import PROJECT, free_port


class Settings:
    def __init__(self, **changes):
        self.values = {**config.DEFAULTS, **changes}

    def get(self, key):
        return self.values[key]

    def snapshot(self):
        return dict(self.values)


BEIJING = timezone(timedelta(hours=8))
NOW = datetime(2025, 6, 3, 10, 0, 0, tzinfo=BEIJING)  # a Tuesday, a trading day


def env(tmp_path, settings=None, **overrides):
    qmt = tmp_path / "qmt" / "userdata_mini"
    qmt.mkdir(parents=True, exist_ok=True)
    values = dict(settings=settings or Settings(), data_dir=tmp_path / "data", log_dir=tmp_path / "logs",
                  qmt_candidates=[qmt], account_config=tmp_path / "none.json", now=lambda: NOW,
                  is_trading_day=lambda d: d.weekday() < 5, calendar_last_day=lambda: date(2026, 12, 31))
    values.update(overrides)
    return doctor.DoctorEnv(**values)


def by_key(checks, key):
    found = [c for c in checks if c.key == key]
    assert len(found) == 1, [c.key for c in checks]
    return found[0]


def test_a_healthy_simulation_machine_has_no_error(tmp_path):
    checks = doctor.run_all(env(tmp_path, port_owned_by_us=True))
    assert [c for c in checks if c.level == doctor.ERROR] == []
    assert doctor.exit_code(checks) == 0
    assert by_key(checks, "broker").detail == "模拟交易模式，不连接券商"
    assert by_key(checks, "talib_c").level == doctor.OK


@pytest.mark.parametrize("version, bits, level", [((3, 10, 12), 64, doctor.ERROR), ((3, 11, 7), 32, doctor.WARNING),
                                                  ((3, 12, 1), 64, doctor.OK)])
def test_python_version_and_bitness(tmp_path, version, bits, level):
    check = doctor.check_python(env(tmp_path, python_version=version, pointer_bits=bits))
    assert check.level == level
    if level != doctor.OK:
        assert "64 位" in check.hint


def test_a_missing_dependency_and_a_missing_talib_c_library_are_errors(tmp_path):
    real = __import__("importlib").import_module

    def importer(name):
        if name in ("waitress", "talib"):
            raise ImportError(f"libta_lib.so.0: cannot open shared object file" if name == "talib" else name)
        return real(name)

    checks = doctor.check_dependencies(env(tmp_path, import_module=importer))
    waitress = by_key(checks, "dependency:waitress")
    assert waitress.level == doctor.ERROR and "waitress==3.0.2" in waitress.hint
    talib = by_key(checks, "talib_c")
    assert talib.level == doctor.ERROR and "C 库" in talib.hint
    assert by_key(checks, "dependency:pandas").level == doctor.OK
    assert doctor.exit_code(checks) == 1


def test_a_different_installed_version_is_a_warning(tmp_path):
    checks = doctor.check_dependencies(env(tmp_path, version_of=lambda name: "0.0.1"))
    assert by_key(checks, "dependency:flask").level == doctor.WARNING
    assert by_key(checks, "dependency:flask").detail == "已安装 0.0.1，要求 3.1.3"


def test_xtquant_native_parts(tmp_path):
    folder = tmp_path / "xtquant"
    folder.mkdir()
    spec = SimpleNamespace(submodule_search_locations=[str(folder)])
    live = Settings(ENABLE_SIMULATION_MODE=False)
    missing = doctor.check_xtquant_native(env(tmp_path, live, platform="win32", find_spec=lambda n: spec,
                                              extension_suffixes=(".pyd",)))
    assert missing.level == doctor.ERROR and "xtpythonclient" in missing.detail
    (folder / "xtpythonclient.cp311-win_amd64.pyd").write_bytes(b"")
    (folder / "datacenter.cp311-win_amd64.pyd").write_bytes(b"")
    present = doctor.check_xtquant_native(env(tmp_path, live, platform="win32", find_spec=lambda n: spec,
                                              extension_suffixes=(".pyd",)))
    assert present.level == doctor.OK
    # the Windows .pyd files do not load on Linux: live trading there is an error, simulation is fine
    linux = env(tmp_path, live, platform="linux", find_spec=lambda n: spec, extension_suffixes=(".so",))
    assert doctor.check_xtquant_native(linux).level == doctor.ERROR
    assert doctor.check_xtquant_native(env(tmp_path, platform="linux", find_spec=lambda n: spec,
                                           extension_suffixes=(".so",))).level == doctor.OK


def test_qmt_path_not_found_names_every_path_tried(tmp_path):
    tried = [tmp_path / "A" / "userdata_mini", tmp_path / "B" / "userdata_mini"]
    live = Settings(ENABLE_SIMULATION_MODE=False)
    check = doctor.check_qmt_path(env(tmp_path, live, qmt_candidates=tried))
    assert check.level == doctor.ERROR
    for path in tried:
        assert str(path) in check.detail
    assert doctor.check_qmt_path(env(tmp_path, qmt_candidates=tried)).level == doctor.WARNING  # simulation
    assert doctor.check_qmt_path(env(tmp_path)).level == doctor.OK


def test_broker_that_hangs_is_cut_off_at_the_deadline(tmp_path):
    release = threading.Event()

    def hanging():
        release.wait(30)
        raise RuntimeError("never")

    live = Settings(ENABLE_SIMULATION_MODE=False, DOCTOR_BROKER_TIMEOUT=0.5)
    started = datetime.now()
    check = doctor.check_broker(env(tmp_path, live, connect_broker=hanging))
    release.set()
    assert (datetime.now() - started).total_seconds() < 5
    assert check.level == doctor.ERROR and "0.5 秒内未连接成功" in check.detail


def test_broker_refusal_and_success(tmp_path):
    from core.models import Asset, BrokerUnavailable

    live = Settings(ENABLE_SIMULATION_MODE=False)

    def refused():
        raise BrokerUnavailable("QMT_CONNECT_FAILED", "连接 miniQMT 失败（返回 -1）")

    check = doctor.check_broker(env(tmp_path, live, connect_broker=refused))
    assert check.level == doctor.ERROR and check.detail == "连接 miniQMT 失败（返回 -1）"
    closed = []
    broker = SimpleNamespace(query_asset=lambda: Asset(cash=1000.0, frozen_cash=0.0, market_value=500.0,
                                                       total_asset=1500.0),
                             close=lambda: closed.append(True))
    check = doctor.check_broker(env(tmp_path, live, connect_broker=lambda: broker))
    assert check.level == doctor.OK and "总资产 1500.00 元" in check.detail and closed == [True]


def test_unwritable_data_dir_and_full_disk(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    check = doctor.check_data_dir(env(tmp_path, data_dir=blocker / "data"))  # a file where a folder should be
    # the daemon's own refusal line for that path (issue 26: the doctor speaks the daemon's words)
    assert check.level == doctor.ERROR and check.detail == f"拒绝启动：无法访问 {blocker / 'data'}（Not a directory）。请检查该路径与磁盘"
    full = doctor.check_data_dir(env(tmp_path, disk_usage=lambda p: SimpleNamespace(free=100 * 1024 * 1024)))
    assert full.level == doctor.ERROR and "剩余空间 100 MB" in full.detail


def test_a_taken_port_is_an_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        check = doctor.check_port(env(tmp_path, Settings(WEB_PORT=port)))
        assert check.level == doctor.ERROR and f"127.0.0.1:{port}" in check.detail
    assert doctor.check_port(env(tmp_path, Settings(WEB_PORT=free_port()))).level == doctor.OK


def test_clock_off_against_the_quote_time_is_an_error(tmp_path):
    off = doctor.check_clock(env(tmp_path, reference_time=lambda: NOW - timedelta(seconds=30)))
    assert off.level == doctor.ERROR and "快 30.0 秒" in off.detail
    near = doctor.check_clock(env(tmp_path, reference_time=lambda: NOW + timedelta(seconds=2)))
    assert near.level == doctor.OK and "慢 2.0 秒" in near.detail and "是交易日" in near.detail
    wrong_year = doctor.check_clock(env(tmp_path, now=lambda: datetime(2001, 1, 1, tzinfo=BEIJING)))
    assert wrong_year.level == doctor.ERROR
    stale = doctor.check_clock(env(tmp_path, calendar_last_day=lambda: date(2025, 1, 1)))
    assert stale.level == doctor.WARNING and "exchange_calendars" in stale.hint


def test_invalid_config_is_an_error(tmp_path):
    check = doctor.check_config(env(tmp_path, Settings(STOP_LOSS_RATIO=0.2)))
    assert check.level == doctor.ERROR and "STOP_LOSS_RATIO" in check.detail


def test_a_corrupt_database_fails_integrity_check(tmp_path):
    import sqlite3

    data = tmp_path / "data"
    data.mkdir()
    good = sqlite3.connect(data / "good.db")
    good.execute("CREATE TABLE t(x)")
    good.executemany("INSERT INTO t VALUES(?)", [(i,) for i in range(2000)])
    good.commit()
    good.close()
    raw = bytearray((data / "good.db").read_bytes())
    raw[4096:8192] = b"\xff" * 4096  # garble a page
    (data / "bad.db").write_bytes(bytes(raw))
    checks = doctor.check_databases(env(tmp_path))
    assert by_key(checks, "database:good.db").level == doctor.OK
    bad = by_key(checks, "database:bad.db")
    assert bad.level == doctor.ERROR and bad.detail.startswith(f"数据库 {data / 'bad.db'} 已损坏")


def test_a_big_log_dir_is_a_warning(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"x" * 3 * 1024 * 1024)
    check = doctor.check_log_dir(env(tmp_path, Settings(DOCTOR_LOG_DIR_WARN_MB=2.0)))
    assert check.level == doctor.WARNING and "3.0 MB" in check.detail


def test_main_doctor_exit_codes(tmp_path):
    port = free_port()
    base = [sys.executable, str(PROJECT / "main.py"), "--doctor", "--data-dir", str(tmp_path / "d"),
            "--log-dir", str(tmp_path / "l"), "--port", str(port)]
    healthy = subprocess.run(base, capture_output=True, text=True, encoding="utf-8", timeout=120,
                             stdin=subprocess.DEVNULL)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "[正常] Web 端口" in healthy.stdout and "诊断完成" in healthy.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        busy = subprocess.run(base + ["--set", "STOP_LOSS_RATIO=0.3"], capture_output=True, text=True,
                              encoding="utf-8", timeout=120, stdin=subprocess.DEVNULL)
    assert busy.returncode == 1
    assert "[错误] Web 端口" in busy.stdout and "处理建议" in busy.stdout
    assert "[错误] 参数配置" in busy.stdout
