"""Shared set-up for the web tests and the web benchmark: the real components wired as daemon/composition.py does
(synthetic replay market, SimTrader, PositionManager, TradingExecutor, SignalStore, StrategyRunner, monitor,
ConfigStore, StockPool on SQLite files in a temp folder), the real waitress server on a free loopback port,
and small HTTP / server-sent-event clients that can send any Host header."""
from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import strategy
from jobs.account_snapshots import AccountSnapshots
from daemon.composition import page_sources
from persistence.config_store import ConfigStore
from data_manager import DataManager, build_data_manager
from logger import SecretFilter
from position_manager import PositionManager
from core.position_monitor import PositionMonitor
from core.signal_store import SignalStore
from sim_trader import SimTrader
from core.stock_pool import StockPool
from persistence.storage import Database
from core.strategy_runner import StrategyRunner
from core.events import EventBus
from trading_executor import TradingExecutor
from core.trading_state import TradingState
from core.position_review import PositionReviews
from core.stock_params import StockParams
from watch.monitor import WATCH_RULES, DailyContextCache, WatchMonitor, validate_watch_signal
from watch.store import WatchStore
from web_server import WebContext, WebServer
from daemon.workers import Watchdog, Worker

TOKEN = "test-token-0123456789abcdef"
POOL = ["600036.SH", "000001.SZ", "600519.SH", "300750.SZ", "688981.SH"]
BASE_OVERRIDES = {"DATA_SOURCE": "replay", "REPLAY_TICKS_PER_DAY": 8, "REPLAY_SECONDS_PER_DAY": 2.0,
                  "WEB_CORS_ORIGINS": ["http://localhost:5000"]}


class Probe(Worker):
    """A worker that only beats, so that /api/health has a live thread to report."""

    name = "probe"

    def run_once(self) -> None:
        pass


@dataclass
class System:
    settings: ConfigStore
    data: DataManager
    clock: Any
    broker: SimTrader
    positions: PositionManager
    executor: TradingExecutor
    signals: SignalStore
    runner: StrategyRunner
    monitor: PositionMonitor
    pool: StockPool
    watchdog: Watchdog
    ctx: WebContext
    dbs: list = field(default_factory=list)
    trading_state: Optional[TradingState] = None
    events: Optional[EventBus] = None
    watch: Optional[WatchMonitor] = None
    watch_store: Optional[WatchStore] = None
    stock_params: Optional[StockParams] = None

    def step(self, count: int = 1) -> None:
        """Advance the replay `count` market steps; the monitor then updates prices and queues signals."""
        for _ in range(count):
            self.data.set_watchlist(self.watchlist())
            self.data.run_once()
            self.monitor.run_once()
            if self.watch is not None:
                self.watch.run_once()

    def watchlist(self) -> list[str]:
        watched = set(self.watch.codes()) if self.watch is not None else set()
        return sorted({p.stock_code for p in self.positions.all()} | set(self.pool.codes()) | watched)

    def next_day(self) -> None:
        """Step until the replay's market date changes (T+1 releases shares bought before)."""
        today = self.clock.today()
        for _ in range(int(self.settings.get("REPLAY_TICKS_PER_DAY")) + 2):
            self.step()
            if self.clock.today() != today and self.clock.is_trading():
                return
        raise AssertionError("replay did not reach the next trading day")

    def close(self) -> None:
        logging.getLogger().removeHandler(self.ctx.log_tail)
        self.watchdog.stop(2.0)
        self.data.close()
        for db in self.dbs:
            db.close()


def build_system(tmp_path: Path, overrides: Optional[dict] = None, pool: Optional[list[str]] = None,
                 with_probe: bool = True, wrap_broker: Optional[Callable[[SimTrader], Any]] = None) -> System:
    """Everything on files in `tmp_path`, the replay advanced to the first tick of its first day.
    `wrap_broker` wraps the sim broker the executor talks to (e.g. a hanging stand-in behind a BrokerGuard)."""
    data_dir = tmp_path / "data"
    config_db = Database(data_dir / "config.db")
    settings = ConfigStore(config_db, run_overrides={**BASE_OVERRIDES, **(overrides or {})})
    data, clock = build_data_manager(settings, data_dir)
    trading_db = Database(data_dir / "sim_trading.db")
    broker = SimTrader(trading_db, settings, clock, data.hub.latest)
    data.hub.subscribe(broker.on_quote)
    positions = PositionManager(trading_db, settings, clock, "simulation")
    events = EventBus(clock)
    trading_state = TradingState(trading_db, clock)
    executor = TradingExecutor(trading_db, wrap_broker(broker) if wrap_broker else broker, positions,
                               data.hub.latest, settings, clock, trading_state)
    broker.set_listener(executor)
    executor.recover()
    signals = SignalStore(trading_db, clock)
    stock_pool = StockPool(tmp_path / "stock_pool.json")
    stock_pool.replace(POOL if pool is None else pool)
    stock_params = StockParams(trading_db, settings, clock, settings.journal)
    runner = StrategyRunner(signals, positions, executor, data.hub, settings, clock, data.indicators,
                            stock_pool.codes, trading_state, params_for=stock_params.params_for)
    monitor = PositionMonitor(positions, data.hub, signals, executor, settings, clock,
                              params_for=stock_params.params_for)
    watch_store = WatchStore(trading_db, clock)
    watch = WatchMonitor(watch_store, data.hub, signals, positions, events, settings, clock,
                         daily=DailyContextCache(data.bar_store, data.indicators).get,
                         apply_exits=lambda code, params, source: stock_params.update(code, params, source))
    for rule in WATCH_RULES:
        runner.register_validator(rule, validate_watch_signal(positions))
    watchdog = Watchdog(settings)
    if with_probe:
        watchdog.add(Probe())
    ctx = WebContext(settings=settings, positions=positions, executor=executor, data=data,
                     indicators=data.indicators, signals=signals, runner=runner, health=watchdog.health,
                     stock_pool=stock_pool, clock=clock, mode="simulation", token=TOKEN, grid=None, broker=broker,
                     trigger_prices=lambda p: strategy.trigger_prices(p, stock_params.params_for(p.stock_code)),
                     trading_state=trading_state, events=events, watch=watch_store, stock_params=stock_params,
                     position_reviews=PositionReviews(trading_db, clock))
    ctx.snapshots = AccountSnapshots(trading_db, clock)
    ctx.intraday, ctx.log_tail = page_sources(data.hub, SecretFilter([TOKEN]))
    system = System(settings, data, clock, broker, positions, executor, signals, runner, monitor, stock_pool,
                    watchdog, ctx, [config_db, trading_db], trading_state=trading_state, events=events,
                    watch=watch, watch_store=watch_store, stock_params=stock_params)
    system.step()
    return system


def start_server(system: System, host: str = "127.0.0.1", threads: int = 16) -> WebServer:
    server = WebServer(system.ctx, host, 0, threads=threads)
    server.start()
    return server


# ---- clients --------------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class Client:
    """HTTP/1.1 client on one keep-alive connection; any method, raw body, Host and headers."""

    def __init__(self, port: int, token: Optional[str] = TOKEN, host_header: Optional[str] = None,
                 timeout: float = 10.0):
        self.port = port
        self.token = token
        self.host_header = host_header or f"127.0.0.1:{port}"
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None,
                content_type: Optional[str] = "application/json", headers: Optional[dict] = None,
                token: Any = "default", host: Optional[str] = None) -> Reply:
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode("utf-8"))
        all_headers = {"Host": self.host_header if host is None else host}
        used_token = self.token if token == "default" else token
        if used_token is not None:
            all_headers["X-API-Token"] = used_token
        if payload is not None:
            if content_type is not None:
                all_headers["Content-Type"] = content_type
            all_headers["Content-Length"] = str(len(payload))
        all_headers.update(headers or {})
        for attempt in range(2):
            try:
                self._conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for name, value in all_headers.items():
                    self._conn.putheader(name, value)
                self._conn.endheaders(payload)
                response = self._conn.getresponse()
                data = response.read()
                return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._conn.close()  # the server closed a kept-alive connection (e.g. after an error): retry once
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, **kwargs) -> Reply:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs) -> Reply:
        return self.request("POST", path, body=body if body is not None or "raw" in kwargs else {}, **kwargs)

    def close(self) -> None:
        self._conn.close()


class SseClient:
    """Reads server-sent events (default /api/positions/stream) on a plain socket (no buffering surprises)."""

    def __init__(self, port: int, token: Optional[str] = TOKEN, timeout: float = 5.0,
                 path: str = "/api/positions/stream"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream"]
        if token:
            lines.append(f"X-API-Token: {token}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._buffer = b""
        head = self._read_until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.headers = head.decode("latin-1").lower()
        self.chunked = "transfer-encoding: chunked" in self.headers
        self._text = ""

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("stream closed")
            self._buffer += data
        head, self._buffer = self._buffer.split(marker, 1)
        return head

    def _read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("stream closed")
            self._buffer += data
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _more_text(self) -> None:
        if not self.chunked:
            data = self._buffer or self.sock.recv(65536)
            self._buffer = b""
            if not data:
                raise ConnectionError("stream closed")
            self._text += data.decode("utf-8")
            return
        size = int(self._read_until(b"\r\n").split(b";")[0], 16)
        if size == 0:
            raise ConnectionError("stream ended")
        self._text += self._read_exact(size).decode("utf-8")
        self._read_exact(2)

    def next_event(self, timeout: float = 5.0) -> tuple[str, Any]:
        """(event name, parsed data) of the next event with data; raises socket.timeout after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            while "\n\n" not in self._text:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                self._more_text()
            block, self._text = self._text.split("\n\n", 1)
            event, data = "message", []
            for line in block.split("\n"):
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
            if data:
                return event, json.loads("\n".join(data))

    def wait_for(self, predicate, timeout: float = 5.0) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            event, data = self.next_event(max(0.01, deadline - time.monotonic()))
            if predicate(event, data):
                return event, data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def run_in_thread(target, name: str = "test-driver") -> tuple[threading.Thread, threading.Event]:
    """Call `target(stop)` in a daemon thread; returns (thread, stop event)."""
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
    thread.start()
    return thread, stop


CHINESE = re.compile(r"[\u4e00-\u9fff]")


def ok(reply, status: int = 200):
    """The data of a success answer: `status`, and the envelope says success."""
    assert reply.status == status, reply.text
    body = reply.json
    assert body["status"] == "success"
    return body["data"]


def data_of(reply, status: int = 200):
    """The data of an answer with `status` (the envelope is not checked)."""
    assert reply.status == status, reply.text
    return reply.json["data"]


def error(reply, status: int, code: Optional[str] = None) -> dict:
    """The body of an error answer: `status`, a Chinese message, the machine `code` if given, no traceback."""
    assert reply.status == status, reply.text
    body = reply.json
    assert body["status"] == "error" and CHINESE.search(body["message"]), body
    if code:
        assert body["code"] == code, body
    assert "Traceback" not in reply.text
    return body


def error_message(reply, status: int, code: str) -> str:
    """The message of an error answer with `status` and the machine `code`."""
    assert reply.status == status, reply.text
    body = reply.json
    assert body["status"] == "error" and body["code"] == code, body
    return body["message"]
