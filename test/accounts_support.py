"""Running `python main.py --accounts` as a real process for the tests: an accounts file in a temp folder, a free
loopback port, calls to the supervisor's API with its token, and a clean-up that never leaves a child behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from daemon_support import PROJECT, free_port


class Supervisor:
    def __init__(self, root: Path, port: int, proc: subprocess.Popen, out: Path):
        self.root, self.port, self.proc, self.out = root, port, proc, out
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def output(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")[-6000:]

    def token(self) -> str:
        return (self.root / "data" / "api_token").read_text(encoding="utf-8").strip()

    def call(self, method: str, path: str, body=None, timeout: float = 20.0):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"X-API-Token": self.token(), "Content-Type": "application/json"})
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.status, json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read().decode())

    def data(self, path: str):
        status, body = self.call("GET", path)
        assert status == 200, (path, body)
        return body["data"]

    def try_overview(self):
        try:
            return self.data("/api/accounts")
        except (OSError, AssertionError, ValueError):
            return None

    def accounts(self) -> dict:
        return {a["id"]: a for a in self.data("/api/accounts")["accounts"]}

    def fills(self, account_id: str) -> list[dict]:
        return self.data(f"/api/accounts/{account_id}/trade-records")


    def stop_quietly(self) -> None:
        """Test clean-up: the supervisor and, through its own shutdown or a kill, every child."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def launch_supervisor(root: Path, accounts: list[dict], args: list[str], sets: Optional[dict] = None,
                      entry: Path = PROJECT / "main.py") -> Supervisor:
    """`entry` is main.py, or a test entry taking the same command line (stand_ins/supervisor_with_counterpart.py)."""
    (root / "accounts.json").write_text(json.dumps({"accounts": accounts}, ensure_ascii=False), encoding="utf-8")
    port = free_port()
    out = root / "supervisor.out"
    command = [sys.executable, str(entry), "--accounts", "accounts.json", "--data-dir", "data",
               "--log-dir", "logs", "--port", str(port), *args]
    for key, value in (sets or {}).items():
        command += ["--set", f"{key}={json.dumps(value)}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("QMT_API_TOKEN", None)
    with open(out, "wb") as handle:
        proc = subprocess.Popen(command, cwd=root, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    return Supervisor(root, port, proc, out)


def both_running(sup: Supervisor, count: int) -> Optional[dict]:
    """Every account reachable through the supervisor (or None while they start)."""
    overview = sup.try_overview()
    if not overview:
        return None
    accounts = {a["id"]: a for a in overview["accounts"]}
    return accounts if len(accounts) == count and all(a["reachable"] for a in accounts.values()) else None
