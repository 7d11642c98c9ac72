"""The durable order journal (`orders`) and fill ledger (`trade_records`) of the trading db: every order is
written here before it reaches a broker, every fill exactly once. SQL only; the pipeline is trading_executor."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Optional

from core.models import Fill, Order, OrderRequest, OrderStatus, Rule, Side
from persistence.storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS orders (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL UNIQUE, order_id TEXT NOT NULL DEFAULT '',
        stock_code TEXT NOT NULL, side TEXT NOT NULL, volume INTEGER NOT NULL, price REAL NOT NULL,
        status TEXT NOT NULL, filled_volume INTEGER NOT NULL DEFAULT 0, filled_amount REAL NOT NULL DEFAULT 0,
        rule TEXT NOT NULL, origin_rule TEXT NOT NULL, signal_id INTEGER, mode TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        trading_day TEXT NOT NULL, parent_client_id TEXT NOT NULL DEFAULT '',
        root_client_id TEXT NOT NULL DEFAULT '', reprice_count INTEGER NOT NULL DEFAULT 0,
        reprice_state TEXT NOT NULL DEFAULT '', replaced_by TEXT NOT NULL DEFAULT '');
    CREATE INDEX IF NOT EXISTS orders_order_id ON orders(order_id);
    CREATE INDEX IF NOT EXISTS orders_signal ON orders(signal_id);
    CREATE INDEX IF NOT EXISTS orders_day ON orders(trading_day);
    CREATE TABLE IF NOT EXISTS trade_records (
        id INTEGER PRIMARY KEY AUTOINCREMENT, fill_id TEXT NOT NULL UNIQUE, order_id TEXT NOT NULL,
        client_id TEXT NOT NULL, stock_code TEXT NOT NULL, stock_name TEXT NOT NULL DEFAULT '', side TEXT NOT NULL,
        price REAL NOT NULL, volume INTEGER NOT NULL, amount REAL NOT NULL, commission REAL NOT NULL,
        stamp_duty REAL NOT NULL, transfer_fee REAL NOT NULL, fees REAL NOT NULL, realized_pnl REAL,
        strategy TEXT NOT NULL, mode TEXT NOT NULL, trade_time TEXT NOT NULL, trading_day TEXT NOT NULL,
        reprice_count INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX IF NOT EXISTS trade_records_day ON trade_records(trading_day);
    CREATE TABLE IF NOT EXISTS executor_days (day TEXT PRIMARY KEY, start_equity REAL NOT NULL)
    """,
    # issue 19: a requester's idempotency key (e.g. order-file hash + line number); one order per key
    """
    ALTER TABLE orders ADD COLUMN idempotency_key TEXT NOT NULL DEFAULT '';
    CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency ON orders(idempotency_key) WHERE idempotency_key != ''
    """,
    # issue 25: live fill ids carry the trade date (a broker may reuse order and trade ids on a later day;
    # qmt.order_journal.fill_key), so a fill seen again after the upgrade is still known
    """
    UPDATE trade_records SET fill_id = fill_id || '-' || replace(trading_day, '-', '') WHERE mode = 'live'
    """,
    # issue 25: when the broker last named the order (a push or a query listing it); '' = not since the upgrade
    # (the start-up reconciliation confirms every order the broker lists)
    """
    ALTER TABLE orders ADD COLUMN confirmed_at TEXT NOT NULL DEFAULT ''
    """,
)

# Order of progress; an update never moves an order backwards (events may arrive out of order).
_RANK = {OrderStatus.UNKNOWN: 0, OrderStatus.PENDING_SUBMIT: 1, OrderStatus.SUBMITTED: 2, OrderStatus.OPEN: 3,
         OrderStatus.PARTIALLY_FILLED: 4, OrderStatus.CANCEL_PENDING: 5, OrderStatus.CANCELLED: 6,
         OrderStatus.FILLED: 6, OrderStatus.REJECTED: 6}

ACTIVE = "active"  # status filter: every order that has not ended
REPRICE_REQUESTED = "requested"  # cancel sent; re-place the remainder once the cancel is confirmed
REPRICE_DONE = "done"
REPRICE_EXHAUSTED = "exhausted"  # MAX_REORDER_TIMES reached: the order keeps working at its last price


@dataclass(frozen=True)
class JournalEntry:
    client_id: str
    order_id: str
    stock_code: str
    side: Side
    volume: int
    price: float
    status: OrderStatus
    filled_volume: int
    filled_amount: float
    rule: Rule
    origin_rule: Rule  # the rule of the original order (a re-priced sell keeps its stop-loss origin)
    signal_id: Optional[int]
    mode: str
    reason: str
    created_at: datetime
    updated_at: datetime
    trading_day: date
    parent_client_id: str
    root_client_id: str
    reprice_count: int
    reprice_state: str
    replaced_by: str
    confirmed_at: Optional[datetime] = None  # market time the broker last named the order (push or query)

    @property
    def remaining(self) -> int:
        return max(0, self.volume - self.filled_volume)

    def to_order(self) -> Order:
        return Order(client_id=self.client_id, stock_code=self.stock_code, side=self.side, volume=self.volume,
                     price=self.price, status=self.status, order_id=self.order_id,
                     filled_volume=self.filled_volume, filled_amount=self.filled_amount, time=self.created_at,
                     reason=self.reason)

    def to_dict(self) -> dict[str, Any]:
        return {"client_id": self.client_id, "order_id": self.order_id, "stock_code": self.stock_code,
                "side": self.side.value, "volume": self.volume, "price": self.price, "status": self.status.value,
                "filled_volume": self.filled_volume, "filled_amount": self.filled_amount, "rule": self.rule.value,
                "origin_rule": self.origin_rule.value, "signal_id": self.signal_id, "mode": self.mode,
                "reason": self.reason, "created_at": self.created_at, "updated_at": self.updated_at,
                "trading_day": self.trading_day, "parent_client_id": self.parent_client_id,
                "reprice_count": self.reprice_count}


class OrderJournal:
    """SQL of the journal. Each method is one short transaction; callers serialise read-modify-write."""

    def __init__(self, db: Database, clock, mode: str):
        self._db = db
        self._clock = clock
        self.mode = mode
        migrate(db, "order_journal", MIGRATIONS)

    # ---- orders
    def open_order(self, code: str, side: Side, volume: int, price: float, rule: Rule, signal_id: Optional[int],
                   origin_rule: Optional[Rule] = None, parent: Optional[JournalEntry] = None,
                   idempotency_key: str = "") -> OrderRequest:
        """Journal a new order (status pending_submit, committed) and return the request to send. The client
        id (≤ 24 characters, QMT's remark limit) is unique: a timestamp plus the journal's own sequence."""
        now = self._clock.now()
        stamp = _stamp(now)
        with self._db.transaction() as conn:
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM orders").fetchone()[0]
            client_id = f"Q{now:%y%m%d%H%M%S}{seq:07d}"
            conn.execute(
                "INSERT INTO orders(seq, client_id, stock_code, side, volume, price, status, rule, origin_rule,"
                " signal_id, mode, created_at, updated_at, trading_day, parent_client_id, root_client_id,"
                " reprice_count, idempotency_key) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (seq, client_id, code, side.value, volume, price, OrderStatus.PENDING_SUBMIT.value, rule.value,
                 (origin_rule or rule).value, signal_id, self.mode, stamp, stamp, now.date().isoformat(),
                 parent.client_id if parent else "", (parent.root_client_id or parent.client_id) if parent else "",
                 parent.reprice_count + 1 if parent else 0, idempotency_key))
        return OrderRequest(client_id=client_id, stock_code=code, side=side, volume=volume, price=price, rule=rule,
                            signal_id=signal_id)

    def get(self, client_id: str) -> Optional[JournalEntry]:
        return _entry(self._db.query_one("SELECT * FROM orders WHERE client_id=?", (client_id,)))

    def by_idempotency_key(self, key: str) -> Optional[JournalEntry]:
        return _entry(self._db.query_one("SELECT * FROM orders WHERE idempotency_key=?", (key,))) if key else None

    def release_idempotency_key(self, client_id: str) -> None:
        """An order that provably never reached the broker frees its key: the requester may send it again."""
        self._db.execute("UPDATE orders SET idempotency_key='' WHERE client_id=?", (client_id,))

    def find(self, any_id: str) -> Optional[JournalEntry]:
        """By our client id or by the broker's order id."""
        found = self.get(any_id)
        if found is None and any_id:
            found = _entry(self._db.query_one("SELECT * FROM orders WHERE order_id=? ORDER BY seq DESC LIMIT 1",
                                              (any_id,)))
        return found

    def apply_update(self, order: Order, force: bool = False) -> Optional[tuple[JournalEntry, JournalEntry]]:
        """Apply a broker report: status only forward (unless `force`: the broker's word at recovery), filled
        never backwards; the order counts as confirmed by the broker now (`confirmed_at`, read by the protection
        sentinel). Returns (before, after) when something changed, None otherwise or if unknown."""
        before = self.get(order.client_id) if order.client_id else None
        if before is None and order.order_id:
            before = self.find(order.order_id)
        if before is None:
            return None
        self._db.execute("UPDATE orders SET confirmed_at=? WHERE client_id=?",
                         (_stamp(self._clock.now()), before.client_id))
        status = before.status
        if force and order.status is not OrderStatus.UNKNOWN:
            status = order.status
        elif _may_move(before.status, order.status):
            status = order.status
        filled_volume = order.filled_volume if force else max(before.filled_volume, order.filled_volume)
        filled_amount = order.filled_amount if force else max(before.filled_amount, order.filled_amount)
        order_id = order.order_id or before.order_id
        reason = order.reason or before.reason
        return self._save(before, status=status, filled_volume=filled_volume, filled_amount=filled_amount,
                          order_id=order_id, reason=reason)

    def set_status(self, client_id: str, status: OrderStatus, reason: str = "",
                   force: bool = False) -> Optional[tuple[JournalEntry, JournalEntry]]:
        """A status we decided ourselves (submitted, rejected before/at sending, unknown, cancel pending)."""
        before = self.get(client_id)
        if before is None or not (force or _may_move(before.status, status)):
            return None
        return self._save(before, status=status, reason=reason or before.reason)

    def open_entries(self, code: Optional[str] = None, side: Optional[Side] = None) -> list[JournalEntry]:
        terminal = tuple(s.value for s in OrderStatus if s.is_terminal)
        sql = f"SELECT * FROM orders WHERE status NOT IN ({','.join('?' * len(terminal))})"
        params: list[Any] = list(terminal)
        if code:
            sql, params = sql + " AND stock_code=?", params + [code]
        if side:
            sql, params = sql + " AND side=?", params + [side.value]
        return [_entry(r) for r in self._db.query(sql + " ORDER BY seq", params)]

    def entries(self, status: Optional[str] = None, day: Optional[date] = None) -> list[JournalEntry]:
        """Newest first; `status` is one OrderStatus value or ACTIVE (every state that is not final)."""
        sql, params = "SELECT * FROM orders WHERE 1=1", []
        if status == ACTIVE:
            terminal = [s.value for s in OrderStatus if s.is_terminal]
            sql, params = sql + f" AND status NOT IN ({','.join('?' * len(terminal))})", params + terminal
        elif status:
            sql, params = sql + " AND status=?", params + [status]
        if day:
            sql, params = sql + " AND trading_day=?", params + [day.isoformat()]
        return [_entry(r) for r in self._db.query(sql + " ORDER BY seq DESC", params)]

    def latest_for_signal(self, signal_id: int) -> Optional[JournalEntry]:
        return _entry(self._db.query_one("SELECT * FROM orders WHERE signal_id=? ORDER BY seq DESC LIMIT 1",
                                         (signal_id,)))

    def count_for_day(self, day: date) -> int:
        return self._db.query_one("SELECT COUNT(*) FROM orders WHERE trading_day=?", (day.isoformat(),))[0]

    def counts_by_origin(self, day: date) -> dict[tuple[str, str], int]:
        """Orders of the day per (stock, origin rule value): the circuit breakers' per-source counts (issue 25)."""
        rows = self._db.query("SELECT stock_code, origin_rule, COUNT(*) AS n FROM orders WHERE trading_day=? "
                              "GROUP BY stock_code, origin_rule", (day.isoformat(),))
        return {(r["stock_code"], r["origin_rule"]): r["n"] for r in rows}

    def automatic_counts(self, day: date) -> dict[str, int]:
        """Orders of the day per stock that no person placed (the circuit breakers' daily counts)."""
        rows = self._db.query("SELECT stock_code, COUNT(*) AS n FROM orders WHERE trading_day=? AND rule != ? "
                              "GROUP BY stock_code", (day.isoformat(), Rule.MANUAL.value))
        return {r["stock_code"]: r["n"] for r in rows}

    # ---- re-pricing of timed-out sells
    def set_reprice_state(self, client_id: str, state: str, replaced_by: str = "", reason: str = "") -> None:
        sql = "UPDATE orders SET reprice_state=?, replaced_by=?, updated_at=?"
        params: list[Any] = [state, replaced_by, _stamp(self._clock.now())]
        if reason:
            sql, params = sql + ", reason=?", params + [reason]
        self._db.execute(sql + " WHERE client_id=?", params + [client_id])

    def reprice_due(self) -> list[JournalEntry]:
        """Sells whose timeout cancel is confirmed and whose remainder has not been re-placed yet."""
        rows = self._db.query("SELECT * FROM orders WHERE reprice_state=? AND status=? ORDER BY seq",
                              (REPRICE_REQUESTED, OrderStatus.CANCELLED.value))
        return [_entry(r) for r in rows]

    # ---- fills
    def has_fill(self, fill_id: str) -> bool:
        return self._db.query_one("SELECT 1 FROM trade_records WHERE fill_id=?", (fill_id,)) is not None

    def record_fill(self, fill: Fill, rule: Rule, realized_pnl: Optional[float], stock_name: str,
                    entry: Optional[JournalEntry]) -> bool:
        """Insert the fill once (False if its id is already there) and roll it into its order's filled
        volume and amount, in one transaction."""
        with self._db.transaction() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO trade_records(fill_id, order_id, client_id, stock_code, stock_name, side,"
                " price, volume, amount, commission, stamp_duty, transfer_fee, fees, realized_pnl, strategy, mode,"
                " trade_time, trading_day, reprice_count) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (fill.fill_id, fill.order_id, fill.client_id, fill.stock_code, stock_name, fill.side.value,
                 fill.price, fill.volume, fill.amount, fill.commission, fill.stamp_duty, fill.transfer_fee,
                 fill.fees, realized_pnl, rule.value, self.mode, _stamp(fill.time), fill.time.date().isoformat(),
                 entry.reprice_count if entry else 0)).rowcount == 1
            if inserted and entry is not None:
                total = conn.execute("SELECT COALESCE(SUM(volume), 0), COALESCE(SUM(amount), 0) FROM trade_records"
                                     " WHERE client_id=?", (entry.client_id,)).fetchone()
                conn.execute("UPDATE orders SET filled_volume=MAX(filled_volume, ?), filled_amount=MAX(filled_amount,"
                             " ?), order_id=CASE WHEN order_id='' THEN ? ELSE order_id END, updated_at=?"
                             " WHERE client_id=?",
                             (total[0], round(total[1], 2), fill.order_id, _stamp(self._clock.now()),
                              entry.client_id))
        return inserted

    def trade_records(self, start: Optional[date] = None, end: Optional[date] = None,
                      code: Optional[str] = None) -> list[dict[str, Any]]:
        sql, params = "SELECT * FROM trade_records WHERE 1=1", []
        if start:
            sql, params = sql + " AND trading_day>=?", params + [start.isoformat()]
        if end:
            sql, params = sql + " AND trading_day<=?", params + [end.isoformat()]
        if code:
            sql, params = sql + " AND stock_code=?", params + [code]
        rows = self._db.query(sql + " ORDER BY id", params)
        return [{key: row[key] for key in row.keys()} | {"trade_time": datetime.fromisoformat(row["trade_time"])}
                for row in rows]

    # ---- daily figures
    def start_equity(self, day: date) -> Optional[float]:
        row = self._db.query_one("SELECT start_equity FROM executor_days WHERE day=?", (day.isoformat(),))
        return row[0] if row else None

    def set_start_equity(self, day: date, equity: float) -> None:
        self._db.execute("INSERT OR IGNORE INTO executor_days(day, start_equity) VALUES(?, ?)",
                         (day.isoformat(), equity))

    # ---- internals
    def _save(self, before: JournalEntry, **changes) -> Optional[tuple[JournalEntry, JournalEntry]]:
        if all(getattr(before, key) == value for key, value in changes.items()):
            return None
        columns = ", ".join(f"{key}=?" for key in changes)
        values = [v.value if isinstance(v, OrderStatus) else v for v in changes.values()]
        self._db.execute(f"UPDATE orders SET {columns}, updated_at=? WHERE client_id=?",
                         values + [_stamp(self._clock.now()), before.client_id])
        return before, self.get(before.client_id)


def _may_move(current: OrderStatus, new: OrderStatus) -> bool:
    if new is OrderStatus.UNKNOWN:
        return False
    if current is OrderStatus.UNKNOWN:
        return True
    if current is OrderStatus.CANCEL_PENDING and new in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
        return True  # the broker refused the cancel (e.g. 09:20–09:25): the order works on and can time out again
    return not current.is_terminal and _RANK[new] >= _RANK[current]


def _stamp(moment: datetime) -> str:
    return moment.isoformat(sep=" ")


def _entry(row) -> Optional[JournalEntry]:
    if row is None:
        return None
    return JournalEntry(
        client_id=row["client_id"], order_id=row["order_id"], stock_code=row["stock_code"], side=Side(row["side"]),
        volume=row["volume"], price=row["price"], status=OrderStatus(row["status"]),
        filled_volume=row["filled_volume"], filled_amount=row["filled_amount"], rule=Rule(row["rule"]),
        origin_rule=Rule(row["origin_rule"]), signal_id=row["signal_id"], mode=row["mode"], reason=row["reason"],
        created_at=datetime.fromisoformat(row["created_at"]), updated_at=datetime.fromisoformat(row["updated_at"]),
        trading_day=date.fromisoformat(row["trading_day"]), parent_client_id=row["parent_client_id"],
        root_client_id=row["root_client_id"], reprice_count=row["reprice_count"],
        reprice_state=row["reprice_state"], replaced_by=row["replaced_by"],
        confirmed_at=datetime.fromisoformat(row["confirmed_at"]) if row["confirmed_at"] else None)
