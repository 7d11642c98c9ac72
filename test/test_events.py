"""The event bus: fan-out to each subscriber's own bounded queue, kind filters, drop-oldest when a slow
subscriber falls behind (never blocking the publisher), and market-clock timestamps."""
from datetime import datetime

from events import EventBus, EventKind
from market_clock import ReplayClock


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


def test_broker_link_anomalies_and_the_reconnect_become_their_event_kinds():
    from composition import _publish_broker_anomalies
    from qmt_link import LinkHealth

    clock = ReplayClock(datetime(2024, 3, 4, 10, 1))
    bus, health = EventBus(clock), LinkHealth(clock.now)
    seen = bus.subscribe()
    _publish_broker_anomalies(bus, health)
    health.alarm("QMT_DISCONNECTED", "与 miniQMT 的连接已断开（会话 501），开始重连")
    health.alarm("ORDER_ACK_TIMEOUT", "委托 Q1 超过 10 秒没有券商编号")
    health.alarm("QMT_RECONNECTED", "已重新连接 miniQMT（会话 502）", prefix="")
    assert [(e.kind, e.data["code"]) for e in seen.drain()] == [
        (EventKind.BROKER_DISCONNECTED, "QMT_DISCONNECTED"), (EventKind.LINK_UNHEALTHY, "ORDER_ACK_TIMEOUT"),
        (EventKind.BROKER_RECONNECTED, "QMT_RECONNECTED")]
