"""The web server: the Flask app (security checks, JSON error shapes, the UI's static files) served by waitress
in a thread. The routes live in the blueprints of this package; the shared helpers in `webapi.common`."""
from __future__ import annotations

import html
import logging
import sqlite3
import threading
from typing import Optional

from flask import Flask, Response, request
from flask_cors import CORS
from werkzeug.exceptions import HTTPException

from persistence.config_store import ConfigError
from core.models import TradingError
from gateway.waitress_shutdown import shut_down
from webapi.limits import (REQUEST_THREADS_RESERVED, StreamSlots, guard_connections, install_queue_filter,
                        waitress_options)
from webapi.common import (API_CACHE_CONTROL, HTTP_MESSAGES, MAX_BODY_BYTES, MIN_TOKEN_LENGTH, SECURITY_HEADERS,
                           TOKEN_HEADER, TOKEN_PLACEHOLDER, WEB_DIR, WILDCARD_HOSTS, AppState, Binding, WebContext,
                           error_response, host_refusal, is_loopback_address, state, token_refusal,
                           trading_error_status)
from webapi.requests import ApiError

log = logging.getLogger(__name__)


def create_app(ctx: WebContext, host: Optional[str] = None, port: Optional[int] = None,
               stop: Optional[threading.Event] = None, max_streams: int = 8) -> Flask:
    """The Flask app. `host`/`port` default to WEB_HOST/WEB_PORT and drive the Host check; `stop` ends the
    live streams on shutdown; `max_streams` bounds concurrent SSE clients (each holds a server thread)."""
    import webapi.routes as web_api
    import webapi.backtest as web_api_backtest
    import webapi.docs as web_api_docs
    import webapi.doctor as web_api_doctor
    import webapi.fastpath as web_fastpath
    import webapi.order_files as web_api_order_files
    import webapi.jobs as web_api_jobs
    import webapi.notify as web_api_notify
    import webapi.state_api as web_api_state
    import webapi.stock as web_api_stock
    import webapi.watch as web_api_watch
    import webapi.auth as web_api_auth  # issue 15: the page's own routes
    import webapi.logs as web_api_logs
    import webapi.market as web_api_market
    import webapi.performance as web_api_performance
    import webapi.ex_rights as web_api_ex_rights  # issue 28
    import webapi.chores as web_api_chores  # issue 28 §3

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
    app.register_blueprint(web_api_ex_rights.blueprint)  # issue 28: 除权除息调整记录
    app.register_blueprint(web_api_chores.blueprint)  # issue 28 §3: 申购与逆回购
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
        server, self._server = self._server, None
        self._stopped = True
        self._stop.set()
        shut_down(server, timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        log.info("Web 服务已停止")


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
