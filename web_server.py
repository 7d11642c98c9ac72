"""The web server: the Flask app (security checks, JSON error shapes, the UI's static files) served by waitress
in a thread, and the API token file. The routes themselves live in `web_api`."""
from __future__ import annotations

import functools
import hmac
import html
import ipaddress
import logging
import os
import random
import secrets
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from flask import Flask, Response, current_app, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException

from config import MIN_API_TOKEN_LENGTH
from persistence.config_store import ConfigError
from core.models import BrokerUnavailable, DataUnavailable, OrderRejected, TradingError
from web_limits import (REQUEST_THREADS_RESERVED, StreamSlots, guard_connections, install_queue_filter,
                        waitress_options)
from web_requests import ApiError
from web_views import to_json

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
TOKEN_FILE_NAME = "api_token"
TOKEN_HEADER = "X-API-Token"
API_TOKEN_ENVIRON = "HTTP_X_API_TOKEN"  # TOKEN_HEADER as WSGI names it
MIN_TOKEN_LENGTH = MIN_API_TOKEN_LENGTH
MAX_BODY_BYTES = 256 * 1024
TOKEN_PLACEHOLDER = "__API_TOKEN__"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# TradingError codes that mean "the request is fine but the thing it names does not exist" or "conflicts
# with the current state"; every other OrderRejected is a plain 400.
NOT_FOUND_CODES = {"SIGNAL_NOT_FOUND", "ORDER_NOT_FOUND", "GRID_NOT_FOUND", "CHANNEL_NOT_FOUND", "JOB_NOT_FOUND",
                   "REPORT_NOT_FOUND"}
CONFLICT_CODES = {"SIGNAL_NOT_PENDING", "ORDER_NOT_OPEN", "OPEN_ORDER_EXISTS", "DUPLICATE_ORDER",
                  "GRID_ALREADY_ACTIVE", "GRID_NOT_ACTIVE", "TRADING_HALTED", "TRADING_PAUSED", "STOCK_HALTED"}

HTTP_MESSAGES = {
    400: "请求无效", 401: "需要 API 令牌", 403: "拒绝访问", 404: "接口或页面不存在", 405: "不支持该请求方法",
    406: "无法提供请求的格式", 408: "请求超时", 409: "与当前状态冲突", 411: "缺少 Content-Length",
    413: "请求体过大", 414: "请求地址过长", 415: "请求体格式不支持", 416: "请求范围无效", 429: "请求过多",
    431: "请求头过大", 500: "服务器内部错误，已记录日志", 501: "不支持的请求", 503: "服务暂不可用",
}


@dataclass
class WebContext:
    """Everything the web layer talks to; built by main.py."""

    settings: Any  # ConfigStore
    positions: Any  # PositionManager
    executor: Any  # TradingExecutor
    data: Any  # DataManager
    indicators: Any  # indicator calculator or None
    signals: Any  # SignalStore
    runner: Any  # StrategyRunner (execute_signal)
    health: Callable[[], list[dict]]  # watchdog: name, alive, seconds_since_beat, restarts, alarm
    stock_pool: Any  # StockPool
    clock: Any  # market_clock.Clock
    mode: str  # 'simulation' | 'live'
    token: str
    trigger_prices: Callable[[Any], Any]  # Position -> strategy.TriggerPrices with the current parameters
    grid: Any = None  # grid manager; None until grid trading exists (the grid routes then answer 404)
    broker: Any = None  # models.Broker, for its connection state (else the executor's account query tells)
    order_files: Any = None  # orders_file_intake.OrderFileIntake (issue 19); None: the routes answer 404
    diagnostics: Optional[Callable[[], list]] = None  # the doctor's checks as this daemon sees them (issue 19)
    trading_state: Any = None  # trading_state.TradingState
    events: Any = None  # events.EventBus
    watch: Any = None  # watch_store.WatchStore (issue 17); None: the watch routes answer 404
    stock_params: Any = None  # stock_params.StockParams (issue 17)
    position_reviews: Any = None  # position_review.PositionReviews (issue 17)
    notifier: Any = None  # notify_worker.Notifier (issue 16; the notify routes answer 404 without it)
    jobs: Any = None  # jobs_runner.JobRunner
    reports_dir: Any = None  # Path of the daily reports
    snapshots: Any = None  # account_snapshots.AccountSnapshots: the daily closes of the 收益 page
    intraday: Any = None  # web_intraday.IntradayBuffer: today's 分时 line per stock
    log_tail: Any = None  # web_log_tail.LogTail: the 日志 page's lines
    data_dir: Any = None  # the daemon's data dir (Path), where `backtest.py compare` leaves its result (issue 20)
    protection: Optional[Callable[[], dict]] = None  # issue 25: the protection sentinel's report for /api/health


@dataclass
class Binding:
    """Where the server listens; the port is known only after binding (port 0 = a free port)."""

    host: str
    port: int

    @property
    def is_loopback(self) -> bool:
        return is_loopback_address(self.host)

    @property
    def is_wildcard(self) -> bool:
        return self.host in WILDCARD_HOSTS


@dataclass
class AppState:
    ctx: WebContext
    binding: Binding
    stop: threading.Event
    sse_slots: StreamSlots
    positions: Any  # web_stream.VersionedCache of the positions table
    stream: Any  # web_stream.VersionedCache of the stream snapshot (table + account + clock)
    random: random.Random = field(default_factory=random.SystemRandom)  # picks the random buys from the pool
    reads_need_token: bool = False  # WEB_REQUIRE_TOKEN_FOR_READS: a child reachable only through its supervisor


def create_app(ctx: WebContext, host: Optional[str] = None, port: Optional[int] = None,
               stop: Optional[threading.Event] = None, max_streams: int = 8) -> Flask:
    """The Flask app. `host`/`port` default to WEB_HOST/WEB_PORT and drive the Host check; `stop` ends the
    live streams on shutdown; `max_streams` bounds concurrent SSE clients (each holds a server thread)."""
    import web_api  # routes import this module's helpers
    import web_api_backtest
    import web_api_docs
    import web_api_doctor
    import web_fastpath
    import web_api_order_files
    import web_api_jobs
    import web_api_notify
    import web_api_state
    import web_api_stock
    import web_api_watch
    import web_api_auth, web_api_logs, web_api_market, web_api_performance  # issue 15: the page's own routes

    if not ctx.token or len(ctx.token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"API 令牌至少需要 {MIN_TOKEN_LENGTH} 个字符")
    app = Flask(__name__, static_folder=str(WEB_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["JSON_AS_ASCII"] = False
    binding = Binding(host if host is not None else ctx.settings.get("WEB_HOST"),
                      int(port if port is not None else ctx.settings.get("WEB_PORT")))
    positions = web_api.positions_cache(ctx)
    slots = StreamSlots(max_streams, lambda: ctx.settings.get("WEB_SSE_PER_CLIENT"))
    app.extensions["qmt"] = AppState(ctx, binding, stop or threading.Event(), slots, positions,
                                     web_api.stream_cache(ctx, positions),
                                     reads_need_token=bool(ctx.settings.get("WEB_REQUIRE_TOKEN_FOR_READS")))
    secure_app(app, list(ctx.settings.get("WEB_CORS_ORIGINS")))
    app.add_url_rule("/", "index", _index)
    app.register_blueprint(web_api.blueprint)
    app.register_blueprint(web_api_docs.blueprint)
    app.register_blueprint(web_api_order_files.blueprint)
    app.register_blueprint(web_api_doctor.blueprint)
    app.register_blueprint(web_api_state.blueprint)
    app.register_blueprint(web_api_notify.blueprint)
    app.register_blueprint(web_api_jobs.blueprint)
    app.register_blueprint(web_api_watch.blueprint)
    app.register_blueprint(web_api_stock.blueprint)
    for extra in (web_api_performance, web_api_logs, web_api_market, web_api_auth):
        app.register_blueprint(extra.blueprint)
    app.register_blueprint(web_api_backtest.blueprint)  # issue 20: 「回测对比」
    app.wsgi_app = web_fastpath.SnapshotFastPath(app.wsgi_app, app.extensions["qmt"])
    return app


def secure_app(app: Flask, cors_origins: list[str]) -> None:
    """The checks every app of this project serves behind: Host (DNS rebinding), token, CORS for the
    configured origins only, security headers, and JSON error shapes. `app.extensions["qmt"]` must hold an
    object with `binding`, `ctx.token` and `reads_need_token`."""
    CORS(app, resources={r"/api/*": {"origins": cors_origins}},
         allow_headers=["Content-Type", TOKEN_HEADER], methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
         max_age=600, supports_credentials=False)
    app.before_request(_check_host)
    app.before_request(_check_token)
    app.after_request(_security_headers)
    _register_error_handlers(app)


def state() -> AppState:
    return current_app.extensions["qmt"]


def ok(data: Any = None, status: int = 200) -> Response:
    return _json_response({"status": "success", "data": data}, status)


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    return _json_response({"status": "error", "message": message, "code": code, **extra}, status)


# ---- the server thread ----------------------------------------------------------------------------

class WebServer:
    """Serves the app with waitress in a named thread. `threads` must exceed the SSE clients it allows."""

    def __init__(self, ctx: WebContext, host: Optional[str] = None, port: Optional[int] = None, threads: int = 16,
                 app: Optional[Flask] = None):
        self.ctx = ctx
        self.host = host if host is not None else ctx.settings.get("WEB_HOST")
        self.port = int(port if port is not None else ctx.settings.get("WEB_PORT"))
        self.threads = threads
        self.app = app or create_app(ctx, self.host, self.port, max_streams=max(1, threads - REQUEST_THREADS_RESERVED))
        self._stop = self.app.extensions["qmt"].stop
        self._server = None
        self._thread: Optional[threading.Thread] = None
        self._stopped = False  # stop() was called: nothing starts it again

    def start(self) -> None:
        """Bind (raises OSError when the port is taken) and serve in the background."""
        from waitress import create_server

        self._server = create_server(
            self.app, host=self.host, port=self.port, threads=self.threads, ident="miniQMT",
            channel_request_lookahead=4,  # lets a stream notice a client that went away
            asyncore_use_poll=True, clear_untrusted_proxy_headers=True, expose_tracebacks=False,
            **waitress_options(self.ctx.settings))
        guard_connections(self._server, self.ctx.settings)  # a flood of idle/slow sockets cannot lock out the operator
        install_queue_filter()
        self.port = int(self._server.effective_port)
        self.app.extensions["qmt"].binding.port = self.port
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)
        self._thread.start()
        log.info("Web 服务已启动：%s", self.url)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def keep_serving(self) -> None:
        """Start the server again on the same address when its thread ended without stop() (the watchdog's
        "web" worker calls this, so its back-off, hourly cap and alarm apply); the page and the emergency stop
        must stay reachable. Raises OSError when the address cannot be bound again."""
        if self._stopped or self._server is None or self.is_alive():
            return
        log.error("网页服务线程已停止，正在重新启动：%s", self.url)
        dead, self._server = self._server, None
        for channel in list(dead._map.values()):  # its loop has ended: nothing else touches these sockets
            channel.close()
        dead.task_dispatcher.shutdown(timeout=1.0)  # its request threads
        self.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, end the streams, let running requests finish, then close every connection.
        Waitress's loop is not thread-safe: socket changes run in its own thread through its trigger."""
        if self._server is None:
            return
        from waitress import wasyncore

        server, self._server = self._server, None
        self._stopped = True
        self._stop.set()
        server.trigger.pull_trigger(lambda: wasyncore.dispatcher.close(server))  # the listening socket only
        server.task_dispatcher.shutdown(timeout=timeout)

        closed = threading.Event()

        def close_connections() -> None:
            for channel in list(server._map.values()):
                if channel is not server.trigger:
                    channel.handle_close()
            server.trigger.close()
            closed.set()

        try:
            server.trigger.pull_trigger(close_connections)
        except OSError:
            # The loop may run the queued thunk (closing the trigger) before our own wake-up byte is written.
            if not closed.is_set():
                raise
        if self._thread is not None:
            self._thread.join(timeout)
        log.info("Web 服务已停止")


# ---- the token ------------------------------------------------------------------------------------

def load_or_create_token(data_dir: str | Path, settings: Any) -> str:
    """WEB_API_TOKEN, else env QMT_API_TOKEN, else `<data dir>/api_token` (created with mode 0600 on first
    start). A configured token shorter than 16 characters is refused (ValueError)."""
    configured = (settings.get("WEB_API_TOKEN") or os.environ.get("QMT_API_TOKEN", "")).strip()
    if configured:
        if len(configured) < MIN_TOKEN_LENGTH:
            raise ValueError(f"API 令牌太短：至少需要 {MIN_TOKEN_LENGTH} 个字符")
        return configured
    path = Path(data_dir) / TOKEN_FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = _read_token(path)
    if existing:
        return existing
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # created meanwhile (or an empty file): use it if it holds a token
        existing = _read_token(path)
        if existing:
            return existing
        path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    log.info("已生成 API 令牌，保存在 %s（仅本用户可读）", path)
    return token


def _read_token(path: Path) -> str:
    if not path.exists():
        return ""
    if os.name == "posix" and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # someone loosened it: a token readable by others is no secret
    token = path.read_text(encoding="utf-8").strip()
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"{path} 中的 API 令牌太短：至少需要 {MIN_TOKEN_LENGTH} 个字符")
    return token


# ---- security checks ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1024)  # parsing an address costs ~13 µs, and every request checks its Host
def is_loopback_address(address: Optional[str]) -> bool:
    if not address:
        return False
    name = address.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def host_header_allowed(header: Optional[str], binding: Binding) -> bool:
    """The Host must name this server (DNS rebinding defence). A loopback server answers to every loopback
    name; a wildcard bind (0.0.0.0) cannot know its public names, there the token guards every request."""
    if binding.is_wildcard:
        return True
    if not header:
        return False
    name, port = _split_host(header.strip().lower())
    if name is None or port != binding.port:
        return False
    if binding.is_loopback:
        return is_loopback_address(name)
    return name == binding.host.strip("[]").lower()


def _split_host(header: str) -> tuple[Optional[str], Optional[int]]:
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None, None
        name, rest = header[1:end], header[end + 1:]
        if rest and not rest.startswith(":"):
            return None, None
        port_text = rest[1:] if rest else ""
    else:
        name, _, port_text = header.partition(":")
    if port_text == "":
        return name, 80
    if not port_text.isdigit() or len(port_text) > 5:
        return name, None
    return name, int(port_text)


Refusal = tuple[int, str, str]  # (HTTP status, error code, Chinese message)


def host_refusal(host_header: Optional[str], binding: Binding) -> Optional[Refusal]:
    if host_header_allowed(host_header, binding):
        return None
    return 403, "HOST_NOT_ALLOWED", "拒绝访问：请求的主机名（Host）与本服务不符"


def token_refusal(method: str, path: str, given: str, app_state: AppState) -> Optional[Refusal]:
    """Every change needs the token; reads too when the server is reachable from other machines."""
    if method == "OPTIONS":
        return None
    reads_guarded = app_state.reads_need_token or not app_state.binding.is_loopback
    needs_token = method not in SAFE_METHODS or (reads_guarded and path.startswith("/api/"))
    if not needs_token:
        return None
    if not given:
        return 401, "AUTH_REQUIRED", f"缺少 API 令牌：请在请求头 {TOKEN_HEADER} 中提供"
    if not hmac.compare_digest(given.encode("utf-8", "replace"), app_state.ctx.token.encode("utf-8")):
        return 401, "AUTH_INVALID", "API 令牌错误"
    return None


def _check_host() -> Optional[Response]:
    refusal = host_refusal(request.headers.get("Host"), state().binding)
    if refusal is None:
        return None
    log.warning("拒绝 Host 不符的请求：%r 来自 %s", (request.headers.get("Host") or "")[:100], request.remote_addr)
    return error_response(*refusal)


def _check_token() -> Optional[Response]:
    refusal = token_refusal(request.method, request.path, request.headers.get(TOKEN_HEADER, ""), state())
    if refusal is None:
        return None
    if refusal[1] == "AUTH_INVALID":
        log.warning("API 令牌错误：%s %s 来自 %s", request.method, request.path, request.remote_addr)
    return error_response(*refusal)


CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
# (name, value, whether it replaces a route's own value): a route may allow its own framing (daily report)
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff", True), ("X-Frame-Options", "DENY", False),
                    ("Referrer-Policy", "no-referrer", True), ("Content-Security-Policy", CONTENT_SECURITY_POLICY, False))
API_CACHE_CONTROL = "no-store"  # unless the route chose revalidation


def _security_headers(response: Response) -> Response:
    for name, value, replaces in SECURITY_HEADERS:
        if replaces:
            response.headers[name] = value
        else:
            response.headers.setdefault(name, value)
    if request.path == "/" or request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", API_CACHE_CONTROL)
    return response


def _index() -> Response:
    """The UI; the token is written into it only for a browser on this machine."""
    page = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    local = is_loopback_address(request.remote_addr) and not state().reads_need_token
    token = state().ctx.token if local else ""
    page = page.replace(TOKEN_PLACEHOLDER, html.escape(token, quote=True))
    return Response(page, mimetype="text/html")


# ---- errors ---------------------------------------------------------------------------------------

def trading_error_status(exc: TradingError) -> int:
    """404 for a named thing that does not exist, 400 for a refused order or invalid input, else 409."""
    if exc.code in NOT_FOUND_CODES:
        return 404
    if exc.code in CONFLICT_CODES or isinstance(exc, (BrokerUnavailable, DataUnavailable)):
        return 409
    if isinstance(exc, OrderRejected) or exc.code.startswith("INVALID_"):
        return 400
    return 409


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        extra = {"errors": exc.errors} if exc.errors else {}
        return error_response(exc.status, exc.code, exc.message, **extra)

    @app.errorhandler(ConfigError)
    def config_error(exc: ConfigError) -> Response:
        return error_response(getattr(exc, "status", 400), getattr(exc, "code", "CONFIG_INVALID"), str(exc),
                              errors=exc.errors)

    @app.errorhandler(TradingError)
    def trading_error(exc: TradingError) -> Response:
        extra = {"errors": exc.errors} if getattr(exc, "errors", None) else {}
        return error_response(trading_error_status(exc), exc.code, exc.message, **extra)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = HTTP_MESSAGES.get(status, "请求无法处理")
        if status == 405:
            message = f"不支持该请求方法：{request.method} {request.path}"
        elif status == 404:
            message = f"接口或页面不存在：{request.path[:200]}"
        elif status == 413:
            message = f"请求体过大（上限 {MAX_BODY_BYTES // 1024} KB）"
        response = error_response(status, f"HTTP_{status}", message)
        if status == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(sqlite3.Error)
    def storage_error(exc: sqlite3.Error) -> Response:
        log.error("处理请求 %s %s 时数据库出错：%s", request.method, request.path, exc)
        return error_response(503, "STORAGE_ERROR", f"数据库读写失败（{exc}），请查看日志并检查磁盘与数据库"
                                                    "（存储故障时自动交易已停止）")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("处理请求 %s %s 时出错", request.method, request.path)
        return error_response(500, "INTERNAL_ERROR", HTTP_MESSAGES[500])


def ok_body(data: Any) -> bytes:
    """The body `ok(data)` sends, for responses cached as bytes."""
    return _encoded({"status": "success", "data": data})


def _json_response(payload: dict, status: int) -> Response:
    return Response(_encoded(payload), status=status, mimetype="application/json")


def _encoded(payload: dict) -> bytes:
    # backslashreplace: a lone surrogate echoed from a request (e.g. a stock code "\ud800") cannot be UTF-8
    return to_json(payload).encode("utf-8", "backslashreplace")
