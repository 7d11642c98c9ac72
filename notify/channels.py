"""Delivery to one channel through apprise (email, DingTalk, WeCom, Feishu, Bark, ServerChan, JSON webhook…):
URL validation and one bounded send. Apprise's own log lines carry URLs, so its logger goes through the same
secret filter as ours (the notifier registers every channel URL with it)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import apprise

from core.models import TradingError

log = logging.getLogger(__name__)

SUPPORTED_HINT = "mailto://、json://、dingtalk://、wecombot://、feishu://、bark://、schan:// 等 apprise 地址"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str = ""


def validate_url(url: str) -> None:
    """Raises TradingError INVALID_CHANNEL_URL unless apprise understands `url`."""
    if not isinstance(url, str) or "://" not in url or apprise.Apprise.instantiate(url.strip()) is None:
        raise TradingError("INVALID_CHANNEL_URL", f"无法识别的通知地址，请使用 {SUPPORTED_HINT}")


def send(url: str, title: str, body: str, timeout: float) -> Outcome:
    """One attempt, bounded by `timeout` seconds for the whole call. Never raises."""
    sender = apprise.Apprise()
    if not sender.add(url):
        return Outcome(False, "通知地址无效")
    errors: list[str] = []

    def collect(entry, _service=None) -> None:
        message = getattr(entry, "message", "")
        if getattr(entry, "level", "") in ("WARNING", "ERROR") and message:
            errors.append(str(message))

    try:
        # body_format TEXT: plain text with line breaks (an email's HTML part gets them as <br>, not one line)
        result = sender.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT, timeout=timeout,
                               log_callback=collect, log_level=logging.WARNING)
    except Exception as exc:  # a plugin bug must not end the notifier thread
        log.warning("通知发送异常：%s", exc)
        return Outcome(False, f"发送异常：{type(exc).__name__}")
    if result:
        return Outcome(True)
    status = getattr(result, "status", None)
    reason = errors[-1] if errors else f"发送失败（{getattr(status, 'name', status)}）"
    if str(getattr(status, "name", "")).upper() == "TIMEOUT":
        reason = f"发送超时（{timeout:g} 秒）"
    return Outcome(False, reason[:300])
