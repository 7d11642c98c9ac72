"""The daemon's side of the gateway (BROKER = "remote"): `RemoteBroker` has the Broker shape of
easy_qmt_trader.EasyQmtTrader over signed HTTP to `qmt_gateway`. One `gateway-events` thread long-polls the event
stream (the poll is also the liveness probe), hands events to the listener in order and persists the last handled
number in the daemon's database before acknowledging it, so a reconnect or a daemon restart resumes exactly there.
Orders are retried within their deadline with the same remark (the gateway answers a known remark with its first
outcome), so a cut connection never makes a second order; past the deadline the outcome is unknown."""
from __future__ import annotations

import http.client
import logging
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import quote, urlsplit

from core.models import (Asset, BrokerListener, BrokerPosition, BrokerUnavailable, Fill, Order, OrderRejected,
                         OrderRequest, Quote)
from gateway import wire
from gateway.auth import HEADER_NONCE, HEADER_SIGNATURE, answer_is_genuine, signed_headers
from persistence.storage import Database, migrate
from qmt.broker_guard import OutcomeUnknown
from qmt.broker_setup import connected, trading_db
from qmt.link import LINK_CONNECTED, LINK_DISCONNECTED, LINK_RECONNECTING, LinkHealth

log = logging.getLogger("gateway_client")

CURSOR_MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS gateway_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), epoch TEXT NOT NULL,
        seq INTEGER NOT NULL)
    """,
)
RETRY_PAUSE = 0.05  # first pause between two attempts of one request within its deadline (doubles)


# ---- settings ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientTimings:
    request_timeout: float = 5.0
    probe_interval: float = 2.0
    reconnect_first_delay: float = 0.5
    reconnect_max_delay: float = 10.0
    connect_timeout: float = 20.0  # connect(): how long the gateway's own back-end may take to be connected

    @classmethod
    def from_settings(cls, settings) -> "ClientTimings":
        return cls(float(settings.get("GATEWAY_REQUEST_TIMEOUT")), float(settings.get("GATEWAY_PROBE_INTERVAL")),
                   float(settings.get("GATEWAY_RECONNECT_FIRST_DELAY")),
                   float(settings.get("GATEWAY_RECONNECT_MAX_DELAY")), float(settings.get("QMT_CONNECT_TIMEOUT")))


def connect_live_broker(settings, data_dir: Path, db: Optional[Database] = None, *,
                        account_config_path: Optional[Path] = None, clock=None,
                        timings: Optional[ClientTimings] = None) -> "RemoteBroker":
    """The remote back-end for brokers.select: BROKER_URL and BROKER_TOKEN from the settings, the resume position in
    the daemon's trading database. `account_config_path` is not used: the account lives on the gateway's machine.
    Raises BrokerUnavailable (Chinese) when the gateway is not configured, not reachable or refuses us."""
    url, token = str(settings.get("BROKER_URL") or ""), str(settings.get("BROKER_TOKEN") or "")
    if not url or not token:
        raise BrokerUnavailable("GATEWAY_NOT_CONFIGURED", "BROKER = remote 需要设置 BROKER_URL（网关地址）和 "
                                                          "BROKER_TOKEN（网关令牌）")
    db, owns_db = trading_db(data_dir, db)
    timings = timings or ClientTimings.from_settings(settings)
    broker = RemoteBroker(Transport(url, token), GatewayCursor(db), timings, now=clock.now if clock else None,
                          reader=str(settings.get("GATEWAY_READER")))
    broker.owns_db, broker._db = owns_db, db
    return connected(broker)


# ---- the resume position -------------------------------------------------------------------------------------------
class GatewayCursor:
    """The last event number the daemon has handled (and so acknowledges), per gateway journal (its epoch)."""

    def __init__(self, db: Database):
        self._db = db
        migrate(db, "gateway_cursor", CURSOR_MIGRATIONS)

    def load(self) -> tuple[Optional[str], int]:
        row = self._db.query_one("SELECT epoch, seq FROM gateway_cursor WHERE id=1")
        return (row["epoch"], int(row["seq"])) if row else (None, 0)

    def save(self, epoch: str, seq: int) -> None:
        self._db.execute("INSERT INTO gateway_cursor(id, epoch, seq) VALUES (1, ?, ?) "
                         "ON CONFLICT(id) DO UPDATE SET epoch=excluded.epoch, seq=excluded.seq", (epoch, int(seq)))


# ---- signed HTTP ---------------------------------------------------------------------------------------------------
class GatewayUnreachable(Exception):
    """No (genuine) answer: `maybe_sent` when the request may have reached the gateway."""

    def __init__(self, reason: str, maybe_sent: bool):
        super().__init__(reason)
        self.reason, self.maybe_sent = reason, maybe_sent


class Transport:
    """Signed requests on kept-alive connections (a small pool: the event thread and the callers each use their own),
    every answer's signature checked against the request's nonce. Never logs the token."""

    def __init__(self, url: str, token: str, wall: Callable[[], float] = time.time):
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BrokerUnavailable("GATEWAY_URL_INVALID", f"BROKER_URL 格式不正确：{url}（应如 http://192.168.1.20:5800）")
        self.url = f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._token = token
        self._wall = wall
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(self, method: str, path: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
        """(status, payload) of a genuine answer; raises GatewayUnreachable otherwise. A kept-alive connection the
        server (or the network) closed while it sat idle fails at once: the request is signed afresh and sent once
        more on a new connection, so an idle pool does not read as a lost gateway (resending is safe: orders and
        cancels are idempotent by their attempt id, the rest only read)."""
        data = wire.dumps(body) if body is not None else b""
        target = self._prefix + path
        started, maybe_sent = time.monotonic(), False
        conn = self._take(timeout)
        for last_try in (False, True):
            headers = signed_headers(self._token, method, target, data, self._wall())
            headers["Content-Type"] = "application/json"
            reused, sent = conn.sock is not None, False
            try:
                if conn.sock is None:
                    conn.connect()
                    # a request's packets never wait for the delayed ACK of the previous ones (200 ms on Windows)
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.sock.settimeout(max(0.05, timeout - (time.monotonic() - started)))
                sent = True
                conn.request(method, target, body=data, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                maybe_sent = maybe_sent or sent
                stale = reused and isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                                    ConnectionResetError))
                if last_try or not stale:
                    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    raise GatewayUnreachable(reason, maybe_sent) from None
                conn = self._new_connection(timeout)
        if response.status in (401, 403) and response.getheader(HEADER_SIGNATURE) is None:
            self._give_back(conn, response)
            return response.status, _payload(answer)  # refused before the gateway could know us: it says why
        if not answer_is_genuine(self._token, headers[HEADER_NONCE], response.status, answer,
                                 response.getheader(HEADER_SIGNATURE)):
            conn.close()
            raise GatewayUnreachable("网关应答的签名无效（令牌不一致或应答被改动）", True)
        self._give_back(conn, response)
        return response.status, _payload(answer)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._new_connection(timeout)

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _give_back(self, conn: http.client.HTTPConnection, response) -> None:
        if response.will_close:
            conn.close()
            return
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()


def _payload(answer: bytes) -> Any:
    try:
        return wire.loads(answer)
    except ValueError:
        return {"code": "GATEWAY_BAD_ANSWER", "message": "网关应答格式错误"}


@dataclass(frozen=True)
class RemoteAccount:
    account_id: str
    masked_id: str


# ---- the broker ---------------------------------------------------------------------------------------------------
class RemoteBroker:
    """core.models.Broker over the gateway. Threads: `gateway-events` (long-poll, delivery, reconnect with back-off)
    and the callers of the Broker methods (each call bounded by `request_timeout`)."""

    mode = "live"

    def __init__(self, transport: Transport, cursor: GatewayCursor, timings: ClientTimings = ClientTimings(),
                 now: Optional[Callable[[], Any]] = None, reader: str = "daemon"):
        self.transport = transport
        self.reader = reader  # this client's name in the gateway's journal: its own acknowledged position
        self.timings = timings
        self.owns_db = False
        self._db: Optional[Database] = None
        self._cursor = cursor
        self._epoch, self._seq = cursor.load()
        self.account = RemoteAccount("", "")
        self.health = LinkHealth(now or (lambda: time.strftime("%Y-%m-%dT%H:%M:%S")))
        self._listener: Optional[BrokerListener] = None
        self._listener_set = threading.Event()
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._reachable = False
        self._remote_link = LINK_DISCONNECTED
        self._closed = False
        self.reconnects = 0
        self.last_error = ""
        self.delivered = 0  # events handed to the listener by this process
        self._progress = threading.Condition()  # notified after every poll (answered or not)

    # ---- models.Broker
    def set_listener(self, listener: BrokerListener) -> None:
        self._listener = listener
        self._listener_set.set()

    def connect(self) -> None:
        """Greet the gateway (auth, account, journal epoch), wait until the broker behind it is connected, start the
        event thread. Raises BrokerUnavailable (the gateway unreachable or refusing, or its broker not connected)."""
        if self._worker is not None and self._worker.is_alive():
            return
        hello = self._call("GET", "/hello")
        self._wait_remote_connected(hello.get("link", {}))
        self.account = RemoteAccount(str(hello.get("account_id", "")), str(hello.get("masked_id", "")))
        self._adopt_epoch(str(hello["epoch"]), int(hello["pruned_seq"]))
        self._reachable = True
        self._set_remote_link(LINK_CONNECTED)
        self._worker = threading.Thread(target=self._run, name="gateway-events", daemon=True)
        self._worker.start()
        log.info("已连接远程网关 %s：账号 %s（%s），从事件 %d 之后继续", self.transport.url, self.account.masked_id,
                 hello.get("backend", ""), self._seq)

    def is_connected(self) -> bool:
        return self._reachable and self._remote_link == LINK_CONNECTED and not self._closed

    def place_order(self, request: OrderRequest) -> None:
        """Accepted (progress arrives as events), OrderRejected, BrokerUnavailable (certainly not sent) or
        OutcomeUnknown (may have been sent: reconcile by remark). Within the deadline a request without an answer is
        sent again as the same attempt, which the gateway answers with the first copy's outcome, never a second
        order; a later call with the same remark is refused as a duplicate."""
        body = {**wire.request_to_json(request), "attempt": secrets.token_hex(8)}  # the same for every resend below
        status, payload, maybe_sent = self._attempts("POST", "/orders", body)
        if status is None:
            if maybe_sent:
                raise OutcomeUnknown("ORDER_OUTCOME_UNKNOWN", f"委托 {request.client_id} 发往网关后 "
                                     f"{self.timings.request_timeout:g} 秒内没有应答（{payload}），是否已送达券商未知："
                                     "按备注核对，重试不会重复下单")
            raise BrokerUnavailable("GATEWAY_UNREACHABLE", f"无法连接网关（{payload}），委托 {request.client_id} 未发出")
        if status == 200:
            outcome = payload.get("outcome")
            if outcome == wire.OUTCOME_ACCEPTED:
                log.info("网关已接收委托 %s%s", request.client_id, "（重复请求，返回首次结果）" if payload.get("replayed") else "")
                return
            if outcome == wire.OUTCOME_REJECTED:
                raise OrderRejected(payload.get("code") or "GATEWAY_REJECTED", payload.get("message") or "委托被拒绝")
            raise OutcomeUnknown(payload.get("code") or "ORDER_OUTCOME_UNKNOWN",
                                 payload.get("message") or f"委托 {request.client_id} 结果未知")
        if status == 403:
            raise OrderRejected(payload.get("code", "GATEWAY_FORBIDDEN"), payload.get("message", "网关拒绝委托"))
        if isinstance(payload, dict) and "kind" in payload:
            raise wire.error_from_json(payload)  # the back-end's own refusal, same class as on the gateway
        if status == 400:
            raise OrderRejected(payload.get("code", "BAD_REQUEST"), payload.get("message", "网关认为委托内容无效"))
        if status == 401:
            raise BrokerUnavailable(payload.get("code", "GATEWAY_AUTH"), payload.get("message", "网关拒绝访问"))
        raise OutcomeUnknown("ORDER_OUTCOME_UNKNOWN", f"网关处理委托 {request.client_id} 出错（HTTP {status}），结果未知："
                                                      "按备注核对，不会重复下单")

    def cancel_order(self, order_id: str) -> None:
        """Resent within the deadline as the same attempt (the gateway answers a resend with the first result, never
        a second cancel). No answer at all: BrokerUnavailable (the daemon checks the order and may cancel again)."""
        self._call("POST", "/cancel", {"order_id": order_id, "attempt": secrets.token_hex(8)})

    def query_asset(self) -> Asset:
        return wire.asset_from_json(self._call("GET", "/asset"))

    def query_positions(self) -> list[BrokerPosition]:
        return [wire.position_from_json(p) for p in self._call("GET", "/positions")]

    def query_orders(self) -> list[Order]:
        return [wire.order_from_json(o) for o in self._call("GET", "/orders")]

    def query_trades(self) -> list[Fill]:
        return [wire.fill_from_json(f) for f in self._call("GET", "/trades")]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._listener_set.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(self.timings.probe_interval + self.timings.request_timeout + 1)
        self.transport.close()
        if self.owns_db and self._db is not None:
            self._db.close()
        self.health.set_state(LINK_DISCONNECTED)
        log.info("已断开远程网关")

    # ---- quotes (newest wins: only the latest per code is kept on the gateway)
    def subscribe_quotes(self, codes: list[str]) -> list[str]:
        return list(self._call("POST", "/subscribe", {"codes": list(codes)})["codes"])

    def latest_quotes(self, codes: list[str]) -> list[Quote]:
        return [wire.quote_from_json(q) for q in self._call("GET", "/quotes?codes=" + ",".join(codes))]

    # ---- status for the web page
    def connection_status(self) -> dict:
        return {"connected": self.is_connected(), "account": self.account.masked_id, "gateway": self.transport.url,
                "reachable": self._reachable, "remote_link_state": self._remote_link, "reconnects": self.reconnects,
                "last_error": self.last_error, "acked_seq": self._seq, **self.health.snapshot()}

    @property
    def link_state(self) -> str:
        return self.health.state

    def anomalies(self) -> list[dict]:
        return self.health.anomalies()

    def _wait_remote_connected(self, link: dict) -> None:
        deadline, pause = time.monotonic() + self.timings.connect_timeout, RETRY_PAUSE
        while link.get("state") != LINK_CONNECTED:
            if time.monotonic() >= deadline:
                raise BrokerUnavailable("GATEWAY_BROKER_DOWN", f"已连接网关 {self.transport.url}，但网关上的券商接口未连接"
                                        f"（{link.get('state', '未知')}）：请检查 Windows 机器上的 QMT 是否已登录")
            self._stop.wait(pause)
            pause = min(pause * 2, 0.5)
            link = self._call("GET", "/health")

    # ---- requests with a deadline
    def _attempts(self, method: str, path: str, body: Any = None) -> tuple[Optional[int], Any, bool]:
        """Retries a request that got no answer until the deadline (safe: orders by remark, the rest read-only or
        idempotent), and a query the gateway's broker could not answer because it is reconnecting right now (503).
        Returns (status, payload, maybe_sent) or (None, last reason, maybe_sent)."""
        deadline = time.monotonic() + self.timings.request_timeout
        pause, maybe_sent, reason = RETRY_PAUSE, False, ""
        last: Optional[tuple[int, Any]] = None  # the latest 503 of a query, answered if nothing better comes
        while not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                status, payload = self.transport.request(method, path, body, timeout=remaining)
                if not (status == 503 and method == "GET" and deadline - time.monotonic() > pause):
                    return status, payload, maybe_sent
                reason = payload.get("message", "") if isinstance(payload, dict) else ""
                last = (status, payload)
            except GatewayUnreachable as exc:
                maybe_sent = maybe_sent or exc.maybe_sent
                reason = exc.reason
            self._stop.wait(min(pause, max(0.0, deadline - time.monotonic())))
            pause *= 2
        if last is not None:
            return last[0], last[1], maybe_sent
        return None, reason or "网关连接已关闭", maybe_sent

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        status, payload, _sent = self._attempts(method, path, body)
        if status is None:
            raise BrokerUnavailable("GATEWAY_UNREACHABLE", f"无法连接网关 {self.transport.url}（{payload}）")
        if status == 200:
            return payload
        if status in (401, 403):
            raise BrokerUnavailable(payload.get("code", "GATEWAY_AUTH"), payload.get("message", "网关拒绝访问"))
        if isinstance(payload, dict) and "kind" in payload:
            raise wire.error_from_json(payload)
        raise BrokerUnavailable(payload.get("code", "GATEWAY_ERROR") if isinstance(payload, dict) else "GATEWAY_ERROR",
                                payload.get("message", f"网关返回 HTTP {status}") if isinstance(payload, dict)
                                else f"网关返回 HTTP {status}")

    # ---- the event thread
    def _run(self) -> None:
        delay = 0.0  # the first retry after a single cut goes at once; then the back-off grows
        while not self._stop.is_set():
            if not self._listener_set.wait(self.timings.probe_interval):
                continue
            try:
                self.poll_once()
                delay = 0.0
                self._notify_progress()
                continue
            except GatewayUnreachable as exc:
                self._notify_progress()
                if delay > 0:  # one failure alone (a cut connection) is not yet a lost gateway
                    self._lost(exc.reason)
                self.last_error = exc.reason
            except Exception as exc:  # a listener or an answer that failed: the same events come again
                log.exception("处理网关事件出错，稍后从事件 %d 之后重试", self._seq)
                self._lost(f"{type(exc).__name__}: {exc}")
            self._stop.wait(delay)
            delay = min(max(delay * 2, self.timings.reconnect_first_delay), self.timings.reconnect_max_delay)

    def poll_once(self) -> int:
        """One long-poll: events after the last handled one (which this acknowledges), delivered in order, the new
        position persisted. Returns how many were delivered. Raises GatewayUnreachable."""
        wait = self.timings.probe_interval
        status, answer = self.transport.request("GET", f"/events?after={self._seq}&wait={wait:g}&reader={quote(self.reader, safe='')}",
                                                timeout=wait + self.timings.request_timeout)
        if status != 200:
            raise GatewayUnreachable(f"HTTP {status} {answer.get('message', '') if isinstance(answer, dict) else ''}",
                                     False)
        self._found(answer["link"])
        if self._adopt_epoch(str(answer["epoch"]), int(answer["pruned_seq"])):
            return 0  # another journal: ask again from its start
        if int(answer["pruned_seq"]) > self._seq:
            self.health.alarm("GATEWAY_EVENT_GAP", f"网关事件 {self._seq + 1}–{answer['pruned_seq']} 已被网关删除、本进程未收到"
                                                   f"（读者名 {self.reader} 是否被别的客户端同时使用？）：按券商查询核对成交与委托")
            self._advance(int(answer["pruned_seq"]))
        delivered = 0
        for event in answer["events"]:
            seq = int(event["seq"])
            if seq <= self._seq:
                continue
            self._deliver(event["kind"], event["payload"])
            self._seq, delivered = seq, delivered + 1
        if delivered:
            self._cursor.save(self._epoch, self._seq)  # persisted before the next poll acknowledges it
            self.delivered += delivered
        return delivered

    def wait_delivered(self, seq: int, timeout: float) -> bool:
        """True once every event up to `seq` has been handed to the listener and the link is up (bounded)."""
        with self._progress:
            return self._progress.wait_for(lambda: self._seq >= seq and self.is_connected(), timeout)

    def _notify_progress(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _deliver(self, kind: str, payload: dict) -> None:
        listener = self._listener
        if kind == wire.EVENT_ORDER and listener is not None:
            listener.on_order_update(wire.order_from_json(payload))
        elif kind == wire.EVENT_FILL and listener is not None:
            listener.on_fill(wire.fill_from_json(payload))
        elif kind == wire.EVENT_LINK:
            self._set_remote_link(str(payload["state"]))
        elif kind == wire.EVENT_ANOMALY:
            self.health.alarm(str(payload["code"]), f"（网关）{payload['message']}")

    def _adopt_epoch(self, epoch: str, pruned_seq: int) -> bool:
        """True when the gateway's journal is not the one the saved position belongs to: it is taken up from what the
        gateway holds (events acknowledged there before this daemon database existed were handled by their reader)."""
        if epoch == self._epoch:
            return False
        if self._epoch is not None:
            self.health.alarm("GATEWAY_JOURNAL_RESET", "网关的事件日志已更换（网关数据目录被清空或换了网关）：从网关保存的"
                                                       "事件接收，已记账的成交按成交编号去重，并按券商查询核对")
        self._epoch, self._seq = epoch, int(pruned_seq)
        self._cursor.save(epoch, self._seq)
        return True

    def _advance(self, seq: int) -> None:
        self._seq = seq
        self._cursor.save(self._epoch, seq)

    def _found(self, link: dict) -> None:
        if not self._reachable:
            self._reachable = True
            self.reconnects += 1
            self.health.alarm("QMT_RECONNECTED", f"已重新连接远程网关 {self.transport.url}，从事件 {self._seq} 之后继续",
                              level=logging.WARNING)
        self._set_remote_link(str(link.get("state", LINK_CONNECTED)))

    def _lost(self, reason: str) -> None:
        self.last_error = reason
        if self._reachable and not self._closed:
            self._reachable = False
            self.health.set_state(LINK_RECONNECTING)
            self.health.alarm("QMT_DISCONNECTED", f"与远程网关 {self.transport.url} 的连接中断（{reason}），重连中；"
                                                  "期间的委托回报和成交在网关上保存，重连后按序补收")

    def _set_remote_link(self, state: str) -> None:
        self._remote_link = state
        if self._reachable:
            self.health.set_state(state)
