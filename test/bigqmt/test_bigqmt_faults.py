"""The big-QMT back-end through the fault catalogue: a hung strategy thread (send timeout → 「结果未知」, never
re-sent, settled by remark), a silent link found by the probe, a QMT restart that renumbers orders and re-pushes
the day, a strategy re-initialisation, and a daemon restart over the same journal."""
from __future__ import annotations

import pytest

from bigqmt.broker import NOT_DELIVERED, bridge_version
from bigqmt.channel import BridgeChannel
from core.models import OrderStatus, Side
from persistence.storage import Database
from qmt.broker_guard import OutcomeUnknown
from bigqmt_support import FAST, WAIT, make_broker, req

O, P, F, CX, RJ, UN = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED,
                       OrderStatus.REJECTED, OrderStatus.UNKNOWN)


def wait_reconnected(broker, rec, count: int) -> None:
    """Bounded: the end of a reconciliation is announced by the QMT_RECONNECTED anomaly the recorder hears."""
    rec.wait(lambda: rec.anomalies.count("QMT_RECONNECTED") >= count and broker.reconnects >= count
             and broker.is_connected(), WAIT)


def test_an_order_sent_into_a_hung_strategy_is_unknown_then_settled_by_remark_never_twice(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    host.hang(FAST.send_timeout + 0.5)  # QMT's strategy thread stalls: the request is not read in time
    with pytest.raises(OutcomeUnknown):
        broker.place_order(req("C1"))
    wait_reconnected(broker, rec, 1)
    rec.wait(lambda: rec.statuses("C1") and rec.statuses("C1")[-1] in (O, RJ))
    at_venue = [o for o in host.venue.orders.values() if o.m_strRemark == "C1"]
    assert host.passorder_calls == len(at_venue) <= 1  # never sent twice
    if at_venue:  # the bridge read the request after the hang, before the reconnect replaced the connection
        assert rec.last("C1").status is O and rec.last("C1").order_id == at_venue[0].m_strOrderSysID
    else:  # the reconnect replaced the connection first: the bridge confirms it never called passorder
        assert rec.last("C1").status is RJ and rec.last("C1").reason == NOT_DELIVERED
    broker.close()


def test_a_silent_strategy_is_found_by_the_probe_and_the_link_comes_back(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    host.hang(FAST.probe_deadline + FAST.probe_interval + 0.5)
    rec.wait(lambda: "LIVENESS_PROBE_FAILED" in rec.anomalies, WAIT)
    wait_reconnected(broker, rec, 1)
    broker.place_order(req("C2"))
    rec.wait(lambda: rec.statuses("C2") == [O])
    broker.close()


def test_a_qmt_restart_with_renumbered_orders_and_a_full_re_push_books_each_fill_once(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    broker.place_order(req("C1", volume=1000))
    host.fill(remark="C1", volume=400)
    rec.wait(lambda: len(rec.fills) == 1)
    first_id = rec.fills[0].order_id
    host.restart(renumber=True, repush=True)
    wait_reconnected(broker, rec, 1)
    new_id = host.order_by_remark("C1").m_strOrderSysID
    assert new_id != first_id
    rec.wait(lambda: "QMT_ORDER_RENUMBERED" in rec.anomalies)
    assert [(f.fill_id, f.volume) for f in rec.fills] == [(f"{first_id}-700001-20261208", 400)]  # booked once
    broker.cancel_order("C1")  # goes out under the new number
    rec.wait(lambda: CX in rec.statuses("C1"))
    assert host.order_by_remark("C1").m_nOrderStatus == 53 and rec.last("C1").order_id == first_id
    assert len(rec.fills) == 1
    broker.close()


def test_a_strategy_re_initialisation_replaces_the_listener_and_the_daemon_reconnects(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    broker.place_order(req("C1"))
    rec.wait(lambda: rec.statuses("C1") == [O])
    host.reinit()  # 启用自动初始化: init runs again in the same process, the old socket still bound
    wait_reconnected(broker, rec, 1)
    broker.place_order(req("C2"))
    rec.wait(lambda: rec.statuses("C2") == [O])
    assert host.passorder_calls == 2
    broker.close()


def test_a_daemon_restart_over_the_same_journal_books_nothing_twice(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    broker.place_order(req("C1", volume=1000))
    host.fill(remark="C1", volume=1000)
    rec.wait(lambda: len(rec.fills) == 1)
    booked = rec.fills[0]
    broker.close()
    again, _ = make_broker(tmp_path, host, db=Database(tmp_path / "trading.db"))
    [fill] = again.query_trades()
    assert (fill.fill_id, fill.client_id, fill.commission, fill.transfer_fee) == (
        booked.fill_id, "C1", booked.commission, booked.transfer_fee)  # same id, fees fixed the first time
    [order] = again.query_orders()
    assert (order.client_id, order.status, order.order_id) == ("C1", F, booked.order_id)
    again.close()


def test_a_request_lost_with_its_connection_is_confirmed_not_sent_by_the_same_bridge(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    host.hang(FAST.send_timeout + 0.5)
    with pytest.raises(OutcomeUnknown):
        broker.place_order(req("C1", side=Side.SELL, code="000001.SZ", volume=100))
    host.end_hang(lose_requests=True)  # the old connection and its unread request are gone
    wait_reconnected(broker, rec, 1)
    rec.wait(lambda: RJ in rec.statuses("C1"))
    assert rec.last("C1").reason == NOT_DELIVERED and host.received == [] and host.passorder_calls == 0


def test_the_bridge_itself_never_passorders_one_remark_twice(host):
    channel = BridgeChannel("127.0.0.1", host.port, on_event=lambda _m: None, on_closed=lambda: None)
    channel.open(2.0)
    try:
        assert channel.request("order", 2.0, remark="R1", code="600036.SH", side="buy", volume=100, price=10.0)["ok"] is False
        assert channel.request("hello", 2.0, version=bridge_version())["ok"] is True
        order = {"remark": "R1", "code": "600036.SH", "side": "buy", "volume": 100, "price": 10.0}
        assert channel.request("order", 2.0, **order) == {"ok": True, "re": 3}
        assert channel.request("order", 2.0, **order) == {"ok": True, "duplicate": True, "re": 4}
        assert host.passorder_calls == 1 and host.received == ["R1"]
        assert channel.request("hello", 2.0, version=bridge_version())["placed"] == ["R1"]
    finally:
        channel.close()
