"""GET /api/chores (issue 28 §3): today's idle-cash chores of the account — the subscriptions with their orders'
state, the allotments (中签) with the payment due, the reverse repo — and whether they can run here (live only)."""
from __future__ import annotations

from flask import Blueprint, Response

from webapi.common import ok
from webapi.openapi import FLAG, NUMBER, TEXT, document
from webapi.routes import ctx

blueprint = Blueprint("api_chores", __name__, url_prefix="/api")
TAG = "闲置资金"
NOT_WIRED = "本守护进程未启用申购与逆回购任务"

RECORD = {"type": "object", "required": ["kind", "kind_label", "day", "code", "name", "volume", "price", "amount",
                                         "status", "status_label", "reason"], "properties": {
    "kind": {"type": "string", "enum": ["subscribe", "allotment", "repo"]}, "kind_label": TEXT,
    "day": {"type": "string", "description": "申购日或逆回购日 YYYY-MM-DD"}, "code": TEXT, "name": TEXT,
    "volume": {"type": "integer", "description": "股数；新债、逆回购为张"},
    "price": {"type": "number", "description": "发行价；逆回购为年化利率（%）"}, "amount": NUMBER,
    "status": {"type": "string", "enum": ["sent", "refused", "skipped", "found"]}, "status_label": TEXT,
    "reason": TEXT, "client_id": TEXT, "due_day": {"type": "string", "description": "中签缴款截止日（当日 16:00 前）"},
    "order_status": TEXT, "order_status_label": TEXT, "filled_volume": {"type": "integer"}, "recorded_at": TEXT}}
RECORDS = {"type": "array", "items": RECORD}


@blueprint.get("/chores")
@document("闲置资金：今日新股新债申购（含委托状态）、中签与缴款、隔夜国债逆回购；模拟账户只说明不执行", tag=TAG, data={
    "type": "object", "required": ["available", "live", "note"], "properties": {
        "available": FLAG, "live": {"type": "boolean", "description": "实盘账户（只有实盘账户执行申购与逆回购）"},
        "note": {"type": "string", "description": "不执行时的说明（中文）"}, "day": TEXT,
        "ipo_enabled": FLAG, "repo_enabled": FLAG, "ipo_time": TEXT, "repo_time": TEXT,
        "subscriptions": RECORDS, "allotments": RECORDS, "repo": RECORDS,
        "payments_due": {"type": "number", "description": "今日及以后到期的中签应缴款合计（元）"},
        "summary": {"type": "string", "description": "与每日报告相同的一行摘要"}}})
def chores_today() -> Response:
    c = ctx()
    chores = getattr(c, "chores", None)
    if chores is None:
        return ok({"available": False, "live": c.mode == "live", "note": NOT_WIRED})
    return ok({"available": True, **chores.view(c.clock.today())})
