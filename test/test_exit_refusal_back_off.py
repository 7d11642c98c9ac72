"""Issue 25 follow-up: a stop-loss the broker refuses for good (every sell rejected) is sent again after a growing
wait, EXIT_RETRY_SECONDS doubled per broker refusal up to EXIT_RETRY_MAX_SECONDS, not once a second forever; a
sell that works ends the run. Failures to reach the broker (a link drop) keep the short interval (item 7)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from core.models import OrderRejected, OrderRequest, OrderStatus, Quote, Rule, Side
from core.order_journal import JournalEntry
from core.position_monitor import broker_refusals, exit_retry_delay
from test_protective_exits import A, Rig

T0 = datetime(2025, 9, 30, 10, 0)


def test_exit_retry_delay_doubles_from_the_base_up_to_the_cap():
    assert [exit_retry_delay(n, 1.0, 4.0) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 4.0, 4.0]


def entry(client_id: str, status: OrderStatus, order_id: str, minute: int, code: str = A,
          side: Side = Side.SELL) -> JournalEntry:
    at = T0 + timedelta(minutes=minute)
    return JournalEntry(client_id=client_id, stock_code=code, side=side, volume=1000, price=9.0, status=status,
                        order_id=order_id, filled_volume=0, filled_amount=0.0, rule=Rule.STOP_LOSS,
                        origin_rule=Rule.STOP_LOSS, signal_id=None, mode="live", reason="拒绝", created_at=at,
                        updated_at=at, trading_day=at.date(), parent_client_id="", root_client_id=client_id,
                        reprice_count=0, reprice_state="", replaced_by="")


def test_broker_refusals_are_the_run_of_newest_sells_the_broker_refused():
    rejected, filled = OrderStatus.REJECTED, OrderStatus.FILLED
    newest_first = [entry("c5", rejected, "5", 5), entry("b", rejected, "9", 4, code="000001.SZ"),
                    entry("c4", rejected, "4", 4), entry("buy", rejected, "8", 3, side=Side.BUY),
                    entry("c3", rejected, "3", 3), entry("c2", filled, "2", 2), entry("c1", rejected, "1", 1)]
    assert [e.client_id for e in broker_refusals(newest_first, A, None)] == ["c5", "c4", "c3"]  # a fill ends it
    assert [e.client_id for e in broker_refusals(newest_first, A, T0 + timedelta(minutes=4))] == ["c5", "c4"]
    never_reached = replace(entry("c6", rejected, "", 6), reason="未送达券商：miniQMT 未连接")  # not a refusal
    assert [e.client_id for e in broker_refusals([never_reached] + newest_first, A, None)] == ["c5", "c4", "c3"]


def test_a_stop_loss_refused_for_good_is_retried_after_a_doubling_wait_and_sells_once_the_refusal_ends(tmp_path):
    rig = Rig(tmp_path, EXIT_RETRY_SECONDS=1.0, EXIT_RETRY_MAX_SECONDS=4.0, SIGNAL_COOLDOWN_SECONDS=30)
    rig.hold_from_yesterday(A, 1000)
    rig.quote(A, 10.0)
    # someone else's sell (outside the daemon) ties up every share at the counter: each stop-loss is refused
    rig.sim.place_order(OrderRequest("OUTSIDE1", A, Side.SELL, 1000, 11.0, Rule.MANUAL))
    attempts = []
    for second in range(1, 17):
        before = len(rig.orders())
        rig.quote(A, 9.04, seconds=1)  # below the stop (10.0051 × 0.905)
        if len(rig.orders()) > before:
            attempts.append(second)
    assert attempts == [1, 2, 4, 8, 12, 16]  # waits 1, 2, 4, then capped at 4 s
    assert {o[3] for o in rig.orders()} == {"rejected"}
    [row] = rig.signal_rows(Rule.STOP_LOSS)
    assert (row["status"], row["hold_count"]) == ("pending", 6)  # one queued row, not a flood
    rig.sim.cancel_order("OUTSIDE1")  # the shares are free again
    for _ in range(4):
        rig.quote(A, 9.04, seconds=1)  # the next try after the 4 s back-off sells
    assert rig.orders()[-1] == ("stop_loss", "sell", 1000, "filled") and len(rig.orders()) == 7
    assert rig.positions.get(A) is None



def monitor_pass(rig, price: float, seconds: float) -> None:
    """Market and real time move on; one quote; one pass of the monitor only (no execution)."""
    rig.clock.advance(seconds)
    rig.wall.advance(seconds)
    rig.hub.publish(Quote(code=A, price=price, prev_close=10.0, time=rig.clock.now(), source="test"))
    rig.monitor.run_once()


def test_the_monitor_waits_out_the_back_off_after_broker_refusals_and_forgets_them_once_the_condition_clears(tmp_path):
    """The live path: a stop-loss placed, then refused by the counter (its signal already executed): the monitor
    queues the next one only after the back-off; a quote back above the stop ends the run of refusals."""
    rig = Rig(tmp_path, EXIT_RETRY_SECONDS=1.0, EXIT_RETRY_MAX_SECONDS=4.0)
    rig.hold_from_yesterday(A, 1000)
    monitor_pass(rig, 10.0, 0.1)
    rig.sim.place_order(OrderRequest("OUTSIDE1", A, Side.SELL, 1000, 11.0, Rule.MANUAL))  # shares tied up
    for _ in range(2):
        with pytest.raises(OrderRejected):
            rig.executor.sell_stock(A, 1000, price=9.04, rule=Rule.STOP_LOSS)  # two refusals: back-off 2 s
    monitor_pass(rig, 9.04, 1.5)
    assert rig.signal_rows(Rule.STOP_LOSS) == []  # 1.5 s after the last refusal: not yet
    monitor_pass(rig, 9.04, 0.5)
    assert [r["status"] for r in rig.signal_rows(Rule.STOP_LOSS)] == ["pending"]
    rig.db.execute("DELETE FROM signals")
    for _ in range(3):
        with pytest.raises(OrderRejected):
            rig.executor.sell_stock(A, 1000, price=9.04, rule=Rule.STOP_LOSS)  # five refusals: back-off 4 s
    monitor_pass(rig, 9.04, 0.1)
    assert rig.signal_rows(Rule.STOP_LOSS) == []
    monitor_pass(rig, 10.0, 0.1)  # the condition clears
    monitor_pass(rig, 9.04, 0.1)  # and holds again: the earlier refusals no longer count
    assert [r["status"] for r in rig.signal_rows(Rule.STOP_LOSS)] == ["pending"]
