"""The notifier thread (a watchdog `Worker`): takes events off its own bus subscription, commits one outbox
row per interested channel, and delivers due rows one at a time with retries, digests, duplicate suppression,
a per-channel rate limit, and one alarm for a channel that keeps failing. Trading threads only ever touch the
bus (a queue offer); a hanging receiver delays nothing but this thread."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable, Optional

import notify_rules
from events import Event, EventBus, EventKind
from models import TradingError
from notify_channels import Outcome, send, validate_url
from notify_store import Channel, NotifyStore
from workers import STOP_CHECK_SECONDS, Worker

log = logging.getLogger(__name__)

RATE_LIMITED_RECHECK_SECONDS = 1.0
PRUNE_EVERY_SECONDS = 3600.0
SHUTDOWN_DELIVERY_SECONDS = 3.0  # within the daemon's 6 s for stopping its threads

Sender = Callable[[str, str, str, float], Outcome]


class Notifier(Worker):
    """`run_once` = intake every queued event + at most one delivery attempt (so a heartbeat follows each
    send, however slow the receiver); `wait` returns at once while more is due."""

    name = "notifier"

    def __init__(self, store: NotifyStore, bus: EventBus, settings, secret_filter=None,
                 names: Callable[[str], str] = lambda code: "", sender: Sender = send,
                 now: Callable[[], float] = time.time, facts: Callable[[Event], dict] = lambda event: {}):
        self._store = store
        self._bus = bus
        self._settings = settings
        self._secret_filter = secret_filter
        self._names = names
        self._facts = facts  # figures looked up on this thread, never on the publisher's
        self._send = sender
        self._now = now
        self._wake = threading.Event()
        self._subscription = bus.subscribe()
        bus.add_listener(lambda _event: self._wake.set())
        self._turn = 0  # round-robin over channels
        self._prune_at = 0.0
        self._lock = threading.Lock()  # one delivery at a time (thread + a direct call in tests)
        for channel in store.channels():
            self._protect(channel.url)

    # ---- configuration (used by the web API and composition)
    def add_channel(self, name: str, url: str, events: Iterable[str] = (), source: str = "web") -> Channel:
        url = url.strip()
        validate_url(url)
        known = {k.value for k in EventKind}
        unknown = sorted(set(events) - known)
        if unknown:
            raise TradingError("INVALID_EVENT_KIND", f"未知的事件类型：{'、'.join(unknown)}")
        if any(c.url == url for c in self._store.channels()):
            raise TradingError("DUPLICATE_CHANNEL", "该通知地址已存在")
        self._protect(url)
        channel = self._store.add_channel(name.strip() or notify_rules.url_scheme(url), url, events, source)
        log.info("已添加通知渠道 %s（%s）", channel.name, notify_rules.mask_url(url))
        return channel

    def ensure_config_channels(self, urls: Iterable[str]) -> None:
        """Channels listed in NOTIFY_URLS (config): every event; a bad URL is logged, not fatal."""
        for index, url in enumerate(urls, start=1):
            try:
                validate_url(url)
            except TradingError as exc:
                log.warning("配置文件中的第 %d 个通知地址无效：%s", index, exc.message)
                continue
            self._protect(url)
            self._store.ensure_channel(f"配置文件渠道 {index}", url.strip(), "config")

    def send_test(self, channel_id: int) -> int:
        channel = self._store.channel(channel_id)
        if channel is None:
            raise TradingError("CHANNEL_NOT_FOUND", f"通知渠道 {channel_id} 不存在")
        message_id, _ = self._store.enqueue(channel.id, "test", "miniQMT【测试消息】",
                                            f"这是一条测试消息，说明渠道「{channel.name}」可以收到通知。")
        self._wake.set()
        return message_id

    # ---- Worker
    def run_once(self) -> None:
        self.intake()
        self.deliver_one()
        if self._now() >= self._prune_at:  # the outbox is a log: kept as long as the log files
            self._prune_at = self._now() + PRUNE_EVERY_SECONDS
            self._store.prune(self._settings.get("LOG_RETENTION_DAYS") * 86400)

    def wait(self, stop: threading.Event, limit: float) -> None:
        if self._has_due():
            return
        next_due = self._store.next_due_at()
        if next_due is None:
            timeout = limit
        elif next_due > self._now():
            timeout = min(limit, next_due - self._now())
        else:  # due but rate-limited: look again shortly (the window frees one slot at a time)
            timeout = min(limit, RATE_LIMITED_RECHECK_SECONDS)
        deadline = time.monotonic() + timeout
        while not stop.is_set() and not self._wake.is_set():  # look at `stop` too: a prompt shutdown
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wake.wait(min(remaining, STOP_CHECK_SECONDS))
        self._wake.clear()

    def on_stop(self) -> None:
        """Commit what was published during shutdown (the daemon's stop), then deliver for a few seconds at
        most; whatever is left is sent after the next start."""
        self.intake()
        deadline = time.monotonic() + SHUTDOWN_DELIVERY_SECONDS
        while time.monotonic() < deadline and self.deliver_one(timeout=deadline - time.monotonic()):
            pass

    # ---- steps
    def intake(self) -> int:
        """Commit one outbox row per (event, channel that wants it); returns the rows created."""
        events = self._subscription.drain()
        if not events:
            return 0
        channels = self._store.channels()
        dedup_seconds = self._settings.get("NOTIFY_DEDUP_SECONDS")
        created = 0
        for event in events:
            draft = notify_rules.draft(event, self._names(event.stock_code) if event.stock_code else "",
                                       self._lookup(event))
            skip = event.data.get("failed_channel_id")  # the alarm about a channel is not sent through it
            for channel in channels:
                if channel.id != skip and channel.wants(draft.kind):
                    self._store.enqueue(channel.id, draft.kind, draft.title, draft.body, draft.dedup_key,
                                        event.time.isoformat(sep=" ", timespec="seconds"), dedup_seconds)
                    created += 1
        return created

    def deliver_one(self, timeout: Optional[float] = None) -> bool:
        """Pick the next channel with due messages (round-robin), coalesce its backlog when needed, and make one
        delivery attempt within its rate limit. Returns whether an attempt was made."""
        with self._lock:
            channels = self._store.channels()
            for offset in range(len(channels)):
                channel = channels[(self._turn + offset) % len(channels)]
                due = self._store.due(channel.id)
                if not due:
                    continue
                allowance = self._allowance(channel.id)
                if allowance <= 0:
                    continue
                if notify_rules.should_digest(len(due), self._settings.get("NOTIFY_DIGEST_THRESHOLD"), allowance):
                    title, body = notify_rules.digest_text([(m.title, m.body) for m in due])
                    message = self._store.coalesce(channel.id, due, title, body)
                else:
                    message = due[0]
                self._turn = (self._turn + offset + 1) % len(channels)
                self._attempt(channel, message, timeout)
                return True
            return False

    # ---- internals
    def _attempt(self, channel: Channel, message, timeout: Optional[float] = None) -> None:
        limit = self._settings.get("NOTIFY_SEND_TIMEOUT")
        outcome = self._send(channel.url, message.title, message.body, limit if timeout is None else min(limit, timeout))
        if outcome.ok:
            self._store.mark_sent(message.id)
            self._store.record_outcome(channel.id, True)
            return
        attempts = message.attempts + 1
        retry = None
        if attempts < self._settings.get("NOTIFY_MAX_ATTEMPTS"):
            retry = notify_rules.backoff_seconds(attempts, self._settings.get("NOTIFY_RETRY_BASE_SECONDS"),
                                                 self._settings.get("NOTIFY_RETRY_MAX_SECONDS"))
        self._store.mark_failure(message.id, outcome.error, retry)
        log.warning("通知渠道「%s」第 %d 次发送失败：%s", channel.name, attempts, outcome.error)
        failures = self._store.record_outcome(channel.id, False)
        if failures >= self._settings.get("NOTIFY_CHANNEL_ALARM_FAILURES") and not channel.alarm:
            alarm = f"通知渠道「{channel.name}」连续 {failures} 次发送失败：{outcome.error}"
            self._store.set_alarm(channel.id, alarm)
            log.error(alarm)
            self._bus.emit(EventKind.ALARM, alarm, failed_channel_id=channel.id)

    def _lookup(self, event: Event) -> dict:
        try:
            return self._facts(event)
        except Exception:  # a missing figure must not lose the message
            log.exception("查询通知附加信息失败")
            return {}

    def _allowance(self, channel_id: int) -> int:
        window = self._settings.get("NOTIFY_RATE_WINDOW_SECONDS")
        sent = self._store.sent_since(channel_id, self._now() - window)
        return notify_rules.sendable_now(sent, self._settings.get("NOTIFY_RATE_LIMIT"))

    def _has_due(self) -> bool:
        next_due = self._store.next_due_at()
        if next_due is None or next_due > self._now():
            return False
        return any(self._store.due(c.id) and self._allowance(c.id) > 0 for c in self._store.channels())

    def _protect(self, url: str) -> None:
        if self._secret_filter is not None:
            for secret in notify_rules.url_secrets(url):
                self._secret_filter.add(secret)

    # ---- reading (web API)
    def channels_view(self) -> list[dict]:
        return [{"id": c.id, "name": c.name, "url": notify_rules.mask_url(c.url), "scheme": notify_rules.url_scheme(c.url),
                 "events": sorted(c.events), "enabled": c.enabled, "source": c.source,
                 "consecutive_failures": c.consecutive_failures, "alarm": c.alarm,
                 "counts": self._store.status_counts(c.id)} for c in self._store.channels()]

    def delete_channel(self, channel_id: int) -> None:
        if not self._store.delete_channel(channel_id):
            raise TradingError("CHANNEL_NOT_FOUND", f"通知渠道 {channel_id} 不存在")

    def messages(self, limit: int = 200, channel_id: Optional[int] = None) -> list[dict]:
        return self._store.messages(limit, channel_id)
