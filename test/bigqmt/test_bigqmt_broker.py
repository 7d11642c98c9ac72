"""The big-QMT back-end over the REAL bridge strategy file run by the host stand-in (loopback TCP): orders reach
passorder with the remark, acknowledgements, fills booked once whatever QMT re-pushes, refusals with the
counter's words, cancels that count only when QMT shows them, queries, and the connection checks."""
from __future__ import annotations

import pytest

from bigqmt.broker import UNKNOWN_PLACED, BigQmtBroker
from brokers.select import connect_live_broker
from core.models import BrokerUnavailable, OrderRejected, OrderStatus, Side
from persistence.config_store import ConfigStore
from persistence.storage import Database
from qmt.order_journal import CANCEL_NONE, QmtOrderJournal
from bigqmt_support import ACCOUNT_ID, FAST, make_broker, req, start_host

O, P, F, CX, RJ, UN = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED,
                       OrderStatus.REJECTED, OrderStatus.UNKNOWN)


def test_order_goes_out_through_passorder_with_the_remark_and_is_acknowledged(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    broker.place_order(req("C1", volume=1000, price=10.0))
    rec.wait(lambda: rec.statuses("C1") == [O])
    order = host.order_by_remark("C1")
    assert (order.m_strRemark, order.m_strSource, order.m_nVolumeTotalOriginal, order.m_dLimitPrice) == ("C1", "C1", 1000, 10.0)
    assert rec.last("C1").order_id == order.m_strOrderSysID == "1082240001" and host.passorder_calls == 1
    assert QmtOrderJournal(Database(tmp_path / "trading.db")).get("C1").order_id == "1082240001"
    with pytest.raises(OrderRejected) as refused:
        broker.place_order(req("C1"))
    assert refused.value.code == "DUPLICATE_CLIENT_ID" and host.passorder_calls == 1
    broker.close()


def test_partial_fills_are_booked_once_through_duplicated_pushes_and_a_full_re_push(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    host.duplicate_pushes = True
    broker.place_order(req("C1", volume=1000, price=10.0))
    host.fill(remark="C1", volume=400)
    host.fill(remark="C1", volume=600, price=9.98)
    rec.wait(lambda: F in rec.statuses("C1") and len(rec.fills) == 2)
    host.repush()
    broker.ping()  # answered by the strategy thread after the queued re-push: every push is on its way before it
    assert broker.drain(5.0)
    assert rec.statuses("C1") == [O, P, F]
    assert [(f.volume, f.price, f.fill_id) for f in rec.fills] == [(400, 10.0, "1082240001-700001-20261208"),
                                                                   (600, 9.98, "1082240001-700002-20261208")]
    assert rec.fills[0].commission == 5.0  # the commission QMT reports (minimum 5 yuan on the first fill)
    broker.close()


@pytest.mark.parametrize("order_first", [False, True])  # QMT orders the two pushes of a fill either way
def test_a_fill_pushed_inside_passorder_is_booked_once_whichever_push_comes_first(tmp_path, host, order_first):
    broker, rec = make_broker(tmp_path, host)
    host.order_first = order_first
    host.callbacks_in_call = True  # QMT calls back before passorder returns
    host.set_price("600036.SH", 9.95)  # a marketable buy fills at once
    broker.place_order(req("C1", volume=500, price=10.0))
    rec.wait(lambda: rec.fills and F in rec.statuses("C1"))
    assert [(f.client_id, f.volume, f.price) for f in rec.fills] == [("C1", 500, 9.95)]
    assert rec.last("C1").filled_volume == 500 and rec.last("C1").order_id == "1082240001"
    broker.close()


def test_a_deal_without_remark_is_matched_through_the_order_id(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    host.strip_deal_remark = True
    broker.place_order(req("C1", volume=300))
    rec.wait(lambda: rec.statuses("C1") == [O])
    host.fill(remark="C1")
    rec.wait(lambda: len(rec.fills) == 1)
    assert rec.fills[0].client_id == "C1" and rec.fills[0].order_id == "1082240001"
    broker.close()


def test_a_counter_rejection_carries_its_message(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    broker.place_order(req("C1", volume=1_000_000, price=10.0))  # 10 million yuan: more than the account has
    rec.wait(lambda: RJ in rec.statuses("C1"))
    assert rec.last("C1").reason == "[COUNTER][260200][可用资金不足]" and rec.fills == []
    broker.close()


def test_a_bad_code_refused_by_passorder_itself_is_rejected_through_order_error(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    broker.place_order(req("C1", code="600036.XX"))
    rec.wait(lambda: rec.statuses("C1") == [RJ])
    assert rec.last("C1").reason == "大QMT 拒绝委托：[函数交易] 参数 600036.XX 不合法!" and rec.last("C1").order_id == ""
    broker.close()


def test_an_order_qmt_never_shows_becomes_unknown_and_is_never_resent(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    host.popup_rejects = True  # QMT's pop-up refusal: no order row, no push
    broker.place_order(req("C1"))
    rec.wait(lambda: rec.statuses("C1") == [UN], FAST.ack_timeout + 3)
    assert rec.last("C1").reason == UNKNOWN_PLACED and host.passorder_calls == 1 and broker.reconnects == 0
    broker.close()


def test_a_refused_cancel_never_reads_as_cancelled(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    broker.place_order(req("C1"))
    rec.wait(lambda: rec.statuses("C1") == [O])
    host.refuse_cancels = True  # cancel() returns True ("request sent") and nothing happens
    broker.cancel_order("C1")
    rec.wait(lambda: len(rec.statuses("C1")) == 2)
    assert rec.statuses("C1") == [O, O] and rec.last("C1").reason == "撤单失败：大QMT 中委托状态未变为已撤"
    assert QmtOrderJournal(Database(tmp_path / "trading.db")).get("C1").cancel_state == CANCEL_NONE
    assert host.order_by_remark("C1").m_nOrderStatus == 50
    broker.close()


def test_a_cancel_whose_call_returned_false_but_worked_is_cancelled(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    broker.place_order(req("C1"))
    host.fill(remark="C1", volume=200)
    rec.wait(lambda: len(rec.fills) == 1)
    host.cancel_returns_false = True  # False while the order was really cancelled
    broker.cancel_order(rec.last("C1").order_id)
    rec.wait(lambda: CX in rec.statuses("C1"))
    assert rec.last("C1").filled_volume == 200 and host.order_by_remark("C1").m_nOrderStatus == 53
    broker.close()


def test_a_cancel_asked_before_the_order_id_is_known_goes_out_once_it_is(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    host.drop_pushes = True  # the order's pushes are lost: the id comes from QMT's order list after ACK timeout
    broker.place_order(req("C1"))
    broker.cancel_order("C1")
    rec.wait(lambda: CX in rec.statuses("C1"), FAST.ack_timeout + 3)
    assert host.order_by_remark("C1").m_nOrderStatus == 54 and host.passorder_calls == 1
    broker.close()


def test_queries_read_qmt_on_its_strategy_thread(tmp_path, host):
    host.hold("000001.SZ", 1000, 10.0)
    broker, rec = make_broker(tmp_path, host)
    broker.place_order(req("C1", volume=1000, price=10.0))
    host.fill(remark="C1", volume=1000)
    rec.wait(lambda: len(rec.fills) == 1)
    asset = broker.query_asset()
    assert (asset.cash, asset.frozen_cash, asset.total_asset) == (989995.0, 0.0, 1010000.0)
    positions = {p.stock_code: (p.volume, p.available) for p in broker.query_positions()}
    assert positions == {"000001.SZ": (1000, 1000), "600036.SH": (1000, 0)}
    [order] = broker.query_orders()
    assert (order.client_id, order.status, order.filled_volume, order.side) == ("C1", F, 1000, Side.BUY)
    assert [(f.client_id, f.volume) for f in broker.query_trades()] == [("C1", 1000)]
    broker.close()


def test_an_old_bridge_version_is_refused_with_what_to_do(tmp_path, host):
    host.module.BRIDGE_VERSION = "0"  # the strategy pasted into QMT is older than the daemon
    with pytest.raises(BrokerUnavailable) as refused:
        make_broker(tmp_path, host)
    assert refused.value.code == "BIGQMT_VERSION_MISMATCH" and "重新粘贴" in refused.value.message


def test_a_strategy_bound_to_another_account_is_refused(tmp_path, host):
    with pytest.raises(BrokerUnavailable) as refused:
        make_broker(tmp_path, host, account_id="8800999999")
    assert refused.value.code == "BIGQMT_ACCOUNT_MISMATCH" and "8800000001" not in refused.value.message


def test_no_bridge_running_is_refused_with_a_chinese_reason(tmp_path):
    host = start_host()
    host.stop()  # the port is free again: nothing listens
    with pytest.raises(BrokerUnavailable) as refused:
        make_broker(tmp_path, host)
    assert refused.value.code == "BIGQMT_UNREACHABLE" and "实盘交易" in refused.value.message


def test_broker_bigqmt_in_the_settings_selects_this_back_end(tmp_path, host):
    account = tmp_path / "account_config.json"
    account.write_text('{"account_id": "%s", "account_type": "STOCK"}' % ACCOUNT_ID, encoding="utf-8")
    settings = ConfigStore(Database(tmp_path / "config.db"),
                           run_overrides={"ENABLE_SIMULATION_MODE": False, "BROKER": "bigqmt", "BIGQMT_PORT": host.port})
    broker = connect_live_broker(settings, tmp_path, account_config_path=account)
    try:
        assert isinstance(broker, BigQmtBroker) and broker.is_connected() and broker.mode == "live"
        assert broker.account.account_id == ACCOUNT_ID and broker.ping() < 1.0
    finally:
        broker.close()


def test_fills_qmt_never_pushes_raise_one_push_lapse_alarm(tmp_path, host):
    broker, rec = make_broker(tmp_path, host)
    assert broker.query_trades() == []  # the baseline: nothing yet
    host.drop_pushes = True  # as in 模拟信号 mode or without a bound account: QMT calls no callback
    broker.place_order(req("C1", volume=200))
    host.fill(remark="C1")
    [fill] = broker.query_trades()  # seen once: a push may still be on its way
    assert rec.anomalies == []
    assert broker.query_trades() == [fill] and broker.query_trades() == [fill]  # seen again, never pushed
    assert rec.anomalies == ["PUSH_LAPSE"] and fill.fill_id in broker.anomalies()[-1]["message"]
