"""The gateway's SQLite journal (issue 30): every event it emits, numbered, kept until every reader acknowledged it
(each reader — the trading daemon, a read-only dashboard — has its own position, so one cannot take events from
another; a gateway restart keeps them), each fill once (by fill id, forever), and the outcome of every order by its
remark (the idempotency key: a resent order gets the first outcome back, never a second order)."""
from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

from persistence.storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS gw_meta (id INTEGER PRIMARY KEY CHECK (id = 1), epoch TEXT NOT NULL,
        pruned_seq INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS gw_readers (name TEXT PRIMARY KEY, acked_seq INTEGER NOT NULL, seen_at REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS gw_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
        payload TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS gw_fill_ids (fill_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS gw_orders (remark TEXT PRIMARY KEY, attempt TEXT NOT NULL, outcome TEXT NOT NULL,
        code TEXT NOT NULL, message TEXT NOT NULL, request TEXT NOT NULL, created_at REAL NOT NULL, settled_at REAL)
    """,
)
PENDING = "pending"  # the send to the back-end has started and not returned (or the gateway died meanwhile)


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str
    payload: dict

    def to_json(self) -> dict:
        return {"seq": self.seq, "kind": self.kind, "payload": self.payload}


@dataclass(frozen=True)
class OrderOutcome:
    remark: str
    attempt: str  # the client's id of one place_order call: its retries carry it, a new call does not
    outcome: str  # pending | accepted | rejected | unknown
    code: str
    message: str


class EventJournal:
    """Thread-safe; `wait_after(seq, timeout)` lets a long-poll sleep until an event after `seq` exists."""

    def __init__(self, db: Database, wall=time.time, reader_keep_seconds: float = 5 * 86400):
        self._db = db
        self._reader_keep = reader_keep_seconds  # a reader unseen this long no longer holds events back
        self._wall = wall
        self._changed = threading.Condition()
        self._closing = False
        migrate(db, "gateway_journal", MIGRATIONS)
        with db.transaction() as conn:
            if conn.execute("SELECT 1 FROM gw_meta").fetchone() is None:
                # a new journal gets a new epoch: a daemon holding a position in another journal starts over
                conn.execute("INSERT INTO gw_meta(id, epoch, pruned_seq) VALUES (1, ?, 0)", (secrets.token_hex(8),))
        row = db.query_one("SELECT epoch, pruned_seq FROM gw_meta")
        self.epoch: str = row["epoch"]
        self._pruned = int(row["pruned_seq"])
        self._acked: dict[str, int] = {r["name"]: int(r["acked_seq"]) for r in db.query("SELECT * FROM gw_readers")}
        self._last_seq = self._read_last_seq()

    # ---- events
    def append(self, kind: str, payload: dict, fill_id: Optional[str] = None) -> Optional[int]:
        """Journal one event (committed before it is announced); a fill already journaled returns None."""
        with self._db.transaction() as conn:
            if fill_id is not None and conn.execute("SELECT 1 FROM gw_fill_ids WHERE fill_id=?",
                                                    (fill_id,)).fetchone() is not None:
                return None
            seq = conn.execute("INSERT INTO gw_events(kind, payload, created_at) VALUES (?, ?, ?)",
                               (kind, json.dumps(payload, ensure_ascii=False), self._wall())).lastrowid
            if fill_id is not None:
                conn.execute("INSERT INTO gw_fill_ids(fill_id, seq) VALUES (?, ?)", (fill_id, seq))
        with self._changed:
            self._last_seq = max(self._last_seq, seq)
            self._changed.notify_all()
        return seq

    def after(self, seq: int, limit: int) -> list[Event]:
        rows = self._db.query("SELECT seq, kind, payload FROM gw_events WHERE seq > ? ORDER BY seq LIMIT ?",
                              (int(seq), int(limit)))
        return [Event(r["seq"], r["kind"], json.loads(r["payload"])) for r in rows]

    def wait_after(self, seq: int, timeout: float) -> bool:
        """True as soon as an event numbered above `seq` exists; False after `timeout` seconds without one."""
        with self._changed:
            return self._changed.wait_for(lambda: self._last_seq > seq or self._closing, timeout) and not self._closing

    def wake_all(self) -> None:
        """Ends every waiting long-poll now (shutdown)."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def acknowledge(self, reader: str, seq: int) -> int:
        """`reader` has everything up to `seq` (its positions only move forward). Events every reader seen within
        the keep window has acknowledged are deleted. Returns the reader's acknowledged number now in force."""
        seq = min(int(seq), self._last_seq)
        if seq <= self._acked.get(reader, -1):
            return self._acked[reader]
        now = self._wall()
        with self._relaxed(), self._db.transaction() as conn:
            conn.execute("INSERT INTO gw_readers(name, acked_seq, seen_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                         "SET acked_seq=MAX(acked_seq, excluded.acked_seq), seen_at=excluded.seen_at", (reader, seq, now))
            floor = conn.execute("SELECT MIN(acked_seq) FROM gw_readers WHERE seen_at >= ?",
                                 (now - self._reader_keep,)).fetchone()[0]
            if floor is not None and floor > self._pruned:
                conn.execute("DELETE FROM gw_events WHERE seq <= ?", (floor,))
                conn.execute("UPDATE gw_meta SET pruned_seq=?", (floor,))
                self._pruned = floor
        self._acked[reader] = seq
        return seq

    def acked_by(self, reader: str) -> int:
        return self._acked.get(reader, 0)

    @property
    def pruned_seq(self) -> int:
        """Events numbered up to here are gone (every reader had them)."""
        return self._pruned

    def close(self) -> None:
        self.wake_all()
        self._db.close()

    def kept_count(self) -> int:
        return int(self._db.query_one("SELECT COUNT(*) AS n FROM gw_events")["n"])

    # ---- order outcomes by remark
    def outcome(self, remark: str) -> Optional[OrderOutcome]:
        row = self._db.query_one("SELECT remark, attempt, outcome, code, message FROM gw_orders WHERE remark=?",
                                 (remark,))
        return OrderOutcome(row["remark"], row["attempt"], row["outcome"], row["code"], row["message"]) if row else None

    def begin_order(self, remark: str, request: dict, attempt: str = "") -> bool:
        """Claims the remark before the send (committed first, so a crash leaves it 'pending' = outcome unknown);
        False when the remark is already known."""
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM gw_orders WHERE remark=?", (remark,)).fetchone() is not None:
                return False
            conn.execute("INSERT INTO gw_orders(remark, attempt, outcome, code, message, request, created_at) "
                         "VALUES (?, ?, ?, '', '', ?, ?)", (remark, attempt, PENDING,
                                                            json.dumps(request, ensure_ascii=False), self._wall()))
        return True

    def settle_order(self, remark: str, outcome: str, code: str = "", message: str = "") -> None:
        """Relaxed durability (see `_relaxed`): it saves an fsync on every order's path."""
        with self._relaxed():
            self._db.execute("UPDATE gw_orders SET outcome=?, code=?, message=?, settled_at=? WHERE remark=?",
                             (outcome, code, message, self._wall(), remark))

    @contextmanager
    def _relaxed(self) -> Iterator[None]:
        """One write committed without waiting for the disk (WAL, synchronous=NORMAL: safe against a process crash;
        a power cut may undo it). Only for writes whose loss is harmless: a settled outcome (it reads 'pending',
        i.e. 「结果未知」, again) and an acknowledgement (the events come once more; fills are deduplicated by id)."""
        with self._db.lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                yield
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def forget_order(self, remark: str) -> None:
        """The back-end refused before sending (not connected): the remark may be tried again."""
        self._db.execute("DELETE FROM gw_orders WHERE remark=? AND outcome=?", (remark, PENDING))

    def _read_last_seq(self) -> int:
        row = self._db.query_one("SELECT seq FROM sqlite_sequence WHERE name='gw_events'")
        return int(row["seq"]) if row else 0
