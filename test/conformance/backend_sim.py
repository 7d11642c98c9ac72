"""Conformance back-end "sim": the simulated broker (sim_trader.SimTrader). It is its own venue: its book (the
sim_* tables) is the counterpart's side, the exchange is a quote trading through a resting order's limit price.
It has no link, no push channel and no clock of its own, so the faults of those kinds cannot occur on it (the
base Venue skips them, saying so); a refusal on demand is the sim's own refusal of an order it has no quote for."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import sim_trader
from core.models import Quote
from persistence.config_store import ConfigStore
from persistence.storage import Database, migrate
from market.clock import ReplayClock
from rig import (BUY_CODE, BUY_PREV_CLOSE, BUY_PRICE, CODE, COST, HELD, MARKET_OPEN, NAMES, PREV_CLOSE, PRICE,
                 RIG_SETTINGS, START_CASH, Rig, Venue, VenueBook, VenueFill, VenueOrder, register)
from sim_trader import SimTrader
from trading_support import QuoteBoard

STANDARD_QUOTES = {CODE: (PRICE, PREV_CLOSE), BUY_CODE: (BUY_PRICE, BUY_PREV_CLOSE)}


class SimVenue(Venue):
    backend = "sim"

    def __init__(self, board: QuoteBoard):
        self.board = board
        self.sim: Optional[SimTrader] = None
        self._withhold_until_orders: Optional[int] = None  # reject_next_order: no quote until an order is booked

    def quotes(self, code: str) -> Optional[Quote]:
        """The sim's quote source: the board, except while a refusal on demand is armed."""
        if self._withhold_until_orders is not None:
            if len(self.sim.query_orders()) <= self._withhold_until_orders:
                return None
            self._withhold_until_orders = None
        return self.board(code)

    def book(self) -> VenueBook:
        orders = sorted(self.sim.query_orders(), key=lambda o: (o.time, o.order_id))
        positions = {p.stock_code: (p.volume, p.available) for p in self.sim.query_positions() if p.volume > 0}
        return VenueBook(
            cash=self.sim.query_asset().cash, positions=positions,
            orders=[VenueOrder(o.client_id, o.order_id, o.stock_code, o.side, o.volume, o.price, o.status,
                               o.filled_volume, o.reason) for o in orders],
            fills=[VenueFill(f.client_id, f.order_id, f.stock_code, f.side, f.volume, f.price)
                   for f in self.sim.query_trades()],
            received=[o.client_id for o in orders])

    def fill(self, remark: str, volume: Optional[int] = None, price: Optional[float] = None) -> None:
        """A quote at the order's limit price (or `price`) trades through it; `volume` caps what it fills (the
        sim's liquidity knob); the standard quote is restored afterwards (no other order crosses on it)."""
        if not self.sim.is_connected():
            self.cannot("fill while the daemon is down",
                        "lives in the daemon's process: nothing trades while it is down")
        [order] = [o for o in self.sim.query_orders() if o.client_id == remark]
        assert order.status.is_open, f"{remark} cannot fill: {order.status.value}"
        self.sim._max_fill_volume = volume  # the constructor's liquidity cap, for this one quote
        try:
            self.sim.on_quote(self.board.set(order.stock_code, order.price if price is None else price,
                                             STANDARD_QUOTES[order.stock_code][1], NAMES[order.stock_code]))
        finally:
            self.sim._max_fill_volume = None
            set_standard_quotes(self.board, only=order.stock_code)

    def reject_next_order(self, message: str) -> str:
        self._withhold_until_orders = len(self.sim.query_orders())
        return "最新行情"  # the sim's own words: 没有 <code> 的最新行情，模拟账户无法撮合


def set_standard_quotes(board: QuoteBoard, only: Optional[str] = None) -> None:
    for code, (price, prev_close) in STANDARD_QUOTES.items():
        if only is None or code == only:
            board.set(code, price, prev_close, NAMES[code])


def open_account(db: Database, clock) -> None:
    """The standard starting account in the sim's own tables: START_CASH, HELD × CODE carried (available)."""
    migrate(db, "sim_trader", sim_trader.MIGRATIONS)
    db.execute("INSERT INTO sim_account VALUES(1, ?, ?, 0, ?, 0)", (START_CASH, START_CASH, clock.today().isoformat()))
    db.execute("INSERT INTO sim_positions VALUES(?,?,?,?,?,?,?)", (CODE, NAMES[CODE], HELD, 0, 0, None, HELD * COST))


@register("sim")
@contextmanager
def sim_rig(tmp_path: Path) -> Iterator[Rig]:
    settings = ConfigStore(Database(tmp_path / "config.db"))
    settings.update(RIG_SETTINGS, source="test")
    clock = ReplayClock(MARKET_OPEN)
    board = QuoteBoard(clock)
    set_standard_quotes(board)
    db_path = tmp_path / "sim_trading.db"
    venue = SimVenue(board)
    databases: list[Database] = []

    def build() -> SimTrader:
        db = Database(db_path)
        databases.append(db)
        venue.sim = SimTrader(db, settings, clock, venue.quotes)
        venue.sim.connect()
        return venue.sim

    seed = Database(db_path)
    open_account(seed, clock)
    seed.close()
    rig = Rig(name="sim", broker=build(), venue=venue, settings=settings, clock=clock, quotes=board, db_path=db_path,
              settle=lambda: None, wait_link=lambda timeout: venue.sim.is_connected(), reopen=lambda: None)

    def reopen() -> SimTrader:
        rig.broker.close()
        rig.broker = build()
        return rig.broker

    rig.reopen = reopen
    try:
        yield rig
    finally:
        rig.broker.close()
        for db in databases:
            db.close()
