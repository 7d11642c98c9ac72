"""The heartbeat to an outside monitor (a dead-man's switch, issue 25): while the daemon runs and protection is
ok, HEARTBEAT_URL (e.g. a healthchecks.io or Uptime Kuma push URL) is fetched every HEARTBEAT_INTERVAL seconds,
so a crash, a frozen process, a dead PC or a protection failure all become an alert outside this machine."""
from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from typing import Callable, Optional
from urllib.parse import urlsplit

from daemon.workers import ScheduledWorker

log = logging.getLogger(__name__)

# One beat may take this long; the outside monitor alerts on a missed beat anyway, so waiting longer gains nothing.
REQUEST_TIMEOUT_SECONDS = 5.0
# While beats keep failing, the same failure is logged at most this often (the first failure at once).
FAILURE_LOG_EVERY_SECONDS = 600.0
USER_AGENT = "qmt-daemon-heartbeat"


def http_get(url: str, timeout: float) -> int:
    """GET `url`; the HTTP status. healthchecks.io and Uptime Kuma push URLs take a plain GET."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https checked before)
        response.read(1024)
        return response.status


class HeartbeatSender(ScheduledWorker):
    """Its own thread: a slow or unreachable monitor never delays anything else. The URL is never logged
    (it is the monitor's secret); failures are logged in Chinese, rate-limited."""

    name = "heartbeat"
    max_step_seconds = REQUEST_TIMEOUT_SECONDS + 5.0

    def __init__(self, settings, protection_ok: Callable[[], bool], get: Callable[[str, float], int] = http_get,
                 now: Callable[[], float] = time.monotonic):
        # the first beat one interval after start: a daemon that keeps crashing at start-up never beats
        super().__init__(now, now() + float(settings.get("HEARTBEAT_INTERVAL")))
        self._settings = settings
        self._protection_ok = protection_ok
        self._get = get
        self._failing_since_log: Optional[float] = None  # monotonic time of the last logged failure
        self._held_back = False  # a beat was withheld because protection failed (logged once)
        self.sent = 0  # beats the monitor answered with success

    def run_once(self) -> bool:
        """One beat when due, configured and protection is ok; True when the monitor answered."""
        self._due_at = self._now() + float(self._settings.get("HEARTBEAT_INTERVAL"))
        url = str(self._settings.get("HEARTBEAT_URL") or "").strip()
        if not url:
            return False
        if not self._protection_ok():
            if not self._held_back:
                self._held_back = True
                log.error("保护失效：暂停向外部监控发送心跳（外部监控将因此报警），保护恢复后自动继续")
            return False
        if self._held_back:
            self._held_back = False
            log.warning("保护已恢复：继续向外部监控发送心跳")
        return self._beat(url)

    def _beat(self, url: str) -> bool:
        if urlsplit(url).scheme not in ("http", "https"):
            self._failed("HEARTBEAT_URL 不是 http:// 或 https:// 地址")
            return False
        try:
            status = self._get(url, REQUEST_TIMEOUT_SECONDS)
        except urllib.error.HTTPError as exc:
            self._failed(f"外部监控回复 HTTP {exc.code}")
            return False
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, a malformed address
            self._failed(_reason(exc))
            return False
        if not 200 <= status < 300:
            self._failed(f"外部监控回复 HTTP {status}")
            return False
        if self._failing_since_log is not None:
            log.warning("外部监控心跳已恢复发送")
            self._failing_since_log = None
        self.sent += 1
        return True

    def _failed(self, reason: str) -> None:
        now = self._now()
        if self._failing_since_log is None or now - self._failing_since_log >= FAILURE_LOG_EVERY_SECONDS:
            log.warning("外部监控心跳发送失败：%s（不影响交易；%g 分钟内不再重复记录）", reason,
                        FAILURE_LOG_EVERY_SECONDS / 60)
            self._failing_since_log = now


def _reason(exc: Exception) -> str:
    """The cause without the address (a URLError's reason, or the error's own text)."""
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc) or type(exc).__name__
    return f"无法连接外部监控（{text}）"
