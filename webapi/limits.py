"""Deliberate limits of the web server: waitress's connection limit and idle timeout, a request-read deadline
and eviction of the idlest connection when the table is full (so a flood of idle or slow connections can never
lock out the operator's emergency stop), live-stream slots per client (each stream holds a server thread; a
reserve of threads stays for the page and the operator), and one rate-limited line instead of waitress's
task-queue warning on every queued request."""
from __future__ import annotations

import functools
import ipaddress
import logging
import threading
import time
from typing import Any, Callable, Optional

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser

from config import DEFAULTS

REQUEST_THREADS_RESERVED = 4  # server threads never given to live streams: the page and an emergency stop
QUEUE_LOGGER = "waitress.queue"
ACCEPTS_PER_WAKEUP = 64  # connections taken from the listen backlog per loop pass: a flood drains fast


def waitress_options(settings: Any) -> dict:
    """Waitress's defaults (100 connections, 120 s idle) let 100 idle sockets lock everyone out. Idle
    connections cost waitress no thread, so the limit can be high; idle ones are closed sooner. `settings`
    None (a server without a config store, e.g. the account supervisor's) takes config.py's values."""
    get = settings.get if settings is not None else DEFAULTS.__getitem__
    idle = float(get("WEB_IDLE_TIMEOUT"))
    read = float(get("WEB_REQUEST_READ_TIMEOUT"))
    return {"connection_limit": int(get("WEB_CONNECTION_LIMIT")), "channel_timeout": idle,
            "cleanup_interval": max(1.0, min(30.0, idle / 2, read / 2)), "backlog": 2048}


def guard_connections(server, settings: Any) -> None:
    """Give a waitress server (create_server's single TcpWSGIServer) the request-read deadline and the
    evict-when-full policy of `ConnectionGuard`. Waitress builds its server class itself, so the instance's
    class is swapped for a subclass with the guard mixed in; nothing else about the server changes."""
    get = settings.get if settings is not None else DEFAULTS.__getitem__
    base = type(server)
    server.__class__ = type(f"Guarded{base.__name__}", (ConnectionGuard, base), {})
    server.channel_class = DeadlineChannel
    server.request_read_timeout = float(get("WEB_REQUEST_READ_TIMEOUT"))


class DeadlineChannel(HTTPChannel):
    """An HTTP connection that remembers since when it has been reading a request: from its opening until its
    first request is complete, and from the first byte of each later request (blank lines included: a client
    trickling them must not stay forever). Keep-alive time between requests is not reading (the idle timeout
    covers it)."""

    def __init__(self, server, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map)
        self.reading_since: Optional[float] = self.creation_time
        self.loopback = is_loopback_peer(addr)  # parsed once: eviction ranks ~1,000 channels at a time

    @property
    def parser_class(self):  # waitress builds each request's parser through this attribute
        return functools.partial(DeadlineParser, channel=self)


class DeadlineParser(HTTPRequestParser):
    """Waitress's request parser, telling its channel when a request begins and when a real one is complete."""

    def __init__(self, adj, channel: DeadlineChannel):
        super().__init__(adj)
        self._channel = channel

    def received(self, data):
        if self._channel.reading_since is None:
            self._channel.reading_since = time.time()
        consumed = super().received(data)
        if self.completed and not self.empty:
            self._channel.reading_since = None
        return consumed


class ConnectionGuard:
    """Mixed into waitress's server. Waitress stops accepting at `connection_limit`, so 1,000 idle sockets
    lock everyone out until they time out, and a client trickling one header byte at a time never times out.
    Here (a) a connection that has not delivered a whole request within `request_read_timeout` seconds is
    closed, and (b) the server always accepts: over the limit it closes the idlest connection without a
    request in progress, remote clients before loopback ones (the local operator's reserve)."""

    request_read_timeout = 10.0
    evicted = 0  # connections closed to make room (for tests and the bench)
    read_deadline_closed = 0  # connections closed for reading a request too slowly

    def readable(self):
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return self.accepting

    def handle_accept(self):
        for _ in range(ACCEPTS_PER_WAKEUP):
            before = len(self.active_channels)
            super().handle_accept()
            if len(self.active_channels) <= before:
                return  # the backlog is empty (or the accept failed)
            if len(self.active_channels) > self.adj.connection_limit:
                self._evict_idlest()

    def maintenance(self, now):
        super().maintenance(now)  # waitress's idle timeout
        cutoff = now - self.request_read_timeout
        for channel in self.active_channels.values():
            since = getattr(channel, "reading_since", None)
            if since is not None and since < cutoff and not channel.requests and not channel.will_close:
                channel.will_close = True
                self.read_deadline_closed += 1

    def _evict_idlest(self) -> None:
        candidates = [c for c in self.active_channels.values() if not c.requests and not c.will_close]
        if not candidates:
            return  # every connection is being served: stay over the limit rather than refuse the operator
        victim = min(candidates, key=eviction_rank)
        victim.handle_close()
        self.evicted += 1


def eviction_rank(channel) -> tuple[bool, float]:
    """Sort key: remote before loopback, then the longest without progress (reading a request, or idle)."""
    since = getattr(channel, "reading_since", None)
    loopback = getattr(channel, "loopback", None)
    if loopback is None:
        loopback = is_loopback_peer(channel.addr)
    return loopback, since if since is not None else channel.last_activity


def is_loopback_peer(addr) -> bool:
    host = addr[0] if isinstance(addr, (tuple, list)) and addr else ""
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


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
