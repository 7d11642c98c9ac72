"""Issue 25 follow-up (process bench gaps): after a miniQMT hang, a stop-loss lost in the hang is settled as
undelivered by the full order query of the reconnect and goes out again once (never twice); a buy lost the same
way stays 「结果未知」; and the reconnect back-off is capped during trading sessions so the link returns within
seconds of miniQMT answering again."""
from __future__ import annotations

import time

from easy_qmt_trader import SELL_NOT_DELIVERED, UNKNOWN_IN_FLIGHT, BrokerTimings
from core.models import OrderStatus, Rule, Side
from test_easy_qmt_trader import counterpart, env, loopback_only, req  # noqa: F401 (fixtures)
from test_qmt_bad_day import ACK_TIMEOUT, FAST_LINK, RECONNECT_BUDGET, live_stack, status

O, RJ, UN = OrderStatus.OPEN, OrderStatus.REJECTED, OrderStatus.UNKNOWN


def test_stop_loss_lost_in_a_hang_is_settled_by_the_reconnect_query_and_sent_again_once(env, counterpart):
    counterpart.next_day()  # all 1000 shares of 000001.SZ sellable
    stack = live_stack(env)
    counterpart.hang(seconds=1.0)  # answers nothing; what is sent meanwhile is lost
    first = stack.executor.sell_stock("000001.SZ", 1000, price=10.0, rule=Rule.STOP_LOSS)
    # no market-clock time passes (ORDER_UNKNOWN_SETTLE_SECONDS never elapses): the reconnect's query settles it
    stack.relay.wait(lambda: status(stack, first.client_id) is RJ, ACK_TIMEOUT + 1.0 + RECONNECT_BUDGET)
    assert stack.executor.journal.get(first.client_id).reason == SELL_NOT_DELIVERED
    assert stack.trader.reconnects == 1 and stack.positions.get("000001.SZ").available == 1000

    second = stack.executor.sell_stock("000001.SZ", 1000, price=10.0, rule=Rule.STOP_LOSS)
    stack.relay.wait(lambda: status(stack, second.client_id) is O)
    assert counterpart.order_by_remark(first.client_id) == [] and counterpart.sent_remarks.count(first.client_id) == 1
    assert len(counterpart.orders) == 1 and len(counterpart.order_by_remark(second.client_id)) == 1  # one sell
    assert [e.client_id for e in stack.executor.open_orders("000001.SZ", Side.SELL)] == [second.client_id]


def test_buy_lost_in_a_hang_stays_unknown_after_the_reconnect(env, counterpart):
    env.settings.update(FAST_LINK, source="test")
    trader, rec = env.make()
    counterpart.hang(seconds=1.0)
    trader.place_order(req("B1", side=Side.BUY))
    rec.wait(lambda: rec.statuses("B1") == [UN], ACK_TIMEOUT + 1.0 + RECONNECT_BUDGET)
    assert rec.last("B1").reason == UNKNOWN_IN_FLIGHT and trader.reconnects == 1
    assert counterpart.orders == {}  # a late twin would spend the cash twice: only the settle time decides


def test_reconnect_back_off_is_capped_during_trading_sessions(env, counterpart):
    env.settings.update({"QMT_RECONNECT_SESSION_MAX_DELAY": 0.2}, source="test")
    slow = BrokerTimings(query_timeout=5.0, connect_timeout=5.0, reconnect_first_delay=0.2, reconnect_max_delay=60.0)
    trader, _ = env.make(timings=slow)
    counterpart.refuse_connects = 6  # uncapped: 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 6.4 = 12.6 s of waiting
    started = time.monotonic()
    counterpart.disconnect()
    assert counterpart.wait_for_connect_attempts(counterpart.connect_attempts + 7, 6.0)
    deadline = time.monotonic() + 2.0
    while not trader.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the link state with a deadline (no event to wait on from outside)
    assert trader.is_connected() and trader.reconnects == 1
    assert time.monotonic() - started < 4.0  # capped: 0.2 s × 6 waits plus the attempts themselves
