"""Shared set-up for the gateway tests and bench: the paper account served by a real gateway on loopback, a
RemoteBroker talking to it (through a fault-injecting TCP proxy when asked), and a listener that records events."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from core.models import Fill, Order, OrderRequest, Rule, Side
from gateway.client import ClientTimings, GatewayCursor, RemoteBroker, Transport
from gateway.server import GatewayServer, build_gateway
from persistence.storage import Database
from sim_trader import SimTrader
from trading_support import QuoteBoard, make_settings, replay_clock

TOKEN = "test-gateway-token-0123456789abcdef"
FAST = ClientTimings(request_timeout=2.0, probe_interval=0.2, reconnect_first_delay=0.02, reconnect_max_delay=0.2)
CODE = "600036.SH"


class Recorder:
    """A BrokerListener that keeps what arrives, and waits (with a deadline) for a condition on it."""

    def __init__(self):
        self.orders: list[Order] = []
        self.fills: list[Fill] = []
        self._changed = threading.Condition()

    def on_order_update(self, order: Order) -> None:
        with self._changed:
            self.orders.append(order)
            self._changed.notify_all()

    def on_fill(self, fill: Fill) -> None:
        with self._changed:
            self.fills.append(fill)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[["Recorder"], bool], timeout: float = 10.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def fill_ids(self) -> list[str]:
        with self._changed:
            return [f.fill_id for f in self.fills]


class FaultProxy:
    """A loopback TCP proxy in front of the gateway: `cut()` drops every open connection (mid-request or
    mid-stream), `latency` delays each chunk each way, `drop_answers` swallows the next N answers (the request
    reached the gateway, its answer never comes back), `upstream` may change (a restarted gateway)."""

    def __init__(self, upstream_port: int):
        self.upstream = upstream_port
        self.latency = 0.0
        self.drop_answers = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        self._closed.set()
        _close(self._listener)
        self.cut()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self.latency:
                    self._closed.wait(self.latency)  # the network's delay, not a test waiting for something
                if answers:
                    with self._lock:
                        dropping = self.drop_answers > 0
                        if dropping:
                            self.drop_answers -= 1
                    if dropping:
                        break
                target.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(target)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@dataclass
class Rig:
    """The paper account behind a gateway (restartable on the same data directory), and its clients."""

    root: Path
    settings_overrides: dict = field(default_factory=dict)
    quotes: Optional[QuoteBoard] = None
    gateway: Optional[GatewayServer] = None
    sim: Optional[SimTrader] = None
    proxy: Optional[FaultProxy] = None
    clients: list = field(default_factory=list)

    def __post_init__(self):
        self.clock = replay_clock("2026-12-08T10:00:00+08:00")
        self.clock.calendar.next_trading_day(self.clock.now().date())  # load the calendar now, not inside an order
        self.settings = make_settings(self.root, **self.settings_overrides)
        self.quotes = QuoteBoard(self.clock)
        self.quotes.set(CODE, 40.0, 40.0)
        self.start_gateway()

    def start_gateway(self, wall: Callable[[], float] = time.time) -> GatewayServer:
        self._backend_db = Database(self.root / "backend.db")
        self.sim = SimTrader(self._backend_db, self.settings, self.clock, self.quotes)
        self.gateway = build_gateway(self.sim, self.settings, self.root / "gateway", token=TOKEN, backend_name="sim",
                                     host="127.0.0.1", port=0, wall=wall).start()
        if self.proxy is not None:
            self.proxy.upstream = self.gateway.port
        return self.gateway

    def stop_gateway(self) -> None:
        self.gateway.stop()
        self.sim.close()
        self._backend_db.close()

    def with_proxy(self) -> FaultProxy:
        self.proxy = FaultProxy(self.gateway.port)
        return self.proxy

    def client(self, db_name: str = "daemon.db", token: str = TOKEN, timings: ClientTimings = FAST,
               listener: Optional[Recorder] = None, connect: bool = True, reader: str = "daemon") -> RemoteBroker:
        port = self.proxy.port if self.proxy is not None else self.gateway.port
        db = Database(self.root / db_name)
        broker = RemoteBroker(Transport(f"http://127.0.0.1:{port}", token), GatewayCursor(db), timings, reader=reader)
        broker.owns_db, broker._db = True, db
        if listener is not None:
            broker.set_listener(listener)
        self.clients.append(broker)
        if connect:
            broker.connect()
        return broker

    def fill_once(self, client_id: str, price: float = 40.0, volume: int = 100) -> OrderRequest:
        """A marketable buy straight on the paper account (a fill the gateway journals)."""
        request = buy(client_id, price, volume)
        self.sim.place_order(request)
        return request

    def close(self) -> None:
        for broker in self.clients:
            broker.close()
        if self.proxy is not None:
            self.proxy.close()
        self.stop_gateway()


def buy(client_id: str, price: float = 40.0, volume: int = 100) -> OrderRequest:
    return OrderRequest(client_id=client_id, stock_code=CODE, side=Side.BUY, volume=volume, price=price,
                        rule=Rule.MANUAL)


class GatewayProcess:
    """The real `qmt_gateway` process on the simulated miniQMT (test/gateway/gateway_with_counterpart.py), its market
    clock starting at the counterpart's SESSION_START; `market_start_now()` is where that clock is now, for a daemon
    process started later that must agree with it."""

    def __init__(self, root: Path):
        from counterpart_support import SESSION_START, Counterpart, write_account
        from daemon_support import free_port

        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.counterpart = Counterpart(root)
        self.port = free_port()
        self.session_start = SESSION_START
        command = [sys.executable, str(Path(__file__).resolve().parent / "gateway_with_counterpart.py"),
                   "--data-dir", str(root / "gateway"), "--log-dir", str(root / "logs"), "--port", str(self.port),
                   "--set", f"ACCOUNT_CONFIG_FILE={json.dumps(str(write_account(root)))}",
                   "--set", f"GATEWAY_TOKEN={json.dumps(TOKEN)}"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "COUNTERPART_CONTROL": str(self.counterpart.control), "COUNTERPART_START": SESSION_START}
        self.out = root / "gateway.out"
        self.started_at = time.time()
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(command, cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL)

    def wait_started(self, timeout: float) -> None:
        from daemon_support import wait_until

        wait_until(lambda: "QMT 远程网关已启动" in self.output() or self.proc.poll() is not None, timeout,
                   "the gateway's start line")
        assert self.proc.poll() is None, self.output()

    def market_start_now(self) -> str:
        return (datetime.fromisoformat(self.session_start) + timedelta(seconds=time.time() - self.started_at)).isoformat()

    def output(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
