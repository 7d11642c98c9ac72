"""Issue 25 §2, the broker / order-pipeline paths that could silently block a stop-loss or double an order. The
REAL xttrader.py drives the simulated miniQMT (test/stand_ins/fake_xtpythonclient.py); each test reproduces one
path and ends with the invariants: no order sent twice at the counterpart, our books equal the counterpart's."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import datetime
from types import SimpleNamespace

import pytest

from qmt.broker_guard import BrokerGuard, OutcomeUnknown
from daemon.daemon_workers import Housekeeper
from core.models import Fill, OrderRejected, OrderStatus, Rule, Side
from core.order_journal import MIGRATIONS as ORDER_JOURNAL_MIGRATIONS, OrderJournal
from qmt.order_journal import MIGRATIONS as QMT_MIGRATIONS, QmtOrderJournal, fill_key
from persistence.storage import Database, migrate
from trading_executor import TradingExecutor
from test_easy_qmt_trader import WAIT, counterpart, env, loopback_only  # noqa: F401 (fixtures)
from test_qmt_bad_day import (ACK_TIMEOUT, QUOTES, RECONNECT_BUDGET, broker_sync, codes, live_stack, settle_unknown,
                              status)

O, P, F, CX, RJ, UN = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELLED,
                       OrderStatus.REJECTED, OrderStatus.UNKNOWN)
SL_CODE, BUY_CODE = "000001.SZ", "600036.SH"


def assert_books_equal(stack, counterpart) -> None:
    """Positions and trade records equal the counterpart's book; no order request was sent twice."""
    assert len(counterpart.sent_remarks) == len(set(counterpart.sent_remarks))
    held = {p.stock_code: p.volume for p in stack.positions.all() if p.volume > 0}
    assert held == {code: p.volume for code, p in counterpart.positions.items() if p.volume > 0}
    ours = sorted((r["order_id"], r["volume"], r["price"]) for r in stack.executor.trade_records())
    theirs = sorted((str(t.order_id), t.traded_volume, t.traded_price) for t in counterpart.trade_history)
    assert ours == theirs


def orders_at_counter(counterpart, code: str) -> list[tuple[int, int, float, int]]:
    return [(o.volume, o.order_type, o.price, o.status) for o in counterpart.orders.values() if o.stock_code == code]


# ---- item 2: a send that fails after reaching the broker -----------------------------------------------------------
def test_send_failing_after_reaching_the_broker_answers_409_and_refuses_the_repeat_until_reconciled(
        env, counterpart, tmp_path):
    from web_test_support import Client, build_system
    from web_server import WebServer

    stack = live_stack(env)
    system = build_system(tmp_path / "web")
    ctx = replace(system.ctx, executor=stack.executor, positions=stack.positions, broker=stack.trader, mode="live",
                  data=SimpleNamespace(get_latest_data=QUOTES.get))
    server = WebServer(ctx, "127.0.0.1", 0)
    server.start()
    client = Client(server.port)
    try:
        counterpart.fail_next_order_call = "after"  # booked at the counter, the native call then raises
        first = client.post("/api/actions/execute_buy", {"stock_code": BUY_CODE, "volume": 1000, "price": 10.0})
        assert first.status == 409 and first.json["code"] == "ORDER_OUTCOME_UNKNOWN"
        assert "结果未知" in first.json["message"] and "native send failed" in first.json["message"]
        [entry] = stack.executor.journal.entries()
        assert entry.status is UN
        listed = client.get("/api/orders").json["data"]
        assert [(o["client_id"], o["status_label"]) for o in listed] == [(entry.client_id, "结果未知")]
        again = client.post("/api/actions/execute_buy", {"stock_code": BUY_CODE, "volume": 1000, "price": 10.0})
        assert again.status == 409 and again.json["code"] == "ORDER_OUTCOME_UNKNOWN"
        assert entry.client_id in again.json["message"]
        assert len(stack.executor.journal.entries()) == 1 and len(counterpart.sent_remarks) == 1
        # reconciled by its remark (the reconnect ORDER_ACK_TIMEOUT forces): it works at the counter
        stack.relay.wait(lambda: status(stack, entry.client_id) is O, ACK_TIMEOUT + RECONNECT_BUDGET)
        assert stack.executor.journal.get(entry.client_id).order_id == "1001"
    finally:
        client.close()
        server.stop(2.0)
        system.close()
    counterpart.fill(1001, 1000, 10.0)
    stack.relay.wait(lambda: status(stack, entry.client_id) is F)
    assert orders_at_counter(counterpart, BUY_CODE) == [(1000, 23, 10.0, 56)]
    assert_books_equal(stack, counterpart)
    assert stack.positions.get(BUY_CODE).volume == 1000


def test_booking_delay_leaves_the_stop_loss_unknown_not_undelivered_and_no_second_sell_goes_out(env, counterpart):
    counterpart.next_day()  # all 1000 shares sellable
    stack = live_stack(env)
    counterpart.order_delay = 2.0  # the counter books it 2 s late: past ORDER_ACK_TIMEOUT and a reconnect
    first = stack.executor.sell_stock(SL_CODE, 200, price=10.0, rule=Rule.STOP_LOSS)
    stack.relay.wait(lambda: status(stack, first.client_id) is UN and stack.trader.reconnects == 1,
                     ACK_TIMEOUT + RECONNECT_BUDGET)
    assert "未送达" not in stack.executor.journal.get(first.client_id).reason
    for rule in (Rule.STOP_LOSS, Rule.MANUAL):  # automatic and manual repeats alike
        with pytest.raises(OutcomeUnknown) as refused:
            stack.executor.sell_stock(SL_CODE, 200, price=10.0, rule=rule)
        assert refused.value.code == "ORDER_OUTCOME_UNKNOWN" and first.client_id in refused.value.message
    stack.executor.check_open_orders()  # younger than ORDER_UNKNOWN_SETTLE_SECONDS: not judged yet
    assert status(stack, first.client_id) is UN
    stack.relay.wait(lambda: status(stack, first.client_id) is O, 2.0 + RECONNECT_BUDGET)  # booked late: found
    assert stack.positions.get(SL_CODE).available == 800
    [booked] = counterpart.order_by_remark(first.client_id)
    counterpart.fill(booked.order_id, 200, 10.0)
    stack.relay.wait(lambda: status(stack, first.client_id) is F)
    assert orders_at_counter(counterpart, SL_CODE) == [(200, 24, 10.0, 56)]
    assert_books_equal(stack, counterpart)
    assert (stack.positions.get(SL_CODE).volume, stack.positions.get(SL_CODE).available) == (800, 800)


# ---- item 4: a second identical cancel refusal ---------------------------------------------------------------------
def test_every_identical_cancel_refusal_brings_the_order_back_and_a_query_gives_its_real_state(env, counterpart):
    counterpart.next_day()
    stack = live_stack(env)
    order = stack.executor.sell_stock(SL_CODE, 300, price=10.5, rule=Rule.MANUAL)
    stack.relay.wait(lambda: status(stack, order.client_id) is O)
    counterpart.refuse_cancels("柜台拒绝撤单：当前时段不允许撤单")
    for _ in range(2):  # the second refusal is word for word the first
        stack.executor.cancel_order(order.client_id)
        stack.relay.wait(lambda: status(stack, order.client_id) is O)
        assert stack.executor.journal.get(order.client_id).reason == "撤单失败：柜台拒绝撤单：当前时段不允许撤单"
    counterpart.clear_faults()
    # the counter fills it while its pushes are lost; our cancel is refused ("final state"): the query says filled
    counterpart.drop_pushes(60.0)
    [booked] = counterpart.order_by_remark(order.client_id)
    counterpart.fill(booked.order_id, 300, 10.5)
    stack.executor.cancel_order(order.client_id)
    stack.relay.wait(lambda: status(stack, order.client_id) is F)
    stack.executor.check_open_orders()
    assert not stack.executor.open_orders(SL_CODE, Side.SELL)
    broker_sync(stack)  # its fill, never pushed, is booked by query
    counterpart.clear_faults()
    assert [m for m, _, _ in counterpart.request_log].count("cancelOrderStockWithSeq") == 3
    assert_books_equal(stack, counterpart)
    assert stack.positions.get(SL_CODE).volume == 700


# ---- item 1: an order left open over the close ----------------------------------------------------------------------
def test_order_open_over_the_close_is_settled_at_the_day_roll_and_the_stop_loss_goes_out(env, counterpart):
    counterpart.next_day()
    stack = live_stack(env)
    env.clock.set(datetime(2024, 1, 2, 14, 58))
    housekeeper = Housekeeper(env.clock, env.settings, [stack.positions.roll_day, stack.executor.roll_day],
                              lambda day: "")
    housekeeper.run_once()  # remembers today
    manual = stack.executor.sell_stock(SL_CODE, 300, price=11.0, rule=Rule.MANUAL)
    stack.relay.wait(lambda: status(stack, manual.client_id) is O)
    counterpart.start_new_day()  # the counter expired it at the close; xtquant lists only today's orders
    env.clock.set(datetime(2024, 1, 3, 9, 30))
    with pytest.raises(OrderRejected) as refused:  # its id may name another order today: never cancelled by it
        stack.executor.cancel_order(manual.client_id)
    assert refused.value.code == "ORDER_EXPIRED" and status(stack, manual.client_id) is O
    assert [m for m, _, _ in counterpart.request_log].count("cancelOrderStockWithSeq") == 0
    housekeeper.run_once()  # the day roll while running
    entry = stack.executor.journal.get(manual.client_id)
    assert (entry.status, entry.reason) == (CX, "隔日委托：持仓未变化，未成交，已按收盘失效处理")
    assert stack.positions.get(SL_CODE).available == 1000
    stop = stack.executor.sell_stock(SL_CODE, 1000, price=9.5, rule=Rule.STOP_LOSS)
    stack.relay.wait(lambda: status(stack, stop.client_id) is O)
    assert orders_at_counter(counterpart, SL_CODE) == [(1000, 24, 9.5, 50)]
    counterpart.fill(counterpart.order_by_remark(stop.client_id)[0].order_id, 1000, 9.5)
    stack.relay.wait(lambda: status(stack, stop.client_id) is F)
    broker_sync(stack)
    broker_sync(stack)  # sold out: confirmed gone
    assert_books_equal(stack, counterpart)


# ---- item 5: fills lost while pushes stop and queries work ---------------------------------------------------------
def test_fills_lost_with_the_pushes_are_booked_once_by_query_and_the_lapse_raises_an_alarm(env, counterpart, caplog):
    caplog.set_level(logging.WARNING)
    stack = live_stack(env)
    order = stack.executor.buy_stock(BUY_CODE, volume=1000, price=10.0)
    stack.relay.wait(lambda: status(stack, order.client_id) is O)
    counterpart.drop_pushes(60.0)
    counterpart.fill(1001, 400, 9.98)
    broker_sync(stack)  # the daemon's broker_sync pass: the fill is booked from the query
    assert [(r["volume"], r["price"]) for r in stack.executor.trade_records()] == [(400, 9.98)]
    assert (status(stack, order.client_id), stack.positions.get(BUY_CODE).volume) == (P, 400)
    assert "PUSH_LAPSE" not in codes(stack.trader)  # one sighting may be a push still on its way
    broker_sync(stack)  # still not pushed at the next pass: a push lapse
    assert "PUSH_LAPSE" in codes(stack.trader)
    assert any("推送中断" in r.getMessage() for r in caplog.records)
    stack.relay.wait(lambda: stack.trader.reconnects == 1 and stack.trader.link_state == "connected")
    counterpart.fill(1001, 600, 10.0)
    broker_sync(stack)
    broker_sync(stack)
    stack.relay.wait(lambda: status(stack, order.client_id) is F)
    assert [(r["volume"], r["price"]) for r in stack.executor.trade_records()] == [(400, 9.98), (600, 10.0)]
    counterpart.clear_faults()
    assert_books_equal(stack, counterpart)


# ---- item 6: a native send that blocks -------------------------------------------------------------------------------
def test_blocked_native_send_has_a_deadline_and_supervision_goes_on_meanwhile(env, counterpart):
    counterpart.next_day()
    env.settings.update({"QMT_SEND_TIMEOUT": 1.0}, source="test")
    stack = live_stack(env)
    buy = stack.executor.buy_stock(BUY_CODE, volume=500, price=9.9)
    stack.relay.wait(lambda: status(stack, buy.client_id) is O)
    counterpart.send_gate = threading.Event()
    box: dict = {}

    def stop_loss() -> None:
        started = time.monotonic()
        try:
            stack.executor.sell_stock(SL_CODE, 1000, price=10.0, rule=Rule.STOP_LOSS)
        except OutcomeUnknown as exc:
            box["error"] = exc
        box["seconds"] = time.monotonic() - started

    sender = threading.Thread(target=stop_loss)
    sender.start()
    assert counterpart.send_blocked.wait(WAIT)
    started = time.monotonic()
    stack.executor.check_open_orders()  # the orders loop is not held up by the blocked send
    stack.executor.cancel_order(buy.client_id)  # nor are cancels: the broker's lock is free
    stack.relay.wait(lambda: status(stack, buy.client_id) is CX, 0.9)
    assert time.monotonic() - started < 0.9 and sender.is_alive()  # all while the send still blocks
    sender.join(WAIT)
    assert box["error"].code == "ORDER_OUTCOME_UNKNOWN" and 1.0 <= box["seconds"] < 2.0
    [sell] = stack.executor.journal.open_entries(SL_CODE, Side.SELL)
    assert sell.status is UN
    assert "QMT_SEND_TIMEOUT" in codes(stack.trader)
    stack.relay.wait(lambda: stack.trader.reconnects == 1 and stack.trader.link_state == "connected")
    counterpart.send_gate.set()  # the old send finally returns: into a session already closed
    with pytest.raises(OutcomeUnknown):
        stack.executor.sell_stock(SL_CODE, 1000, price=10.0, rule=Rule.STOP_LOSS)
    settle_unknown(stack, env)
    assert status(stack, sell.client_id) is RJ and counterpart.order_by_remark(sell.client_id) == []
    again = stack.executor.sell_stock(SL_CODE, 1000, price=10.0, rule=Rule.STOP_LOSS)
    stack.relay.wait(lambda: status(stack, again.client_id) is O)
    assert orders_at_counter(counterpart, SL_CODE) == [(1000, 24, 10.0, 50)]
    assert_books_equal(stack, counterpart)


# ---- item 10: broker_sync on a call past its deadline ----------------------------------------------------------------
def test_broker_sync_survives_a_broker_call_timeout(env, counterpart, caplog):
    from daemon.composition import _sync_from_broker
    from core.position_review import PositionReviews

    caplog.set_level(logging.WARNING)
    stack = live_stack(env)
    guard = BrokerGuard(stack.trader, lambda: 0.2)  # as daemon/composition.py wraps the broker, with a short deadline
    executor = TradingExecutor(stack.db, guard, stack.positions, QUOTES.get, env.settings, env.clock)
    counterpart.hang()  # answers nothing
    started = time.monotonic()
    _sync_from_broker(stack.positions, guard, PositionReviews(stack.db, env.clock), executor)  # no exception
    assert time.monotonic() - started < 1.0
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("本次券商同步跳过")] == [
        "本次券商同步跳过：券商接口 query_orders 超过 0.2 秒未返回，结果未知（委托不会自动重发，将与券商核对）"]
    assert stack.positions.get(SL_CODE).volume == 1000
    counterpart.end_hang()


# ---- item 11: order and trade ids reused on a later day ---------------------------------------------------------------
def test_fill_reusing_yesterdays_order_and_trade_ids_is_booked(env, counterpart):
    stack = live_stack(env)
    buy = stack.executor.buy_stock(BUY_CODE, volume=100, price=10.0)
    stack.relay.wait(lambda: status(stack, buy.client_id) is O)
    counterpart.fill(1001, 100, 10.0)
    stack.relay.wait(lambda: status(stack, buy.client_id) is F)
    counterpart.start_new_day()
    counterpart.restart_numbering()  # day 2 numbers orders from 1001 and trades from T000001 again
    counterpart.now = lambda: 1704159000 + 86400
    env.clock.set(datetime(2024, 1, 3, 9, 30))
    sell = stack.executor.sell_stock(SL_CODE, 500, price=10.2, rule=Rule.TAKE_PROFIT)
    stack.relay.wait(lambda: status(stack, sell.client_id) is O)
    assert counterpart.order_by_remark(sell.client_id)[0].order_id == 1001
    counterpart.fill(1001, 500, 10.2)
    stack.relay.wait(lambda: status(stack, sell.client_id) is F)
    assert [r["fill_id"] for r in stack.executor.trade_records()] == ["1001-T000001-20240102", "1001-T000001-20240103"]
    assert_books_equal(stack, counterpart)
    assert (stack.positions.get(SL_CODE).volume, stack.positions.get(BUY_CODE).volume) == (500, 100)


def test_fill_ids_of_an_older_database_are_migrated_to_carry_the_trade_date(tmp_path):
    db = Database(tmp_path / "trading.db")
    migrate(db, "order_journal", ORDER_JOURNAL_MIGRATIONS[:2])
    migrate(db, "qmt_order_journal", QMT_MIGRATIONS[:2])
    for mode, fill_id in (("live", "1001-T000001"), ("simulation", "SIMF1")):
        db.execute("INSERT INTO trade_records(fill_id, order_id, client_id, stock_code, side, price, volume, amount,"
                   " commission, stamp_duty, transfer_fee, fees, strategy, mode, trade_time, trading_day)"
                   " VALUES(?, '1001', 'Q1', '600036.SH', 'buy', 10.0, 100, 1000.0, 5.0, 0, 0.01, 5.01, 'manual', ?,"
                   " '2024-01-02 09:30:00', '2024-01-02')", (fill_id, mode))
    db.execute("INSERT INTO qmt_fills VALUES('1001-T000001', '1001', '600036.SH', 'buy', 10.0, 100, 5.0, 0, 0.01,"
               " '2024-01-02T09:30:00')")
    journal = OrderJournal(db, None, "live")
    QmtOrderJournal(db)
    moment = datetime(2024, 1, 2, 9, 30)
    assert journal.has_fill(fill_key("1001", "T000001", moment)) and journal.has_fill("SIMF1")
    assert not journal.has_fill("1001-T000001")
    qmt = QmtOrderJournal(db)
    assert qmt.fill_fees("1001-T000001-20240102") == (5.0, 0.0, 0.01)
    # a later day's fill of the same order id pays its own minimum commission
    settings = SimpleNamespace(get=lambda key: {"COMMISSION_RATE": 0.00025, "MIN_COMMISSION": 5.0,
                                                "STAMP_DUTY_RATE": 0.0005, "TRANSFER_FEE_RATE": 0.00001}[key])
    day2 = Fill(fill_key("1001", "T000001", moment.replace(day=3)), "1001", "Q9", "600036.SH", Side.BUY, 10.0, 100,
                moment.replace(day=3))
    assert qmt.record_fill(day2, settings, 0.0).commission == 5.0
    assert db.query_one("PRAGMA user_version")[0] >= 3 + 3
    db.close()
