"""Routes of the notifications (issue 16): channels (URLs are secrets: only a masked form ever leaves), a test
message per channel, and the outbox with each message's status, attempts and last error. Bodies, path and query
parameters are declared once below: the routes validate with the declarations and the OpenAPI document
(webapi.openapi) describes them."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

import webapi.requests as req
from core.events import EventKind
from notify.store import STATUS_LABELS
from webapi.routes import _allow_query, body, ctx
from webapi.openapi import FLAG, TEXT, document
from webapi.requests import ApiError
from webapi.common import ok

blueprint = Blueprint("api_notify", __name__, url_prefix="/api/notify")

MAX_NAME = 40
MAX_URL = 2000
TAG = "通知"

F_CHANNEL_ID = req.Field("channel_id", "integer", "通知渠道编号", low=1, high=req.MAX_ID)
CHANNEL = req.Shape("NotifyChannelRequest", "添加通知渠道：apprise 地址（如 json://127.0.0.1:8080/hook、mailto://…）；"
                    "events 省略或为 [] 时接收全部事件", (
    req.Field("name", "string", f"渠道名称（最多 {MAX_NAME} 字；省略则用地址类型）", max_length=MAX_NAME),
    req.Field("url", "string", "通知地址（apprise 格式）", min_length=1, max_length=MAX_URL),
    req.Field("events", "array", "接收的事件类型（省略或 [] 为全部）", items="string",
              item_enum=tuple(k.value for k in EventKind))), (req.Variant(("url",), ("name", "events")),))
TEST = req.Shape("NotifyTestRequest", "向一个渠道发送测试消息", (F_CHANNEL_ID,), (req.Variant(("channel_id",)),))
Q_CHANNEL_ID = req.Field("channel_id", "integer", "只看该渠道的消息（渠道编号）", low=1, high=req.MAX_ID)
Q_LIMIT = req.Field("limit", "integer", "最多返回条数（默认 200）", low=1, high=req.MAX_LIST_LIMIT)
MESSAGES_QUERY = (Q_LIMIT, Q_CHANNEL_ID)

COUNT = {"type": "integer", "minimum": 0}
CHANNEL_VIEW = {"type": "object", "required": ["id", "name", "url", "scheme", "events", "enabled", "source",
                                               "consecutive_failures", "alarm", "counts"], "properties": {
    "id": {"type": "integer"}, "name": TEXT, "url": {"type": "string", "description": "遮盖了密钥的地址"},
    "scheme": TEXT, "events": {"type": "array", "items": TEXT, "description": "接收的事件类型（[] 为全部）"},
    "enabled": FLAG, "source": {"type": "string", "description": "web（网页添加）或 config（配置文件）"},
    "consecutive_failures": COUNT, "alarm": {"type": ["string", "null"], "description": "连续失败告警"},
    "counts": {"type": "object", "additionalProperties": COUNT, "description": "各状态的消息条数"}}}
OPTIONAL_TEXT = {"type": ["string", "null"]}
MESSAGE_VIEW = {"type": "object", "required": ["id", "channel_id", "kind", "title", "body", "status", "status_label",
                                               "attempts"], "properties": {
    "id": {"type": "integer"}, "channel_id": {"type": "integer"}, "channel_name": TEXT, "kind": TEXT,
    "title": TEXT, "body": TEXT, "event_time": OPTIONAL_TEXT, "created_at": TEXT,
    "status": {"type": "string", "enum": sorted(STATUS_LABELS)}, "status_label": TEXT, "attempts": COUNT,
    "last_error": OPTIONAL_TEXT, "sent_at": OPTIONAL_TEXT, "digest_id": {"type": ["integer", "null"]},
    "item_count": {"type": "integer", "description": "汇总消息包含的条数"}}}
DONE = {"type": "object", "required": ["message"], "properties": {"message": TEXT}}


def _notifier() -> Any:
    notifier = ctx().notifier
    if notifier is None:
        raise ApiError(404, "NOTIFY_UNAVAILABLE", "通知模块未启用")
    return notifier


def parse_channel(parsed: dict) -> tuple[str, str, list[str]]:
    """{"name", "url", "events": [...]} → (name, url, events); events omitted or [] = every event."""
    values = CHANNEL.read(parsed)
    return values.get("name", ""), values["url"], values.get("events", [])


def _channel_id(raw: int) -> int:
    """The URL converter takes any digits; SQLite integers do not: beyond the declared bounds nothing exists."""
    if not F_CHANNEL_ID.low <= raw <= F_CHANNEL_ID.high:
        raise ApiError(404, "CHANNEL_NOT_FOUND", f"通知渠道 {str(raw)[:20]} 不存在")
    return raw


@blueprint.get("/channels")
@document("通知渠道（地址已遮盖密钥）与可订阅的事件类型", tag=TAG, data={
    "type": "object", "required": ["channels", "event_kinds"], "properties": {
        "channels": {"type": "array", "items": CHANNEL_VIEW},
        "event_kinds": {"type": "array", "items": {"type": "object", "required": ["value", "label"],
                                                   "properties": {"value": TEXT, "label": TEXT}}}}})
def channels() -> Response:
    return ok({"channels": _notifier().channels_view(),
               "event_kinds": [{"value": k.value, "label": k.label} for k in EventKind]})


@blueprint.post("/channels")
@document("添加通知渠道（地址由 apprise 校验，重复地址被拒绝）", body=CHANNEL, success=201, tag=TAG, data={
    "type": "object", "required": ["channel", "message"], "properties": {"channel": CHANNEL_VIEW, "message": TEXT}})
def add_channel() -> Response:
    name, url, events = parse_channel(body())
    channel = _notifier().add_channel(name, url, events)
    view = next(c for c in _notifier().channels_view() if c["id"] == channel.id)
    return ok({"channel": view, "message": f"已添加通知渠道「{channel.name}」"}, 201)


@blueprint.delete("/channels/<int:channel_id>")
@document("删除通知渠道", path=(F_CHANNEL_ID,), data=DONE, tag=TAG)
def delete_channel(channel_id: int) -> Response:
    _notifier().delete_channel(_channel_id(channel_id))
    return ok({"message": f"已删除通知渠道 {channel_id}"})


@blueprint.post("/test")
@document("向一个渠道发送测试消息（排队发送，结果见消息列表）", body=TEST, success=202, tag=TAG, data={
    "type": "object", "required": ["message_id", "message"],
    "properties": {"message_id": {"type": "integer"}, "message": TEXT}})
def test_message() -> Response:
    message_id = _notifier().send_test(TEST.read(body())["channel_id"])
    return ok({"message_id": message_id, "message": "测试消息已排队发送，结果见消息列表"}, 202)


@blueprint.get("/messages")
@document("通知消息（最新在前）：状态、尝试次数、最后的错误", query=MESSAGES_QUERY, tag=TAG, data={
    "type": "object", "required": ["messages"], "properties": {"messages": {"type": "array", "items": MESSAGE_VIEW}}})
def messages() -> Response:
    _allow_query(*MESSAGES_QUERY)
    limit = Q_LIMIT.from_query(request.args.get("limit")) or 200
    return ok({"messages": _notifier().messages(limit, Q_CHANNEL_ID.from_query(request.args.get("channel_id")))})
