"""The one event stream out of the core: typed events (fills, order troubles, alarms, trading-state changes…)
published by the core and consumed by the notifier, the SSE stream, the daily report and watch alerts.

Publishing never blocks: each subscriber owns a bounded queue and drains it on its own thread, so a slow
subscriber can only lose its own oldest events (counted), never slow the trading threads."""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Iterable, Optional

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 10_000


class EventKind(str, Enum):
    """What happened; the values are stable identifiers (persisted in notification settings)."""

    FILL = "fill"
    ORDER_REJECTED = "order_rejected"  # refused by us or by the broker
    ORDER_FAILED = "order_failed"  # could not be delivered
    ORDER_UNKNOWN = "order_unknown"  # state cannot be proven; a person should check
    SIGNAL_WAITING = "signal_waiting"  # auto-trading off: a signal waits for a person
    STOP_LOSS_EXECUTED = "stop_loss_executed"
    THREAD_RESTARTED = "thread_restarted"
    THREAD_ALARM = "thread_alarm"
    BROKER_DISCONNECTED = "broker_disconnected"
    BROKER_RECONNECTED = "broker_reconnected"
    LINK_UNHEALTHY = "link_unhealthy"
    QUOTES_STALE = "quotes_stale"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    TRADING_STATE = "trading_state"  # emergency stop / pause / resume
    CIRCUIT_BREAKER = "circuit_breaker"
    STORAGE_FAILURE = "storage_failure"  # corrupt database, failed journal write, full disk
    DAEMON_START = "daemon_start"
    DAEMON_STOP = "daemon_stop"
    CONFIG_CHANGED = "config_changed"
    DAILY_REPORT = "daily_report"
    WATCH_ALERT = "watch_alert"
    ALARM = "alarm"  # any other anomaly an operator must see
    PRE_OPEN_READY = "pre_open_ready"  # issue 16: the pre-open job's 「盘前就绪」 message
    PROTECTION_FAILURE = "protection_failure"  # issue 25: an exit condition holds and no sell works, unexplained
    PROTECTION_RESTORED = "protection_restored"  # issue 25: that failure has cleared
    EX_RIGHTS = "ex_rights"  # issue 28: an ex-date's adjustment of the daemon's own price levels
    CHORES = "chores"  # issue 28 §3: subscriptions, allotments (中签) and the reverse repo of the idle cash

    @property
    def label(self) -> str:
        return EVENT_LABELS[self]


EVENT_LABELS = {
    EventKind.FILL: "成交",
    EventKind.ORDER_REJECTED: "委托被拒",
    EventKind.ORDER_FAILED: "委托失败",
    EventKind.ORDER_UNKNOWN: "委托状态未知",
    EventKind.SIGNAL_WAITING: "信号等待人工处理",
    EventKind.STOP_LOSS_EXECUTED: "止损已执行",
    EventKind.THREAD_RESTARTED: "线程重启",
    EventKind.THREAD_ALARM: "线程告警",
    EventKind.BROKER_DISCONNECTED: "券商断线",
    EventKind.BROKER_RECONNECTED: "券商重连",
    EventKind.LINK_UNHEALTHY: "券商连接无响应",
    EventKind.QUOTES_STALE: "行情停滞",
    EventKind.DAILY_LOSS_LIMIT: "当日亏损达到上限",
    EventKind.TRADING_STATE: "交易状态变化",
    EventKind.CIRCUIT_BREAKER: "熔断",
    EventKind.STORAGE_FAILURE: "存储故障",
    EventKind.DAEMON_START: "守护进程启动",
    EventKind.DAEMON_STOP: "守护进程停止",
    EventKind.CONFIG_CHANGED: "参数修改",
    EventKind.DAILY_REPORT: "每日报告",
    EventKind.WATCH_ALERT: "盯盘提醒",
    EventKind.ALARM: "告警",
    EventKind.PRE_OPEN_READY: "盘前就绪",
    EventKind.PROTECTION_FAILURE: "保护失效",
    EventKind.PROTECTION_RESTORED: "保护恢复",
    EventKind.EX_RIGHTS: "除权除息调整",
    EventKind.CHORES: "申购与逆回购",
}


@dataclass(frozen=True)
class Event:
    """`message` is the short Chinese line a person reads; `data` carries the facts (JSON-able values)."""

    kind: EventKind
    message: str
    time: datetime  # on the market clock
    stock_code: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "label": self.kind.label, "message": self.message,
                "time": self.time.isoformat(timespec="seconds"), "stock_code": self.stock_code, "data": self.data}


class Subscription:
    """A subscriber's own bounded queue; when full, the oldest event is dropped and counted."""

    def __init__(self, kinds: Optional[Iterable[EventKind]], maxsize: int):
        self.kinds = frozenset(kinds) if kinds is not None else None
        self._queue: queue.Queue[Event] = queue.Queue(maxsize)
        self.dropped = 0

    def wants(self, event: Event) -> bool:
        return self.kinds is None or event.kind in self.kinds

    def offer(self, event: Event) -> None:
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, or None after `timeout` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> list[Event]:
        events = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                return events


class EventBus:
    """Fan-out of events to subscriptions. `clock` supplies the market time of `emit`."""

    def __init__(self, clock=None):
        self._clock = clock
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._listeners: list[Callable[[Event], None]] = []

    def subscribe(self, kinds: Optional[Iterable[EventKind]] = None,
                  maxsize: int = DEFAULT_QUEUE_SIZE) -> Subscription:
        subscription = Subscription(kinds, maxsize)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """A synchronous listener, for cheap in-memory bookkeeping only (it runs on the publisher's thread)."""
        with self._lock:
            self._listeners.append(listener)

    def publish(self, event: Event) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
            listeners = list(self._listeners)
        for subscription in subscriptions:
            if subscription.wants(event):
                subscription.offer(event)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must never break the publisher (a trading thread)
                log.exception("事件监听器出错")

    def emit(self, kind: EventKind, message: str, stock_code: str = "", **data: Any) -> Event:
        """Build an event stamped with the market clock and publish it."""
        now = self._clock.now() if self._clock is not None else datetime.now()
        event = Event(kind, message, now, stock_code, dict(data))
        self.publish(event)
        return event
