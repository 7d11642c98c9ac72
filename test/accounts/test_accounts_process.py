"""The account supervisor as real processes: one supervisor command starts two simulated accounts (different
STOP_LOSS_RATIO) on the same replayed real bars and one shared replay clock origin, plus one LIVE account whose
daemon (`main.py` with ENABLE_SIMULATION_MODE false and its own account_config.json) runs against the miniQMT
counterpart in its own process (test/stand_ins/live_account.py: the real xttrader/xtdata over the stand-in
native modules). A child killed with SIGKILL is restarted by the supervisor while the others keep running; an
emergency stop for all halts every child, the live one too; each simulated account stops out at its own level;
SIGTERM stops everything within 15 s with exit 0 and intact databases.

The supervisor is started through test/stand_ins/supervisor_with_counterpart.py: main.py's command line and the
real accounts.entry.run, with a `command_for` that starts the live child through the launcher (the only way a
process on this machine can have a miniQMT); simulated children start main.py exactly as in production."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Optional

import pytest

from accounts_support import both_running, launch_supervisor
from daemon_support import DAILY, PROJECT, integrity, query, wait_until

pytestmark = pytest.mark.skipif(os.name == "nt", reason="SIGKILL/SIGTERM semantics of this test are POSIX")

START_SECONDS = 120.0
TIGHT, WIDE = -0.03, -0.095
WITH_COUNTERPART = PROJECT / "test" / "stand_ins" / "supervisor_with_counterpart.py"
LIVE_ACCOUNT_ID = "8800123456"


def child_db(root: Path, account_id: str) -> Path:
    return root / "data" / "accounts" / account_id / "sim_trading.db"


def live_account(root: Path) -> dict:
    """A live account: its account_config.json names a QMT folder in tmp (the counterpart needs no real one);
    it reads miniQMT's own quotes (DATA_SOURCE xtquant) while the simulated accounts replay the shared bars."""
    (root / "qmt" / "userdata_mini").mkdir(parents=True)
    (root / "account_config.json").write_text(json.dumps({"account_id": LIVE_ACCOUNT_ID, "account_type": "STOCK",
                                                          "qmt_path": str(root / "qmt")}), encoding="utf-8")
    return {"id": "live1", "name": "实盘账户", "mode": "live", "account_config": "account_config.json",
            "overrides": {"DATA_SOURCE": "xtquant"}, "stock_pool": ["600000.SH", "000001.SZ"]}


@pytest.fixture
def supervisor(tmp_path):
    if not DAILY.is_dir():
        pytest.skip(f"real market data not available at {DAILY} (../shared/data is absent on this machine)")
    codes = sorted(p.stem for p in DAILY.glob("*.csv"))
    accounts = [{"id": "sim1", "name": "止损3%", "overrides": {"STOP_LOSS_RATIO": TIGHT}, "stock_pool": codes},
                {"id": "sim2", "name": "止损9.5%", "overrides": {"STOP_LOSS_RATIO": WIDE}, "stock_pool": codes},
                live_account(tmp_path)]
    sets = {"ENABLE_AUTO_TRADING": True, "ENABLE_MA_FILTER": False, "REPLAY_TICKS_PER_DAY": 24,
            "SIGNAL_MAX_AGE": 86400, "REPLAY_START_DATE": "2020-04-03"}
    sup = launch_supervisor(tmp_path, accounts, ["--replay-data", str(DAILY), "--replay-speed", "2.5"], sets,
                            entry=WITH_COUNTERPART)
    yield sup
    sup.stop_quietly()


@pytest.mark.slow
def test_two_sim_and_one_live_account_side_by_side_restart_halt_and_stop(supervisor):
    sup = supervisor
    accounts = wait_until(lambda: both_running(sup, 3), START_SECONDS, "all three accounts running")
    assert {k: a["mode"] for k, a in accounts.items()} == {"sim1": "simulation", "sim2": "simulation", "live1": "live"}
    assert_live_account_on_the_counterpart(sup, accounts["live1"]["pid"])
    wait_until(lambda: len(sup.fills("sim2")) >= 8 and any(f["strategy"] == "stop_loss" for f in sup.fills("sim1")),
               180, "fills in both accounts and a stop-loss at the tight level")

    # kill -9 of one child: the supervisor restarts it; the other keeps trading meanwhile
    victim_pid, other_pid, live_pid = accounts["sim1"]["pid"], accounts["sim2"]["pid"], accounts["live1"]["pid"]
    other_before = len(sup.fills("sim2"))
    before = sup.accounts()
    market_before = before["sim2"]["market_time"]
    os.kill(victim_pid, signal.SIGKILL)
    restarted = wait_until(lambda: (lambda a: a if a["sim1"]["restarts"] == 1 and a["sim1"]["reachable"] else None)(
        sup.accounts()), 90, "sim1 restarted by the supervisor")
    assert restarted["sim1"]["pid"] != victim_pid and restarted["sim1"]["state_label"] == "运行中"
    assert restarted["sim2"]["pid"] == other_pid and restarted["sim2"]["restarts"] == 0
    assert restarted["live1"]["pid"] == live_pid and restarted["live1"]["restarts"] == 0
    assert_live_account_on_the_counterpart(sup, live_pid)  # the same process, still linked to miniQMT
    assert restarted["sim2"]["market_time"] > market_before, "the other account's replay went on"
    wait_until(lambda: len(sup.fills("sim2")) > other_before, 60, "sim2 filling while sim1 was restarted")

    # emergency stop for all halts every child (through each child's own API)
    status, body = sup.call("POST", "/api/accounts/all/emergency_stop", {})
    assert status == 200 and body["data"]["message"].startswith("紧急停止：成功 3 个账户"), body
    for account_id in ("sim1", "sim2", "live1"):
        assert sup.data(f"/api/accounts/{account_id}/trading-state")["state"] == "halted"
    status, body = sup.call("POST", "/api/accounts/all/resume", {})
    assert status == 400 and body["code"] == "CONFIRMATION_REQUIRED"
    status, body = sup.call("POST", "/api/accounts/all/resume", {"confirm": True})
    assert status == 200
    for account_id in ("sim1", "sim2", "live1"):
        assert sup.data(f"/api/accounts/{account_id}/trading-state")["state"] == "running"

    # SIGTERM: every child shuts down gracefully, the supervisor exits 0 within 15 s
    started = time.monotonic()
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(20) == 0, sup.output()
    assert time.monotonic() - started < 15.0
    for account_id in ("sim1", "sim2", "live1"):
        data_dir = child_db(sup.root, account_id).parent
        assert set(integrity(data_dir).values()) == {"ok"}
    live_db = child_db(sup.root, "live1").with_name("trading.db")
    assert not live_db.with_name("sim_trading.db").exists(), "the live account never opened a simulated book"
    assert "trading.db" in integrity(live_db.parent)
    assert query(live_db, "SELECT state FROM trading_state")[0]["state"] == "running"
    assert "halted" in [r["new_state"] for r in query(live_db, "SELECT new_state FROM trading_state_history")]
    assert_each_account_stops_at_its_own_level(sup.root)


def live_linked(sup, pid: int) -> Optional[dict]:
    """The live account as the overview shows it once it is polled with its broker linked (a poll can time out
    on a loaded machine: the test waits for the next one instead of failing on one snapshot)."""
    live = sup.accounts()["live1"]
    return live if live["pid"] == pid and live["reachable"] and live["link"] == "已连接" else None


def assert_live_account_on_the_counterpart(sup, pid: int) -> None:
    """The live child is a real daemon in live mode on the miniQMT counterpart: broker connected with the
    account of its account_config.json, miniQMT's own quotes arriving, on a real (Beijing) clock."""
    live = wait_until(lambda: live_linked(sup, pid), 30, "the live account polled with its broker linked")
    assert live["state_label"] == "运行中" and live["total_asset"] == 200000.0 and live["restarts"] == 0, live
    status = sup.data("/api/accounts/live1/status")
    assert (status["mode"], status["mode_label"]) == ("live", "实盘")
    assert status["clock"]["is_replay"] is False and status["data_source"]["source"] == "xtquant"
    assert status["account"]["cash"] == 200000.0
    connection = wait_until(lambda: (lambda c: c if c["data"]["last_quote_time"] else None)(
        sup.data("/api/accounts/live1/connection/status")), 30, "a quote from the simulated miniQMT")
    assert connection["broker"]["connected"] is True and connection["broker"]["mode_label"] == "实盘"
    assert connection["data"]["connected"] is True


def stop_loss_exits(root: Path, account_id: str) -> list[tuple[str, float, float]]:
    """(code, fill price, episode cost price incl. buy fees) of every stop-loss sell, rebuilt from the fills."""
    held: dict[str, tuple[int, float]] = {}  # code -> (volume, total cost incl. fees)
    exits = []
    for row in query(child_db(root, account_id), "SELECT stock_code, side, price, volume, amount, fees, strategy "
                                                 "FROM trade_records ORDER BY trade_time, id"):
        volume, cost = held.get(row["stock_code"], (0, 0.0))
        if row["side"] == "buy":
            held[row["stock_code"]] = (volume + row["volume"], cost + row["amount"] + row["fees"])
            continue
        if row["strategy"] == "stop_loss" and volume:
            exits.append((row["stock_code"], row["price"], cost / volume))
        left = volume - row["volume"]
        held[row["stock_code"]] = (left, cost * left / volume) if left > 0 and volume else (0, 0.0)
    return exits


def assert_each_account_stops_at_its_own_level(root: Path) -> None:
    """The accounts differ by STOP_LOSS_RATIO only: each one's stop-loss sells happen at or below its own level
    (cost × (1 + ratio), one tick of slack for the marketable sell price), and the tight one stops out more.
    (Fill by fill equality of two real-time processes is not asserted: which replay tick a thread acts on
    depends on scheduling; that both see the same quotes at the same market times is shown by
    test_accounts_replay_pace.)"""
    tight, wide = stop_loss_exits(root, "sim1"), stop_loss_exits(root, "sim2")
    assert tight, "the tight stop-loss fired at least once"
    for exits, ratio in ((tight, TIGHT), (wide, WIDE)):
        for code, price, cost in exits:
            assert price <= round(cost * (1 + ratio), 2) + 0.01, (code, price, cost, ratio)
    assert len(tight) >= len(wide), (tight, wide)
    print(f"stop-loss exits: sim1 (≤ {TIGHT:.1%}) {len(tight)}, sim2 (≤ {WIDE:.1%}) {len(wide)}")


def test_two_live_accounts_on_one_qmt_session_are_refused_before_any_child_starts(tmp_path):
    """The production command (main.py --accounts): a second live account on the same miniQMT account and
    path would share one QMT session with the first; the supervisor refuses the file (exit 2) and starts nothing."""
    first = live_account(tmp_path)
    second = {**first, "id": "live2", "name": "实盘账户二"}
    sup = launch_supervisor(tmp_path, [first, second], [])
    try:
        assert sup.proc.wait(60) == 2, sup.output()
    finally:
        sup.stop_quietly()
    assert "账户 live1 和 live2 使用同一个 miniQMT 资金账号和路径，两个进程不能共用一个 QMT 会话" in sup.output()
    assert not (tmp_path / "data" / "accounts").exists()
