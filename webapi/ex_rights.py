"""GET /api/ex_rights (issue 28 §2): the ex-rights events the daemon applied to its own price levels (stock,
ex-date, factor, old → new levels) or still has pending; empty when no source of events is configured."""
from __future__ import annotations

from flask import Blueprint, Response

from webapi.common import ok
from webapi.openapi import TEXT, document
from webapi.routes import ctx

blueprint = Blueprint("api_ex_rights", __name__, url_prefix="/api")
TAG = "除权除息"

EVENT_VIEW = {"type": "object", "required": ["key", "stock_code", "ex_date", "description", "factor", "status",
                                             "status_label", "message", "detail"], "properties": {
    "key": TEXT, "stock_code": TEXT, "ex_date": {"type": "string", "format": "date"},
    "description": {"type": "string", "description": "分配方案，如「每10股派10元送转10股」"},
    "factor": {"type": "number", "description": "除权因子 = 除权参考价 ÷ 前收盘价"},
    "status": {"type": "string", "enum": ["pending", "applied"]}, "status_label": TEXT,
    "message": {"type": "string", "description": "调整说明（股票、因子、各价位 旧 → 新）"},
    "detail": {"type": "object", "description": "各价位 [旧, 新]：持仓、模拟账户、网格、盯盘任务"},
    "recorded_at": {"type": ["string", "null"]}, "applied_at": {"type": ["string", "null"]}}}


@blueprint.get("/ex_rights")
@document("除权除息调整记录：除权日开盘前按因子调整的最高价、成本、补仓基准、网格与盯盘价位", tag=TAG, data={
    "type": "object", "required": ["available", "events"], "properties": {
        "available": {"type": "boolean", "description": "是否配置了除权除息数据来源（事件文件或 miniQMT 行情）"},
        "events": {"type": "array", "items": EVENT_VIEW}}})
def ex_rights_events() -> Response:
    keeper = getattr(ctx(), "ex_rights", None)
    return ok({"available": keeper is not None, "events": keeper.journal() if keeper is not None else []})
