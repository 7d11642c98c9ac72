"""Issue 13's pure rules: how previous-day orders are judged from the position change (qmt.carryover), and the
liveness deadlines and anomaly list of the live broker's link (qmt.link)."""
import logging
from datetime import datetime
from types import SimpleNamespace

from core.models import OrderStatus, Side
from qmt.carryover import judge
from qmt.link import LinkHealth, overdue, probe_due


def entry(client_id: str, side: Side, volume: int, filled: int = 0, code: str = "600036.SH"):
    return SimpleNamespace(client_id=client_id, stock_code=code, side=side, volume=volume, filled_volume=filled,
                           remaining=volume - filled)


def verdicts(entries, held, broker):
    return [(v.entry.client_id, v.status, v.filled_volume, v.reason) for v in judge(entries, held, broker)]


def test_previous_day_orders_are_judged_by_what_the_position_change_proves():
    assert verdicts([entry("S1", Side.SELL, 500, 100)], {"600036.SH": 1000}, {"600036.SH": 600}) == [
        ("S1", OrderStatus.FILLED, 500, "隔日委托：持仓变化 -400 股与委托剩余数量一致，按已成交处理；成交价未知，未计入成交记录，需人工核对")]
    assert verdicts([entry("B1", Side.BUY, 500)], {}, {"600036.SH": 200}) == [
        ("B1", OrderStatus.CANCELLED, 200, "隔日委托：持仓变化表明成交 200 股（成交价未知），其余已按收盘失效处理，需人工核对")]
    assert verdicts([entry("B2", Side.BUY, 500)], {"600036.SH": 100}, {"600036.SH": 100}) == [
        ("B2", OrderStatus.CANCELLED, 0, "隔日委托：持仓未变化，未成交，已按收盘失效处理")]
    # a change no order explains, and orders on both sides of one stock: the operator decides
    assert verdicts([entry("S2", Side.SELL, 300)], {"600036.SH": 1000}, {"600036.SH": 1500})[0][1:3] == \
        (OrderStatus.CANCELLED, 0)
    mixed = verdicts([entry("S3", Side.SELL, 300), entry("B3", Side.BUY, 300)], {"600036.SH": 1000},
                     {"600036.SH": 1000})
    assert [(c, s) for c, s, _, _ in mixed] == [("S3", OrderStatus.CANCELLED), ("B3", OrderStatus.CANCELLED)]
    assert all("需人工核对" in reason for _, _, _, reason in mixed)


def test_deadlines_of_the_liveness_supervision():
    sent = {"A": 100.0, "B": 108.0}
    assert overdue(sent, 110.5, 10.0) == ["A"]
    assert overdue(sent, 110.5, 10.0, still_waiting=lambda key: key != "A") == []
    assert probe_due(None, 5.0, 5.0, in_session=True, forced=False)
    assert not probe_due(1.0, 5.0, 5.0, in_session=True, forced=False)
    assert probe_due(1.0, 6.0, 5.0, in_session=True, forced=False)
    assert not probe_due(1.0, 60.0, 5.0, in_session=False, forced=False)  # outside sessions only after a send
    assert probe_due(1.0, 1.1, 5.0, in_session=False, forced=True)


def test_link_health_logs_keeps_and_hands_on_every_alarm(caplog):
    caplog.set_level(logging.WARNING)
    health = LinkHealth(lambda: datetime(2024, 1, 2, 9, 31), keep=2)
    heard = []
    health.subscribe(lambda anomaly: heard.append((anomaly.code, anomaly.event_kind)))
    health.subscribe(lambda anomaly: 1 / 0)  # a broken notifier does not stop the others or the broker
    for code in ("QMT_DISCONNECTED", "ORDER_ACK_TIMEOUT", "QMT_POSITIONS_EMPTY"):
        health.alarm(code, f"{code} 的说明")
    assert heard == [("QMT_DISCONNECTED", "broker_disconnected"), ("ORDER_ACK_TIMEOUT", "link_unhealthy"),
                     ("QMT_POSITIONS_EMPTY", "alarm")]
    assert health.anomalies() == [
        {"time": "2024-01-02T09:31:00", "code": "ORDER_ACK_TIMEOUT", "message": "ORDER_ACK_TIMEOUT 的说明"},
        {"time": "2024-01-02T09:31:00", "code": "QMT_POSITIONS_EMPTY", "message": "QMT_POSITIONS_EMPTY 的说明"}]
    assert health.snapshot()["anomaly_count"] == 3 and health.snapshot()["link_label"] == "未连接"
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("【")] == [
        "【券商异常】QMT_DISCONNECTED 的说明", "【券商异常】ORDER_ACK_TIMEOUT 的说明", "【券商异常】QMT_POSITIONS_EMPTY 的说明"]
    assert sum("异常通知处理出错" in r.getMessage() for r in caplog.records) == 3


def test_every_broker_anomaly_becomes_an_event_of_its_kind():
    from daemon.composition import _publish_broker_anomalies
    from core.events import EventBus, EventKind
    from qmt.link import EVENT_KIND_BY_CODE

    assert {EventKind(kind) for kind in EVENT_KIND_BY_CODE.values()} == {
        EventKind.BROKER_DISCONNECTED, EventKind.LINK_UNHEALTHY, EventKind.ORDER_UNKNOWN, EventKind.ALARM,
        EventKind.BROKER_RECONNECTED}
    bus = EventBus(None)
    heard = []
    bus.add_listener(heard.append)
    health = LinkHealth(lambda: datetime(2024, 1, 2, 9, 31))
    _publish_broker_anomalies(bus, health)
    health.alarm("LIVENESS_PROBE_FAILED", "miniQMT 探测查询无响应")
    health.alarm("QMT_ORDER_RENUMBERED", "委托编号变化")
    health.alarm("QMT_RECONNECTED", "已重新连接 miniQMT（会话 502）", prefix="")
    assert [(e.kind, e.message, e.data) for e in heard] == [
        (EventKind.LINK_UNHEALTHY, "miniQMT 探测查询无响应", {"code": "LIVENESS_PROBE_FAILED"}),
        (EventKind.ALARM, "委托编号变化", {"code": "QMT_ORDER_RENUMBERED"}),
        (EventKind.BROKER_RECONNECTED, "已重新连接 miniQMT（会话 502）", {"code": "QMT_RECONNECTED"})]
