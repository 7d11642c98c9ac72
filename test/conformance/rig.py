"""The plug-in interface of the broker conformance suite (issue 29 §1; the contract is brokers/CONTRACT.md).

A back-end joins the suite by dropping a module `test/conformance/backend_<name>.py` that registers a factory:

    @register("mybroker")
    @contextmanager
    def mybroker_rig(tmp_path: Path) -> Iterator[Rig]:
        ...build the venue (the counterpart: a stand-in of the broker's side) and the back-end over it...
        yield Rig(...)
        ...tear everything down...

conftest.py imports every `backend_*.py` and parametrises the fixture `rig` over `BACKENDS`; the test files never
name a back-end. A new back-end is done when it passes the suite unchanged.

What a factory yields (`Rig`): the CONNECTED broker under test (no listener yet: the suite's daemon side, built
from the real TradingExecutor in books.py, sets it), the daemon's settings / market clock / quote board / trading
db path, and a `Venue`: the counterpart's side, its book to compare the daemon's books with, and the fault knobs.

The standard starting account every venue opens with (the cases rely on these numbers):
  cash START_CASH, and HELD shares of CODE carried from an earlier day (all available) at cost COST;
  quotes (the rig's quote board, and whatever the venue matches against): CODE at PRICE (previous close
  PREV_CLOSE, limits 8.91 / 10.89) and BUY_CODE at BUY_PRICE (previous close BUY_PREV_CLOSE, limits 9.00 / 11.00);
  the market clock at MARKET_OPEN (a Tuesday, in the continuous session), moving only when a case moves it.
Orders the cases place rest at the venue (sells above PRICE, buys below it) until `venue.fill(remark)`.

Fault knobs (one vocabulary for every venue). A venue that physically cannot model a fault leaves the method
of this base class in place, which skips the case naming the back-end and the reason (`cannot`); a venue that
can model it must. Knobs stay on until `clear()` (or their own end call) unless they say "next".
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

import pytest

from core.models import Broker, OrderStatus, Side

# ---- the standard starting account (every venue opens with it) ---------------------------------------------
CODE = "000001.SZ"  # held: HELD shares, all available, cost COST
HELD = 1000
COST = 10.00
PRICE = 10.20  # CODE's quote; previous close PREV_CLOSE → limit-down 8.91, limit-up 10.89 (main board ±10 %)
PREV_CLOSE = 9.90
BUY_CODE = "600036.SH"  # not held; bought by the cases
BUY_PRICE = 10.30  # BUY_CODE's quote; previous close BUY_PREV_CLOSE → limits 9.00 / 11.00
BUY_PREV_CLOSE = 10.00
START_CASH = 100000.0
MARKET_OPEN = datetime(2024, 1, 2, 9, 30)  # a Tuesday, continuous session (Beijing market time)
NAMES = {CODE: "平安银行", BUY_CODE: "招商银行"}


# ---- the venue's book, as plain values ---------------------------------------------------------------------
@dataclass(frozen=True)
class VenueOrder:
    """One order as the venue holds it. `remark` is the client id the daemon sent (its order_remark)."""

    remark: str
    order_id: str
    stock_code: str
    side: Side
    volume: int
    price: float
    status: OrderStatus  # the venue's state in our vocabulary (xtconstant 48…57 mapped as core.models documents)
    filled_volume: int
    reason: str = ""

    @property
    def working(self) -> bool:
        return self.status.is_open


@dataclass(frozen=True)
class VenueFill:
    """One execution at the venue (of an order carrying `remark`)."""

    remark: str
    order_id: str
    stock_code: str
    side: Side
    volume: int
    price: float


@dataclass(frozen=True)
class VenueBook:
    """The venue's account now: what the daemon's books must equal once the events are in."""

    cash: float  # available cash
    positions: dict[str, tuple[int, int]]  # code -> (volume, available); codes with volume 0 left out
    orders: list[VenueOrder]  # today's orders, oldest first
    fills: list[VenueFill]  # today's executions, oldest first
    received: list[str] = field(default_factory=list)  # remark of every order request that reached the venue

    def order(self, remark: str) -> VenueOrder:
        [found] = [o for o in self.orders if o.remark == remark]
        return found

    def orders_of(self, remark: str) -> list[VenueOrder]:
        return [o for o in self.orders if o.remark == remark]


# ---- the venue: book, exchange actions and fault knobs ------------------------------------------------------
class Venue:
    """The counterpart's side of one back-end. Subclasses implement `book` and `fill`, and override every fault
    knob they can model; the knobs left as they are here skip the case with the reason given to `cannot`."""

    backend = "?"  # the registered name (set by the subclass)

    # -- the book and the exchange
    def book(self) -> VenueBook:
        raise NotImplementedError

    def fill(self, remark: str, volume: Optional[int] = None, price: Optional[float] = None) -> None:
        """The exchange fills `volume` (default: all that remains) of the working order carrying `remark`, at
        `price` (default: its limit price). Returns once the venue has booked it (events may still be on their
        way: use `Rig.settle` or wait on the daemon). Cases fill only the best-priced working order of a stock: a
        venue that matches on quotes fills every order the price trades through."""
        raise NotImplementedError

    # -- fault knobs (the fault catalogue of issue 25's bad days, issue 29 §1)
    def hang(self, book_late: bool = False) -> None:
        """The venue stops answering without saying so (no disconnect notice): requests sent meanwhile go
        unanswered and nothing is pushed; with `book_late` the requests are carried out when the hang ends (an
        order appears long after it was sent), else they are lost. Ends with `end_hang()`."""
        self.cannot("hang", "cannot stop answering")

    def hang_next(self, call: str) -> None:
        """The next `call` ("place_order") does not return to the daemon within any deadline (the request is
        stuck on its way); it reaches the venue only when `end_hang()` is called, if the link it used still
        stands then."""
        self.cannot("hang_next", f"cannot hold a {call} call")

    def end_hang(self) -> None:
        self.cannot("end_hang", "cannot hang")

    def drop_pushes(self) -> None:
        """Every push (order, fill, position, asset) is lost until `restore_pushes()`; queries still answer."""
        self.cannot("drop_pushes", "has no push channel to lose")

    def restore_pushes(self) -> None:
        self.cannot("restore_pushes", "has no push channel")

    def reject_next_order(self, message: str) -> str:
        """The venue refuses the next order (a definite refusal with a message). Returns the text the refusal
        carries: `message` where the venue lets the test choose it, else the venue's own words."""
        self.cannot("reject_next_order", "cannot refuse an order on demand")
        return message

    def refuse_next_cancel(self, message: str) -> str:
        """The venue refuses the next cancel of a WORKING order (it works on). Returns the refusal's text."""
        self.cannot("refuse_next_cancel", "never refuses to cancel a working order")
        return message

    def restart(self, renumber: bool = True) -> None:
        """The venue's side restarts: the link drops (the back-end must reconnect by itself) and, with
        `renumber`, today's orders come back under new broker order ids (remarks unchanged)."""
        self.cannot("restart", "has no counterpart process to restart")

    def go_offline(self) -> None:
        """The venue becomes unreachable: the link drops and every reconnect fails until `come_online()`."""
        self.cannot("go_offline", "has no link to lose")

    def come_online(self) -> None:
        self.cannot("come_online", "has no link")

    def hold_acks(self) -> None:
        """The venue books new orders but holds every answer and order push about them (the daemon does not learn
        their order ids) until `release_acks()`."""
        self.cannot("hold_acks", "acknowledges an order within the call")

    def release_acks(self) -> None:
        self.cannot("release_acks", "holds no acknowledgement")

    def hold_cancels(self) -> None:
        """Cancels are accepted but stay pending at the venue (fills may still come) until `release_cancels()`."""
        self.cannot("hold_cancels", "cancels within the call (no cancel is ever pending)")

    def release_cancels(self) -> None:
        """Every pending cancel completes (the unfilled rest is cancelled); later cancels complete at once."""
        self.cannot("release_cancels", "has no pending cancels")

    def duplicate_pushes(self) -> None:
        """Every push is delivered twice."""
        self.cannot("duplicate_pushes", "has no push channel to duplicate on")

    def reorder_pushes(self) -> None:
        """The pushes one venue action causes (e.g. a fill: trade, order state, position, asset) arrive in
        reverse order: an order reported filled before its fill, a fill before its order's acknowledgement."""
        self.cannot("reorder_pushes", "delivers its events from one book in order")

    def push_before_return(self) -> None:
        """An order's answers and pushes reach the back-end before its send call has returned."""
        self.cannot("push_before_return", "answers an order within the call itself")

    def repush_all(self) -> None:
        """Now: every order state and every fill of the day is pushed again (as bridges do after a reconnect)."""
        self.cannot("repush_all", "has no push channel to repeat")

    def skew_clock(self, seconds: float) -> None:
        """The venue's clock (order and trade stamps) runs `seconds` off the daemon's market clock."""
        self.cannot("skew_clock", "has no clock of its own (it stamps with the daemon's)")

    def clear(self) -> None:
        """Every fault off (pushes flow, a hang ends, the clock agrees again)."""

    # -- helpers
    def cannot(self, knob: str, reason: str) -> None:
        pytest.skip(f"{self.backend}: {knob} — this venue {reason} ({CANNOT_OCCUR})")


# ---- what a back-end factory yields ----------------------------------------------------------------------------
@dataclass
class Rig:
    """One back-end under test, connected to its venue.

    `settle()`: wait (bounded) until every event the venue has emitted so far has reached the broker's
    listener (no-op for a back-end that delivers inside the call). `wait_link(timeout)`: wait until the broker
    is connected and reconciled again after a venue fault (True when it is). `reopen()`: the daemon's process
    restarts: close `broker`, build a new one over the same trading db and venue, connect it, store it in
    `broker` and return it. `on_quote(code, price)`: the market trades at `price` (the rig's quote board and
    whatever the venue matches against); optional."""

    name: str
    broker: Broker
    venue: Venue
    settings: object  # persistence.config_store.ConfigStore (shared by the back-end and the daemon side)
    clock: object  # market.clock.ReplayClock at MARKET_OPEN
    quotes: Callable  # code -> Quote | None: the daemon's quote source (trading_support.QuoteBoard)
    db_path: Path  # the daemon's trading db (the executor's journal and positions live there)
    settle: Callable[[], None]
    wait_link: Callable[[float], bool]
    reopen: Callable[[], Broker]
    on_quote: Optional[Callable[[str, float], None]] = None


# The skip reason of a fault a venue physically lacks; test/conftest.py lets it stand in CI (CI_NO_SKIPS=1).
CANNOT_OCCUR = "the fault cannot occur on this back-end"

RigFactory = Callable[[Path], AbstractContextManager]  # tmp_path -> context manager yielding a connected Rig
BACKENDS: dict[str, RigFactory] = {}

# Settings every rig applies to its ConfigStore before building the back-end: short deadlines so a fault case
# takes about a second of real time (the daemon's defaults are minutes).
RIG_SETTINGS = {
    "ENABLE_AUTO_TRADING": True, "ENABLE_MACD_BUY": False, "ENABLE_MACD_SELL": False,
    "SIMULATION_IGNORE_TRADING_HOURS": True, "SIMULATION_BALANCE": START_CASH,
    "BROKER_CALL_TIMEOUT": 2.0, "QMT_SEND_TIMEOUT": 1.0, "ORDER_ACK_TIMEOUT": 0.6,
    "LIVENESS_PROBE_INTERVAL": 0.2, "LIVENESS_PROBE_DEADLINE": 0.3, "ORDER_UNKNOWN_SETTLE_SECONDS": 1.0,
    "SELL_ORDER_TIMEOUT": 600, "BUY_ORDER_TIMEOUT": 600, "MAX_ORDERS_PER_DAY": 1000,
}


def register(name: str) -> Callable[[RigFactory], RigFactory]:
    """Decorator: add a back-end factory to BACKENDS under `name`."""

    def add(factory: RigFactory) -> RigFactory:
        if name in BACKENDS and BACKENDS[name] is not factory:
            raise ValueError(f"conformance back-end {name!r} registered twice")
        BACKENDS[name] = factory
        return factory

    return add


# xtconstant order states → ours (the table core.models.OrderStatus documents); for venues that speak xtconstant
XT_STATUS = {48: OrderStatus.SUBMITTED, 49: OrderStatus.SUBMITTED, 50: OrderStatus.OPEN,
             51: OrderStatus.CANCEL_PENDING, 52: OrderStatus.CANCEL_PENDING, 53: OrderStatus.CANCELLED,
             54: OrderStatus.CANCELLED, 55: OrderStatus.PARTIALLY_FILLED, 56: OrderStatus.FILLED,
             57: OrderStatus.REJECTED}
