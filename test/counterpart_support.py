"""Helpers for the tests and the benchmark that run a LIVE daemon as a real process against the simulated miniQMT
counterpart (test/stand_ins/live_account.py): start it inside a trading session (COUNTERPART_START), drive the
counterpart's faults at run time through its control file (COUNTERPART_CONTROL) and read the counter's own book
back (the `dump` command), so that the daemon's view can be compared with the broker's."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from daemon_support import PROJECT, Daemon, free_port, wait_until

LAUNCHER = PROJECT / "test" / "stand_ins" / "live_account.py"
ACCOUNT_ID = "8800123456"
SESSION_START = "2026-12-08T10:00:00+08:00"  # a Tuesday morning in the continuous session (Beijing)
REPORTED, PART_FILLED, REJECTED = 50, 55, 57  # the counter's order states (xtconstant)
WORKING = (REPORTED, PART_FILLED)
START_SECONDS = 90.0


class Counterpart:
    """The test's side of the control file: append commands, read the counter's book."""

    def __init__(self, root: Path):
        self.root = root
        self.control = root / "counterpart_control.jsonl"
        self.control.touch()
        self._dumps = itertools.count(1)

    def send(self, cmd: str, **fields) -> float:
        """Append one command; returns time.monotonic() when it was written (the counterpart polls every 50 ms)."""
        with open(self.control, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"cmd": cmd, **fields}, ensure_ascii=False) + "\n")
        return time.monotonic()

    def book(self, daemon: Optional[Daemon] = None, timeout: float = 10.0) -> dict:
        """The counter's book now: positions, orders (with `working`), cash, every remark sent."""
        path = self.root / f"book-{next(self._dumps)}.json"
        self.send("dump", path=str(path))
        wait_until(path.exists, timeout, "the counterpart's book dump", daemon)
        return json.loads(path.read_text(encoding="utf-8"))

    def orders(self, code: str, side: str = "sell", daemon: Optional[Daemon] = None) -> list[dict]:
        return [o for o in self.book(daemon)["orders"] if o["stock_code"] == code and o["side"] == side]

    def working_sells(self, code: str, daemon: Optional[Daemon] = None) -> list[dict]:
        return [o for o in self.orders(code, "sell", daemon) if o["status"] in WORKING]


def write_account(root: Path) -> Path:
    """account_config.json for the counterpart's account; its QMT folder is a temporary one."""
    (root / "qmt" / "userdata_mini").mkdir(parents=True, exist_ok=True)
    path = root / "account_config.json"
    path.write_text(json.dumps({"account_id": ACCOUNT_ID, "account_type": "STOCK", "qmt_path": str(root / "qmt")}),
                    encoding="utf-8")
    return path


def launch_live(root: Path, sets: Optional[dict] = None, start: str = SESSION_START,
                pool: tuple[str, ...] = ()) -> tuple[Daemon, Counterpart]:
    """Start the live daemon through the launcher (the real xttrader/xtdata over the counterpart) with its market
    clock at `start`, an explicit stock pool (empty: no buy rules act) and the control file; wait until healthy."""
    root.mkdir(parents=True, exist_ok=True)
    counterpart = Counterpart(root)
    pool_file = root / "pool.json"
    pool_file.write_text(json.dumps(list(pool)), encoding="utf-8")
    settings = {"ACCOUNT_CONFIG_FILE": str(write_account(root)), "DATA_SOURCE": "xtquant", **(sets or {})}
    daemon = start_live_process(LAUNCHER, root, pool_file, settings,
                                {"COUNTERPART_CONTROL": str(counterpart.control), "COUNTERPART_START": start},
                                root / f"live-{time.monotonic_ns()}.out")
    return daemon, counterpart


def start_live_process(launcher: Path, root: Path, pool_file: Path, settings: dict, env_extra: dict,
                       out_path: Path) -> Daemon:
    """`launcher --live` as a process in `root` with `settings` as --set values and `env_extra` in its
    environment (never the caller's API token); waits until healthy, stopping it if it never gets there."""
    port = free_port()
    command = [sys.executable, str(launcher), "--live", "--data-dir", str(root / "data"),
               "--log-dir", str(root / "logs"), "--port", str(port), "--stock-pool", str(pool_file)]
    for key, value in settings.items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", **env_extra}
    env.pop("QMT_API_TOKEN", None)
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(command, cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    daemon = Daemon(proc, port, root / "data", out_path)
    try:
        daemon.wait_ready(START_SECONDS)
    except AssertionError:
        daemon.stop_quietly()
        raise
    return daemon


def held(daemon: Daemon) -> dict[str, int]:
    """The daemon's positions (code -> volume) as /api/positions shows them."""
    return {p["stock_code"]: p["volume"] for p in daemon.api("/api/positions")["positions"] if p["volume"] > 0}


def protection_failures(daemon: Daemon) -> Optional[dict[str, dict]]:
    """code -> failure of /api/health's `protection` object when health is red with protection not ok, else None."""
    health = daemon.try_api("/api/health") or {}
    protection = health.get("protection") or {}
    if health.get("status") != "red" or protection.get("ok") is not False:
        return None
    return {f["stock_code"]: f for f in protection.get("failures", [])} or None
