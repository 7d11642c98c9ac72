"""GET /api/data/intraday/<code>: today's 分时 line from the quotes seen (webapi.intraday.IntradayBuffer), with
the previous close and the price limits the chart draws."""
from __future__ import annotations

from flask import Blueprint, Response

import webapi.requests as req
from webapi.openapi import OBJ, document
from webapi.requests import ApiError
from webapi.common import ok, state

blueprint = Blueprint("api_market", __name__, url_prefix="/api")


@blueprint.get("/data/intraday/<code>")
@document("今日分时：每分钟最后价格、均价、昨收与涨跌停价（没有行情时 404）", data=OBJ, tag="行情")
def intraday(code: str) -> Response:
    code = req.parse_code(code)
    buffer = state().ctx.intraday
    series = buffer.series(code) if buffer is not None else None
    if series is None:
        raise ApiError(404, "NO_INTRADAY", f"{code} 今日还没有收到行情，暂无分时数据")
    return ok({"stock_code": code, **series})
