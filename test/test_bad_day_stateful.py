"""Issue 25 §3: random fault schedules over the in-process miniQMT counterpart (the REAL xttrader.py over FakeQmt)
with the daemon's trading core and the REAL protection sentinel stepped pass by pass. After every step: no order
reached the counterpart twice, no stock has two working protective sells, no fill was booked twice (our trade
records are a sub-multiset of the counterpart's trades by trade id). Once the faults are cleared and
PROTECTION_DEADLINE has passed with the stop-loss condition holding, a sell works or the failure is raised; at
the end our books equal the counterpart's."""
from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from protection_support import (CALM, CODE, CROSSED, TOLD, LiveRig, assert_no_duplicate, expect_protection,
                                fill_working_sell, live_env)
from stand_ins.fake_xtpythonclient import FakePosition, FakeQmt
from test_easy_qmt_trader import ACCOUNT_ID, loopback_only  # noqa: F401 (autouse: loopback only)

PRICES = [CALM, 9.60, 9.06, 9.05, CROSSED, 8.95]  # stop-loss at 9.05: crossing and un-crossing it
FAST_FAULTS = {"BROKER_CALL_TIMEOUT": 1.0}  # a hung call is judged hung after 1 real second (the minimum)


def trade_ids(fill_ids) -> Counter:
    """'{order_id}-{traded_id}-{date}' -> the counter's trade id (order ids change when miniQMT renumbers)."""
    return Counter(fill_id.split("-")[1] for fill_id in fill_ids)


class BadDay(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._stack = ExitStack()
        self._dir = Path(tempfile.mkdtemp(prefix="bad_day_"))
        self._stack.callback(shutil.rmtree, self._dir, True)
        self.qmt = FakeQmt(account_id=ACCOUNT_ID, cash=100000.0, positions={
            CODE: FakePosition(volume=1000, can_use_volume=1000, open_price=10.0, avg_price=10.0, last_price=10.2,
                               name="平安银行")})
        env = self._stack.enter_context(live_env(self._dir, self.qmt))
        self.rig = LiveRig(env, self.qmt, **FAST_FAULTS)
        self.rig.step()
        self.faults: set[str] = set()

    # ---- the market and time
    @rule(price=st.sampled_from(PRICES))
    def price_moves(self, price):
        self.rig.price = price
        self.rig.step()

    @rule(seconds=st.sampled_from([1.0, 2.0, 5.0]))
    def time_passes(self, seconds):
        self.rig.step(seconds)

    @rule(lots=st.integers(1, 10))
    def exchange_fills(self, lots):
        """The exchange fills part of a working sell (the order rests at or below the market)."""
        for order in self.rig.working_sells():
            if order.status in (50, 55, 51, 52):
                self.qmt.fill(order.order_id, min(order.remaining, lots * 100))
                break
        self.rig.step()

    # ---- faults on and off
    @rule()
    def hang_on(self):
        self.qmt.hang()
        self.faults.add("hang")
        self.rig.step()

    @precondition(lambda self: "hang" in self.faults)
    @rule()
    def hang_off(self):
        self.qmt.end_hang()
        self.faults.discard("hang")
        self.rig.wait_link()
        self.rig.step()

    @rule(on=st.booleans())
    def drop_pushes(self, on):
        if on:
            self.qmt.drop_pushes(3600.0)
        else:
            self.qmt.pushes_dropped_until = 0.0
        self.rig.step()

    @rule(on=st.booleans())
    def reject_sells(self, on):
        if on:
            self.qmt.reject_orders("sell", "柜台拒绝：风控检查未通过")
        else:
            self.qmt.rejected_sides.pop("sell", None)
        self.rig.step()

    @rule(on=st.booleans())
    def refuse_cancels(self, on):
        self.qmt.refuse_cancels("柜台拒绝撤单：当前时段不允许撤单" if on else "")
        self.rig.step()

    @rule()
    def restart_renumbered(self):
        """miniQMT restarts and numbers today's orders afresh; the trader reconnects and reconciles."""
        self.qmt.restart(renumber=True)
        self.faults.discard("hang")
        self.rig.wait_link()
        self.rig.step()

    @rule()
    def repush_fills(self):
        """miniQMT pushes the day's fills again (as after a reconnect)."""
        with self.qmt.lock:
            for trade in list(self.qmt.trades):
                self.qmt._push("bindOnStockTradeCallback", trade)
        self.rig.step()

    # ---- the guarantee once the faults are gone
    @rule(cross=st.booleans())
    def faults_clear_and_the_deadline_passes(self, cross):
        self.clear_every_fault()
        if cross:
            self.rig.price = CROSSED
        self.rig.step()
        if self.rig.price <= 9.05:
            self.guarantee_holds()

    def clear_every_fault(self) -> None:
        self.qmt.clear_faults()
        self.qmt.refuse_cancels("")
        self.faults.clear()
        self.rig.wait_link()
        self.rig.wait_calls_returned()

    def guarantee_holds(self) -> None:
        """With the stop-loss condition holding and no fault left, within PROTECTION_DEADLINE a sell works, or
        the failure is raised (e.g. a call lost in the hang still outstanding), or the block is explained."""
        expect_protection(self.rig, TOLD, each_step=lambda i: self.rig.wait_link())
        verdict = self.rig.verdict()
        event(f"stop holding after the faults: {verdict.state.value if verdict else 'sold out'}"
              f"{' ' + verdict.cause.value if verdict and verdict.cause else ''}")

    @invariant()
    def never_a_duplicate_order_nor_a_doubled_fill(self):
        assert_no_duplicate(self.rig)
        ours = trade_ids(r["fill_id"] for r in self.rig.executor.trade_records())
        theirs = Counter(t.traded_id for t in self.qmt.trade_history)
        assert not ours - theirs, f"fills booked that the counterpart never made, or twice: {ours - theirs}"

    def teardown(self):
        try:
            self.clear_every_fault()
            self.rig.price = CROSSED
            self.guarantee_holds()
            fill_working_sell(self.rig)
            self.rig.step()
            self.rig.broker_sync()
            self.rig.broker_sync()
            ours = trade_ids(r["fill_id"] for r in self.rig.executor.trade_records())
            assert ours == Counter(t.traded_id for t in self.qmt.trade_history), "a fill was lost or doubled"
            assert_books_equal_by_volume(self.rig)
        finally:
            self._stack.close()


def assert_books_equal_by_volume(rig: LiveRig) -> None:
    """Held volumes and available shares equal the counterpart's (order ids may have been renumbered)."""
    assert_no_duplicate(rig)
    held = {p.stock_code: (p.volume, p.available) for p in rig.positions.all() if p.volume > 0}
    theirs = {code: (p.volume, p.can_use_volume) for code, p in rig.qmt.positions.items() if p.volume > 0}
    assert held == theirs


BadDay.TestCase.settings = settings(max_examples=10, stateful_step_count=30, deadline=None, derandomize=True,
                                    suppress_health_check=list(HealthCheck))
test_random_fault_schedules_keep_the_protection_guarantee = pytest.mark.slow(BadDay.TestCase)
