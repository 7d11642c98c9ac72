"""Conformance back-ends "bigqmt" and "bigqmt-folder": bigqmt.broker.BigQmtBroker over loopback TCP (or over the
folder-of-files transport) to the REAL bridge strategy file, run unchanged by the big-QMT host stand-in
(test/stand_ins/bigqmt_host.py) whose matching venue is the counterpart. The host's fault switches serve the knobs. `hang_next` stalls QMT's strategy thread (the only way a
request can be held inside big QMT): other calls stall with it until `end_hang`."""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Iterator, Optional

from bigqmt.broker import BigQmtBroker
from bigqmt import rows as qrows
from core.models import BrokerUnavailable, Side
from market.clock import ReplayClock
from persistence.config_store import ConfigStore
from persistence.storage import Database
from qmt.account import AccountConfig
from rig import (BUY_CODE, BUY_PREV_CLOSE, BUY_PRICE, CODE, COST, HELD, MARKET_OPEN, NAMES, PREV_CLOSE, PRICE,
                 RIG_SETTINGS, START_CASH, XT_STATUS, Rig, Venue, VenueBook, VenueFill, VenueOrder, register)
from stand_ins.bigqmt_host import BigQmtHost
from trading_support import QuoteBoard

ACCOUNT_ID = "8800123456"
POLL = 0.01
REFUSED_CANCEL_WORDS = "大QMT 中委托状态未变为已撤"  # big QMT has no cancel-error text: the back-end's own words
BRIDGE_SETTINGS = {"BIGQMT_CONNECT_TIMEOUT": 2.0, "BIGQMT_CANCEL_VERIFY_SECONDS": 1.0, "QMT_QUERY_TIMEOUT": 2.0,
                   "QMT_RECONNECT_FIRST_DELAY": 0.1, "QMT_RECONNECT_MAX_DELAY": 1.0,
                   "QMT_RECONNECT_SESSION_MAX_DELAY": 0.2}


class BigQmtVenue(Venue):
    backend = "bigqmt"

    def __init__(self, host: BigQmtHost):
        self.host = host
        self.broker: Optional[BigQmtBroker] = None
        self.expected_reconnects: dict[int, int] = {}
        self.skew = 0.0
        self._lose_on_end = False

    def book(self) -> VenueBook:
        def read() -> VenueBook:
            venue = self.host.venue
            orders = list(venue.orders.values())
            return VenueBook(
                cash=round(venue.cash - venue.frozen, 2),
                positions={code: (p["volume"], p["can_use"]) for code, p in venue.positions.items() if p["volume"] > 0},
                orders=[VenueOrder(o.m_strRemark, o.m_strOrderSysID, o.code, Side(o.side), o.m_nVolumeTotalOriginal,
                                   o.m_dLimitPrice, XT_STATUS[o.m_nOrderStatus], o.m_nVolumeTraded, o.m_strCancelInfo)
                        for o in orders],
                fills=[VenueFill(d.m_strRemark, d.m_strOrderSysID, qrows.stock_code(vars(d)),
                                 Side.BUY if d.m_nOffsetFlag == 48 else Side.SELL, d.m_nVolume, d.m_dPrice)
                       for d in venue.deals],
                received=list(self.host.received))
        return self.host.on_strategy_thread(read, timeout=30.0)

    def fill(self, remark: str, volume: Optional[int] = None, price: Optional[float] = None) -> None:
        self.host.fill(remark=remark, volume=volume, price=price, timeout=30.0)

    # ---- fault knobs
    def hang(self, book_late: bool = False) -> None:
        self._lose_on_end = not book_late
        self.host.hang(math.inf)

    def hang_next(self, call: str) -> None:
        assert call == "place_order", f"unknown call {call!r}"
        self._lose_on_end = False  # the request stays in the connection; it is read if that link still stands
        self.host.hang(math.inf)

    def end_hang(self) -> None:
        self.host.end_hang(lose_requests=self._lose_on_end)
        self._lose_on_end = False

    def go_offline(self) -> None:
        self.expected_reconnects[id(self.broker)] = self.broker.reconnects + 1
        self.host.go_offline()

    def come_online(self) -> None:
        self.host.come_online()

    def hold_cancels(self) -> None:
        self.host.hold_cancels = True

    def release_cancels(self) -> None:
        self.host.release_cancels()

    def hold_acks(self) -> None:
        self.host.hold_acks = True

    def release_acks(self) -> None:
        self.host.release_acks()

    def drop_pushes(self) -> None:
        self.host.drop_pushes = True

    def restore_pushes(self) -> None:
        self.host.drop_pushes = False

    def reject_next_order(self, message: str) -> str:
        self.host.reject_next = message
        return message

    def refuse_next_cancel(self, message: str) -> str:
        self.host.refuse_next_cancel = True
        return REFUSED_CANCEL_WORDS

    def restart(self, renumber: bool = True) -> None:
        broker = self.broker
        self.expected_reconnects[id(broker)] = broker.reconnects + 1
        self.host.restart(renumber=renumber)

    def duplicate_pushes(self) -> None:
        self.host.duplicate_pushes = True

    def reorder_pushes(self) -> None:
        self.host.reverse_pushes = True

    def push_before_return(self) -> None:
        self.host.callbacks_in_call = True

    def repush_all(self) -> None:
        self.host.repush()

    def skew_clock(self, seconds: float) -> None:
        self.skew = float(seconds)

    def clear(self) -> None:
        host = self.host
        host.drop_pushes = host.duplicate_pushes = host.reverse_pushes = host.callbacks_in_call = False
        host.refuse_next_cancel = False
        if host.hold_cancels:
            host.release_cancels()
        if host.hold_acks:
            host.release_acks()
        if host.module is None:
            host.come_online()
        host.reject_next = ""
        self.skew = 0.0
        self.end_hang()

    # ---- waiting
    def settle(self) -> None:
        """Every push QMT queued so far is handled: the strategy thread answers a probe only after its queued
        callbacks, and the broker's worker then drains what arrived before the answer."""
        broker = self.broker
        try:
            broker.ping()
        except BrokerUnavailable:
            pass  # the link is down: what was pushed before arrives with the reconciliation
        broker.drain(5.0)

    def wait_link(self, timeout: float) -> bool:
        broker = self.broker
        wanted = self.expected_reconnects.get(id(broker), 0)
        pause = threading.Event()
        for _ in range(int(timeout / POLL) + 1):  # bounded look: nothing announces the end of a reconciliation
            if broker.reconnects >= wanted and broker.link_state == "connected" and broker.is_connected():
                self.settle()
                return True
            pause.wait(POLL)
        return False


@register("bigqmt")
@contextmanager
def bigqmt_rig(tmp_path: Path) -> Iterator[Rig]:
    with _bigqmt_rig(tmp_path, "bigqmt", folder=None) as rig:
        yield rig


@register("bigqmt-folder")
@contextmanager
def bigqmt_folder_rig(tmp_path: Path) -> Iterator[Rig]:
    """The same bridge over its folder transport (for QMT builds without the socket module)."""
    with _bigqmt_rig(tmp_path, "bigqmt-folder", folder=tmp_path / "bridge") as rig:
        yield rig


@contextmanager
def _bigqmt_rig(tmp_path: Path, name: str, folder: Optional[Path]) -> Iterator[Rig]:
    clock = ReplayClock(MARKET_OPEN)
    settings = ConfigStore(Database(tmp_path / "config.db"))
    settings.update({**RIG_SETTINGS, **BRIDGE_SETTINGS}, source="test")
    venue_holder: list[BigQmtVenue] = []
    host = BigQmtHost(ACCOUNT_ID, START_CASH, pump_period="20nMilliSecond", folder=folder,
                      now=lambda: clock.now() + timedelta(seconds=venue_holder[0].skew if venue_holder else 0.0))
    host.start()
    host.hold(CODE, HELD, COST)
    host.set_price(CODE, PRICE)
    host.set_price(BUY_CODE, BUY_PRICE)
    venue = BigQmtVenue(host)
    venue_holder.append(venue)
    board = QuoteBoard(clock)
    board.set(CODE, PRICE, PREV_CLOSE, NAMES[CODE])
    board.set(BUY_CODE, BUY_PRICE, BUY_PREV_CLOSE, NAMES[BUY_CODE])
    db_path = tmp_path / "trading.db"

    def build() -> BigQmtBroker:
        broker = BigQmtBroker(Database(db_path), settings, clock, AccountConfig(ACCOUNT_ID), "127.0.0.1", host.port,
                              transport="tcp" if folder is None else "folder", folder=str(folder or ""))
        broker.owns_db = True
        broker.connect()
        venue.broker = broker
        return broker

    rig = Rig(name=name, broker=build(), venue=venue, settings=settings, clock=clock, quotes=board,
              db_path=db_path, settle=venue.settle, wait_link=venue.wait_link, reopen=lambda: None)

    def reopen() -> BigQmtBroker:
        rig.broker.close()
        rig.broker = build()
        return rig.broker

    def on_quote(code: str, price: float) -> None:
        board.set(code, price, BUY_PREV_CLOSE if code == BUY_CODE else PREV_CLOSE, NAMES.get(code, ""))
        host.trade_at(code, price)

    rig.reopen, rig.on_quote = reopen, on_quote
    try:
        yield rig
    finally:
        venue.clear()
        rig.broker.close()
        host.stop()
