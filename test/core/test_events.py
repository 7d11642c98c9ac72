"""The event bus: fan-out to each subscriber's own bounded queue, kind filters, drop-oldest when a slow
subscriber falls behind (never blocking the publisher), and market-clock timestamps."""
from datetime import datetime

from core.events import EventBus, EventKind
from market.clock import ReplayClock


def test_each_subscriber_gets_the_kinds_it_asked_for_stamped_on_the_market_clock():
    bus = EventBus(ReplayClock(datetime(2024, 3, 4, 14, 56, 30)))
    everything, fills = bus.subscribe(), bus.subscribe([EventKind.FILL])
    bus.emit(EventKind.FILL, "600036.SH 止损卖出 300 股 @ 30.1", stock_code="600036.SH", volume=300)
    bus.emit(EventKind.TRADING_STATE, "账户交易状态：运行中 → 紧急停止")
    assert [e.kind for e in everything.drain()] == [EventKind.FILL, EventKind.TRADING_STATE]
    fill = fills.get(timeout=0)
    assert fill.to_dict() == {"kind": "fill", "label": "成交", "message": "600036.SH 止损卖出 300 股 @ 30.1",
                              "time": "2024-03-04T14:56:30", "stock_code": "600036.SH", "data": {"volume": 300}}
    assert fills.get(timeout=0) is None


def test_a_full_subscriber_loses_its_oldest_events_and_counts_them():
    bus = EventBus()
    slow = bus.subscribe(maxsize=3)
    for i in range(5):
        bus.emit(EventKind.ALARM, f"告警 {i}")
    assert [e.message for e in slow.drain()] == ["告警 2", "告警 3", "告警 4"] and slow.dropped == 2
    bus.unsubscribe(slow)
    bus.emit(EventKind.ALARM, "之后")
    assert slow.drain() == []


def test_a_failing_listener_does_not_reach_the_publisher():
    bus = EventBus()
    seen = []
    bus.add_listener(lambda e: 1 / 0)
    bus.add_listener(seen.append)
    bus.emit(EventKind.DAEMON_START, "守护进程已启动")
    assert [e.kind for e in seen] == [EventKind.DAEMON_START]

