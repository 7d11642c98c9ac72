"""The daemon's side of the conformance suite: the REAL trading core (TradingExecutor with its journal and trade
records, PositionManager, TradingState) over the broker under test wrapped in the daemon's BrokerGuard, wired as
daemon/composition.py wires it, and the one invariant every case ends with: `assert_books_equal` (no order at the
venue twice, every fill booked exactly once, the daemon's orders / fills / positions / cash equal the venue's)."""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from core.models import Order, OrderStatus, Rule
from core.trading_state import TradingState
from persistence.storage import Database
from position_manager import PositionManager
from protection_support import LiveRig, Relay
from qmt.broker_guard import BrokerGuard
from rig import BUY_CODE, CODE, Rig
from trading_executor import TradingExecutor

WAIT = 8.0  # real seconds any expected event may take (bounded; a healthy back-end takes milliseconds)
POLL = 0.01  # seconds between looks at a condition no event announces (the link coming back)


class Daemon:
    """The trading core over `rig.broker`; `restart()` is the daemon's process restart (rig.reopen)."""

    def __init__(self, rig: Rig):
        self.rig = rig
        self.settings, self.clock = rig.settings, rig.clock
        self.db = Database(rig.db_path)
        self._build(rig.broker)

    def _build(self, broker) -> None:
        self.positions = PositionManager(self.db, self.settings, self.clock, broker.mode)
        self.state = TradingState(self.db, self.clock)
        self.broker = BrokerGuard(broker, lambda: self.settings.get("BROKER_CALL_TIMEOUT"))
        self.executor = TradingExecutor(self.db, self.broker, self.positions, self.rig.quotes, self.settings,
                                        self.clock, self.state)
        self.relay = Relay(self.executor)
        broker.set_listener(self.relay)
        self.executor.recover()

    def restart(self) -> None:
        """The daemon stops and starts again over the same data folder and the same venue."""
        self.rig.reopen()
        self._build(self.rig.broker)

    def close(self) -> None:
        self.db.close()

    # ---- orders, as the daemon places them (journal before send, remark = client id)
    def sell(self, volume: int, price: float, code: str = CODE) -> Order:
        return self.executor.sell_stock(code, volume, price=price, rule=Rule.MANUAL)

    def buy(self, volume: int, price: float, code: str = BUY_CODE) -> Order:
        return self.executor.buy_stock(code, volume=volume, price=price, rule=Rule.MANUAL)

    def entry(self, client_id: str):
        return self.executor.journal.get(client_id)

    def status(self, client_id: str) -> OrderStatus:
        return self.entry(client_id).status

    # ---- waiting (bounded, on the listener's events)
    def wait(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        def applied() -> bool:  # under the executor's event lock: a status and what it frees (positions) read together
            with self.executor._event_lock:
                return predicate()

        assert self.relay.wait(applied, timeout), f"timed out waiting for {what}; journal: {self.journal_rows()}"

    def wait_status(self, client_id: str, *statuses: OrderStatus) -> None:
        self.wait(lambda: self.status(client_id) in statuses, f"{client_id} → {[s.value for s in statuses]}")

    def wait_acknowledged(self, client_id: str) -> str:
        """Until the broker has named the order (its id) and it works; returns the broker order id."""
        self.wait(lambda: bool(self.entry(client_id).order_id) and self.status(client_id) is OrderStatus.OPEN,
                  f"{client_id} acknowledged and working")
        return self.entry(client_id).order_id

    def wait_link(self) -> None:
        assert self.rig.wait_link(WAIT), f"{self.rig.name}: the link did not come back within {WAIT:g} s"

    def until(self, predicate: Callable[[], bool], what: str, step: Optional[Callable[[], None]] = None,
              timeout: float = WAIT) -> None:
        """For what no event announces (a reconciliation by query): run `step` and look again, bounded."""
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; journal: {self.journal_rows()}"
            if step is not None:
                step()
            threading.Event().wait(POLL)

    def wait_calls_returned(self) -> None:
        """Until every broker call left outstanding past its deadline has returned (the guard refuses new calls
        while one is out)."""
        LiveRig.wait_calls_returned(self, WAIT)

    # ---- the daemon's periodic work
    def broker_sync(self) -> None:
        """One pass of the daemon's broker_sync worker (fills and order states by query, then positions)."""
        LiveRig.broker_sync(self)

    def journal_rows(self) -> list[tuple]:
        return [(e.client_id, e.order_id, e.status.value, e.filled_volume, e.reason)
                for e in self.executor.journal.entries()]

    def fills(self) -> list[tuple]:
        """The daemon's trade records as (client id, side, volume, price), sorted."""
        return sorted((r["client_id"], r["side"], r["volume"], round(r["price"], 3))
                      for r in self.executor.trade_records())


def assert_no_duplicate(rig: Rig) -> None:
    """No order request reached the venue twice, and no two venue orders carry the same remark."""
    book = rig.venue.book()
    assert len(book.received) == len(set(book.received)), f"an order was sent twice: {book.received}"
    remarks = [o.remark for o in book.orders]
    assert len(remarks) == len(set(remarks)), f"two venue orders carry one remark: {remarks}"


def assert_books_equal(daemon: Daemon, sync: bool = True) -> None:
    """THE invariant: after the events are in (and, with `sync`, one broker_sync pass — the daemon's own way of
    catching what pushes lost), the daemon's books equal the venue's: every journal entry has the venue's state and
    filled volume (an entry the venue never booked is rejected), every venue order is the daemon's, the trade
    records are the venue's executions each exactly once, positions (volume, available) and available cash agree,
    and no order reached the venue twice."""
    rig = daemon.rig
    rig.settle()
    if sync:  # twice, as the worker does: a pass may find a push lapse and have the link re-established
        for _ in range(2):
            daemon.broker_sync()
            daemon.wait_link()
            rig.settle()
    assert_no_duplicate(rig)
    book = rig.venue.book()
    journal = {e.client_id: e for e in daemon.executor.journal.entries()}
    for client_id, entry in journal.items():
        at_venue = book.orders_of(client_id)
        if at_venue:
            [theirs] = at_venue
            assert (entry.status, entry.filled_volume) == (theirs.status, theirs.filled_volume), \
                f"{client_id}: daemon {entry.status.value}/{entry.filled_volume}, venue {theirs}"
        else:
            assert entry.status is OrderStatus.REJECTED, \
                f"{client_id} is {entry.status.value} but the venue never booked it"
    strangers = [o for o in book.orders if o.remark not in journal]
    assert strangers == [], f"venue orders the daemon does not know: {strangers}"
    theirs = sorted((f.remark, f.side.value, f.volume, round(f.price, 3)) for f in book.fills)
    assert daemon.fills() == theirs, f"fills: daemon {daemon.fills()} venue {theirs}"
    held = {p.stock_code: (p.volume, p.available) for p in daemon.positions.all() if p.volume > 0}
    assert held == book.positions, f"positions: daemon {held} venue {book.positions}"
    cash = daemon.broker.query_asset().cash
    assert abs(cash - book.cash) < 0.005, f"cash: broker says {cash}, venue has {book.cash}"
