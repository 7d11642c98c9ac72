"""Routes of the notifications (issue 16): channels (URLs are secrets: only a masked form ever leaves), a test
message per channel, and the outbox with each message's status, attempts and last error."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

import web_requests as req
from events import EventKind
from web_api import body, ctx
from web_requests import ApiError, bad_request
from web_server import ok

blueprint = Blueprint("api_notify", __name__, url_prefix="/api/notify")

MAX_NAME = 40


def _notifier() -> Any:
    notifier = ctx().notifier
    if notifier is None:
        raise ApiError(404, "NOTIFY_UNAVAILABLE", "通知模块未启用")
    return notifier


def parse_channel(parsed: dict) -> tuple[str, str, list[str]]:
    """{"name", "url", "events": [...]} → (name, url, events); events omitted or [] = every event."""
    req.ensure_only(parsed, {"name", "url", "events"})
    url = parsed.get("url")
    if not isinstance(url, str) or not url.strip():
        raise bad_request("缺少通知地址（url），如 json://127.0.0.1:8080/hook 或 mailto://…", "MISSING_FIELD")
    name = parsed.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise bad_request(f"渠道名称必须是不超过 {MAX_NAME} 个字符的文本")
    events = parsed.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise bad_request("events 必须是事件类型列表，如 [\"fill\", \"stop_loss_executed\"]")
    return name, url, events


@blueprint.get("/channels")
def channels() -> Response:
    return ok({"channels": _notifier().channels_view(),
               "event_kinds": [{"value": k.value, "label": k.label} for k in EventKind]})


@blueprint.post("/channels")
def add_channel() -> Response:
    name, url, events = parse_channel(body())
    channel = _notifier().add_channel(name, url, events)
    view = next(c for c in _notifier().channels_view() if c["id"] == channel.id)
    return ok({"channel": view, "message": f"已添加通知渠道「{channel.name}」"}, 201)


@blueprint.delete("/channels/<int:channel_id>")
def delete_channel(channel_id: int) -> Response:
    _notifier().delete_channel(channel_id)
    return ok({"message": f"已删除通知渠道 {channel_id}"})


@blueprint.post("/test")
def test_message() -> Response:
    parsed = body()
    req.ensure_only(parsed, {"channel_id"})
    channel_id = parsed.get("channel_id")
    if isinstance(channel_id, bool) or not isinstance(channel_id, int):
        raise bad_request("channel_id 必须是整数", "MISSING_FIELD")
    message_id = _notifier().send_test(channel_id)
    return ok({"message_id": message_id, "message": "测试消息已排队发送，结果见消息列表"}, 202)


@blueprint.get("/messages")
def messages() -> Response:
    limit = req.parse_limit(request.args.get("limit"), 200)
    channel = request.args.get("channel_id")
    if channel is not None and not channel.isdigit():
        raise bad_request("channel_id 必须是整数")
    return ok({"messages": _notifier().messages(limit, int(channel) if channel else None)})
