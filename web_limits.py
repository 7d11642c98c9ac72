"""Deliberate limits of the web server: waitress's connection limit and idle timeout, live-stream slots per
client (each stream holds a server thread; a reserve of threads stays for the page and the operator), and one
rate-limited line instead of waitress's task-queue warning on every queued request."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from config import DEFAULTS

REQUEST_THREADS_RESERVED = 4  # server threads never given to live streams: the page and an emergency stop
QUEUE_LOGGER = "waitress.queue"


def waitress_options(settings: Any) -> dict:
    """Waitress's defaults (100 connections, 120 s idle) let 100 idle sockets lock everyone out. Idle
    connections cost waitress no thread, so the limit can be high; idle ones are closed sooner. `settings`
    None (a server without a config store, e.g. the account supervisor's) takes config.py's values."""
    get = settings.get if settings is not None else DEFAULTS.__getitem__
    idle = float(get("WEB_IDLE_TIMEOUT"))
    return {"connection_limit": int(get("WEB_CONNECTION_LIMIT")), "channel_timeout": idle,
            "cleanup_interval": max(1.0, min(30.0, idle / 2)), "backlog": 1024}


class StreamSlots:
    """At most `total` live streams, and at most `per_client()` for one client address."""

    def __init__(self, total: int, per_client: Callable[[], int]):
        self.total = total
        self._per_client = per_client
        self._lock = threading.Lock()
        self._by_client: dict[str, int] = {}

    def acquire(self, client: str) -> str:
        """'' when a slot was taken, else the Chinese reason for refusing."""
        with self._lock:
            if sum(self._by_client.values()) >= self.total:
                return "实时推送连接数已达上限，请关闭多余的页面后重试"
            mine = self._by_client.get(client, 0)
            if mine >= self._per_client():
                return f"同一客户端最多 {self._per_client()} 个实时推送连接，请关闭多余的页面后重试"
            self._by_client[client] = mine + 1
            return ""

    def release(self, client: str) -> None:
        with self._lock:
            left = self._by_client.get(client, 0) - 1
            if left > 0:
                self._by_client[client] = left
            else:
                self._by_client.pop(client, None)


class QueueDepthFilter(logging.Filter):
    """Turns waitress's "Task queue depth is N" (one line per queued request: thousands a minute under load)
    into one Chinese line per `interval` seconds with the count and the deepest queue seen."""

    def __init__(self, interval: float = 60.0, now: Callable[[], float] = time.monotonic):
        super().__init__()
        self._interval = interval
        self._now = now
        self._lock = threading.Lock()
        self._window_start = float("-inf")
        self._count = 0
        self._deepest = 0

    def filter(self, record: logging.LogRecord) -> bool:
        depth = record.args[0] if isinstance(record.args, tuple) and record.args else 0
        with self._lock:
            self._count += 1
            self._deepest = max(self._deepest, int(depth) if isinstance(depth, int) else 0)
            now = self._now()
            if now - self._window_start < self._interval:
                return False
            count, deepest = self._count, self._deepest
            self._window_start, self._count, self._deepest = now, 0, 0
        record.msg = "Web 请求排队：%d 次请求需等待空闲线程（最深 %d 个），%g 秒内只记录一次"
        record.args = (count, deepest, self._interval)
        return True


def install_queue_filter(interval: float = 60.0) -> QueueDepthFilter:
    """Once per process (the waitress logger is global); returns the filter in place."""
    logger = logging.getLogger(QUEUE_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, QueueDepthFilter):
            return existing
    installed = QueueDepthFilter(interval)
    logger.addFilter(installed)
    return installed
