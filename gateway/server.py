"""The gateway server (issue 30): one broker back-end (miniQMT or the big-QMT bridge, its own reconnects included)
served over signed HTTP — the broker contract (orders, cancels, queries), the journaled event stream (long-poll
`GET /events?after=N`, acknowledged by `after=N` itself or `POST /ack`) and the latest quotes (newest wins).
Waitress (already a dependency) carries it: a production WSGI server with keep-alive, so an order costs one request
on an open connection (well under the 5 ms budget over loopback, see bench/bench_gateway.py)."""
from __future__ import annotations

import importlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qs

from core.models import BrokerUnavailable, Fill, Order, OrderRejected, Quote, TradingError
from gateway import wire
from gateway.auth import HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, AuthPolicy, AuthRefused, RequestAuthenticator, answer_signature
from gateway.event_journal import PENDING, EventJournal
from gateway.waitress_shutdown import shut_down
from persistence.storage import Database
from qmt.broker_guard import OutcomeUnknown

log = logging.getLogger("qmt_gateway")

MAX_BODY_BYTES = 64 * 1024
READ_ONLY_MESSAGE = "网关处于只读模式：只提供查询和事件，不接受委托和撤单"
LINK_CONNECTED, LINK_CLOSED = "connected", "closed"
DEFAULT_READER = "daemon"
KEEP_CANCEL_ATTEMPTS = 1000  # cancel results kept for resends (a resend comes within one request deadline)


@dataclass(frozen=True)
class GatewayOptions:
    """The gateway's tunables, from its settings (`from_settings`); tests pass their own."""

    read_only: bool = False
    event_wait_max: float = 20.0  # longest long-poll hold (seconds)
    event_batch: int = 500  # most events in one answer
    order_wait: float = 10.0  # how long a retried order waits for the first attempt still being sent
    link_check_interval: float = 1.0

    @classmethod
    def from_settings(cls, settings) -> "GatewayOptions":
        return cls(read_only=bool(settings.get("GATEWAY_READ_ONLY")),
                   event_wait_max=float(settings.get("GATEWAY_EVENT_WAIT")),
                   event_batch=int(settings.get("GATEWAY_EVENT_BATCH")),
                   order_wait=float(settings.get("GATEWAY_REQUEST_TIMEOUT")),
                   link_check_interval=float(settings.get("GATEWAY_LINK_CHECK_INTERVAL")))


class QuoteBoard:
    """The latest quote per code (a newer quote replaces an older one; an older one arriving late is dropped)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._quotes: dict[str, Quote] = {}
        self.wanted: set[str] = set()

    def publish(self, quote: Quote) -> bool:
        with self._lock:
            known = self._quotes.get(quote.code)
            if known is not None and known.time is not None and quote.time is not None and quote.time < known.time:
                return False
            self._quotes[quote.code] = quote
        return True

    def latest(self, codes: list[str]) -> list[Quote]:
        with self._lock:
            return [self._quotes[c] for c in codes if c in self._quotes]

    def want(self, codes: list[str]) -> list[str]:
        with self._lock:
            self.wanted.update(codes)
            return sorted(self.wanted)


class GatewayService:
    """The broker contract over one wrapped back-end, with every event journaled before it is served and every order
    outcome kept by remark. It is the back-end's listener."""

    def __init__(self, backend, journal: EventJournal, options: GatewayOptions = GatewayOptions(),
                 backend_name: str = "", on_subscribe: Optional[Callable[[list[str]], None]] = None):
        self.backend = backend
        self.journal = journal
        self.options = options
        self.backend_name = backend_name
        self.quotes = QuoteBoard()
        self.on_subscribe = on_subscribe  # the quote feed's watchlist, set by the feed when there is one
        self._inflight: dict[str, threading.Event] = {}  # remark (or "cancel:" + attempt) -> set when settled
        self._cancels: OrderedDict[str, object] = OrderedDict()  # cancel attempt -> True or the exception it raised
        self._queries: dict[str, _SharedCall] = {}  # query method -> the call now running
        self._lock = threading.Lock()
        self._link = ""
        self._stop = threading.Event()
        self._watcher: Optional[threading.Thread] = None
        health = getattr(backend, "health", None)
        if health is not None and hasattr(health, "subscribe"):
            health.subscribe(self._on_anomaly)
        backend.set_listener(self)
        self.check_link()

    # ---- the back-end's listener (its threads): journal first, the long-polls wake on the commit
    def on_order_update(self, order: Order) -> None:
        self.journal.append(wire.EVENT_ORDER, wire.order_to_json(order))

    def on_fill(self, fill: Fill) -> None:
        self.journal.append(wire.EVENT_FILL, wire.fill_to_json(fill), fill_id=fill.fill_id)

    def _on_anomaly(self, anomaly) -> None:
        self.journal.append(wire.EVENT_ANOMALY, {"time": anomaly.time, "code": anomaly.code,
                                                 "message": anomaly.message})

    def publish_quote(self, quote: Quote) -> bool:
        """From the gateway's quote source: the board keeps the newest; a paper back-end matches its resting orders."""
        fresh = self.quotes.publish(quote)
        if fresh and hasattr(self.backend, "on_quote"):
            self.backend.on_quote(quote)
        return fresh

    # ---- link state as an event
    def link_state(self) -> str:
        state = getattr(self.backend, "link_state", None)
        if isinstance(state, str):
            return state
        return LINK_CONNECTED if self.backend.is_connected() else LINK_CLOSED

    def check_link(self) -> None:
        state = self.link_state()
        with self._lock:
            changed, self._link = state != self._link, state
        if changed:
            self.journal.append(wire.EVENT_LINK, {"state": state, "connected": bool(self.backend.is_connected())})

    def start(self) -> None:
        self._watcher = threading.Thread(target=self._watch_link, name="gateway-link", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        self.journal.wake_all()
        if self._watcher is not None:
            self._watcher.join(5.0)

    def _watch_link(self) -> None:
        while not self._stop.wait(self.options.link_check_interval):
            try:
                self.check_link()
            except Exception:  # one failed look must not end the watch
                log.exception("检查券商连接状态出错")

    # ---- the contract
    def hello(self) -> dict:
        account = getattr(self.backend, "account", None)
        account_id = str(getattr(account, "account_id", "") or "")
        return {"account_id": account_id, "masked_id": str(getattr(account, "masked_id", "") or account_id),
                "backend": self.backend_name, "mode": getattr(self.backend, "mode", ""),
                "read_only": self.options.read_only, "epoch": self.journal.epoch,
                "last_seq": self.journal.last_seq, "pruned_seq": self.journal.pruned_seq, "link": self.link()}

    def link(self) -> dict:
        return {"state": self.link_state(), "connected": bool(self.backend.is_connected())}

    def place_order(self, body: dict) -> dict:
        """Sent now; or, for a resend of the same call (`attempt`: the client's retries after a lost answer), the
        outcome its first copy got. A new call with a known remark is refused (brokers/CONTRACT.md §2). Never a
        second order."""
        if self.options.read_only:
            raise AuthRefused(403, "READ_ONLY", READ_ONLY_MESSAGE)
        request = wire.request_from_json(body)
        remark, attempt = request.client_id, str(body.get("attempt") or "")
        while True:
            with self._lock:
                known = self.journal.outcome(remark)
                waiting = self._inflight.get(remark)
                if known is None and waiting is None:
                    self.journal.begin_order(remark, wire.request_to_json(request), attempt)
                    self._inflight[remark] = threading.Event()
                    break
            if known is not None and (not attempt or known.attempt != attempt):
                raise OrderRejected("DUPLICATE_CLIENT_ID", f"委托 {remark} 已经发送过，不会重复发送（请先核对该委托的状态）")
            if waiting is None:
                return _replayed(known)
            if not waiting.wait(self.options.order_wait):
                return {"outcome": wire.OUTCOME_UNKNOWN, "code": "ORDER_IN_FLIGHT", "replayed": True,
                        "message": f"委托 {remark} 的第一次发送仍在进行，结果未知：按备注核对，不会重复下单"}
        try:
            return self._send(request)
        finally:
            with self._lock:
                self._inflight.pop(remark).set()

    def _send(self, request) -> dict:
        remark = request.client_id
        try:
            self.backend.place_order(request)
        except OutcomeUnknown as exc:
            self.journal.settle_order(remark, wire.OUTCOME_UNKNOWN, exc.code, exc.message)
            return {"outcome": wire.OUTCOME_UNKNOWN, "code": exc.code, "message": exc.message, "replayed": False}
        except BrokerUnavailable as exc:  # refused before anything was sent: the remark may be tried again
            self.journal.forget_order(remark)
            raise
        except OrderRejected as exc:
            self.journal.settle_order(remark, wire.OUTCOME_REJECTED, exc.code, exc.message)
            return {"outcome": wire.OUTCOME_REJECTED, "code": exc.code, "message": exc.message, "replayed": False}
        except Exception as exc:  # anything else: it may have gone out, so it is unknown, never re-sent
            log.exception("委托 %s 发送时出现意外错误", remark)
            message = f"委托 {remark} 发送时网关出错（{type(exc).__name__}），结果未知：按备注核对，不会重发"
            self.journal.settle_order(remark, wire.OUTCOME_UNKNOWN, "GATEWAY_SEND_ERROR", message)
            return {"outcome": wire.OUTCOME_UNKNOWN, "code": "GATEWAY_SEND_ERROR", "message": message, "replayed": False}
        self.journal.settle_order(remark, wire.OUTCOME_ACCEPTED)
        return {"outcome": wire.OUTCOME_ACCEPTED, "code": "", "message": "", "replayed": False}

    def cancel_order(self, body: dict) -> dict:
        """Sent once per `attempt` (the client's id of one cancel_order call): a resend after a lost answer gets the
        first copy's result, so a cut connection never sends a second cancel (which could undo a refusal)."""
        if self.options.read_only:
            raise AuthRefused(403, "READ_ONLY", READ_ONLY_MESSAGE)
        order_id, attempt = str(body["order_id"]), str(body.get("attempt") or "")
        key = "cancel:" + attempt
        while attempt:
            with self._lock:
                done = self._cancels.get(attempt)
                waiting = self._inflight.get(key)
                if done is None and waiting is None:
                    self._inflight[key] = threading.Event()
                    break
            if done is not None:
                if isinstance(done, BaseException):
                    raise done
                return {"ok": True, "replayed": True}
            if not waiting.wait(self.options.order_wait):
                raise BrokerUnavailable("CANCEL_IN_FLIGHT", f"撤单请求（委托 {order_id}）的第一次发送仍在进行：稍后核对委托状态")
        result: object = True
        try:
            self.backend.cancel_order(order_id)
        except BaseException as exc:
            result = exc
            raise
        finally:
            if attempt:
                with self._lock:
                    self._cancels[attempt] = result
                    while len(self._cancels) > KEEP_CANCEL_ATTEMPTS:
                        self._cancels.popitem(last=False)
                    self._inflight.pop(key).set()
        return {"ok": True, "replayed": False}

    def query(self, method: str):
        """One back-end query at a time per kind: a request arriving while the same query runs (a client's resend
        after a cut, another client) shares its answer, so a hung broker cannot pile up the server's threads."""
        with self._lock:
            shared = self._queries.get(method)
            owner = shared is None
            if owner:
                shared = self._queries[method] = _SharedCall()
        if not owner:
            return shared.result(self.options.order_wait)
        try:
            shared.value = getattr(self.backend, method)()
        except BaseException as exc:
            shared.error = exc
            raise
        finally:
            with self._lock:
                self._queries.pop(method, None)
            shared.done.set()
        return shared.value

    def events(self, after: int, wait: float, limit: int, reader: str = DEFAULT_READER) -> dict:
        """Events numbered above `after` (which `reader` thereby acknowledges), held up to `wait` seconds when there
        are none yet. `pruned_seq` lets a client see a gap (events it never had that are gone)."""
        if after > 0:
            self.journal.acknowledge(reader, after)
        wait = max(0.0, min(wait, self.options.event_wait_max))
        if self.journal.last_seq <= after and wait > 0:
            self.journal.wait_after(after, wait)
        events = self.journal.after(after, max(1, min(limit, self.options.event_batch)))
        return {"epoch": self.journal.epoch, "pruned_seq": self.journal.pruned_seq, "last_seq": self.journal.last_seq,
                "events": [e.to_json() for e in events],
                "link": self.link()}

    def acknowledge(self, body: dict) -> dict:
        if body.get("epoch") not in (None, self.journal.epoch):
            return {"acked_seq": 0, "epoch": self.journal.epoch}
        reader = str(body.get("reader") or DEFAULT_READER)
        return {"acked_seq": self.journal.acknowledge(reader, int(body["seq"])), "epoch": self.journal.epoch}

    def status(self) -> dict:
        status = self.backend.connection_status() if hasattr(self.backend, "connection_status") else {}
        return {"backend": self.backend_name, "link_state": self.link_state(),
                "connected": bool(self.backend.is_connected()), "read_only": self.options.read_only,
                "kept_events": self.journal.kept_count(), "last_seq": self.journal.last_seq,
                "pruned_seq": self.journal.pruned_seq,
                "backend_status": {k: v for k, v in status.items() if k != "account"}}

    def subscribe(self, body: dict) -> dict:
        codes = self.quotes.want([str(c) for c in body.get("codes", [])])
        if self.on_subscribe is not None:
            self.on_subscribe(codes)
        return {"codes": codes}


class _SharedCall:
    def __init__(self):
        self.done = threading.Event()
        self.value: Any = None
        self.error: Optional[BaseException] = None

    def result(self, timeout: float) -> Any:
        if not self.done.wait(timeout):
            raise BrokerUnavailable("GATEWAY_QUERY_BUSY", "网关上的券商查询迟迟没有结果（券商可能无响应），请稍后再试")
        if self.error is not None:
            raise self.error
        return self.value


def _replayed(known) -> dict:
    if known.outcome == PENDING:  # the gateway stopped while sending it: whether it went out is unknown
        return {"outcome": wire.OUTCOME_UNKNOWN, "code": "ORDER_OUTCOME_UNKNOWN", "replayed": True,
                "message": f"委托 {known.remark} 在网关重启前开始发送，结果未知：按备注核对，不会重复下单"}
    return {"outcome": known.outcome, "code": known.code, "message": known.message, "replayed": True}


# ---- HTTP ----------------------------------------------------------------------------------------------------------
class GatewayApp:
    """The WSGI application: authenticate, route, answer JSON signed with the request's nonce. Never a stack trace."""

    def __init__(self, service: GatewayService, authenticator: RequestAuthenticator):
        self.service = service
        self.auth = authenticator
        self._routes: dict[tuple[str, str], Callable[[dict, dict], Any]] = {
            ("GET", "/hello"): lambda q, b: service.hello(),
            ("GET", "/health"): lambda q, b: service.link(),
            ("GET", "/status"): lambda q, b: service.status(),
            ("GET", "/events"): lambda q, b: service.events(_int(q, "after", 0), _float(q, "wait", 0.0),
                                                            _int(q, "limit", 500), _str(q, "reader", DEFAULT_READER)),
            ("POST", "/ack"): lambda q, b: service.acknowledge(b),
            ("POST", "/orders"): lambda q, b: service.place_order(b),
            ("POST", "/cancel"): lambda q, b: service.cancel_order(b),
            ("GET", "/asset"): lambda q, b: wire.asset_to_json(service.query("query_asset")),
            ("GET", "/positions"): lambda q, b: [wire.position_to_json(p) for p in service.query("query_positions")],
            ("GET", "/orders"): lambda q, b: [wire.order_to_json(o) for o in service.query("query_orders")],
            ("GET", "/trades"): lambda q, b: [wire.fill_to_json(f) for f in service.query("query_trades")],
            ("GET", "/quotes"): lambda q, b: [wire.quote_to_json(x) for x in service.quotes.latest(_codes(q))],
            ("POST", "/subscribe"): lambda q, b: service.subscribe(b),
        }

    def __call__(self, environ, start_response):
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        nonce = ""
        try:
            body = _read_body(environ)
            headers = {name: environ.get("HTTP_" + name.upper().replace("-", "_"), "")
                       for name in (HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)}
            nonce = self.auth.check(environ.get("REMOTE_ADDR", ""), method, path + ("?" + query if query else ""),
                                    headers, body)
            handler = self._routes.get((method, path))
            if handler is None:
                status, payload = 404, {"code": "NOT_FOUND", "message": f"网关没有接口 {method} {path}"}
            else:
                status, payload = 200, handler(parse_qs(query), wire.loads(body) or {})
        except AuthRefused as exc:
            status, payload = exc.status, {"code": exc.code, "message": exc.message}
            if exc.code != "READ_ONLY":
                log.warning("网关拒绝请求 %s %s（来自 %s）：%s", method, path, environ.get("REMOTE_ADDR", ""), exc.message)
        except TradingError as exc:
            status, payload = 503 if isinstance(exc, BrokerUnavailable) else 409, wire.error_to_json(exc)
        except (ValueError, KeyError, TypeError) as exc:
            status, payload = 400, {"code": "BAD_REQUEST", "message": f"请求内容无效（{type(exc).__name__}）"}
        except Exception:
            log.exception("网关处理 %s %s 出错", method, path)
            status, payload = 500, {"code": "GATEWAY_ERROR", "message": "网关内部错误，详情见网关日志"}
        data = wire.dumps(payload)
        response_headers = [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data)))]
        if nonce:
            response_headers.append((HEADER_SIGNATURE, answer_signature(self.auth.policy.token, nonce, status, data)))
        start_response(f"{status} {_REASONS.get(status, 'Error')}", response_headers)
        return [data]


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
            413: "Payload Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


def _read_body(environ) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise AuthRefused(413, "BODY_TOO_LARGE", "请求内容过大")
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _int(query: dict, key: str, default: int) -> int:
    return int(query[key][0]) if key in query else default


def _float(query: dict, key: str, default: float) -> float:
    return float(query[key][0]) if key in query else default


def _str(query: dict, key: str, default: str) -> str:
    value = query[key][0] if key in query else default
    if not value or len(value) > 64:
        raise ValueError(key)
    return value


def _codes(query: dict) -> list[str]:
    return [c for c in (query.get("codes", [""])[0]).split(",") if c]


class GatewayServer:
    """Waitress around a GatewayApp on host:port, in its own thread (`start`/`stop`); port 0 picks a free one."""

    def __init__(self, app: GatewayApp, host: str, port: int, threads: int = 8):
        from waitress.server import create_server

        self.app = app
        self._server = create_server(app, host=host, port=port, threads=threads, ident="qmt_gateway",
                                     clear_untrusted_proxy_headers=True, channel_timeout=120,
                                     asyncore_loop_timeout=0.2)  # stop() returns within 0.2 s
        self.host, self.port = host, int(self._server.effective_port)
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "GatewayServer":
        self.app.service.start()
        self._thread = threading.Thread(target=self._server.run, name="gateway-http", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Wake the held long-polls, stop listening, let running requests finish, close every connection
        (gateway.waitress_shutdown)."""
        self.app.service.close()
        shut_down(self._server, timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        self.app.service.journal.close()


# ---- building one from settings -------------------------------------------------------------------------------------
GATEWAY_BACKENDS = {"miniqmt": "easy_qmt_trader", "bigqmt": "bigqmt.broker"}


def connect_backend(settings, data_dir: Path, account_config_path: Optional[Path] = None):
    """The live back-end the gateway's GATEWAY_BROKER names, connected (its own reconnects included).
    Raises BrokerUnavailable with a Chinese reason."""
    name = str(settings.get("GATEWAY_BROKER"))
    module_name = GATEWAY_BACKENDS.get(name)
    if module_name is None:
        raise BrokerUnavailable("GATEWAY_BACKEND", f"网关不支持券商接口 {name!r}：可选 {' / '.join(GATEWAY_BACKENDS)}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BrokerUnavailable("GATEWAY_BACKEND", f"券商接口 {name} 无法加载（{exc}）") from exc
    configured = str(settings.get("ACCOUNT_CONFIG_FILE") or "")
    path = account_config_path or (Path(configured) if configured else None)
    return module.connect_live_broker(settings, data_dir, None, account_config_path=path)


def build_gateway(backend, settings, data_dir: Path, *, token: str, backend_name: str = "",
                  host: Optional[str] = None, port: Optional[int] = None,
                  wall: Callable[[], float] = time.time) -> GatewayServer:
    """The served gateway around a connected back-end: journal in <data_dir>/gateway.db, auth from the settings."""
    journal = EventJournal(Database(Path(data_dir) / "gateway.db"), wall=wall)
    service = GatewayService(backend, journal, GatewayOptions.from_settings(settings), backend_name=backend_name)
    policy = AuthPolicy.build(token, settings.get("GATEWAY_ALLOWED_CLIENTS"), settings.get("GATEWAY_TIME_WINDOW"))
    app = GatewayApp(service, RequestAuthenticator(policy, wall))
    return GatewayServer(app, host if host is not None else str(settings.get("GATEWAY_HOST")),
                         int(port if port is not None else settings.get("GATEWAY_PORT")),
                         threads=int(settings.get("GATEWAY_THREADS")))
