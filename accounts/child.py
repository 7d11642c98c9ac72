"""One account's daemon process as the supervisor sees it: how it is started (its own data dir, log dir,
loopback port and a fresh token passed by environment, never on the command line), stopped gracefully,
and restarted with back-off and an hourly cap after an unexpected exit."""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from accounts.config import AccountSpec

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parents[1]
HOUR = 3600.0
FIRST_BACKOFF_SECONDS = 1.0
# Windows: a child in its own process group can be sent CTRL_BREAK (its graceful stop) without hitting us.
NEW_PROCESS_GROUP = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)


class ChildState:
    STOPPED = "stopped"
    RUNNING = "running"
    STOPPING = "stopping"
    BACKOFF = "backoff"  # exited unexpectedly; restarts when the back-off has passed
    FAILED = "failed"  # restarted too often this hour: alarm, no more automatic restarts


CHILD_STATE_LABELS = {ChildState.STOPPED: "已停止", ChildState.RUNNING: "运行中", ChildState.STOPPING: "正在停止",
                      ChildState.BACKOFF: "等待重启", ChildState.FAILED: "重启过多，已停止"}


@dataclass(frozen=True)
class ChildPaths:
    data_dir: Path
    log_dir: Path
    output: Path  # the process's console output (start-up refusals land here)


@dataclass
class ChildLaunch:
    """Everything a start needs; `command_for` builds the command line from it (replaceable in tests)."""

    spec: AccountSpec
    paths: ChildPaths
    port: int
    run_settings: dict  # parameters the supervisor sets for this child (port, host, pace, token rule, overrides)


CommandFor = Callable[[ChildLaunch], list[str]]


def default_command(launch: ChildLaunch) -> list[str]:
    """`python main.py` for this account, every setting as a one-run `--set` (the accounts file wins)."""
    command = [sys.executable, str(PROJECT_DIR / "main.py"), "--data-dir", str(launch.paths.data_dir),
               "--log-dir", str(launch.paths.log_dir), "--stock-pool", str(launch.paths.data_dir / "stock_pool.json")]
    for key, value in launch.run_settings.items():
        command += ["--set", f"{key}={json.dumps(value, ensure_ascii=False)}"]
    return command


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RestartPolicy:
    limit_per_hour: int
    backoff_max: float


class AccountChild:
    """Thread-safe handle of one account's process. `supervise()` is called by the supervisor's loop."""

    def __init__(self, spec: AccountSpec, paths: ChildPaths, run_settings: Callable[[], dict],
                 policy: Callable[[], RestartPolicy], command_for: CommandFor = default_command,
                 now: Callable[[], float] = time.monotonic, on_alarm: Callable[[str, str], None] = lambda i, m: None):
        self.spec = spec
        self.paths = paths
        self._run_settings = run_settings
        self._policy = policy
        self._command_for = command_for
        self._now = now
        self._on_alarm = on_alarm
        self._lock = threading.RLock()
        self._proc: Optional[subprocess.Popen] = None
        self.state = ChildState.STOPPED
        self.port = 0
        self.token = ""
        self.started_at: Optional[float] = None
        self.restarts: deque[float] = deque()  # monotonic times of automatic restarts within the last hour
        self.restart_count = 0
        self.last_exit: Optional[int] = None
        self.alarm = ""
        self._backoff = FIRST_BACKOFF_SECONDS
        self._restart_due = 0.0

    # ---- reading
    @property
    def pid(self) -> Optional[int]:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def is_running(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    # ---- commands
    def start(self) -> None:
        """Start the process (no-op when it runs). A person starting it clears an alarm."""
        with self._lock:
            if self.is_running():
                return
            self.alarm = ""
            self._spawn()

    def stop(self, timeout: float) -> Optional[int]:
        """SIGTERM (the daemon's graceful shutdown), SIGKILL after `timeout`; returns the exit code."""
        with self._lock:
            proc = self._proc
            self.state = ChildState.STOPPING if proc is not None else ChildState.STOPPED
        code = None
        if proc is not None:
            code = _terminate(proc, timeout, self.spec.id)
        with self._lock:
            if self._proc is proc:
                self._proc = None
                self.last_exit = code
                self.state = ChildState.STOPPED
        return code

    def restart(self, timeout: float) -> None:
        self.stop(timeout)
        self.start()

    def supervise(self) -> Optional[str]:
        """Notice an unexpected exit and restart it when its back-off has passed. Returns a Chinese line for
        the operator when something happened."""
        with self._lock:
            if self.state == ChildState.RUNNING and self._proc is not None and self._proc.poll() is not None:
                return self._exited_unexpectedly(self._proc.returncode)
            if self.state == ChildState.BACKOFF and self._now() >= self._restart_due:
                self._spawn()
                return f"账户 {self.spec.id} 已自动重启（本小时第 {len(self.restarts)} 次）"
        return None

    # ---- internals
    def _spawn(self) -> None:
        self.paths.data_dir.mkdir(parents=True, exist_ok=True)
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_loopback_port()
        self.token = secrets.token_urlsafe(32)
        launch = ChildLaunch(self.spec, self.paths, self.port, {**self._run_settings(), "WEB_PORT": self.port})
        env = {**os.environ, "QMT_API_TOKEN": self.token, "PYTHONUNBUFFERED": "1"}
        with open(self.paths.output, "ab") as out:
            self._proc = subprocess.Popen(self._command_for(launch), cwd=str(self.paths.data_dir), stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                          creationflags=NEW_PROCESS_GROUP)
        self.state = ChildState.RUNNING
        self.started_at = self._now()
        log.info("账户 %s（%s）已启动：进程 %s，端口 %s", self.spec.id, self.spec.name, self._proc.pid, self.port)

    def _exited_unexpectedly(self, code: int) -> str:
        self.last_exit = code
        self._proc = None
        now = self._now()
        while self.restarts and now - self.restarts[0] > HOUR:
            self.restarts.popleft()
        policy = self._policy()
        if len(self.restarts) >= policy.limit_per_hour:
            self.state = ChildState.FAILED
            self.alarm = (f"账户 {self.spec.id} 一小时内已自动重启 {policy.limit_per_hour} 次仍退出（退出码 {code}），"
                          f"不再自动重启，请查看 {self.paths.output}")
            self._on_alarm(self.spec.id, self.alarm)
            return self.alarm
        if self.started_at is not None and now - self.started_at > policy.backoff_max * 2:
            self._backoff = FIRST_BACKOFF_SECONDS  # it had run well for a while: start the back-off afresh
        self._restart_due = now + self._backoff
        self._backoff = min(self._backoff * 2, policy.backoff_max)
        self.restarts.append(now)
        self.restart_count += 1
        self.state = ChildState.BACKOFF
        return (f"账户 {self.spec.id} 进程意外退出（退出码 {code}），{self._restart_due - now:.0f} 秒后自动重启")


def _terminate(proc: subprocess.Popen, timeout: float, account_id: str) -> int:
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM if os.name != "nt" else signal.CTRL_BREAK_EVENT)
        except (OSError, ValueError):
            proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("账户 %s 未在 %.0f 秒内安全退出，强制结束", account_id, timeout)
            proc.kill()
    return proc.wait(30)
