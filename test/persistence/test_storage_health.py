"""Databases that cannot be trusted (issue 21 items 1, 2, 7): a corrupt page, a 0-byte or missing database in
a used data dir, a read-only data dir and a full disk refuse the start with one Chinese line (exit code 5); while
running, a failed write of a fill or a journal entry halts automatic trading at once, the nightly quick_check
halts on a corrupt file, and a full disk halts with 「磁盘已满」 until space is back."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

import persistence.health as storage_health
from core.events import EventBus, EventKind
from core.models import OrderRejected, Rule
from daemon_support import free_port
from persistence.storage import Database
from persistence.health import MARKER_NAME, StorageGuard, StorageRefused
from core.trading_state import TradingState
from trading_support import QuoteBoard, build_core, make_settings, replay_clock
from web_test_support import Client, build_system, start_server

ROOT = Path(__file__).resolve().parents[2]
CODE = "600036.SH"


def make_account(path: Path, tmp_path: Path, trades: int = 3) -> None:
    """A real sim account file with `trades` fills in trade_records."""
    settings = make_settings(tmp_path)
    clock = replay_clock("2024-03-04T10:00:00")
    quotes = QuoteBoard(clock)
    quotes.set(CODE, 10.0, 10.0, "招商银行")
    core = build_core(path, settings, clock, quotes)
    for _ in range(trades):
        core.executor.buy_stock(CODE, volume=100, price=10.0)
    assert len(core.executor.trade_records()) == trades
    core.db.close()


def corrupt_table_page(path: Path, table: str) -> None:
    """Overwrite the body of the table's root page with garbage, keeping the file header intact."""
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()[0]
    conn.close()
    with open(path, "r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xa5" * page_size)


def run_main(data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "main.py", "--data-dir", str(data_dir), "--log-dir", str(data_dir.parent / "logs"),
            "--port", str(free_port()), "--simulation", "--set", "DATA_SOURCE=\"replay\"", *extra]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})


def refusal_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 5, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in (result.stderr + result.stdout).splitlines() if "拒绝启动" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


@contextmanager
def mounted_tmpfs(where: Path, options: str):
    """A small real filesystem when this machine lets the test mount one (root, Linux); else None."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    except FileNotFoundError:
        done = None
    mounted = done is not None and done.returncode == 0
    try:
        yield where if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


# ---- start-up ---------------------------------------------------------------------------------------

def test_quick_check_refuses_a_corrupt_page_in_trade_records(tmp_path):
    data_dir = tmp_path / "data"
    db_path = data_dir / "sim_trading.db"
    make_account(db_path, tmp_path)
    corrupt_table_page(db_path, "trade_records")
    with pytest.raises(StorageRefused) as refused:
        storage_health.open_checked(db_path, data_dir, "模拟账户数据库", "")
    assert refused.value.code == "DB_CORRUPT"
    assert str(db_path) in refused.value.message and "backups" in refused.value.message
    line = refusal_line(run_main(data_dir))
    assert f"模拟账户数据库 {db_path} 已损坏" in line and "--doctor" in line


def test_an_intact_account_passes_the_check(tmp_path):
    db_path = tmp_path / "data" / "sim_trading.db"
    make_account(db_path, tmp_path)
    db = storage_health.open_checked(db_path, tmp_path / "data", "模拟账户数据库", "")
    assert storage_health.quick_check(db) == ""
    db.close()


def test_a_zero_byte_account_database_is_refused_not_taken_as_new(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "sim_trading.db").write_bytes(b"")
    line = refusal_line(run_main(data_dir))
    assert "是空文件（0 字节）" in line and "--reset-sim-account" in line
    assert (data_dir / "sim_trading.db").stat().st_size == 0  # nothing was created over it


def test_a_zero_byte_config_database_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "config.db").write_bytes(b"")
    line = refusal_line(run_main(data_dir))
    assert f"参数数据库 {data_dir / 'config.db'} 是空文件" in line


def test_a_used_data_dir_with_the_account_missing_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    make_account(data_dir / "sim_trading.db", tmp_path)
    Database(data_dir / "config.db").close()
    storage_health.mark_used(data_dir)
    (data_dir / "sim_trading.db").unlink()
    line = refusal_line(run_main(data_dir))
    assert "已使用过" in line and "sim_trading.db 不存在" in line and "--reset-sim-account" in line
    assert not (data_dir / "sim_trading.db").exists()


def test_the_first_start_writes_the_marker(tmp_path):
    from daemon.composition import build_daemon
    from persistence.config_store import ConfigStore
    from logger import SecretFilter

    data_dir = tmp_path / "data"
    settings = ConfigStore(Database(tmp_path / "config.db"), run_overrides={"DATA_SOURCE": "replay",
                                                                             "WEB_PORT": free_port()})
    assert not (data_dir / MARKER_NAME).exists()
    daemon = build_daemon(settings, data_dir, tmp_path / "logs", SecretFilter(), tmp_path / "pool.json")
    try:
        assert (data_dir / MARKER_NAME).exists()
        assert {"storage", "web"} <= {row["name"] for row in daemon.watchdog.health()}  # "web" restarts the server
    finally:
        daemon.shutdown()


def test_a_read_only_data_dir_is_refused_with_one_line(tmp_path):
    with mounted_tmpfs(tmp_path / "ro", "size=1m,ro") as mount:
        data_dir = (mount / "data") if mount else tmp_path / "ro" / "data"
        if mount is None:  # no mount allowed: a directory without write permission (for a non-root user)
            os.chmod(tmp_path / "ro", 0o500)
        line = refusal_line(run_main(data_dir))
        assert "不可写" in line and str(data_dir) in line


def test_a_full_disk_at_start_is_refused_with_one_line(tmp_path):
    with mounted_tmpfs(tmp_path / "fs", "size=256k") as mount:
        data_dir = (mount or tmp_path / "fs") / "data"
        data_dir.mkdir()
        if mount is not None:
            fill_up(mount / "filler")
            line = refusal_line(run_main(data_dir))
        else:  # no small filesystem here: the same refusal from the error a full disk raises
            line = storage_health.refusal(sqlite3.OperationalError("database or disk is full"),
                                          data_dir / "config.db", data_dir, "参数数据库").message
        assert "磁盘已满" in line and "清理磁盘空间" in line


def fill_up(path: Path) -> None:
    with open(path, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass


# ---- while running ------------------------------------------------------------------------------------

class Running:
    def __init__(self, db_path: Path, tmp_path: Path, free: list[int]):
        self.settings = make_settings(tmp_path)
        self.clock = replay_clock("2024-03-04T10:00:00")
        self.quotes = QuoteBoard(self.clock)
        self.quotes.set(CODE, 10.0, 10.0, "招商银行")
        self.core = build_core(db_path, self.settings, self.clock, self.quotes)
        self.events = EventBus(self.clock)
        self.seen = self.events.subscribe({EventKind.STORAGE_FAILURE})
        self.guard = StorageGuard(self.core.state, self.events, lambda: (self.core.db,), db_path.parent,
                                  lambda: 1e6, disk_free=lambda _path: free[0])
        self.guard.watch(self.core.db)


def test_a_failed_fill_write_on_a_full_disk_halts_at_once_and_resumes_when_space_is_back(tmp_path):
    free = [10**9]
    with mounted_tmpfs(tmp_path / "fs", "size=2m") as mount:
        base = mount or tmp_path
        run = Running(base / "sim_trading.db", tmp_path, free)
        executor, state = run.core.executor, run.core.state
        executor.buy_stock(CODE, volume=100, price=10.0)
        if mount is not None:
            fill_up(mount / "filler")
        else:  # no small filesystem: the database itself may not grow (SQLITE_FULL as from a full disk)
            pages = run.core.db.query_one("PRAGMA page_count")[0]
            run.core.db.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(sqlite3.Error):
            for _ in range(50):  # until a write needs space
                executor.buy_stock(CODE, volume=100, price=10.0)
        snapshot = state.snapshot()
        assert snapshot["state"] == "halted" and snapshot["source"] == "storage"
        assert snapshot["reason"].startswith("磁盘已满")
        [event] = run.seen.drain()
        assert event.kind is EventKind.STORAGE_FAILURE and "磁盘已满" in event.message
        with pytest.raises(OrderRejected) as refused:
            executor.buy_stock(CODE, volume=100, price=10.0, rule=Rule.MACD_BUY)
        assert refused.value.code == "TRADING_HALTED"
        run.guard.check()  # still full: stays halted
        assert state.snapshot()["state"] == "halted"
        if mount is not None:
            (mount / "filler").unlink()
        else:
            run.core.db.execute("PRAGMA max_page_count=1073741823")
        run.guard.check()
        assert state.snapshot()["state"] == "running"
        executor.buy_stock(CODE, volume=100, price=10.0, rule=Rule.MACD_BUY)
        run.core.db.close()


def test_low_free_space_halts_before_a_write_fails(tmp_path):
    free = [10**9]
    run = Running(tmp_path / "sim_trading.db", tmp_path, free)
    run.guard.check()
    assert run.core.state.snapshot()["state"] == "running"
    free[0] = 5 * 10**5  # below the 1 MB minimum of this test
    run.guard.check()
    snapshot = run.core.state.snapshot()
    assert snapshot["state"] == "halted" and "磁盘已满" in snapshot["reason"] and "剩余空间 0 MB" in snapshot["reason"]
    free[0] = 10**9
    run.guard.check()
    assert run.core.state.snapshot()["state"] == "running"
    run.core.db.close()


def test_nightly_quick_check_halts_on_a_corrupt_page(tmp_path):
    db_path = tmp_path / "data" / "sim_trading.db"
    make_account(db_path, tmp_path)
    corrupt_table_page(db_path, "trade_records")
    db = Database(db_path)  # opened like a running daemon's file (no start-up check)
    state = TradingState(db, replay_clock("2024-03-05T09:00:00"))
    events = EventBus(None)
    seen = events.subscribe({EventKind.STORAGE_FAILURE})
    guard = StorageGuard(state, events, lambda: (db,), db_path.parent, lambda: 0)
    assert guard.nightly_check() is False
    snapshot = state.snapshot()
    assert snapshot["state"] == "halted" and snapshot["source"] == "storage"
    assert "完整性检查失败" in snapshot["reason"] and str(db_path) in snapshot["reason"]
    assert [e.kind for e in seen.drain()] == [EventKind.STORAGE_FAILURE]
    db.close()


def test_health_is_red_while_trading_is_halted_by_storage(tmp_path):
    system = build_system(tmp_path)
    system.watchdog.start()
    server = start_server(system)
    try:
        client = Client(server.port)
        assert client.get("/api/health").json["data"]["status"] == "green"
        system.trading_state.halt("磁盘已满：测试", "storage")
        health = client.get("/api/health").json["data"]
        assert health["status"] == "red" and health["alarms"] == ["磁盘已满：测试"]
    finally:
        server.stop(2)
        system.close()
