"""The live broker running on the REAL xtquant/xttrader.py: a stand-in `xtquant.xtpythonclient` (the Windows-only
native part) in sys.modules and a simulated miniQMT counterpart behind it. Waits are bounded and event-driven."""
from __future__ import annotations

import itertools
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from persistence.config_store import ConfigStore
from easy_qmt_trader import BrokerTimings, EasyQmtTrader, connect_live_broker
from qmt.session import XtApi
from market.clock import ReplayClock
from core.models import (Asset, BrokerPosition, BrokerUnavailable, Fill, Order, OrderRejected, OrderRequest, OrderStatus,
                    Quote, Rule, Side)
from qmt.account import AccountConfig, load_account_config, mask_account_id, resolve_qmt_path
from stand_ins.fake_xtpythonclient import FakePosition, FakeQmt
from persistence.storage import Database
from qmt.xtquant_import import import_xtquant, xtquant_package

PROJECT = Path(__file__).resolve().parents[1]
ACCOUNT_ID = "8800123456"
MARKET_OPEN = datetime(2024, 1, 2, 9, 30)  # the counterpart stamps 1704159000 = 2024-01-02 09:30 Beijing
FAST = BrokerTimings(query_timeout=5.0, connect_timeout=5.0, reconnect_first_delay=0.01, reconnect_max_delay=0.05)
WAIT = 10.0
NATIVE_NAMES = ("xtquant.xtpythonclient", "xtquant.xttrader")
_MISSING = object()

S, O, P, F = OrderStatus.SUBMITTED, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED
CP, CX, RJ = OrderStatus.CANCEL_PENDING, OrderStatus.CANCELLED, OrderStatus.REJECTED


class Recorder:
    """A BrokerListener that records events and lets the test wait for a condition (bounded)."""

    def __init__(self):
        self.orders: list[Order] = []
        self.fills: list[Fill] = []
        self.threads: set[str] = set()
        self._cond = threading.Condition()

    def on_order_update(self, order: Order) -> None:
        with self._cond:
            self.orders.append(order)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def on_fill(self, fill: Fill) -> None:
        with self._cond:
            self.fills.append(fill)
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def statuses(self, client_id: str) -> list[OrderStatus]:
        with self._cond:
            return [o.status for o in self.orders if o.client_id == client_id]

    def last(self, client_id: str) -> Order:
        with self._cond:
            return [o for o in self.orders if o.client_id == client_id][-1]

    def wait(self, predicate, timeout: float = WAIT) -> None:
        with self._cond:
            ok = self._cond.wait_for(predicate, timeout)
        seen = [(o.client_id, o.status.value, o.reason) for o in self.orders]
        assert ok, f"timed out; orders={seen} fills={self.fills}"


@contextmanager
def native_modules(module=None):
    """Install `module` as xtquant.xtpythonclient (None: none at all, as on Linux), with a fresh xttrader
    import bound to it; put everything back afterwards."""
    package = xtquant_package()
    saved = {name: sys.modules.get(name, _MISSING) for name in NATIVE_NAMES}
    saved_attrs = {name: getattr(package, name, _MISSING) for name in ("xtpythonclient", "xttrader")}
    for name in NATIVE_NAMES:
        sys.modules.pop(name, None)
    for attr in saved_attrs:
        if hasattr(package, attr):
            delattr(package, attr)
    if module is not None:
        sys.modules["xtquant.xtpythonclient"] = module
    try:
        yield
    finally:
        for name, value in saved.items():
            sys.modules.pop(name, None)
            if value is not _MISSING:
                sys.modules[name] = value
        for attr, value in saved_attrs.items():
            if hasattr(package, attr):
                delattr(package, attr)
            if value is not _MISSING:
                setattr(package, attr, value)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Any connection attempt to something other than loopback fails the test (xtquant's update check would)."""
    attempts: list = []
    real_connect = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and not host.startswith("/"):
            attempts.append(address)
            raise OSError(f"network disabled in tests: {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield
    assert attempts == []


@pytest.fixture
def counterpart():
    fake = FakeQmt(account_id=ACCOUNT_ID, cash=100000.0, positions={
        "000001.SZ": FakePosition(volume=1000, can_use_volume=500, open_price=10.0, avg_price=9.5, last_price=10.2,
                                  name="平安银行")})
    with native_modules(fake.module()):
        yield fake
    fake.close()  # timers of delayed faults (issue 13)
    assert fake.native_errors == []


@pytest.fixture
def env(tmp_path, counterpart):
    qmt_dir = tmp_path / "国金证券QMT交易端" / "userdata_mini"
    qmt_dir.mkdir(parents=True)
    settings = ConfigStore(Database(tmp_path / "config.db"))
    clock = ReplayClock(MARKET_OPEN)
    traders: list[EasyQmtTrader] = []

    def make(session_start: int = 500, db: Database | None = None, account_id: str = ACCOUNT_ID,
             timings: BrokerTimings = FAST, connect: bool = True, listen: bool = True
             ) -> tuple[EasyQmtTrader, Recorder]:
        trader = EasyQmtTrader(db or Database(tmp_path / "trading.db"), settings, clock,
                               AccountConfig(account_id, "STOCK", str(qmt_dir)), qmt_dir, timings=timings,
                               session_ids=itertools.count(session_start).__next__)
        traders.append(trader)
        recorder = Recorder()
        if listen:
            trader.set_listener(recorder)
        if connect:
            trader.connect()
        return trader, recorder

    yield SimpleNamespace(make=make, settings=settings, clock=clock, qmt_dir=qmt_dir, tmp_path=tmp_path)
    for trader in traders:
        trader.close()


def req(client_id: str, code: str = "600036.SH", side: Side = Side.BUY, volume: int = 1000, price: float = 10.0,
        rule: Rule = Rule.MANUAL) -> OrderRequest:
    return OrderRequest(client_id, code, side, volume, price, rule)


def sends(counterpart: FakeQmt) -> int:
    return [method for method, _, _ in counterpart.request_log].count("orderStockWithSeq")


# ---- status mapping ------------------------------------------------------------------------------------------------
def test_every_qmt_order_status_maps_to_our_status():
    xt = XtApi(None, None, import_xtquant("xtconstant"), None)
    table = {48: S, 49: S, 50: O, 51: CP, 52: CP, 53: CX, 54: CX, 55: P, 56: F, 57: RJ, 255: OrderStatus.UNKNOWN}
    assert {code: xt.order_status(code) for code in table} == table
    assert (xt.order_type(Side.BUY), xt.order_type(Side.SELL)) == (23, 24)
    assert (xt.price_type("limit", "600036.SH"), xt.price_type("best5_cancel", "600036.SH"),
            xt.price_type("best5_cancel", "000001.SZ")) == (11, 42, 47)
    assert (xt.side(23, 48), xt.side(24, 49), xt.side(0, 48), xt.side(0, 0)) == (Side.BUY, Side.SELL, Side.BUY, None)


# ---- place, fill, positions, asset ---------------------------------------------------------------------------------
def test_buy_fills_in_two_parts_with_per_order_fees_and_t1_positions(env, counterpart):
    trader, rec = env.make()
    trader.place_order(req("B1", volume=1000, price=10.0, rule=Rule.ADD_POSITION))
    rec.wait(lambda: rec.statuses("B1") == [S, O])
    [booked] = counterpart.order_by_remark("B1")
    assert (booked.order_type, booked.price_type, booked.price, booked.volume, booked.strategy_name) == \
        (23, 11, 10.0, 1000, "add_position")

    counterpart.fill(1001, 400, 9.99)
    rec.wait(lambda: rec.statuses("B1")[-1:] == [P] and len(rec.fills) == 1)
    counterpart.fill(1001, 600, 10.0)
    rec.wait(lambda: rec.statuses("B1")[-1:] == [F] and len(rec.fills) == 2)

    assert rec.statuses("B1") == [S, O, P, F]
    assert rec.fills == [
        Fill("1001-T000001-20240102", "1001", "B1", "600036.SH", Side.BUY, 9.99, 400, MARKET_OPEN,
             commission=5.0, stamp_duty=0.0, transfer_fee=0.04),
        Fill("1001-T000002-20240102", "1001", "B1", "600036.SH", Side.BUY, 10.0, 600, MARKET_OPEN,
             commission=0.0, stamp_duty=0.0, transfer_fee=0.06),  # min commission once per order: 5 + 0
    ]
    assert rec.last("B1") == Order("B1", "600036.SH", Side.BUY, 1000, 10.0, F, order_id="1001", filled_volume=1000,
                                   filled_amount=9996.0, time=MARKET_OPEN, reason="")
    # Broker-authoritative: volume, can_use_volume (T+1: 0 today) and open_price (not the diluted avg_price).
    assert trader.query_positions() == [
        BrokerPosition("000001.SZ", 1000, 500, 10.0, 10200.0, "平安银行"),
        BrokerPosition("600036.SH", 1000, 0, 9.996, 10000.0, ""),
    ]
    # The counter charged its own 0.025 % commission (1.00 + 1.50) without reporting it on the trades.
    assert trader.query_asset() == Asset(cash=90001.5, frozen_cash=0.0, market_value=20200.0, total_asset=110201.5)
    assert trader.query_trades() == rec.fills  # same ids and the same fees however the fill is seen
    assert [(o.client_id, o.status, o.filled_volume) for o in trader.query_orders()] == [("B1", F, 1000)]

    trader.place_order(req("B2", side=Side.SELL, volume=1000, price=10.5))  # bought today: T+1
    rec.wait(lambda: rec.statuses("B2") == [RJ])
    assert rec.last("B2").reason == "可用股份不足（可用 0 股）"
    counterpart.next_day()
    assert [p.available for p in trader.query_positions()] == [1000, 1000]
    trader.place_order(req("B3", side=Side.SELL, volume=1000, price=10.5))
    rec.wait(lambda: rec.statuses("B3") == [S, O])


def test_sell_fill_pays_stamp_duty_and_broker_reported_commission_wins(env, counterpart):
    counterpart.report_commission = True  # the counter reports 0.025 % commission
    trader, rec = env.make()
    trader.place_order(req("S1", code="000001.SZ", side=Side.SELL, volume=500, price=10.2))
    rec.wait(lambda: rec.statuses("S1") == [S, O])
    counterpart.fill(1001, 500, 10.2)
    rec.wait(lambda: rec.statuses("S1")[-1:] == [F] and len(rec.fills) == 1)
    assert rec.fills == [Fill("1001-T000001-20240102", "1001", "S1", "000001.SZ", Side.SELL, 10.2, 500, MARKET_OPEN,
                              commission=1.28, stamp_duty=2.55, transfer_fee=0.05)]


# ---- rejections ----------------------------------------------------------------------------------------------------
def test_rejections_arrive_once_with_the_broker_reason(env, counterpart):
    trader, rec = env.make()
    trader.place_order(req("R1", code="000001.SZ", side=Side.SELL, volume=600, price=10.2))
    trader.place_order(req("R2", volume=150))
    trader.place_order(req("R3", volume=100000, price=10.0))
    rec.wait(lambda: all(rec.statuses(c) for c in ("R1", "R2", "R3")))
    trader.place_order(req("R4", volume=100))  # everything after a rejection still works
    rec.wait(lambda: rec.statuses("R4") == [S, O])
    assert [(o.client_id, o.status, o.order_id, o.reason) for o in rec.orders if o.client_id != "R4"] == [
        ("R1", RJ, "1001", "可用股份不足（可用 500 股）"),
        ("R2", RJ, "1002", "买入数量必须是100股的整数倍"),
        ("R3", RJ, "1003", "可用资金不足"),
    ]


def test_order_error_held_by_xttrader_until_the_response_and_pushes_without_remark_are_parked(env, counterpart):
    counterpart.strip_remarks = True  # only seq → order id can tell the pushes are ours
    counterpart.hold_order_responses = True
    trader, rec = env.make()
    trader.place_order(req("R5", volume=150))
    counterpart.release_held_responses()
    rec.wait(lambda: rec.statuses("R5") == [RJ])
    trader.place_order(req("R6", volume=100))
    counterpart.release_held_responses()
    rec.wait(lambda: rec.statuses("R6") == [S, O])
    assert [(o.client_id, o.status, o.reason) for o in rec.orders] == [
        ("R5", RJ, "买入数量必须是100股的整数倍"), ("R6", S, ""), ("R6", O, "")]


def test_invalid_requests_are_refused_before_sending(env, counterpart):
    trader, _ = env.make()
    for bad, code in ((req("", volume=100), "CLIENT_ID_MISSING"), (req("V1", volume=0), "VOLUME_INVALID"),
                      (req("V2", price=0.0), "PRICE_INVALID")):
        with pytest.raises(OrderRejected) as error:
            trader.place_order(bad)
        assert error.value.code == code
    assert sends(counterpart) == 0


# ---- cancels -------------------------------------------------------------------------------------------------------
def test_cancel_goes_through_cancel_pending_to_cancelled(env, counterpart):
    counterpart.auto_confirm_cancel = False
    trader, rec = env.make()
    trader.place_order(req("C1", volume=1000, price=10.0))
    rec.wait(lambda: rec.statuses("C1") == [S, O])
    trader.cancel_order("C1")  # by our client id
    rec.wait(lambda: rec.statuses("C1")[-1:] == [CP])  # 51: requested, not yet cancelled
    assert trader.query_asset().frozen_cash == 10000.0
    counterpart.confirm_cancel(1001)
    rec.wait(lambda: rec.statuses("C1")[-1:] == [CX])  # 54
    assert rec.statuses("C1") == [S, O, CP, CX]
    assert trader.query_asset() == Asset(100000.0, 0.0, 10200.0, 110200.0)

    trader.place_order(req("C2", volume=1000, price=10.0))
    rec.wait(lambda: rec.statuses("C2") == [S, O])
    counterpart.fill(1002, 300, 10.0)
    rec.wait(lambda: rec.statuses("C2")[-1:] == [P])
    trader.cancel_order("1002")  # by QMT order id
    rec.wait(lambda: rec.statuses("C2")[-1:] == [CP])  # 52
    counterpart.confirm_cancel(1002)
    rec.wait(lambda: rec.statuses("C2")[-1:] == [CX])  # 53: partly filled, rest cancelled
    assert rec.statuses("C2") == [S, O, P, CP, CX] and rec.last("C2").filled_volume == 300

    with pytest.raises(OrderRejected) as error:
        trader.cancel_order("no-such-order")
    assert error.value.code == "ORDER_NOT_FOUND"


def test_cancel_requested_before_qmt_named_the_order_is_sent_when_it_does(env, counterpart):
    counterpart.strip_remarks = True
    counterpart.hold_order_responses = True
    trader, rec = env.make()
    trader.place_order(req("D1"))
    trader.cancel_order("D1")  # no order id yet: the response is still held
    counterpart.release_held_responses()
    rec.wait(lambda: rec.statuses("D1")[-1:] == [CX])
    assert rec.statuses("D1") == [S, O, CP, CX]
    assert [m for m, _, _ in counterpart.request_log].count("cancelOrderStockWithSeq") == 1


def test_failed_cancel_is_reported_and_changes_nothing(env, counterpart):
    trader, rec = env.make()
    trader.place_order(req("C3", volume=100))
    rec.wait(lambda: rec.statuses("C3") == [S, O])
    counterpart.fill(1001, 100)
    rec.wait(lambda: rec.statuses("C3")[-1:] == [F])
    trader.cancel_order("C3")
    rec.wait(lambda: rec.last("C3").reason == "撤单失败：委托已是最终状态，不能撤单")
    assert rec.statuses("C3") == [S, O, F, F]


# ---- pushes before the async response ------------------------------------------------------------------------------
def test_order_and_fill_pushes_before_the_async_response(env, counterpart):
    counterpart.push_order_before_response = True
    counterpart.hold_order_responses = True
    trader, rec = env.make()
    trader.place_order(req("E1", volume=1000))
    rec.wait(lambda: rec.statuses("E1") == [S, O])  # known by remark before QMT answered the request
    counterpart.fill(1001, 200, 10.0)
    rec.wait(lambda: len(rec.fills) == 1)
    counterpart.release_held_responses()
    trader.place_order(req("E2", volume=100))
    counterpart.release_held_responses()
    rec.wait(lambda: rec.statuses("E2") == [S, O])
    assert rec.statuses("E1") == [S, O, P]
    assert [(f.client_id, f.order_id, f.volume) for f in rec.fills] == [("E1", "1001", 200)]
    journal = Database(env.tmp_path / "trading.db")
    rows = journal.query("SELECT client_id, order_id, seq FROM qmt_order_map ORDER BY seq")
    # seq 1 went to subscribe; liveness probes (issue 13) may take seqs in between
    assert [tuple(r)[:2] for r in rows] == [("E1", "1001"), ("E2", "1002")] and 2 <= rows[0][2] < rows[1][2]


# ---- disconnects ---------------------------------------------------------------------------------------------------
def test_link_drop_in_the_middle_of_an_order_reconnects_and_never_resends(env, counterpart):
    trader, rec = env.make(session_start=500)
    counterpart.drop_link_on_next_order = True  # booked by the counter, answer lost with the link
    counterpart.refuse_connects = 2  # two failed attempts: back-off, then a new session
    trader.place_order(req("F1"))
    rec.wait(lambda: rec.statuses("F1") == [O])  # learnt from the re-queried orders, matched by remark
    assert trader.is_connected() and trader.reconnects == 1
    assert trader.connection_status()["session_id"] == 503  # 500 first, 501/502 refused
    assert counterpart.connect_attempts == 4
    assert len(counterpart.order_by_remark("F1")) == 1 and sends(counterpart) == 1

    counterpart.fill(1001, 1000, 10.0)
    rec.wait(lambda: rec.statuses("F1")[-1:] == [F])
    assert [(f.client_id, f.volume) for f in rec.fills] == [("F1", 1000)]
    with pytest.raises(OrderRejected) as error:
        trader.place_order(req("F1"))
    assert error.value.code == "DUPLICATE_CLIENT_ID" and sends(counterpart) == 1


def test_order_lost_with_the_link_is_reported_unknown_not_resent(env, counterpart):
    counterpart.lose_next_order = True
    trader, rec = env.make()
    trader.place_order(req("G1"))
    rec.wait(lambda: rec.statuses("G1") == [OrderStatus.UNKNOWN])  # issue 25: maybe only booked late
    assert rec.last("G1").reason == "连接中断，委托是否送达 miniQMT 未知（重连后暂未查到），结果未知：按备注继续核对，不会重发"
    assert counterpart.orders == {} and sends(counterpart) == 1
    trader.place_order(req("G2"))
    rec.wait(lambda: rec.statuses("G2") == [S, O])
    assert sends(counterpart) == 2


def test_fills_missed_while_disconnected_are_delivered_after_reconnecting(env, counterpart):
    trader, rec = env.make()
    trader.place_order(req("H1"))
    rec.wait(lambda: rec.statuses("H1") == [S, O])
    counterpart.refuse_connects = 10 ** 6
    counterpart.disconnect()
    counterpart.fill(1001, 400, 10.0)  # nobody is connected to hear these
    counterpart.fill(1001, 600, 10.0)
    assert counterpart.wait_for_connect_attempts(2, WAIT)  # the worker noticed and is reconnecting
    with pytest.raises(BrokerUnavailable) as error:  # meanwhile orders are refused, not queued
        trader.place_order(req("H2"))
    assert error.value.code == "QMT_DISCONNECTED"
    counterpart.refuse_connects = 0
    rec.wait(lambda: rec.statuses("H1")[-1:] == [F] and len(rec.fills) == 2)
    assert rec.statuses("H1") == [S, O, F]
    assert [(f.fill_id, f.volume, f.commission, f.transfer_fee) for f in rec.fills] == [
        ("1001-T000001-20240102", 400, 5.0, 0.04), ("1001-T000002-20240102", 600, 0.0, 0.06)]
    assert sends(counterpart) == 1


def test_query_against_a_hung_miniqmt_times_out(env, counterpart):
    trader, _ = env.make(timings=BrokerTimings(query_timeout=0.3, connect_timeout=5.0))
    counterpart.hang()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as error:
        trader.query_asset()
    assert error.value.code == "QMT_QUERY_TIMEOUT" and error.value.message == "查询资金超时（0.3 秒），miniQMT 无响应"
    assert time.monotonic() - started < 3.0


# ---- restart -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strip_remarks", [False, True])
def test_restart_finds_the_order_of_the_previous_process(env, counterpart, strip_remarks):
    counterpart.strip_remarks = strip_remarks  # without remarks the journaled order id does it
    first, rec1 = env.make(session_start=500)
    first.place_order(req("K1", volume=1000, price=10.0))
    rec1.wait(lambda: rec1.statuses("K1") == [S, O])
    first.close()

    second, rec2 = env.make(session_start=700, db=Database(env.tmp_path / "trading.db"))
    assert second.query_orders() == [Order("K1", "600036.SH", Side.BUY, 1000, 10.0, O, order_id="1001",
                                           filled_volume=0, filled_amount=0.0, time=MARKET_OPEN, reason="")]
    with pytest.raises(OrderRejected):
        second.place_order(req("K1"))
    counterpart.fill(1001, 1000, 10.0)
    rec2.wait(lambda: rec2.statuses("K1")[-1:] == [F] and len(rec2.fills) == 1)
    assert rec2.fills[0].client_id == "K1" and second.query_trades() == rec2.fills
    assert sends(counterpart) == 1


# ---- threading -----------------------------------------------------------------------------------------------------
def test_listener_querying_from_on_fill_while_fills_stream_in_does_not_deadlock(env, counterpart):
    trader, rec = env.make()
    assets: list[Asset] = []

    class QueryingRecorder(Recorder):
        def on_fill(self, fill: Fill) -> None:
            assets.append(trader.query_asset())  # a blocking query from inside the event delivery
            trader.query_positions()
            super().on_fill(fill)

    rec = QueryingRecorder()
    trader.set_listener(rec)
    trader.place_order(req("Q1", volume=2000, price=10.0))
    rec.wait(lambda: rec.statuses("Q1") == [S, O])
    filler = threading.Thread(target=lambda: [counterpart.fill(1001, 100, 10.0) for _ in range(20)])
    filler.start()
    for _ in range(10):
        trader.query_orders()  # the caller's thread queries while fills are pushed
    filler.join(WAIT)
    rec.wait(lambda: len(rec.fills) == 20 and rec.statuses("Q1")[-1:] == [F])
    assert len(assets) == 20 and assets[-1] == Asset(79995.0, 0.0, 30200.0, 110195.0)
    assert rec.threads == {"qmt-events"}
    # Nothing ever called into xttrader from xttrader's own callback thread.
    assert not [name for _, name, _ in counterpart.request_log if name.startswith("ThreadPoolExecutor")]


def test_events_before_a_listener_is_set_are_kept(env, counterpart):
    trader, _ = env.make(listen=False)  # as in daemon/composition.py: connect first, set_listener after
    trader.place_order(req("L1", volume=100))
    [booked] = counterpart.order_by_remark("L1")
    rec = Recorder()
    trader.set_listener(rec)
    rec.wait(lambda: rec.statuses("L1") == [S, O])
    assert booked.order_id == 1001


# ---- connecting ----------------------------------------------------------------------------------------------------
def test_connect_failures_are_clear_and_never_show_the_account_id(env, counterpart, caplog):
    caplog.set_level(logging.DEBUG)
    counterpart.refuse_connects = 1
    trader, _ = env.make(connect=False)
    with pytest.raises(BrokerUnavailable) as error:
        trader.connect()
    assert error.value.code == "QMT_CONNECT_FAILED" and "极简模式" in error.value.message

    other, _ = env.make(account_id="8800999999", connect=False)
    with pytest.raises(BrokerUnavailable) as error:
        other.connect()
    assert error.value.code == "QMT_SUBSCRIBE_FAILED"
    assert "88******99" in error.value.message and "8800999999" not in error.value.message

    trader.connect()
    trader.place_order(req("M1", volume=100))
    trader.close()
    assert caplog.records and not [r for r in caplog.records if ACCOUNT_ID in r.getMessage()]
    assert {c.path for c in counterpart.clients} == {str(env.qmt_dir)}  # gb18030 round trip of a Chinese path


def test_connect_live_broker_builds_and_connects_from_account_config(env, counterpart):
    config_file = env.tmp_path / "account_config.json"
    config_file.write_text(json.dumps({"account_id": ACCOUNT_ID, "account_type": "STOCK",
                                       "qmt_path": str(env.qmt_dir.parent)}), encoding="utf-8")
    trader = connect_live_broker(env.settings, env.tmp_path / "data", clock=env.clock,
                                 account_config_path=config_file, timings=FAST)
    try:
        assert trader.is_connected() and trader.mode == "live"
        assert trader.qmt_path == str(env.qmt_dir)  # the install folder was given: its userdata_mini is used
        assert (env.tmp_path / "data" / "trading.db").exists()
        assert trader.connection_status()["account"] == "88******56"
    finally:
        trader.close()


def test_the_daemon_takes_the_query_timeout_from_its_settings(env, counterpart):
    """connect_live_broker without explicit timings (as daemon/composition.py calls it) uses QMT_QUERY_TIMEOUT."""
    config_file = env.tmp_path / "account_config.json"
    config_file.write_text(json.dumps({"account_id": ACCOUNT_ID, "account_type": "STOCK",
                                       "qmt_path": str(env.qmt_dir.parent)}), encoding="utf-8")
    env.settings.update({"QMT_QUERY_TIMEOUT": 0.5})
    trader = connect_live_broker(env.settings, env.tmp_path / "data", clock=env.clock, account_config_path=config_file)
    try:
        counterpart.hang()
        with pytest.raises(BrokerUnavailable) as error:
            trader.query_asset()
        assert error.value.message == "查询资金超时（0.5 秒），miniQMT 无响应"
    finally:
        counterpart.end_hang()
        trader.close()


def test_live_mode_without_xtpythonclient_fails_fast_with_a_chinese_message(tmp_path):
    settings = ConfigStore(Database(tmp_path / "config.db"))
    with native_modules(None):
        with pytest.raises(BrokerUnavailable) as error:
            connect_live_broker(settings, tmp_path / "data", account_config_path=tmp_path / "missing.json")
    assert error.value.code == "QMT_NOT_AVAILABLE"
    assert "Windows" in error.value.message and "--simulation" in error.value.message
    assert not (tmp_path / "data" / "trading.db").exists()


def test_live_mode_in_a_fresh_interpreter_on_this_machine_fails_cleanly(tmp_path):
    folder = repr(str(tmp_path))
    script = ("import sys\nfrom pathlib import Path\n"
              "from persistence.config_store import ConfigStore\nfrom persistence.storage import Database\n"
              "from easy_qmt_trader import connect_live_broker\nfrom core.models import BrokerUnavailable\n"
              "try:\n"
              f"    connect_live_broker(ConfigStore(Database(Path({folder}) / 'c.db')), Path({folder}))\n"
              "except BrokerUnavailable as exc:\n"
              "    print(exc.code); sys.exit(4)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip(), result.stderr) == (4, "QMT_NOT_AVAILABLE", "")


# ---- account config and path ---------------------------------------------------------------------------------------
def test_account_config_is_checked_with_chinese_messages(tmp_path):
    path = tmp_path / "account_config.json"
    with pytest.raises(BrokerUnavailable) as error:
        load_account_config(path)
    assert error.value.code == "ACCOUNT_CONFIG_MISSING" and "account_config.json.example" in error.value.message
    path.write_text((PROJECT / "account_config.json.example").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(BrokerUnavailable) as error:
        load_account_config(path)
    assert error.value.code == "ACCOUNT_ID_MISSING"
    for content, code in (("{not json", "ACCOUNT_CONFIG_INVALID"),
                          ('{"account_id": "123456", "account_type": "CREDIT"}', "ACCOUNT_TYPE_UNSUPPORTED"),
                          ('{"account_id": "123456", "price_type": "market"}', "PRICE_TYPE_INVALID")):
        path.write_text(content, encoding="utf-8")
        with pytest.raises(BrokerUnavailable) as error:
            load_account_config(path)
        assert error.value.code == code
    path.write_text('{"account_id": 8800123456, "qmt_path": "D:/qmt/userdata_mini"}', encoding="utf-8")
    assert load_account_config(path) == AccountConfig("8800123456", "STOCK", "D:/qmt/userdata_mini", "limit")
    assert (mask_account_id("8800123456"), mask_account_id("1234")) == ("88******56", "****")


def test_qmt_path_is_configured_or_detected_or_explained(tmp_path):
    found = tmp_path / "D" / "国金证券QMT交易端" / "userdata_mini"
    found.mkdir(parents=True)
    candidates = [tmp_path / "C" / "国金证券QMT交易端" / "userdata_mini", found]
    assert resolve_qmt_path(str(found), []) == found
    assert resolve_qmt_path(str(found.parent), []) == found
    assert resolve_qmt_path("", candidates) == found
    assert resolve_qmt_path(str(tmp_path / "nowhere"), candidates) == found
    with pytest.raises(BrokerUnavailable) as error:
        resolve_qmt_path(str(tmp_path / "nowhere"), candidates[:1])
    assert error.value.code == "QMT_PATH_NOT_FOUND"
    for tried in (tmp_path / "nowhere", tmp_path / "nowhere" / "userdata_mini", candidates[0]):
        assert str(tried) in error.value.message


# ---- importing xtquant stays offline -------------------------------------------------------------------------------
_NETWORK_GUARD = """
import json, socket, sys, types
attempts = []
def refuse(*args, **kwargs):
    attempts.append("socket")
    raise OSError("network disabled in this test")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
requests = types.ModuleType("requests")  # stands in for requests so a check would reach get() offline
class Answer:
    status_code = 500
def get(url, **kwargs):
    attempts.append(url)
    return Answer()
requests.get = get
sys.modules["requests"] = requests
pkg_resources = types.ModuleType("pkg_resources")
pkg_resources.get_distribution = lambda name: types.SimpleNamespace(version="0")
sys.modules["pkg_resources"] = pkg_resources
if sys.argv[1] == "plain":
    import xtquant
else:
    from qmt.session import load_xt_api
    from core.models import BrokerUnavailable
    try:
        load_xt_api()
    except BrokerUnavailable:
        pass
    from qmt.xtquant_import import import_xtquant
    assert import_xtquant("xtconstant").FIX_PRICE == 11
print(json.dumps(attempts))
"""


@pytest.mark.parametrize("how, expected", [("plain", ["https://pypi.org/pypi/xtquant/json"]), ("ours", [])])
def test_importing_xtquant_our_way_does_no_network_io(how, expected):
    # "plain" is the control: it proves the guard sees xtquant's update check when it runs.
    result = subprocess.run([sys.executable, "-c", _NETWORK_GUARD, how], cwd=PROJECT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


# ---- with the real order pipeline ----------------------------------------------------------------------------------
def test_trading_executor_trades_and_recovers_through_the_live_broker(env, counterpart):
    from position_manager import PositionManager
    from trading_executor import TradingExecutor

    quote = Quote("600036.SH", 10.0, 10.0, MARKET_OPEN, "test", limit_up=11.0, limit_down=9.0)

    def build(session_start: int):
        trader, _ = env.make(session_start=session_start, listen=False)
        db = Database(env.tmp_path / "trading.db")
        positions = PositionManager(db, env.settings, env.clock, "live")
        executor = TradingExecutor(db, trader, positions, lambda code: quote if code == quote.code else None,
                                   env.settings, env.clock)
        booked = threading.Semaphore(0)
        executor.add_fill_listener(lambda fill, rule: booked.release())
        trader.set_listener(executor)
        executor.recover()
        return trader, executor, positions, booked

    trader, executor, positions, booked = build(500)
    order = executor.buy_stock("600036.SH", volume=1000, price=10.0)
    assert order.client_id and counterpart.order_by_remark(order.client_id)[0].order_id == 1001
    counterpart.fill(1001, 400, 10.0)
    counterpart.fill(1001, 600, 10.0)
    assert booked.acquire(timeout=WAIT) and booked.acquire(timeout=WAIT)
    records = executor.trade_records()
    assert [(r["volume"], r["price"], r["fees"]) for r in records] == [(400, 10.0, 5.04), (600, 10.0, 0.06)]
    trader.close()

    # A new process: the broker's view (volume, T+1 available, open_price) wins; nothing is booked twice.
    trader2, executor2, positions2, _ = build(700)
    position = positions2.get("600036.SH")
    assert (position.volume, position.available, position.cost_price) == (1000, 0, 10.0)
    assert len(executor2.trade_records()) == 2 and sends(counterpart) == 1
