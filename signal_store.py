"""The persisted signal queue (`signals` table): detected signals wait here, separate from execution, and
every outcome (executed with order id, rejected with reason, expired) is written back on the row."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from typing import Any, Optional

from market_clock import Clock
from models import Rule, Signal, SignalStatus
from storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS signals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        stock_code TEXT NOT NULL, rule TEXT NOT NULL, side TEXT NOT NULL,
        volume INTEGER NOT NULL, amount REAL NOT NULL DEFAULT 0,
        trigger_price REAL NOT NULL, observed_price REAL NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', order_id TEXT NOT NULL DEFAULT '',
        level_index INTEGER, episode TEXT NOT NULL DEFAULT '', grid_session_id INTEGER);
    CREATE INDEX IF NOT EXISTS idx_signals_status ON signals(status);
    CREATE INDEX IF NOT EXISTS idx_signals_code ON signals(stock_code, rule, created_at)
    """,
)

ACTIVE = (SignalStatus.PENDING.value, SignalStatus.EXECUTING.value)


class SignalStore:
    def __init__(self, db: Database, clock: Clock):
        self._db = db
        self._clock = clock
        self._ready = threading.Condition()
        self._version = 0
        migrate(db, "signal_store", MIGRATIONS)

    # ---- writing
    def add(self, signal: Signal, cooldown_seconds: float = 0.0) -> Optional[Signal]:
        """Queue a signal unless the same one (stock, rule, level, grid session) is already active, or one
        ended less than `cooldown_seconds` ago. Returns the stored signal, or None when deduplicated."""
        now = self._clock.now()
        with self._db.transaction() as conn:
            active = conn.execute(
                "SELECT 1 FROM signals WHERE stock_code=? AND rule=? AND status IN (?,?) AND "
                "COALESCE(level_index,-1)=COALESCE(?,-1) AND COALESCE(grid_session_id,-1)=COALESCE(?,-1) LIMIT 1",
                (signal.stock_code, signal.rule.value, *ACTIVE, signal.level_index, signal.grid_session_id)).fetchone()
            if active:
                return None
            if cooldown_seconds > 0:
                since = (now - timedelta(seconds=cooldown_seconds)).isoformat()
                recent = conn.execute(
                    "SELECT 1 FROM signals WHERE stock_code=? AND rule=? AND updated_at>? AND status IN (?,?) LIMIT 1",
                    (signal.stock_code, signal.rule.value, since, SignalStatus.REJECTED.value,
                     SignalStatus.EXPIRED.value)).fetchone()
                if recent:
                    return None
            stamp = now.isoformat()
            cursor = conn.execute(
                "INSERT INTO signals(stock_code, rule, side, volume, amount, trigger_price, observed_price, created_at,"
                " updated_at, status, reason, order_id, level_index, episode, grid_session_id)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (signal.stock_code, signal.rule.value, signal.side.value, int(signal.volume), float(signal.amount),
                 float(signal.trigger_price), float(signal.observed_price), signal.created_at.isoformat(), stamp,
                 SignalStatus.PENDING.value, signal.reason, signal.order_id, signal.level_index, signal.episode,
                 signal.grid_session_id))
            stored = Signal(**{**signal.__dict__, "id": cursor.lastrowid, "status": SignalStatus.PENDING})
        self._notify()
        return stored

    def mark(self, signal_id: int, status: SignalStatus, reason: str = "", order_id: str = "") -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE signals SET status=?, reason=?, order_id=?, updated_at=? WHERE id=?",
                         (status.value, reason, order_id, self._clock.now().isoformat(), signal_id))
        self._notify()

    def claim(self, signal_id: int) -> bool:
        """Atomically move a pending signal to executing; False if someone else got it first."""
        with self._db.transaction() as conn:
            changed = conn.execute("UPDATE signals SET status=?, updated_at=? WHERE id=? AND status=?",
                                   (SignalStatus.EXECUTING.value, self._clock.now().isoformat(), signal_id,
                                    SignalStatus.PENDING.value)).rowcount
        return changed == 1

    # ---- reading
    def get(self, signal_id: int) -> Optional[Signal]:
        row = self._db.query_one("SELECT * FROM signals WHERE id=?", (signal_id,))
        return _to_signal(row) if row else None

    def by_order(self, order_id: str) -> Optional[Signal]:
        row = self._db.query_one("SELECT * FROM signals WHERE order_id=? ORDER BY id DESC LIMIT 1", (order_id,))
        return _to_signal(row) if row else None

    def pending(self) -> list[Signal]:
        rows = self._db.query("SELECT * FROM signals WHERE status=? ORDER BY id", (SignalStatus.PENDING.value,))
        return [_to_signal(r) for r in rows]

    def executing(self) -> list[Signal]:
        rows = self._db.query("SELECT * FROM signals WHERE status=? ORDER BY id", (SignalStatus.EXECUTING.value,))
        return [_to_signal(r) for r in rows]

    def latest(self, code: str) -> Optional[Signal]:
        row = self._db.query_one("SELECT * FROM signals WHERE stock_code=? ORDER BY id DESC LIMIT 1", (code,))
        return _to_signal(row) if row else None

    def history(self, limit: int = 200) -> list[Signal]:
        rows = self._db.query("SELECT * FROM signals WHERE status NOT IN (?,?) ORDER BY id DESC LIMIT ?",
                              (*ACTIVE, limit))
        return [_to_signal(r) for r in rows]

    def exists_on_day(self, code: str, rule: Rule, day: date) -> bool:
        row = self._db.query_one("SELECT 1 FROM signals WHERE stock_code=? AND rule=? AND substr(created_at,1,10)=?"
                                 " LIMIT 1", (code, rule.value, day.isoformat()))
        return row is not None

    def wait(self, seen_version: int, timeout: float) -> int:
        """Block until a signal is added or changes (or `timeout` real seconds); return the new version."""
        with self._ready:
            self._ready.wait_for(lambda: self._version != seen_version, timeout=timeout)
            return self._version

    @property
    def version(self) -> int:
        return self._version

    def _notify(self) -> None:
        with self._ready:
            self._version += 1
            self._ready.notify_all()


def _to_signal(row: Any) -> Signal:
    return Signal(
        id=row["id"], stock_code=row["stock_code"], rule=Rule(row["rule"]), volume=row["volume"],
        amount=row["amount"], trigger_price=row["trigger_price"], observed_price=row["observed_price"],
        created_at=datetime.fromisoformat(row["created_at"]), status=SignalStatus(row["status"]),
        reason=row["reason"], order_id=row["order_id"], level_index=row["level_index"], episode=row["episode"],
        grid_session_id=row["grid_session_id"])


def signal_to_dict(signal: Signal) -> dict[str, Any]:
    """JSON shape for the API."""
    return {
        "id": signal.id, "stock_code": signal.stock_code, "rule": signal.rule.value, "rule_label": signal.rule.label,
        "side": signal.side.value, "volume": signal.volume, "amount": signal.amount,
        "trigger_price": signal.trigger_price, "observed_price": signal.observed_price,
        "created_at": signal.created_at.isoformat(timespec="seconds"), "status": signal.status.value,
        "reason": signal.reason, "order_id": signal.order_id, "level_index": signal.level_index,
        "grid_session_id": signal.grid_session_id,
    }
