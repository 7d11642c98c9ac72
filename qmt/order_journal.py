"""The live broker's own journal in the trading db: which client id (order remark) went out under which
session/seq and got which QMT order id (`qmt_order_map`), and the fees fixed for each QMT fill (`qmt_fills`)."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

import market_rules
from core.models import Fill, OrderRequest, OrderStatus, Side
from persistence.storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS qmt_order_map (
        client_id TEXT PRIMARY KEY,
        session_id INTEGER NOT NULL,
        seq INTEGER,
        order_id TEXT,
        stock_code TEXT NOT NULL,
        side TEXT NOT NULL,
        volume INTEGER NOT NULL,
        price REAL NOT NULL,
        status TEXT NOT NULL,
        filled_volume INTEGER NOT NULL DEFAULT 0,
        cancel_state INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS qmt_order_map_order_id ON qmt_order_map(order_id);
    CREATE INDEX IF NOT EXISTS qmt_order_map_seq ON qmt_order_map(session_id, seq);
    CREATE TABLE IF NOT EXISTS qmt_fills (
        fill_id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        stock_code TEXT NOT NULL,
        side TEXT NOT NULL,
        price REAL NOT NULL,
        volume INTEGER NOT NULL,
        commission REAL NOT NULL,
        stamp_duty REAL NOT NULL,
        transfer_fee REAL NOT NULL,
        time TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS qmt_fills_order ON qmt_fills(order_id)
    """,
    # issue 13: a restarted miniQMT may number today's orders afresh; `order_id` stays the first id (fill ids
    # are built from it, so a fill seen again under the new number is not booked twice), cancels use the new one
    """
    ALTER TABLE qmt_order_map ADD COLUMN broker_order_id TEXT;
    CREATE INDEX IF NOT EXISTS qmt_order_map_broker_order_id ON qmt_order_map(broker_order_id)
    """,
    # issue 25: a broker may reuse order id and trade id on a later day, so a fill id carries the trade date
    # (fill_key below: "{order_id}-{traded_id}-{YYYYMMDD}"); `time` is the fill's ISO time
    """
    UPDATE qmt_fills SET fill_id = fill_id || '-' || replace(substr(time, 1, 10), '-', '')
    """,
)

# cancel_state values
CANCEL_NONE, CANCEL_WAITING_FOR_ID, CANCEL_SENT = 0, 1, 2


@dataclass(frozen=True)
class MappedOrder:
    """One row of qmt_order_map."""

    client_id: str
    session_id: int
    seq: Optional[int]
    order_id: str
    stock_code: str
    side: Side
    volume: int
    price: float
    status: OrderStatus
    filled_volume: int
    cancel_state: int
    reason: str
    created_at: str
    broker_order_id: str = ""

    @property
    def current_id(self) -> str:
        """The id miniQMT knows the order by now (for cancels): the renumbered one, else the first."""
        return self.broker_order_id or self.order_id


class QmtOrderJournal:
    """SQL for the two tables. Rows are written before the order leaves (seq filled in right after), so a
    crash in between still leaves the client id to match against QMT's orders by remark."""

    def __init__(self, db: Database):
        self._db = db
        migrate(db, "qmt_order_journal", MIGRATIONS)

    # ---- qmt_order_map
    def get(self, client_id: str) -> Optional[MappedOrder]:
        return _mapped(self._db.query_one("SELECT * FROM qmt_order_map WHERE client_id=?", (client_id,)))

    def by_order_id(self, order_id: str) -> Optional[MappedOrder]:
        return _mapped(self._db.query_one("SELECT * FROM qmt_order_map WHERE order_id=? OR broker_order_id=? "
                                          "ORDER BY created_at DESC", (order_id, order_id)))

    def by_seq(self, session_id: int, seq: int) -> Optional[MappedOrder]:
        return _mapped(self._db.query_one("SELECT * FROM qmt_order_map WHERE session_id=? AND seq=?",
                                          (session_id, seq)))

    def add(self, request: OrderRequest, session_id: int, now: datetime) -> None:
        """Journal an order about to be sent. Raises sqlite3.IntegrityError when the client id was used."""
        stamp = now.isoformat(timespec="seconds")
        self._db.execute(
            "INSERT INTO qmt_order_map(client_id, session_id, stock_code, side, volume, price, status, created_at,"
            " updated_at) VALUES(?,?,?,?,?,?,?,?,?)",
            (request.client_id, session_id, request.stock_code, request.side.value, int(request.volume),
             float(request.price), OrderStatus.PENDING_SUBMIT.value, stamp, stamp))

    def set_seq(self, client_id: str, seq: int) -> None:
        self._db.execute("UPDATE qmt_order_map SET seq=? WHERE client_id=?", (seq, client_id))

    def set_order_id(self, client_id: str, order_id: str) -> None:
        self._db.execute("UPDATE qmt_order_map SET order_id=? WHERE client_id=?", (order_id, client_id))

    def set_broker_order_id(self, client_id: str, order_id: str) -> None:
        self._db.execute("UPDATE qmt_order_map SET broker_order_id=? WHERE client_id=?", (order_id, client_id))

    def set_state(self, client_id: str, status: OrderStatus, filled_volume: int, reason: str, now: datetime) -> None:
        self._db.execute("UPDATE qmt_order_map SET status=?, filled_volume=?, reason=?, updated_at=? WHERE client_id=?",
                         (status.value, filled_volume, reason, now.isoformat(timespec="seconds"), client_id))

    def set_cancel_state(self, client_id: str, state: int) -> None:
        self._db.execute("UPDATE qmt_order_map SET cancel_state=? WHERE client_id=?", (state, client_id))

    # ---- qmt_fills
    def fill_fees(self, fill_id: str) -> Optional[tuple[float, float, float]]:
        row = self._db.query_one("SELECT commission, stamp_duty, transfer_fee FROM qmt_fills WHERE fill_id=?",
                                 (fill_id,))
        return None if row is None else (row[0], row[1], row[2])

    def record_fill(self, fill: Fill, settings, broker_commission: float) -> Fill:
        """Fix the fees of a fill the first time it is seen; later sightings (push or query) get the same.
        Fees are per order, as the broker charges them (minimum commission once per order): a fill pays
        what the order's fees grow by, so partial fills add up to the fees of one fill of the whole. A
        commission the broker reports (> 0) replaces our estimate of the commission."""
        with self._db.transaction() as conn:
            row = conn.execute("SELECT commission, stamp_duty, transfer_fee FROM qmt_fills WHERE fill_id=?",
                               (fill.fill_id,)).fetchone()
            if row is not None:
                return _with_fees(fill, row[0], row[1], row[2])
            before = conn.execute("SELECT COALESCE(SUM(price * volume), 0) FROM qmt_fills WHERE order_id=? AND "
                                  "substr(time, 1, 10)=?",  # the same order: its id may be reused another day
                                  (fill.order_id, fill.time.date().isoformat())).fetchone()[0]
            commission, stamp_duty, transfer_fee = _fee_increment(fill, before, settings)
            if broker_commission > 0:
                commission = round(broker_commission, 2)
            conn.execute("INSERT INTO qmt_fills VALUES(?,?,?,?,?,?,?,?,?,?)", (
                fill.fill_id, fill.order_id, fill.stock_code, fill.side.value, fill.price, fill.volume, commission,
                stamp_duty, transfer_fee, fill.time.isoformat(timespec="seconds")))
        return _with_fees(fill, commission, stamp_duty, transfer_fee)


def fill_key(order_id: str, traded_id: str, traded_at: datetime) -> str:
    """A QMT fill's id: order id and trade id, which a broker may number afresh each day, plus the trade date
    (issue 25; MIGRATIONS[2] brings older ids to this form)."""
    return f"{order_id}-{traded_id}-{traded_at:%Y%m%d}"


def _fee_increment(fill: Fill, amount_before: float, settings) -> tuple[float, float, float]:
    """Fees of the order after this fill minus before it. market_rules.fees(price=amount, volume=1) is the
    fee of one order worth `amount` in total."""
    def order_fees(amount: float) -> dict[str, float]:
        if amount <= 0:
            return {"commission": 0.0, "stamp_duty": 0.0, "transfer_fee": 0.0}
        return market_rules.fees(fill.stock_code, fill.side, round(amount, 2), 1, settings)

    after, before = order_fees(amount_before + fill.price * fill.volume), order_fees(amount_before)
    return tuple(round(after[k] - before[k], 2) for k in ("commission", "stamp_duty", "transfer_fee"))


def _with_fees(fill: Fill, commission: float, stamp_duty: float, transfer_fee: float) -> Fill:
    return Fill(fill.fill_id, fill.order_id, fill.client_id, fill.stock_code, fill.side, fill.price, fill.volume,
                fill.time, commission=commission, stamp_duty=stamp_duty, transfer_fee=transfer_fee)


def _mapped(row: Optional[sqlite3.Row]) -> Optional[MappedOrder]:
    if row is None:
        return None
    return MappedOrder(row["client_id"], row["session_id"], row["seq"], row["order_id"] or "", row["stock_code"],
                       Side(row["side"]), row["volume"], row["price"], OrderStatus(row["status"]),
                       row["filled_volume"], row["cancel_state"], row["reason"], row["created_at"],
                       row["broker_order_id"] or "")
