"""The supervisor's web app on the one browser address: the same page (with an account switcher and the
「账户总览」 view), its own API (`/api/accounts…`), and `/api/accounts/<id>/<rest>` forwarded to that child's
`/api/<rest>` over loopback with the child's token (server-sent events forwarded as a stream). Security is the
single daemon's: Host check, token on every change, loopback by default."""
from __future__ import annotations

import html
import http.client
import logging
import threading
from dataclasses import dataclass, field
from typing import Iterator

from flask import Flask, Response, request

import webapi.requests as req
from accounts.child import ChildState
from accounts.supervisor import STATE_ACTIONS, Supervisor
from webapi.requests import ApiError
from webapi.common import (MAX_BODY_BYTES, TOKEN_HEADER, TOKEN_PLACEHOLDER, WEB_DIR, Binding, error_response,
                           is_loopback_address, ok)
from webapi.server import secure_app

log = logging.getLogger(__name__)

FORWARD_SECONDS = 30.0  # an ordinary forwarded call; streams have no overall limit
STREAM_CHUNK = 4096
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "If-None-Match", "Last-Event-ID")
# A child's own security headers pass through (e.g. the daily report may be framed by our page only).
FORWARDED_RESPONSE_HEADERS = ("Content-Type", "Cache-Control", "ETag", "Content-Disposition", "X-Accel-Buffering",
                              "Content-Security-Policy", "X-Frame-Options")
SUPERVISOR_META = '<meta name="qmt-supervisor" content="{ids}">'
ACCOUNTS_SCRIPT = '<script src="/static/accounts.js"></script>'
ACCOUNT_ACTIONS = ("start", "stop", "restart")


@dataclass
class _Token:
    token: str


@dataclass
class SupervisorAppState:
    """What the shared security checks of webapi.server read (`binding`, `ctx.token`, `reads_need_token`)."""

    ctx: _Token
    binding: Binding
    supervisor: Supervisor
    stop: threading.Event = field(default_factory=threading.Event)
    reads_need_token: bool = False


def create_supervisor_app(supervisor: Supervisor, token: str, host: str, port: int,
                          cors_origins: list[str]) -> Flask:
    app = Flask(__name__, static_folder=str(WEB_DIR), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["JSON_AS_ASCII"] = False
    app.extensions["qmt"] = SupervisorAppState(_Token(token), Binding(host, port), supervisor)
    secure_app(app, cors_origins)
    app.add_url_rule("/", "index", _index)
    app.add_url_rule("/api/health", "health", _health)
    app.add_url_rule("/api/accounts", "accounts", _accounts)
    app.add_url_rule("/api/accounts/equity", "equity", _equity)
    app.add_url_rule("/api/accounts/<account_id>/<any(start, stop, restart):action>", "account_action",
                     _account_action, methods=["POST"])
    app.add_url_rule("/api/accounts/<account_id>/<any(pause, resume, emergency_stop):action>", "trading_action",
                     _trading_action, methods=["POST"])
    app.add_url_rule("/api/accounts/<account_id>/<path:rest>", "forward", _forward,
                     methods=["GET", "POST", "PUT", "DELETE"])
    return app


def _app_state() -> SupervisorAppState:
    from flask import current_app

    return current_app.extensions["qmt"]


def _supervisor() -> Supervisor:
    return _app_state().supervisor


def _child(account_id: str):
    try:
        return _supervisor().child(account_id)
    except KeyError:
        raise ApiError(404, "ACCOUNT_NOT_FOUND", f"账户 {account_id[:40]} 不存在或未启用") from None


def _index() -> Response:
    """The single daemon's page, told it runs under the supervisor (switcher and overview are added)."""
    page = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    token = _app_state().ctx.token if is_loopback_address(request.remote_addr) else ""
    page = page.replace(TOKEN_PLACEHOLDER, html.escape(token, quote=True))
    ids = html.escape(",".join(_supervisor().children), quote=True)
    page = page.replace("</head>", SUPERVISOR_META.format(ids=ids) + "\n</head>", 1)
    page = page.replace("</body>", ACCOUNTS_SCRIPT + "\n</body>", 1)
    return Response(page, mimetype="text/html")


def _health() -> Response:
    children = _supervisor().children.values()
    return ok({"supervisor": True, "accounts": {c.spec.id: c.state for c in children},
               "all_running": all(c.state == ChildState.RUNNING for c in children)})


def _accounts() -> Response:
    return ok(_supervisor().overview())


def _equity() -> Response:
    return ok(_supervisor().equity())


def _account_action(account_id: str, action: str) -> Response:
    _empty_body()
    _child(account_id)
    supervisor = _supervisor()
    if action == "stop":
        code = supervisor.stop(account_id)
        return ok({"id": account_id, "exit_code": code, "message": f"账户 {account_id} 已停止（退出码 {code}）"})
    getattr(supervisor, action)(account_id)
    verb = "启动" if action == "start" else "重启"
    return ok({"id": account_id, "message": f"账户 {account_id} 已{verb}"})


def _trading_action(account_id: str, action: str) -> Response:
    """One account or "all". Resume carries the explicit confirmation a child needs ({"confirm": true})."""
    body = _json_body()
    if action == "resume":
        reason = req.parse_resume(body)  # the child's own rule, checked here before any child is asked
    else:
        req.ensure_only(body, {"reason"})
        reason = req.parse_reason(body, "") if "reason" in body else ""
    if account_id != "all":
        _child(account_id)
    results = _supervisor().trading_action(account_id, STATE_ACTIONS[action], reason)
    failed = {k: v for k, v in results.items() if not v["ok"]}
    label = {"pause": "暂停自动交易", "resume": "恢复交易", "emergency_stop": "紧急停止"}[action]
    failures = "；".join(f"{k}：{v['message']}" for k, v in failed.items())
    message = f"{label}：成功 {len(results) - len(failed)} 个账户" + (f"，失败 {len(failed)} 个（{failures}）" if failed else "")
    if failed and len(failed) == len(results):
        return error_response(502, "ACCOUNT_ACTION_FAILED", message, results=results)
    return ok({"results": results, "message": message})


def _json_body() -> dict:
    raw = request.get_data(cache=True)
    if not raw:
        return {}
    return req.parse_json_body(raw, request.headers.get("Content-Type", ""))


def _empty_body() -> None:
    if request.get_data(cache=True):
        req.ensure_only(_json_body(), set())


# ---- forwarding ---------------------------------------------------------------------------------------

def _forward(account_id: str, rest: str) -> Response:
    """`/api/accounts/<id>/<rest>` → the child's `/api/<rest>`, with the child's token instead of ours."""
    child = _child(account_id)
    if child.state != ChildState.RUNNING:
        raise ApiError(503, "ACCOUNT_NOT_RUNNING", f"账户 {account_id} 当前未运行（{child.state}），请先启动")
    path = "/api/" + rest + (("?" + request.query_string.decode("latin-1")) if request.query_string else "")
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    headers[TOKEN_HEADER] = child.token
    headers["Host"] = f"127.0.0.1:{child.port}"
    streaming = "text/event-stream" in request.headers.get("Accept", "")
    conn = http.client.HTTPConnection("127.0.0.1", child.port, timeout=None if streaming else FORWARD_SECONDS)
    try:
        conn.request(request.method, path, body=request.get_data(cache=True) or None, headers=headers)
        upstream = conn.getresponse()
    except OSError as exc:
        conn.close()
        raise ApiError(502, "ACCOUNT_UNREACHABLE", f"账户 {account_id} 无法访问（{exc}），可能正在重启") from None
    kept = {name: upstream.getheader(name) for name in FORWARDED_RESPONSE_HEADERS if upstream.getheader(name)}
    if (upstream.getheader("Content-Type") or "").startswith("text/event-stream"):
        return Response(_stream(conn, upstream), status=upstream.status, headers=kept)
    try:
        payload = upstream.read()
    finally:
        conn.close()
    return Response(payload, status=upstream.status, headers=kept)


def _stream(conn: http.client.HTTPConnection, upstream: http.client.HTTPResponse) -> Iterator[bytes]:
    """Relay the child's event stream as it comes; closing either side closes the other."""
    try:
        while True:
            chunk = upstream.read1(STREAM_CHUNK)
            if not chunk:
                return
            yield chunk
    except OSError:
        return
    finally:
        conn.close()
