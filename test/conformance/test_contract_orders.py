"""The broker contract (brokers/CONTRACT.md §1–§5) on every back-end, without faults: an order with a remark is
acknowledged or refused with a message, fills arrive and are booked once, cancels, a refused cancel of an ended
order, queries that agree with the venue, a used remark refused, and a restart of the daemon that reconciles by
remark. Every case ends with the daemon's books equal to the venue's."""
from __future__ import annotations

import pytest

from books import assert_books_equal, assert_no_duplicate
from core.models import OrderRejected, OrderRequest, OrderStatus, Rule, Side, TradingError
from rig import BUY_CODE, CODE, HELD

ASK = 10.50  # a sell resting above the market (10.20), under limit-up 10.89
BID = 10.00  # a buy of BUY_CODE resting below its market (10.30), above limit-down 9.00


def test_sell_is_acknowledged_then_filled_in_parts_each_fill_booked_once(rig, daemon):
    order = daemon.sell(400, ASK)
    order_id = daemon.wait_acknowledged(order.client_id)
    assert rig.venue.book().order(order.client_id).order_id == order_id
    assert daemon.positions.get(CODE).available == HELD - 400
    rig.venue.fill(order.client_id, 100)
    daemon.wait_status(order.client_id, OrderStatus.PARTIALLY_FILLED)
    rig.venue.fill(order.client_id)
    daemon.wait_status(order.client_id, OrderStatus.FILLED)
    assert daemon.fills() == [(order.client_id, "sell", 100, ASK), (order.client_id, "sell", 300, ASK)]
    assert daemon.positions.get(CODE).volume == HELD - 400
    assert_books_equal(daemon, sync=False)  # by the pushes alone
    assert_books_equal(daemon)


def test_buy_fills_books_cash_and_t1_positions_as_the_venue(rig, daemon):
    order = daemon.buy(200, BID)
    daemon.wait_acknowledged(order.client_id)
    rig.venue.fill(order.client_id)
    daemon.wait_status(order.client_id, OrderStatus.FILLED)
    assert daemon.fills() == [(order.client_id, "buy", 200, BID)]
    bought = daemon.positions.get(BUY_CODE)
    assert (bought.volume, bought.available) == (200, 0)  # T+1
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)


def test_refusal_carries_the_venues_message_and_frees_the_shares(rig, daemon):
    words = rig.venue.reject_next_order("柜台拒绝：风控检查未通过")
    client_id = None
    try:  # a definite refusal: raised at once, or reported as a rejected order event
        client_id = daemon.sell(300, ASK).client_id
    except OrderRejected as exc:
        assert words in exc.message
    client_id = client_id or daemon.executor.journal.entries()[0].client_id
    daemon.wait_status(client_id, OrderStatus.REJECTED)
    assert words in daemon.entry(client_id).reason
    assert daemon.positions.get(CODE).available == HELD
    assert [o for o in rig.venue.book().orders if o.working] == []
    assert_books_equal(daemon)
    again = daemon.sell(300, ASK)  # the next order goes through
    daemon.wait_acknowledged(again.client_id)
    assert_books_equal(daemon)


def test_cancel_of_a_working_and_of_a_partly_filled_order(rig, daemon):
    part = daemon.sell(400, ASK)  # the best-priced sell is the one that fills (a quote-driven venue fills by price)
    whole = daemon.sell(300, 10.60)
    daemon.wait_acknowledged(whole.client_id)
    daemon.wait_acknowledged(part.client_id)
    rig.venue.fill(part.client_id, 100)
    daemon.wait_status(part.client_id, OrderStatus.PARTIALLY_FILLED)
    daemon.executor.cancel_order(whole.client_id)
    daemon.executor.cancel_order(part.client_id)
    daemon.wait_status(whole.client_id, OrderStatus.CANCELLED)
    daemon.wait_status(part.client_id, OrderStatus.CANCELLED)
    assert daemon.entry(part.client_id).filled_volume == 100
    position = daemon.positions.get(CODE)
    assert (position.volume, position.available) == (HELD - 100, HELD - 100)
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)


def test_cancel_of_an_ended_order_is_refused_and_changes_nothing(rig, daemon):
    order = daemon.sell(300, ASK)
    order_id = daemon.wait_acknowledged(order.client_id)
    rig.venue.fill(order.client_id)
    daemon.wait_status(order.client_id, OrderStatus.FILLED)
    try:  # refused at once, or the refusal arrives as an event: either way the order stays filled
        daemon.broker.cancel_order(order_id)
    except OrderRejected:
        pass
    rig.settle()
    assert daemon.status(order.client_id) is OrderStatus.FILLED
    assert rig.venue.book().order(order.client_id).status is OrderStatus.FILLED
    assert_books_equal(daemon)


def test_queries_answer_within_the_deadline_and_agree_with_the_venue(rig, daemon):
    sold, bought = daemon.sell(400, ASK), daemon.buy(100, BID)
    daemon.wait_acknowledged(sold.client_id)
    daemon.wait_acknowledged(bought.client_id)
    rig.venue.fill(sold.client_id, 200)
    rig.venue.fill(bought.client_id)
    daemon.wait_status(bought.client_id, OrderStatus.FILLED)
    daemon.wait_status(sold.client_id, OrderStatus.PARTIALLY_FILLED)
    rig.settle()
    book = rig.venue.book()
    broker = daemon.broker  # the daemon's BrokerGuard: each call raises past BROKER_CALL_TIMEOUT
    assert broker.query_asset().cash == pytest.approx(book.cash, abs=0.005)
    assert {p.stock_code: (p.volume, p.available) for p in broker.query_positions()} == book.positions
    orders = {o.client_id: (o.order_id, o.status, o.filled_volume) for o in broker.query_orders() if o.client_id}
    assert orders == {o.remark: (o.order_id, o.status, o.filled_volume) for o in book.orders}
    pushed = {r["fill_id"] for r in daemon.executor.trade_records()}
    queried = broker.query_trades()
    assert {f.fill_id for f in queried} == pushed and len(queried) == len(pushed) == 2  # one id per execution
    assert sorted((f.client_id, f.volume) for f in queried) == sorted([(sold.client_id, 200), (bought.client_id, 100)])
    assert_books_equal(daemon)


def test_a_used_remark_is_refused_never_sent_twice(rig, daemon):
    order = daemon.sell(300, ASK)
    daemon.wait_acknowledged(order.client_id)
    with pytest.raises(OrderRejected):
        daemon.broker.place_order(OrderRequest(order.client_id, CODE, Side.SELL, 300, ASK, Rule.MANUAL))
    rig.settle()
    assert rig.venue.book().received.count(order.client_id) == 1
    assert_books_equal(daemon)


def test_daemon_restart_reconciles_by_remark_and_books_each_fill_once(rig, daemon):
    sold, resting = daemon.sell(400, ASK), daemon.sell(300, 10.60)
    daemon.wait_acknowledged(sold.client_id)
    daemon.wait_acknowledged(resting.client_id)
    rig.venue.fill(sold.client_id, 100)
    daemon.wait_status(sold.client_id, OrderStatus.PARTIALLY_FILLED)
    daemon.restart()
    assert [daemon.status(c) for c in (sold.client_id, resting.client_id)] == [OrderStatus.PARTIALLY_FILLED,
                                                                               OrderStatus.OPEN]
    assert_books_equal(daemon, sync=False)
    rig.venue.fill(sold.client_id)
    daemon.wait_status(sold.client_id, OrderStatus.FILLED)
    daemon.executor.cancel_order(resting.client_id)  # the order id learnt before the restart still cancels
    daemon.wait_status(resting.client_id, OrderStatus.CANCELLED)
    with pytest.raises(TradingError):  # the journal still refuses a repeat of a used remark after the restart
        daemon.broker.place_order(OrderRequest(sold.client_id, CODE, Side.SELL, 100, ASK, Rule.MANUAL))
    assert daemon.fills() == [(sold.client_id, "sell", 100, ASK), (sold.client_id, "sell", 300, ASK)]
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)


def test_fills_made_while_the_daemon_was_down_are_booked_once_at_start(rig, daemon):
    order = daemon.sell(400, ASK)
    daemon.wait_acknowledged(order.client_id)
    rig.venue.fill(order.client_id, 100)
    daemon.wait_status(order.client_id, OrderStatus.PARTIALLY_FILLED)
    rig.broker.close()  # the daemon is down ...
    rig.venue.fill(order.client_id)  # ... while the rest fills at the venue
    daemon.restart()
    daemon.until(lambda: daemon.status(order.client_id) is OrderStatus.FILLED, "the fill made while down",
                 step=rig.settle)
    assert daemon.fills() == [(order.client_id, "sell", 100, ASK), (order.client_id, "sell", 300, ASK)]
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)
    assert_no_duplicate(rig)
