"""Helpers for the tests and the benchmark that run `python main.py` as a real process: start it on a free
loopback port with a temporary data dir, wait (bounded, polling) until its API answers, call the API with
the token, read its SQLite files, and stop it by signal."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DAILY = SHARED_DATA / "daily"
TDX = SHARED_DATA / "tdx"
POLL_SECONDS = 0.05
START_SECONDS = 60.0  # a loaded 2-core machine may need long to import pandas/TA-Lib and build everything
EXIT_WEB_START_FAILED = 4  # main.py's exit code for a start-up refusal (e.g. the port was taken meanwhile)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def daily_codes() -> list[str]:
    return sorted(p.stem for p in DAILY.glob("*.csv"))


def wait_until(condition: Callable[[], Any], timeout: float, what: str, proc: Optional["Daemon"] = None) -> Any:
    """Poll `condition` until it returns something truthy (returned) or `timeout` seconds pass (AssertionError
    naming `what`). Fails at once when the daemon process ended meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.poll()} while waiting for {what}:\n{proc.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                                 + (f":\n{proc.output()}" if proc else ""))
        time.sleep(POLL_SECONDS)


@dataclass
class Daemon:
    """One `python main.py` process."""

    proc: subprocess.Popen
    port: int
    data_dir: Path
    out_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> Optional[int]:
        return self.proc.poll()

    def output(self, tail: int = 4000) -> str:
        try:
            return self.out_path.read_text(encoding="utf-8", errors="replace")[-tail:]
        except OSError:
            return ""

    def token(self) -> str:
        return (self.data_dir / "api_token").read_text(encoding="utf-8").strip()

    def api(self, path: str, timeout: float = 10.0) -> dict:
        """GET `path` with the token; the parsed JSON `data` (AssertionError on an error response)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                         headers={"X-API-Token": self.token()})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
        with opener.open(request, timeout=timeout) as response:
            body = json.loads(response.read().decode("utf-8"))
        assert body["status"] == "success", body
        return body["data"]

    def try_api(self, path: str) -> Optional[dict]:
        try:
            return self.api(path, timeout=5.0)
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def wait_ready(self, timeout: float = START_SECONDS) -> dict:
        """Until /api/health answers with every thread alive; returns the health data."""
        def healthy():
            if not (self.data_dir / "api_token").exists():
                return None
            health = self.try_api("/api/health")
            return health if health and health["all_alive"] else None
        return wait_until(healthy, timeout, "the daemon to become healthy", self)

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(30)

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took). Kills it (and fails) when it does not end in `timeout`."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(f"daemon did not exit within {timeout:g} s after SIGTERM:\n{self.output()}")
        return code, time.monotonic() - started

    def stop_quietly(self) -> None:
        """Test clean-up: make sure the process is gone."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def launch(root: Path, args: list[str], sets: Optional[dict] = None, name: str = "run",
           project: Path = PROJECT) -> Daemon:
    """Start `project`/main.py (this checkout unless given) with `--data-dir root/data --log-dir root/logs
    --port <free>` plus `args` and `--set KEY=json` for each of `sets`; output goes to a file under root (never a
    pipe that could fill)."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    out_path = root / f"{name}-{time.monotonic_ns()}.out"
    command = [sys.executable, str(project / "main.py"), "--data-dir", str(root / "data"),
               "--log-dir", str(root / "logs"), "--port", str(port), *args]
    for key, value in (sets or {}).items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("QMT_API_TOKEN", None)
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(command, cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    return Daemon(proc, port, root / "data", out_path)


def start_ready(root: Path, args: list[str], sets: Optional[dict] = None, name: str = "run",
                attempts: int = 3, project: Path = PROJECT) -> Daemon:
    """`launch` + `wait_ready`, trying another port when the chosen one was taken meanwhile."""
    for attempt in range(attempts):
        daemon = launch(root, args, sets, name, project)
        try:
            daemon.wait_ready()
            return daemon
        except AssertionError:
            code = daemon.poll()
            daemon.stop_quietly()
            if code != EXIT_WEB_START_FAILED or "网页服务无法" not in daemon.output() or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# ---- reading the daemon's SQLite files (from outside, as an operator would) ----------------------------

def query(db_path: Path, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(str(db_path), timeout=30)
    try:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def integrity(data_dir: Path) -> dict[str, str]:
    """PRAGMA integrity_check of every *.db file in the data dir."""
    return {path.name: query(path, "PRAGMA integrity_check")[0][0] for path in sorted(data_dir.glob("*.db"))}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")
