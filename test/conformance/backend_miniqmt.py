"""Conformance back-end "miniqmt": easy_qmt_trader.EasyQmtTrader over the REAL xtquant/xttrader.py, with the
stand-in native module and the simulated miniQMT counter behind it (test/stand_ins/fake_xtpythonclient.py's
FakeQmt, installed by protection_support.live_env as the bad-day tests install it). The venue is that counter;
FakeQmt's own fault switches serve the knobs, and the push-level faults (twice, reversed, before the send returns,
a full re-push) are added here by a subclass that changes only how pushes are delivered."""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Optional

from core.models import Side
from market.clock import MARKET_TZ
from protection_support import LiveRig, live_env
from rig import (BUY_CODE, BUY_PREV_CLOSE, BUY_PRICE, CODE, COST, HELD, NAMES, PREV_CLOSE, PRICE, RIG_SETTINGS,
                 START_CASH, XT_STATUS, Rig, Venue, VenueBook, VenueFill, VenueOrder, register)
from stand_ins.fake_xtpythonclient import STOCK_BUY, FakePosition, FakeQmt
from trading_support import QuoteBoard

POLL = 0.01
CONNECTED = "connected"


class ConformanceQmt(FakeQmt):
    """FakeQmt whose pushes can be duplicated, reversed per venue action, or handed over before an order's send
    returns; and which can refuse the next order or cancel with a given message, and re-push the whole day."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.duplicate = False
        self.reverse = False
        self.before_return: Optional[Any] = None  # callable: wait until the trader has taken what was delivered
        self.reject_next = ""
        self.refuse_next = ""
        self._burst: Optional[list] = None
        self.held_pushes: Optional[list] = None  # hold_acks: order pushes kept back until released

    @contextmanager
    def _action(self) -> Iterator[None]:
        """One venue action: with `reverse`, its pushes are collected and delivered last-first at its end."""
        with self.lock:
            if not self.reverse or self._burst is not None:
                yield
                return
            self._burst = []
            try:
                yield
            finally:
                burst, self._burst = self._burst, None
                for bind_name, data in reversed(burst):
                    self._push(bind_name, data)

    def _push(self, bind_name: str, data) -> None:
        if self.held_pushes is not None and bind_name == "bindOnStockOrderCallback":
            self.held_pushes.append((bind_name, data))
            return
        if self._burst is not None:
            self._burst.append((bind_name, data))
            return
        super()._push(bind_name, data)
        if self.duplicate:
            super()._push(bind_name, data)

    def request(self, client, method: str, seq: int, req) -> None:
        if method == "orderStockWithSeq" and self.send_gate is not None:
            super().request(client, method, seq, req)  # blocks outside the lock (hang_next)
            return
        with self._action():
            super().request(client, method, seq, req)
        if method == "orderStockWithSeq" and self.before_return is not None:
            self.before_return(client)

    def _check(self, order):
        message, self.reject_next = self.reject_next, ""
        return (-8, message) if message else super()._check(order)

    def _on_cancelOrderStockWithSeq(self, client, seq, req) -> None:  # noqa: N802 - native name
        refusal, self.refuse_next = self.refuse_next, ""
        if refusal:
            self.cancel_refusal = refusal
        try:
            super()._on_cancelOrderStockWithSeq(client, seq, req)
        finally:
            if refusal:
                self.cancel_refusal = ""

    def fill(self, order_id: int, volume: int, price: Optional[float] = None):
        with self._action():
            return super().fill(order_id, volume, price)

    def confirm_cancel(self, order_id: int) -> None:
        with self._action():
            super().confirm_cancel(order_id)

    def repush_all(self) -> None:
        with self.lock:
            for order in sorted(self.orders.values(), key=lambda o: o.order_id):
                self._push_order(order)
            for trade in self.trades:
                self._push("bindOnStockTradeCallback", trade)
            for code in sorted(self.positions):
                self._push("bindOnStockPositionCallback", self._xt_position(code))
            self._push("bindOnStockAssetCallback", self._xt_asset())


class MiniQmtVenue(Venue):
    backend = "miniqmt"

    def __init__(self, qmt: ConformanceQmt, clock):
        self.qmt = qmt
        self.clock = clock
        self.skew = 0.0
        self.expected_reconnects: dict[int, int] = {}  # id(trader) -> reconnects it must have made
        self.trader = None
        qmt.now = self.stamp

    def stamp(self) -> int:
        """The counter's clock: the market clock (Beijing) plus the skew."""
        return int(self.clock.now().replace(tzinfo=MARKET_TZ).timestamp() + self.skew)

    def book(self) -> VenueBook:
        qmt = self.qmt
        with qmt.lock:
            orders = sorted(qmt.orders.values(), key=lambda o: o.order_id)
            return VenueBook(
                cash=qmt.cash,
                positions={code: (p.volume, p.can_use_volume) for code, p in qmt.positions.items() if p.volume > 0},
                orders=[VenueOrder(o.remark, str(o.order_id), o.stock_code, Side.BUY if o.is_buy else Side.SELL,
                                   o.volume, o.price, XT_STATUS[o.status], o.traded_volume, o.status_msg)
                        for o in orders],
                fills=[VenueFill(t.order_remark, str(t.order_id), t.stock_code,
                                 Side.BUY if t.order_type == STOCK_BUY else Side.SELL, t.traded_volume, t.traded_price)
                       for t in qmt.trades],
                received=list(qmt.sent_remarks))

    def fill(self, remark: str, volume: Optional[int] = None, price: Optional[float] = None) -> None:
        with self.qmt.lock:
            [order] = self.qmt.order_by_remark(remark)
            if order.status == 48:
                self.qmt.report(order.order_id)
            self.qmt.fill(order.order_id, volume or order.remaining, price)

    # ---- fault knobs
    def hang(self, book_late: bool = False) -> None:
        self.qmt.hang(None, book_late)

    def hang_next(self, call: str) -> None:
        assert call == "place_order", f"unknown call {call!r}"
        self.qmt.send_gate = threading.Event()

    def end_hang(self) -> None:
        gate = self.qmt.send_gate
        if gate is not None:
            gate.set()
        self.qmt.end_hang()

    def drop_pushes(self) -> None:
        self.qmt.pushes_dropped_until = math.inf

    def restore_pushes(self) -> None:
        self.qmt.pushes_dropped_until = 0.0

    def reject_next_order(self, message: str) -> str:
        self.qmt.reject_next = message
        return message

    def refuse_next_cancel(self, message: str) -> str:
        self.qmt.refuse_next = message
        return message

    def restart(self, renumber: bool = True) -> None:
        trader = self.trader
        self.expected_reconnects[id(trader)] = trader.reconnects + 1
        self.qmt.restart(renumber=renumber)

    def go_offline(self) -> None:
        trader = self.trader
        self.expected_reconnects[id(trader)] = trader.reconnects + 1
        self.qmt.refuse_connects = 10 ** 9
        self.qmt.disconnect()

    def come_online(self) -> None:
        self.qmt.refuse_connects = 0

    def hold_acks(self) -> None:
        with self.qmt.lock:
            self.qmt.hold_order_responses = True
            self.qmt.held_pushes = []

    def release_acks(self) -> None:
        qmt = self.qmt
        with qmt.lock:
            held, qmt.held_pushes = qmt.held_pushes or [], None
            qmt.hold_order_responses = False
            qmt.release_held_responses()
            for bind_name, data in held:
                qmt._push(bind_name, data)

    def hold_cancels(self) -> None:
        self.qmt.auto_confirm_cancel = False

    def release_cancels(self) -> None:
        qmt = self.qmt
        with qmt.lock:
            qmt.auto_confirm_cancel = True
            for order in sorted(qmt.orders.values(), key=lambda o: o.order_id):
                if order.status in (51, 52):  # reported / partly filled, cancel pending
                    qmt.confirm_cancel(order.order_id)

    def duplicate_pushes(self) -> None:
        self.qmt.duplicate = True

    def reorder_pushes(self) -> None:
        self.qmt.reverse = True

    def push_before_return(self) -> None:
        self.qmt.push_order_before_response = True
        self.qmt.before_return = lambda client: self.drain()

    def repush_all(self) -> None:
        self.qmt.repush_all()

    def skew_clock(self, seconds: float) -> None:
        self.skew = float(seconds)

    def clear(self) -> None:
        qmt = self.qmt
        if qmt.held_pushes is not None:
            self.release_acks()
        qmt.clear_faults()
        qmt.refuse_connects = 0
        qmt.auto_confirm_cancel = True
        if qmt.send_gate is not None:
            qmt.send_gate.set()
        qmt.send_gate = None
        qmt.duplicate = qmt.reverse = qmt.push_order_before_response = False
        qmt.before_return = None
        qmt.reject_next = qmt.refuse_next = ""
        self.skew = 0.0

    # ---- waiting
    def drain(self) -> None:
        """Every live native client has delivered what it had queued, and the trader's worker took the events."""
        LiveRig.drain(SimpleNamespace(qmt=self.qmt, trader=self.trader))

    def wait_link(self, timeout: float) -> bool:
        """Connected and reconciled after every restart this venue caused (bounded look every POLL seconds:
        nothing announces the end of a reconciliation to a test)."""
        trader = self.trader
        wanted = self.expected_reconnects.get(id(trader), 0)
        done = threading.Event()
        for _ in range(int(timeout / POLL) + 1):
            if (trader.reconnects >= wanted and trader.link_state == CONNECTED and trader.is_connected()
                    and not trader._reconnect_needed):
                self.drain()
                return True
            done.wait(POLL)
        return False


@register("miniqmt")
@contextmanager
def miniqmt_rig(tmp_path: Path) -> Iterator[Rig]:
    qmt = ConformanceQmt(account_id="8800123456", cash=START_CASH, positions={
        CODE: FakePosition(volume=HELD, can_use_volume=HELD, open_price=COST, avg_price=COST, last_price=PRICE,
                           name=NAMES[CODE])})
    sessions = iter(range(500, 10 ** 6, 100))
    with live_env(tmp_path, qmt) as env:
        env.settings.update(RIG_SETTINGS, source="test")
        board = QuoteBoard(env.clock)
        board.set(CODE, PRICE, PREV_CLOSE, NAMES[CODE])
        board.set(BUY_CODE, BUY_PRICE, BUY_PREV_CLOSE, NAMES[BUY_CODE])
        venue = MiniQmtVenue(qmt, env.clock)
        venue.trader, _ = env.make(session_start=next(sessions))
        rig = Rig(name="miniqmt", broker=venue.trader, venue=venue, settings=env.settings, clock=env.clock,
                  quotes=board, db_path=tmp_path / "trading.db", settle=venue.drain, wait_link=venue.wait_link,
                  reopen=lambda: None)

        def reopen():
            venue.trader.close()
            venue.trader, _ = env.make(session_start=next(sessions))
            rig.broker = venue.trader
            return venue.trader

        rig.reopen = reopen
        try:
            yield rig
        finally:
            venue.clear()
        assert qmt.native_errors == []

