"""The fault catalogue (brokers/CONTRACT.md §2–§6) on every back-end that can suffer it: a send that never
returns (「结果未知」), a venue that stops answering or is unreachable, lost pushes, a refused cancel, a venue
restart that renumbers orders, pushes twice / reversed / before the send returns / held back, a full re-push of
the day after a reconnect, a skewed venue clock. Each ends with: no order at the venue twice, every fill booked
exactly once, books equal to the venue's."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest

from books import WAIT, assert_books_equal, assert_no_duplicate
from core.models import BrokerUnavailable, OrderStatus, TradingError
from qmt.broker_guard import OutcomeUnknown
from rig import CODE, HELD
from test_contract_orders import ASK, BID

SETTLED = (OrderStatus.OPEN, OrderStatus.REJECTED)


def _reconcile_until_settled(rig, daemon, client_id: str) -> None:
    """The daemon's orders loop until the order is no longer 「结果未知」: each pass the market clock moves a
    second (ORDER_UNKNOWN_SETTLE_SECONDS is 1 s in the rig) and the executor reconciles by remark."""
    def step() -> None:
        rig.clock.advance(1.0)
        daemon.executor.check_open_orders()
        rig.settle()

    daemon.until(lambda: daemon.status(client_id) in SETTLED, f"{client_id} settled by remark", step=step)


def _agrees_with_the_venue(rig, daemon, client_id: str) -> None:
    """An order that was unknown ends as the venue has it: working there (then it fills normally), or never
    booked there (then rejected, never re-sent)."""
    at_venue = rig.venue.book().orders_of(client_id)
    if at_venue:
        daemon.wait_status(client_id, at_venue[0].status)
        rig.venue.fill(client_id)
        daemon.wait_status(client_id, OrderStatus.FILLED)
    else:
        assert daemon.status(client_id) is OrderStatus.REJECTED


def test_a_send_that_never_returns_is_unknown_refuses_repeats_and_settles_by_remark(rig, daemon):
    rig.venue.hang_next("place_order")
    with pytest.raises(OutcomeUnknown) as unknown:
        daemon.sell(300, ASK)
    [entry] = daemon.executor.journal.entries()
    assert entry.status is OrderStatus.UNKNOWN, unknown.value.message
    with pytest.raises(OutcomeUnknown) as repeat:  # 「结果未知」: no second order for that stock and side
        daemon.sell(300, ASK)
    assert repeat.value.code == "ORDER_OUTCOME_UNKNOWN"
    rig.venue.end_hang()
    daemon.wait_link()
    _reconcile_until_settled(rig, daemon, entry.client_id)
    assert rig.venue.book().received.count(entry.client_id) <= 1
    _agrees_with_the_venue(rig, daemon, entry.client_id)
    assert_books_equal(daemon)


def test_an_unknown_order_survives_a_daemon_restart_and_settles_by_remark(rig, daemon):
    rig.venue.hang_next("place_order")
    with pytest.raises(OutcomeUnknown):
        daemon.sell(300, ASK)
    [entry] = daemon.executor.journal.entries()
    rig.venue.end_hang()
    daemon.wait_calls_returned()
    daemon.restart()
    status, at_venue = daemon.status(entry.client_id), rig.venue.book().orders_of(entry.client_id)
    # still unknown, or found by remark, or (not at the venue: the back-end proved it undelivered) rejected
    assert status in (OrderStatus.UNKNOWN, OrderStatus.OPEN) or (status is OrderStatus.REJECTED and not at_venue)
    if status is OrderStatus.UNKNOWN:  # (the venue may have booked it as the hang ended)
        with pytest.raises(OutcomeUnknown):
            daemon.sell(300, ASK)  # still refused while unknown after the restart
    _reconcile_until_settled(rig, daemon, entry.client_id)
    _agrees_with_the_venue(rig, daemon, entry.client_id)
    assert_books_equal(daemon)


@pytest.mark.parametrize("book_late", [True, False], ids=["booked-late", "lost"])
def test_a_venue_that_stops_answering_loses_or_books_late_and_nothing_is_lost_or_doubled(rig, daemon, book_late):
    working = daemon.sell(200, ASK)
    daemon.wait_acknowledged(working.client_id)
    rig.venue.hang(book_late=book_late)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):  # a query has a deadline of its own, even without the daemon's guard
        rig.broker.query_positions()
    assert time.monotonic() - started < WAIT
    sent = None
    try:  # sent into the silence: accepted for sending, or its outcome unknown
        sent = daemon.sell(300, 10.60).client_id
    except TradingError:
        sent = daemon.executor.journal.entries()[0].client_id
    rig.venue.end_hang()
    daemon.wait_link()
    daemon.wait_calls_returned()
    _reconcile_until_settled(rig, daemon, sent)
    assert_no_duplicate(rig)
    rig.venue.fill(working.client_id)
    daemon.wait_status(working.client_id, OrderStatus.FILLED)
    _agrees_with_the_venue(rig, daemon, sent)
    assert_books_equal(daemon)


def test_fills_lost_with_the_pushes_are_booked_by_query_once(rig, daemon):
    order = daemon.sell(400, ASK)
    daemon.wait_acknowledged(order.client_id)
    rig.venue.drop_pushes()
    rig.venue.fill(order.client_id, 100)
    daemon.until(lambda: len(daemon.fills()) == 1, "the lost fill booked by the broker_sync pass",
                 step=daemon.broker_sync)
    assert daemon.fills() == [(order.client_id, "sell", 100, ASK)]
    rig.venue.restore_pushes()
    daemon.wait_link()
    rig.venue.fill(order.client_id)
    daemon.wait_status(order.client_id, OrderStatus.FILLED)
    assert daemon.fills() == [(order.client_id, "sell", 100, ASK), (order.client_id, "sell", 300, ASK)]
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)


def test_a_refused_cancel_leaves_the_order_working_with_the_reason(rig, daemon):
    order = daemon.sell(300, ASK)
    daemon.wait_acknowledged(order.client_id)
    words = rig.venue.refuse_next_cancel("柜台拒绝撤单：当前时段不允许撤单")
    daemon.executor.cancel_order(order.client_id)
    entry = lambda: daemon.entry(order.client_id)  # noqa: E731
    daemon.wait(lambda: entry().status is OrderStatus.OPEN and words in entry().reason, "the refused cancel reported")
    assert rig.venue.book().order(order.client_id).working
    assert daemon.positions.get(CODE).available == HELD - 300  # still reserved by the working order
    daemon.executor.cancel_order(order.client_id)  # a second cancel goes through
    daemon.wait_status(order.client_id, OrderStatus.CANCELLED)
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)


def test_a_venue_restart_with_renumbered_orders_keeps_fills_and_cancels_right(rig, daemon):
    sold, resting = daemon.sell(400, ASK), daemon.sell(300, 10.60)
    daemon.wait_acknowledged(sold.client_id)
    old_id = daemon.wait_acknowledged(resting.client_id)
    rig.venue.fill(sold.client_id, 100)
    daemon.wait_status(sold.client_id, OrderStatus.PARTIALLY_FILLED)
    rig.venue.restart(renumber=True)
    daemon.wait_link()
    assert rig.venue.book().order(resting.client_id).order_id != old_id
    rig.venue.fill(sold.client_id)
    daemon.wait_status(sold.client_id, OrderStatus.FILLED)
    daemon.executor.cancel_order(resting.client_id)  # reaches the order under its new id
    daemon.wait_status(resting.client_id, OrderStatus.CANCELLED)
    assert daemon.fills() == [(sold.client_id, "sell", 100, ASK), (sold.client_id, "sell", 300, ASK)]
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)


def _order_filled_in_two_parts(rig, daemon) -> str:
    order = daemon.sell(400, ASK)
    daemon.wait_acknowledged(order.client_id)
    rig.venue.fill(order.client_id, 100)
    daemon.wait_status(order.client_id, OrderStatus.PARTIALLY_FILLED)
    rig.venue.fill(order.client_id)
    daemon.wait_status(order.client_id, OrderStatus.FILLED)
    rig.settle()
    assert daemon.fills() == [(order.client_id, "sell", 100, ASK), (order.client_id, "sell", 300, ASK)]
    return order.client_id


def test_every_push_twice_books_each_fill_once(rig, daemon):
    rig.venue.duplicate_pushes()
    _order_filled_in_two_parts(rig, daemon)
    bought = daemon.buy(100, BID)
    daemon.wait_acknowledged(bought.client_id)
    rig.venue.fill(bought.client_id)
    daemon.wait_status(bought.client_id, OrderStatus.FILLED)
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)


def test_pushes_in_reverse_order_end_in_the_venues_state(rig, daemon):
    rig.venue.reorder_pushes()
    client_id = _order_filled_in_two_parts(rig, daemon)
    cancelled = daemon.sell(300, ASK)
    daemon.wait_acknowledged(cancelled.client_id)
    daemon.executor.cancel_order(cancelled.client_id)
    daemon.wait_status(cancelled.client_id, OrderStatus.CANCELLED)
    assert daemon.status(client_id) is OrderStatus.FILLED
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)


def test_answers_before_the_send_returns(rig, daemon):
    rig.venue.push_before_return()
    order = daemon.sell(400, ASK)
    daemon.wait_acknowledged(order.client_id)
    rejected_words = rig.venue.reject_next_order("柜台拒绝：价格超出范围")
    try:
        refused = daemon.sell(100, ASK).client_id
    except TradingError:
        refused = daemon.executor.journal.entries()[0].client_id
    daemon.wait_status(refused, OrderStatus.REJECTED)
    assert rejected_words in daemon.entry(refused).reason
    rig.venue.fill(order.client_id)
    daemon.wait_status(order.client_id, OrderStatus.FILLED)
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)


def test_renumbered_orders_with_lost_pushes_book_each_fill_once_by_query(rig, daemon):
    order = daemon.sell(400, ASK)
    daemon.wait_acknowledged(order.client_id)
    rig.venue.fill(order.client_id, 100)
    daemon.wait_status(order.client_id, OrderStatus.PARTIALLY_FILLED)
    rig.venue.restart(renumber=True)
    daemon.wait_link()
    rig.venue.drop_pushes()
    rig.venue.fill(order.client_id)  # under its new id, never pushed
    daemon.until(lambda: len(daemon.fills()) == 2, "the lost fill booked by query", step=daemon.broker_sync)
    rig.venue.restore_pushes()
    daemon.restart()
    rig.venue.repush_all()
    daemon.wait_status(order.client_id, OrderStatus.FILLED)
    assert daemon.fills() == [(order.client_id, "sell", 100, ASK), (order.client_id, "sell", 300, ASK)]
    assert_books_equal(daemon)


def test_a_full_repush_of_the_day_after_a_reconnect_books_nothing_twice(rig, daemon):
    filled = _order_filled_in_two_parts(rig, daemon)
    bought, resting = daemon.buy(100, BID), daemon.sell(300, 10.60)
    daemon.wait_acknowledged(bought.client_id)
    daemon.wait_acknowledged(resting.client_id)
    rig.venue.fill(bought.client_id)
    daemon.wait_status(bought.client_id, OrderStatus.FILLED)
    before = daemon.fills()
    rig.venue.restart(renumber=True)
    daemon.wait_link()
    rig.venue.repush_all()
    rig.settle()
    assert daemon.fills() == before
    assert [daemon.status(c) for c in (filled, bought.client_id, resting.client_id)] == [
        OrderStatus.FILLED, OrderStatus.FILLED, OrderStatus.OPEN]
    assert_books_equal(daemon, sync=False)
    daemon.restart()  # and once more after the daemon itself restarted
    rig.venue.repush_all()
    rig.settle()
    assert daemon.fills() == before
    assert_books_equal(daemon)


def test_a_skewed_venue_clock_changes_no_booking_and_no_timer(rig, daemon):
    rig.venue.skew_clock(900.0)  # the venue's stamps 15 minutes ahead of the daemon (SELL_ORDER_TIMEOUT is 10)
    order, resting = daemon.sell(400, ASK), daemon.sell(300, 10.60)
    daemon.wait_acknowledged(order.client_id)
    daemon.wait_acknowledged(resting.client_id)
    rig.venue.fill(order.client_id, 100)
    daemon.wait_status(order.client_id, OrderStatus.PARTIALLY_FILLED)
    rig.clock.advance(timedelta(seconds=60).total_seconds())
    daemon.executor.check_open_orders()  # the daemon's order timeout runs on its own clock: nothing is old yet
    rig.settle()
    assert [daemon.status(c) for c in (order.client_id, resting.client_id)] == [OrderStatus.PARTIALLY_FILLED,
                                                                                OrderStatus.OPEN]
    rig.venue.skew_clock(-900.0)  # the venue's clock jumps back: a re-push after a restart must not look new
    rig.venue.restart(renumber=False)
    daemon.wait_link()
    rig.venue.repush_all()
    rig.venue.fill(order.client_id)
    daemon.wait_status(order.client_id, OrderStatus.FILLED)
    assert daemon.fills() == [(order.client_id, "sell", 100, ASK), (order.client_id, "sell", 300, ASK)]
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)


def test_orders_while_the_venue_is_unreachable_are_refused_as_not_sent(rig, daemon):
    rig.venue.go_offline()
    daemon.until(lambda: not rig.broker.is_connected(), "the back-end noticing the lost link")
    with pytest.raises(TradingError):  # BrokerUnavailable: definitely not sent
        daemon.sell(300, ASK)
    [entry] = daemon.executor.journal.entries()
    assert entry.status is OrderStatus.REJECTED and entry.client_id not in rig.venue.book().received
    assert daemon.positions.get(CODE).available == HELD
    rig.venue.come_online()
    daemon.wait_link()
    order = daemon.sell(300, ASK)
    daemon.wait_acknowledged(order.client_id)
    assert_books_equal(daemon)


def test_a_fill_after_the_cancel_request_is_booked_and_the_rest_cancelled(rig, daemon):
    rig.venue.hold_cancels()
    order = daemon.sell(400, ASK)
    daemon.wait_acknowledged(order.client_id)
    daemon.executor.cancel_order(order.client_id)
    daemon.wait_status(order.client_id, OrderStatus.CANCEL_PENDING)
    rig.venue.fill(order.client_id, 100)  # the exchange filled part before the cancel took effect
    daemon.wait(lambda: daemon.fills() == [(order.client_id, "sell", 100, ASK)], "the fill during the cancel")
    rig.venue.release_cancels()
    daemon.wait_status(order.client_id, OrderStatus.CANCELLED)
    assert daemon.entry(order.client_id).filled_volume == 100
    position = daemon.positions.get(CODE)
    assert (position.volume, position.available) == (HELD - 100, HELD - 100)
    assert_books_equal(daemon, sync=False)
    assert_books_equal(daemon)


def test_a_cancel_before_the_order_id_is_known_is_sent_when_it_is(rig, daemon):
    rig.settings.update({"ORDER_ACK_TIMEOUT": WAIT}, source="test")  # the held answer is not (yet) a dead link
    rig.venue.hold_acks()
    order = daemon.sell(300, ASK)
    assert daemon.entry(order.client_id).order_id == ""
    daemon.broker.cancel_order(order.client_id)  # by remark: the broker sends it the moment it learns the id
    rig.venue.release_acks()
    daemon.wait_status(order.client_id, OrderStatus.CANCELLED)
    assert not rig.venue.book().order(order.client_id).working
    assert daemon.positions.get(CODE).available == HELD
    assert_books_equal(daemon)

