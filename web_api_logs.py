"""GET /api/logs (the newest log lines, filtered by level and text) and GET /api/logs/stream (server-sent
events: every new line as it is logged). The lines come from `web_log_tail.LogTail`, already masked."""
from __future__ import annotations

from flask import Blueprint, Response, request

import web_requests as req
from web_log_tail import LEVELS
from web_requests import ApiError
from web_api import sse_response
from web_server import ok, state
from web_stream import PositionStream

blueprint = Blueprint("api_logs", __name__, url_prefix="/api")

MAX_LINES = 2000


def _tail():
    tail = state().ctx.log_tail
    if tail is None:
        raise ApiError(404, "LOGS_UNAVAILABLE", "本进程没有启用网页日志")
    return tail


def _after(text) -> int:
    if text in (None, ""):
        return 0
    if not str(text).isdigit():
        raise req.bad_request("after 必须是非负整数", "INVALID_FIELD")
    return int(text)


@blueprint.get("/logs")
def logs() -> Response:
    unknown = sorted(set(request.args) - {"level", "q", "limit", "after"})
    if unknown:
        raise req.bad_request(f"未知查询参数：{', '.join(unknown)}", "UNKNOWN_FIELD")
    level = request.args.get("level") or None
    if level is not None and level not in LEVELS:
        raise req.bad_request(f"level 只能取 {' / '.join(LEVELS)}", "INVALID_FIELD")
    limit = req.parse_limit(request.args.get("limit"), 500, maximum=MAX_LINES)
    tail = _tail()
    lines = tail.entries(_after(request.args.get("after")), level, request.args.get("q", "")[:200], limit)
    return ok({"lines": lines, "version": tail.version})


@blueprint.get("/logs/stream")
def logs_stream() -> Response:
    """New lines after `after` (the version the page's first read returned), in batches."""
    tail = _tail()
    last = [min(_after(request.args.get("after")), tail.version)]  # a page from before a restart starts anew

    def batch() -> tuple[int, dict]:
        lines = tail.entries(after=last[0], limit=MAX_LINES)
        last[0] = lines[-1]["seq"] if lines else last[0]
        return last[0], {"lines": lines, "version": last[0]}

    def make(app_state, disconnected) -> PositionStream:
        c = app_state.ctx
        return PositionStream(tail, batch, lambda: {"time": c.clock.now(), "version": tail.version},
                              lambda: c.settings.get("SSE_HEARTBEAT_SECONDS"), app_state.stop, disconnected,
                              min_gap_seconds=0.2, event="logs")
    return sse_response(make)
