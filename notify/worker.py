"""The notifier thread (a watchdog `Worker`): takes events off its own bus subscription, commits one outbox
row per interested channel, and delivers due rows one at a time with retries, duplicate suppression and one
alarm for a channel that keeps failing. Alarm-class messages go first, each on its own, within their own rate
budget; routine messages (fills…) wait for their burst to end and go as one digest, in arrival order, within the
channel's rate limit (the rules are `notify.rules.plan_alarms` / `plan_routine`). Trading threads only ever
touch the bus (a queue offer); a hanging receiver delays nothing but this thread."""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Callable, Iterable, Optional

import notify.rules as notify_rules
from core.events import Event, EventBus, EventKind
from core.models import TradingError
from notify.channels import Outcome, send, validate_url
from notify.rules import ALARM, ROUTINE
from notify.store import Channel, Message, NewMessage, NotifyStore
from daemon.workers import STOP_CHECK_SECONDS, Worker

log = logging.getLogger(__name__)

RATE_LIMITED_RECHECK_SECONDS = 1.0
PRUNE_EVERY_SECONDS = 3600.0
SHUTDOWN_DELIVERY_SECONDS = 3.0  # within the daemon's 6 s for stopping its threads
STOP_LOSS_MEMORY = 1000  # stop-loss fills remembered to recognise their STOP_LOSS_EXECUTED companion

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
        self._stop_loss_fills: Counter = Counter()  # signatures of stop-loss fills already drafted
        self._flushing = False  # at shutdown: no coalescing wait
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
                                            f"这是一条测试消息，说明渠道「{channel.name}」可以收到通知。",
                                            priority=ALARM)  # the owner is waiting for it: no burst window
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
        ready = self._next_ready()
        now = self._now()
        if ready is not None and ready <= now:
            return
        timeout = limit if ready is None else min(limit, ready - now)
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
        self._flushing = True  # the last fills go now (after the alarms), not after the next start
        try:
            deadline = time.monotonic() + SHUTDOWN_DELIVERY_SECONDS
            while time.monotonic() < deadline and self.deliver_one(timeout=deadline - time.monotonic()):
                pass
        finally:
            self._flushing = False

    # ---- steps
    def intake(self) -> int:
        """Commit one outbox row per (event, channel that wants it): the alarms first, in a transaction of their
        own (a burst's fills, each with its looked-up figures, cannot delay them), then the rest in one
        transaction; returns the rows created."""
        events = self._subscription.drain()
        if not events:
            return 0
        channels = self._store.channels()
        alarms = [e for e in events if notify_rules.is_alarm(e.kind.value)]
        routine = [e for e in events if not notify_rules.is_alarm(e.kind.value)]
        created = self._commit(self._rows(alarms, channels))
        if created:
            self._wake.set()
        return created + self._commit(self._rows(routine, channels))

    def _rows(self, events: list[Event], channels: list[Channel]) -> list[NewMessage]:
        rows = []
        for event in events:
            if self._is_stop_loss_companion(event):
                continue
            draft = notify_rules.draft(event, self._names(event.stock_code) if event.stock_code else "",
                                       self._lookup(event))
            skip = event.data.get("failed_channel_id")  # the alarm about a channel is not sent through it
            when = event.time.isoformat(sep=" ", timespec="seconds")
            priority = notify_rules.priority_of(draft.kind)
            rows += [NewMessage(c.id, draft.kind, draft.title, draft.body, draft.dedup_key, when, priority)
                     for c in channels if c.id != skip and _wants(c, draft)]
        return rows

    def _commit(self, rows: list[NewMessage]) -> int:
        if rows:
            self._store.enqueue_many(rows, self._settings.get("NOTIFY_DEDUP_SECONDS"))
        return len(rows)

    def deliver_one(self, timeout: Optional[float] = None) -> bool:
        """Alarms of every channel first, then routine messages: pick the next channel (round-robin) whose plan
        sends something now, and make one delivery attempt. Returns whether an attempt was made."""
        with self._lock:
            channels = self._store.channels()
            for priority in (ALARM, ROUTINE):
                for offset in range(len(channels)):
                    channel = channels[(self._turn + offset) % len(channels)]
                    plan = self._plan(channel.id, priority)
                    if not plan.ids:
                        continue
                    message = self._compose(channel.id, plan.ids, priority)
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

    def _is_stop_loss_companion(self, event: Event) -> bool:
        """composition publishes a stop-loss fill twice (FILL with rule stop_loss, then STOP_LOSS_EXECUTED):
        the fill's draft is the stop-loss message, the companion is not sent again."""
        if notify_rules.is_stop_loss_fill(event):
            if len(self._stop_loss_fills) >= STOP_LOSS_MEMORY:
                self._stop_loss_fills.clear()
            self._stop_loss_fills[notify_rules.stop_loss_signature(event)] += 1
            return False
        if event.kind is EventKind.STOP_LOSS_EXECUTED:
            signature = notify_rules.stop_loss_signature(event)
            if self._stop_loss_fills[signature] > 0:
                self._stop_loss_fills[signature] -= 1
                return True
        return False

    def _plan(self, channel_id: int, priority: int) -> notify_rules.Plan:
        pending = self._store.pending(channel_id, priority)
        if not pending:
            return notify_rules.Plan()
        now = self._now()
        allowance = self._allowance(channel_id, priority)
        if allowance <= 0 and pending[0].next_attempt_at <= now:  # the window frees one slot at a time
            return notify_rules.Plan(ready_at=now + RATE_LIMITED_RECHECK_SECONDS)
        max_chars = self._settings.get("NOTIFY_DIGEST_MAX_CHARS")
        if priority == ALARM:
            return notify_rules.plan_alarms(pending, now, allowance, max_chars)
        quiet, hold = self._settings.get("NOTIFY_COALESCE_SECONDS"), self._settings.get("NOTIFY_COALESCE_MAX_SECONDS")
        rules = notify_rules.Coalescing(0.0 if self._flushing else quiet, 0.0 if self._flushing else max(quiet, hold),
                                        self._settings.get("NOTIFY_DIGEST_THRESHOLD"), max_chars)
        return notify_rules.plan_routine(pending, now, allowance, rules)

    def _compose(self, channel_id: int, ids: tuple[int, ...], priority: int) -> Message:
        """One message as it is, or one digest replacing several (committed before the attempt)."""
        if len(ids) == 1:
            return self._store.message(ids[0])
        title, body = notify_rules.digest_text(self._store.digest_items(ids))
        return self._store.coalesce(channel_id, ids, title, body, priority)

    def _allowance(self, channel_id: int, priority: int) -> int:
        window = self._settings.get("NOTIFY_RATE_WINDOW_SECONDS")
        limit = self._settings.get("NOTIFY_ALARM_RATE_LIMIT" if priority == ALARM else "NOTIFY_RATE_LIMIT")
        return notify_rules.sendable_now(self._store.sent_since(channel_id, self._now() - window, priority), limit)

    def _next_ready(self) -> Optional[float]:
        """The earliest moment a delivery may be made (now or past: at once), None when nothing is pending."""
        now, times = self._now(), []
        for channel in self._store.channels():
            for priority in (ALARM, ROUTINE):
                plan = self._plan(channel.id, priority)
                if plan.ids or plan.ready_at is not None:
                    times.append(now if plan.ids else plan.ready_at)
        return min(times) if times else None

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


def _wants(channel: Channel, draft: notify_rules.Draft) -> bool:
    """A channel's subscription, except that the protection guarantee's messages reach every enabled channel
    (notify.rules.EVERY_CHANNEL_KIND_NAMES) and a stop-loss fill is wanted by `fill` and `stop_loss_executed`."""
    if not channel.enabled:
        return False
    if notify_rules.reaches_every_channel(draft.kind):
        return True
    return channel.wants(draft.kind) or bool(draft.also_wanted_by and channel.wants(draft.also_wanted_by))
