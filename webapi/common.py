"""The web API's shared helpers: the app state (WebContext, Binding, AppState, `state()`), the JSON answers
(`ok`, `error_response`, `ok_body`, `_json_response`), WEB_DIR, the API token file and the Host/token checks.
The blueprints and the server import these; this module imports no blueprint."""
from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import os
import random
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from flask import Response, current_app, request

from config import MIN_API_TOKEN_LENGTH
from core.models import BrokerUnavailable, DataUnavailable, OrderRejected, TradingError
from webapi.limits import StreamSlots
from webapi.views import to_json

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
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
    clock: Any  # market.clock.Clock
    mode: str  # 'simulation' | 'live'
    token: str
    trigger_prices: Callable[[Any], Any]  # Position -> strategy.TriggerPrices with the current parameters
    grid: Any = None  # grid manager; None until grid trading exists (the grid routes then answer 404)
    broker: Any = None  # core.models.Broker, for its connection state (else the executor's account query tells)
    order_files: Any = None  # orderfiles.intake.OrderFileIntake (issue 19); None: the routes answer 404
    diagnostics: Optional[Callable[[], list]] = None  # the doctor's checks as this daemon sees them (issue 19)
    trading_state: Any = None  # core.trading_state.TradingState
    events: Any = None  # core.events.EventBus
    watch: Any = None  # watch.store.WatchStore (issue 17); None: the watch routes answer 404
    stock_params: Any = None  # core.stock_params.StockParams (issue 17)
    position_reviews: Any = None  # core.position_review.PositionReviews (issue 17)
    notifier: Any = None  # notify.worker.Notifier (issue 16; the notify routes answer 404 without it)
    jobs: Any = None  # jobs.runner.JobRunner
    reports_dir: Any = None  # Path of the daily reports
    snapshots: Any = None  # jobs.account_snapshots.AccountSnapshots: the daily closes of the 收益 page
    intraday: Any = None  # webapi.intraday.IntradayBuffer: today's 分时 line per stock
    log_tail: Any = None  # webapi.log_tail.LogTail: the 日志 page's lines
    data_dir: Any = None  # the daemon's data dir (Path), where `backtest.py compare` leaves its result (issue 20)
    protection: Optional[Callable[[], dict]] = None  # issue 25: the protection sentinel's report for /api/health
    ex_rights: Any = None  # issue 28: jobs.ex_rights.ExRightsKeeper (GET /api/ex_rights); None: no source of events
    chores: Any = None  # issue 28 §3: chores.jobs.ChoreJobs (GET /api/chores); None: not wired


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
    positions: Any  # webapi.stream.VersionedCache of the positions table
    stream: Any  # webapi.stream.VersionedCache of the stream snapshot (table + account + clock)
    random: random.Random = field(default_factory=random.SystemRandom)  # picks the random buys from the pool
    reads_need_token: bool = False  # WEB_REQUIRE_TOKEN_FOR_READS: a child reachable only through its supervisor


def state() -> AppState:
    return current_app.extensions["qmt"]


def ok(data: Any = None, status: int = 200) -> Response:
    return _json_response({"status": "success", "data": data}, status)


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    return _json_response({"status": "error", "message": message, "code": code, **extra}, status)


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


CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
# (name, value, whether it replaces a route's own value): a route may allow its own framing (daily report)
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff", True), ("X-Frame-Options", "DENY", False),
                    ("Referrer-Policy", "no-referrer", True), ("Content-Security-Policy", CONTENT_SECURITY_POLICY, False))
API_CACHE_CONTROL = "no-store"  # unless the route chose revalidation

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


def ok_body(data: Any) -> bytes:
    """The body `ok(data)` sends, for responses cached as bytes."""
    return _encoded({"status": "success", "data": data})


def _json_response(payload: dict, status: int) -> Response:
    return Response(_encoded(payload), status=status, mimetype="application/json")


def _encoded(payload: dict) -> bytes:
    # backslashreplace: a lone surrogate echoed from a request (e.g. a stock code "\ud800") cannot be UTF-8
    return to_json(payload).encode("utf-8", "backslashreplace")
