"""A simulated account belongs to one market: it records the market it was made on, a start on another one is
refused with a message naming both and the ways out, `reset_sim_account` archives the old database, and a
replay never starts before the account's last recorded trade."""
from __future__ import annotations

import sqlite3
from datetime import date, datetime

import pytest

from accounts.identity import (AccountMismatch, MarketIdentity, account_guard, bind_account, last_trade_day,
                               market_identity, reset_sim_account)
from daemon_support import DAILY, SHARED_DATA
from persistence.storage import Database

DEMO = MarketIdentity("demo:20240101", "演示行情（种子 20240101）")


class Settings(dict):
    def get(self, key, default=None):
        return self[key] if key in self else default


def test_market_identity_names_the_demo_seed_the_replay_folder_and_live(tmp_path):
    settings = Settings(SYNTHETIC_SEED=7, REPLAY_DATA_DIR=str(tmp_path / "bars"))
    assert market_identity("synthetic", settings) == MarketIdentity("demo:7", "演示行情（种子 7）")
    replay = market_identity("replay", settings)
    assert replay.identity == f"replay:{(tmp_path / 'bars').resolve().as_posix()}"
    assert replay.label == f"回放行情（{(tmp_path / 'bars').resolve()}）"
    assert market_identity("xtquant", settings).identity == market_identity("mootdx", settings).identity == "live"


def test_an_account_is_bound_on_first_start_and_refused_on_another_market(tmp_path):
    db = Database(tmp_path / "sim_trading.db")
    try:
        assert bind_account(db, DEMO, tmp_path) == DEMO
        assert bind_account(db, DEMO, tmp_path) == DEMO  # the same market again: fine
        replay = MarketIdentity("replay:/x/daily", "回放行情（/x/daily）")
        with pytest.raises(AccountMismatch) as refused:
            bind_account(db, replay, tmp_path)
        message = refused.value.message
        assert refused.value.code == "ACCOUNT_MARKET_MISMATCH"
        assert "「演示行情（种子 20240101）」" in message and "「回放行情（/x/daily）」" in message
        assert "--data-dir" in message and "--reset-sim-account" in message and "归档" in message
        assert bind_account(db, DEMO, tmp_path) == DEMO, "a refusal changes nothing"
    finally:
        db.close()


def test_reset_archives_the_database_with_its_side_files_and_returns_the_path(tmp_path):
    db_path = tmp_path / "sim_trading.db"
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(x)")
    conn.execute("INSERT INTO t VALUES (42)")
    conn.commit()
    conn.close()
    stamp = datetime(2026, 11, 28, 21, 30, 5)
    archived = reset_sim_account(tmp_path, now=lambda: stamp)
    assert archived == tmp_path / "archive" / "sim_trading-20261128-213005.db"
    assert not db_path.exists()
    assert sqlite3.connect(archived).execute("SELECT x FROM t").fetchone() == (42,)
    db_path.write_bytes(archived.read_bytes())
    assert reset_sim_account(tmp_path, now=lambda: stamp).name == "sim_trading-20261128-213005-1.db"
    assert reset_sim_account(tmp_path) is None, "nothing left to archive"


def test_guard_binds_and_answers_the_last_trading_day(tmp_path):
    db = Database(tmp_path / "sim_trading.db")
    try:
        assert last_trade_day(db) is None
        with db.transaction() as conn:
            conn.execute("CREATE TABLE trade_records (trading_day TEXT NOT NULL)")
            conn.executemany("INSERT INTO trade_records VALUES (?)", [("2024-03-01",), ("2024-03-05",)])
        guard = account_guard(db, Settings(SYNTHETIC_SEED=1, REPLAY_DATA_DIR=""), tmp_path)
        assert guard("synthetic") == date(2024, 3, 5)
        with pytest.raises(AccountMismatch):
            guard("xtquant")
    finally:
        db.close()


@pytest.mark.skipif(not DAILY.is_dir(), reason=f"real daily bars not found at {SHARED_DATA}")
def test_the_replay_clock_resumes_after_the_accounts_last_trade(tmp_path):
    from persistence.config_store import ConfigStore
    from data_manager import build_data_manager

    config_db = Database(tmp_path / "config.db")
    settings = ConfigStore(config_db, run_overrides={"DATA_SOURCE": "replay", "REPLAY_DATA_DIR": str(DAILY)})
    data, clock = build_data_manager(settings, tmp_path, account_guard=lambda name: date(2023, 6, 1))
    try:
        assert clock.today() == date(2023, 6, 2)  # the next trading day of the folder after 2023-06-01
    finally:
        data.close()
        data.bar_store.db.close()
        config_db.close()


@pytest.mark.skipif(not DAILY.is_dir(), reason=f"real daily bars not found at {SHARED_DATA}")
def test_daemon_on_another_market_is_refused_and_reset_archives_then_starts(tmp_path):
    import subprocess
    import sys

    from daemon_support import PROJECT, free_port, start_ready

    demo = start_ready(tmp_path, [])
    assert demo.terminate(10)[0] == 0

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(PROJECT / "main.py"), "--data-dir", str(tmp_path / "data"),
                               "--log-dir", str(tmp_path / "logs"), "--port", str(free_port()), *args],
                              cwd=tmp_path, capture_output=True, text=True, encoding="utf-8", timeout=60,
                              stdin=subprocess.DEVNULL)

    refused = run("--replay-data", str(DAILY), "--set", "ENABLE_AUTO_TRADING=true")
    assert refused.returncode == 4, refused.stderr
    assert "模拟账户属于「演示行情（种子 20240101）」" in refused.stderr
    assert f"本次行情是「回放行情（{DAILY.resolve()}）」" in refused.stderr
    assert "--reset-sim-account" in refused.stderr and "Traceback" not in refused.stderr

    fresh = start_ready(tmp_path, ["--replay-data", str(DAILY), "--reset-sim-account"], name="reset")
    try:
        archived = list((tmp_path / "data" / "archive").glob("sim_trading-*.db"))
        assert len(archived) == 1
        assert "已归档旧的模拟账户数据库" in fresh.output()
        assert fresh.api("/api/status")["data_source"]["source"] == "replay"
    finally:
        fresh.stop_quietly()
