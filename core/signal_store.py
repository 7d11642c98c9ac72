"""The persisted signal queue (`signals` table): detected signals wait here, separate from execution, and
every outcome (executed with order id, rejected with reason, expired) is written back on the row."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from typing import Any, Callable, Optional

from market.clock import Clock
from core.models import Rule, Signal, SignalStatus, TradingError
from persistence.storage import Database, migrate

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
    # issue 14: the wall-clock time of the latest detection (a person's reaction time does not speed up with
    # the replay) and whether a dismissal also silences the rest of the episode
    """
    ALTER TABLE signals ADD COLUMN seen_at TEXT NOT NULL DEFAULT '';
    ALTER TABLE signals ADD COLUMN snoozed INTEGER NOT NULL DEFAULT 0
    """,
    # issue 25: a signal held back (its source halted, or its exit refused or failed) stays one row: how many
    # times it was held back and the wall-clock time of the last one
    """
    ALTER TABLE signals ADD COLUMN hold_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE signals ADD COLUMN held_at TEXT NOT NULL DEFAULT ''
    """,
)
SAME_SIGNAL = ("stock_code=? AND rule=? AND COALESCE(level_index,-1)=COALESCE(?,-1) AND "
               "COALESCE(grid_session_id,-1)=COALESCE(?,-1)")

ACTIVE = (SignalStatus.PENDING.value, SignalStatus.EXECUTING.value)


class SignalStore:
    def __init__(self, db: Database, clock: Clock, wall_clock: Callable[[], datetime] = datetime.now):
        self._db = db
        self._clock = clock
        self._wall_clock = wall_clock
        self._ready = threading.Condition()
        self._version = 0
        migrate(db, "signal_store", MIGRATIONS)

    # ---- writing
    def add(self, signal: Signal, cooldown_seconds: float = 0.0) -> Optional[Signal]:
        """Queue a signal unless the same one (stock, rule, level, grid session) is already active, the person
        snoozed it for this episode, or one ended less than `cooldown_seconds` ago. A pending one of the same
        episode is refreshed instead (observed price, volume, detection time): one live row per occurrence.
        Returns the newly stored signal, or None when nothing new was added."""
        now = self._clock.now()
        seen = self._wall_clock().isoformat()
        key = (signal.stock_code, signal.rule.value, signal.level_index, signal.grid_session_id)
        with self._db.transaction() as conn:
            active = conn.execute(f"SELECT id, status, episode, hold_count FROM signals WHERE {SAME_SIGNAL} AND "
                                  "status IN (?,?) ORDER BY id DESC LIMIT 1", (*key, *ACTIVE)).fetchone()
            refreshed_held = False
            if active and active["status"] == SignalStatus.PENDING.value and active["episode"] == signal.episode:
                conn.execute("UPDATE signals SET observed_price=?, trigger_price=?, volume=?, amount=?, seen_at=?,"
                             " updated_at=? WHERE id=?", (float(signal.observed_price), float(signal.trigger_price),
                                                         int(signal.volume), float(signal.amount), seen,
                                                         now.isoformat(), active["id"]))
                refreshed_held = active["hold_count"] > 0
            if active:
                stored = None
            else:
                stored = self._insert_unless_quiet(conn, signal, key, cooldown_seconds, now, seen)
        if refreshed_held or stored is not None:  # a held-back signal seen again may be tried again now
            self._notify()
        return stored

    def _insert_unless_quiet(self, conn, signal: Signal, key: tuple, cooldown_seconds: float, now: datetime,
                             seen: str) -> Optional[Signal]:
        """In `add`'s transaction: store a new pending signal unless snoozed or within the cooldown."""
        if self._snoozed(conn, signal, key):
            return None
        if cooldown_seconds > 0:
            since = (now - timedelta(seconds=cooldown_seconds)).isoformat()
            recent = conn.execute(
                "SELECT 1 FROM signals WHERE stock_code=? AND rule=? AND updated_at>? AND status IN (?,?,?) LIMIT 1",
                (signal.stock_code, signal.rule.value, since, SignalStatus.REJECTED.value,
                 SignalStatus.EXPIRED.value, SignalStatus.DISMISSED.value)).fetchone()
            if recent:
                return None
        stamp = now.isoformat()
        cursor = conn.execute(
            "INSERT INTO signals(stock_code, rule, side, volume, amount, trigger_price, observed_price, created_at,"
            " updated_at, status, reason, order_id, level_index, episode, grid_session_id, seen_at)"
            " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (signal.stock_code, signal.rule.value, signal.side.value, int(signal.volume), float(signal.amount),
             float(signal.trigger_price), float(signal.observed_price), signal.created_at.isoformat(), stamp,
             SignalStatus.PENDING.value, signal.reason, signal.order_id, signal.level_index, signal.episode,
             signal.grid_session_id, seen))
        return Signal(**{**signal.__dict__, "id": cursor.lastrowid, "status": SignalStatus.PENDING,
                         "seen_at": datetime.fromisoformat(seen)})

    def dismiss(self, signal_id: int, snooze: bool = False, source: str = "web") -> Signal:
        """A person ignores a pending signal; with `snooze` the same signal is not raised again in this episode
        (for signals without an episode, such as MACD entries: this market day)."""
        reason = f"人工忽略（{source}）" + ("，本轮持仓内不再提示" if snooze else "")
        with self._db.transaction() as conn:
            changed = conn.execute("UPDATE signals SET status=?, reason=?, snoozed=?, updated_at=? WHERE id=? AND "
                                   "status=?", (SignalStatus.DISMISSED.value, reason, int(snooze),
                                                self._clock.now().isoformat(), signal_id,
                                                SignalStatus.PENDING.value)).rowcount
        if not changed:
            found = self.get(signal_id)
            if found is None:
                raise TradingError("SIGNAL_NOT_FOUND", f"信号 #{signal_id} 不存在")
            raise TradingError("SIGNAL_NOT_PENDING", f"信号 #{signal_id} 当前状态为「{found.status.label}」，不能忽略")
        self._notify()
        return self.get(signal_id)

    def age_seconds(self, signal: Signal) -> float:
        """Real seconds since the signal was last detected (infinite for rows from before this was recorded)."""
        if signal.seen_at is None:
            return float("inf")
        return (self._wall_clock() - signal.seen_at).total_seconds()

    def _snoozed(self, conn, signal: Signal, key: tuple) -> bool:
        if signal.episode:
            scope, value = "episode=?", signal.episode
        else:
            scope, value = "substr(created_at,1,10)=?", signal.created_at.date().isoformat()
        row = conn.execute(f"SELECT 1 FROM signals WHERE {SAME_SIGNAL} AND status=? AND snoozed=1 AND {scope} LIMIT 1",
                           (*key, SignalStatus.DISMISSED.value, value)).fetchone()
        return row is not None

    def mark(self, signal_id: int, status: SignalStatus, reason: str = "", order_id: str = "") -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE signals SET status=?, reason=?, order_id=?, updated_at=? WHERE id=?",
                         (status.value, reason, order_id, self._clock.now().isoformat(), signal_id))
        self._notify()

    def hold(self, signal_id: int, reason: str) -> None:
        """Keep a signal queued (pending) that could not execute now: its source is halted, or its exit was
        refused or failed. The same row counts the hold-backs and their last time, so a blocked signal is one
        row, not one rejected row per quote, and a refused exit starts no cooldown. No wake-up: the next
        detection (`add`) or the runner's own back-off brings it back."""
        with self._db.transaction() as conn:
            conn.execute("UPDATE signals SET status=?, reason=?, hold_count=hold_count+1, held_at=?, updated_at=?"
                         " WHERE id=? AND status IN (?,?)",
                         (SignalStatus.PENDING.value, reason, self._wall_clock().isoformat(),
                          self._clock.now().isoformat(), signal_id, *ACTIVE))

    def holds(self, signal_id: int) -> tuple[int, Optional[float]]:
        """(times held back, real seconds since the last hold-back or None) of a signal, as stored now."""
        signal = self.get(signal_id)
        if signal is None or signal.held_at is None:
            return (signal.hold_count if signal else 0), None
        return signal.hold_count, (self._wall_clock() - signal.held_at).total_seconds()

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

    def history(self, limit: int = 200, status: Optional[SignalStatus] = None, rule: Optional[Rule] = None,
                code: Optional[str] = None) -> list[Signal]:
        """Ended signals, newest first; optionally only one status, rule or stock."""
        where, params = ["status NOT IN (?,?)"], list(ACTIVE)
        for column, value in (("status", status), ("rule", rule), ("stock_code", code)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value.value if hasattr(value, "value") else value)
        rows = self._db.query(f"SELECT * FROM signals WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                              (*params, limit))
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
        grid_session_id=row["grid_session_id"],
        seen_at=datetime.fromisoformat(row["seen_at"]) if row["seen_at"] else None,
        hold_count=row["hold_count"], held_at=datetime.fromisoformat(row["held_at"]) if row["held_at"] else None)


def signal_to_dict(signal: Signal) -> dict[str, Any]:
    """JSON shape for the API."""
    return {
        "id": signal.id, "stock_code": signal.stock_code, "rule": signal.rule.value, "rule_label": signal.rule.label,
        "side": signal.side.value, "volume": signal.volume, "amount": signal.amount,
        "trigger_price": signal.trigger_price, "observed_price": signal.observed_price,
        "created_at": signal.created_at.isoformat(timespec="seconds"), "status": signal.status.value,
        "reason": signal.reason, "order_id": signal.order_id, "level_index": signal.level_index,
        "grid_session_id": signal.grid_session_id,
        "hold_count": signal.hold_count,  # times held back while queued (one row, not one per attempt)
        "held_at": signal.held_at.isoformat(timespec="seconds") if signal.held_at else None,
    }
