"""GET /api/logs (the newest log lines, filtered by level and text) and GET /api/logs/stream (server-sent
events: every new line as it is logged). The lines come from `webapi.log_tail.LogTail`, already masked."""
from __future__ import annotations

from flask import Blueprint, Response, request

import webapi.requests as req
from webapi.log_tail import LEVELS
from webapi.requests import ApiError
from webapi.routes import sse_response
from webapi.openapi import OBJ, document
from webapi.common import ok, state
from webapi.stream import PositionStream

blueprint = Blueprint("api_logs", __name__, url_prefix="/api")

MAX_LINES = 2000
Q_LEVEL = req.Field("level", "string", "最低日志级别", enum=LEVELS)
Q_TEXT = req.Field("q", "string", "包含的文字（不区分大小写）", max_length=200)
Q_AFTER = req.Field("after", "integer", "只要序号大于该值的日志行", low=0, high=req.MAX_ID)
LOGS_QUERY = (Q_LEVEL, Q_TEXT, req.Field("limit", "integer", "最多返回行数", low=1, high=MAX_LINES), Q_AFTER)


def _tail():
    tail = state().ctx.log_tail
    if tail is None:
        raise ApiError(404, "LOGS_UNAVAILABLE", "本进程没有启用网页日志")
    return tail


def _after(text) -> int:
    return Q_AFTER.from_query(text) or 0


@blueprint.get("/logs")
@document("最近的日志行（按级别、文字筛选；敏感信息已替换为 ******）", query=LOGS_QUERY, data=OBJ, tag="日志")
def logs() -> Response:
    unknown = sorted(set(request.args) - {f.name for f in LOGS_QUERY})
    if unknown:
        raise req.bad_request(f"未知查询参数：{', '.join(unknown)}", "UNKNOWN_FIELD")
    level = request.args.get("level") or None
    if level is not None and level not in LEVELS:
        raise req.bad_request(f"level 只能取 {' / '.join(LEVELS)}", "INVALID_FIELD")
    limit = req.parse_limit(request.args.get("limit"), 500, maximum=MAX_LINES)
    text = request.args.get("q", "")
    if len(text) > Q_TEXT.max_length:
        raise req.bad_request(f"q 最多 {Q_TEXT.max_length} 个字符", "INVALID_FIELD")
    tail = _tail()
    lines = tail.entries(_after(request.args.get("after")), level, text, limit)
    return ok({"lines": lines, "version": tail.version})


@blueprint.get("/logs/stream")
@document("新日志行实时推送（server-sent events）", query=(Q_AFTER,), tag="日志", content=("text/event-stream",),
          raw=True, errors=(429,))
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
