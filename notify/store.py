"""The notification channels and the persisted outbox (tables `notify_channels`, `notify_outbox` of their own
database, `<data dir>/notify.db`). Own file, not the trading db: a burst of 500 fills writes 500 outbox rows
and their delivery updates, and those fsyncs must never queue behind (or in front of) the order journal's.

A row is committed before anything tries to send it, so a message created before a crash is sent after the
restart; `sent` is committed right after delivery, so the window for a double send is one HTTP request."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

from notify.rules import DIGEST_KIND, ROUTINE, DigestItem, Pending
from persistence.storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS notify_channels (
        id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, url TEXT NOT NULL UNIQUE,
        events TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1, source TEXT NOT NULL DEFAULT 'web',
        created_at TEXT NOT NULL, consecutive_failures INTEGER NOT NULL DEFAULT 0, alarm TEXT,
        last_success_at REAL, last_failure_at REAL);
    CREATE TABLE IF NOT EXISTS notify_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, channel_id INTEGER NOT NULL, kind TEXT NOT NULL,
        title TEXT NOT NULL, body TEXT NOT NULL, dedup_key TEXT, event_time TEXT,
        created_at REAL NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL, last_error TEXT, sent_at REAL, digest_id INTEGER, item_count INTEGER
        NOT NULL DEFAULT 1);
    CREATE INDEX IF NOT EXISTS notify_outbox_due ON notify_outbox(status, channel_id, next_attempt_at);
    CREATE INDEX IF NOT EXISTS notify_outbox_dedup ON notify_outbox(channel_id, dedup_key, created_at)
    """,
    # issue 34: alarms (priority 1) go first and have their own rate budget
    """
    ALTER TABLE notify_outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE notify_outbox ADD COLUMN queue_position INTEGER;
    UPDATE notify_outbox SET priority=1 WHERE status='pending' AND kind IN ('thread_alarm', 'thread_restarted',
        'broker_disconnected', 'link_unhealthy', 'quotes_stale', 'storage_failure', 'circuit_breaker',
        'daily_loss_limit', 'trading_state', 'daemon_stop', 'protection_failure', 'protection_restored', 'alarm');
    CREATE INDEX IF NOT EXISTS notify_outbox_pending ON notify_outbox(status, channel_id, priority, id)
    """,
)

PENDING, SENT, FAILED, SUPPRESSED, COALESCED = "pending", "sent", "failed", "suppressed", "coalesced"
STATUS_LABELS = {PENDING: "待发送", SENT: "已发送", FAILED: "发送失败", SUPPRESSED: "重复已忽略", COALESCED: "已并入汇总"}


@dataclass(frozen=True)
class Channel:
    id: int
    name: str
    url: str  # a secret: never leaves the process except to apprise
    events: frozenset[str]  # empty = every event
    enabled: bool
    source: str
    consecutive_failures: int
    alarm: Optional[str]

    def wants(self, kind: str) -> bool:
        return self.enabled and (not self.events or kind in self.events)


@dataclass(frozen=True)
class Message:
    id: int
    channel_id: int
    kind: str
    title: str
    body: str
    attempts: int
    item_count: int


@dataclass(frozen=True)
class NewMessage:
    """One outbox row to commit (`enqueue_many`)."""

    channel_id: int
    kind: str
    title: str
    body: str
    dedup_key: Optional[str] = None
    event_time: str = ""
    priority: int = ROUTINE


class NotifyStore:
    def __init__(self, db: Database, now: Callable[[], float] = time.time):
        self._db = db
        self._now = now
        migrate(db, "notify_store", MIGRATIONS)

    # ---- channels
    def add_channel(self, name: str, url: str, events: Iterable[str], source: str = "web") -> Channel:
        with self._db.transaction() as conn:
            cursor = conn.execute("INSERT INTO notify_channels(name, url, events, source, created_at) VALUES(?,?,?,?,?)",
                                  (name, url, json.dumps(sorted(set(events))), source,
                                   time.strftime("%Y-%m-%d %H:%M:%S")))
        return self.channel(cursor.lastrowid)

    def ensure_channel(self, name: str, url: str, source: str) -> Channel:
        """A channel from the configuration file: added once, kept on later starts."""
        row = self._db.query_one("SELECT id FROM notify_channels WHERE url=?", (url,))
        return self.channel(row["id"]) if row else self.add_channel(name, url, (), source)

    def delete_channel(self, channel_id: int) -> bool:
        with self._db.transaction() as conn:
            deleted = conn.execute("DELETE FROM notify_channels WHERE id=?", (channel_id,)).rowcount
            conn.execute("UPDATE notify_outbox SET status=?, last_error=? WHERE channel_id=? AND status=?",
                         (FAILED, "渠道已删除", channel_id, PENDING))
        return bool(deleted)

    def channel(self, channel_id: int) -> Optional[Channel]:
        row = self._db.query_one("SELECT * FROM notify_channels WHERE id=?", (channel_id,))
        return _channel(row) if row else None

    def channels(self) -> list[Channel]:
        return [_channel(r) for r in self._db.query("SELECT * FROM notify_channels ORDER BY id")]

    def record_outcome(self, channel_id: int, ok: bool) -> int:
        """Count consecutive failures of a channel (reset by a success, which also clears its alarm); returns
        the count after this outcome."""
        with self._db.transaction() as conn:
            if ok:
                conn.execute("UPDATE notify_channels SET consecutive_failures=0, alarm=NULL, last_success_at=? "
                             "WHERE id=?", (self._now(), channel_id))
                return 0
            conn.execute("UPDATE notify_channels SET consecutive_failures=consecutive_failures+1, last_failure_at=? "
                         "WHERE id=?", (self._now(), channel_id))
            row = conn.execute("SELECT consecutive_failures FROM notify_channels WHERE id=?", (channel_id,)).fetchone()
            return row[0] if row else 0

    def set_alarm(self, channel_id: int, alarm: str) -> None:
        self._db.execute("UPDATE notify_channels SET alarm=? WHERE id=?", (alarm, channel_id))

    # ---- outbox
    def enqueue(self, channel_id: int, kind: str, title: str, body: str, dedup_key: Optional[str] = None,
                event_time: str = "", dedup_seconds: float = 0.0, priority: int = ROUTINE) -> tuple[int, str]:
        """Commit one message; returns (id, status). A message whose dedup key was already queued or sent to
        this channel within `dedup_seconds` is stored as suppressed (visible, never sent)."""
        return self.enqueue_many([NewMessage(channel_id, kind, title, body, dedup_key, event_time, priority)],
                                 dedup_seconds)[0]

    def enqueue_many(self, messages: Sequence[NewMessage], dedup_seconds: float = 0.0) -> list[tuple[int, str]]:
        """`enqueue` for many in ONE transaction (one fsync for a burst of 500 fills, not 500)."""
        now = self._now()
        created = []
        with self._db.transaction() as conn:
            for m in messages:
                status = PENDING
                if m.dedup_key and dedup_seconds > 0:
                    seen = conn.execute("SELECT 1 FROM notify_outbox WHERE channel_id=? AND dedup_key=? AND "
                                        "created_at>=? AND status IN (?,?,?,?) LIMIT 1",
                                        (m.channel_id, m.dedup_key, now - dedup_seconds, PENDING, SENT, COALESCED,
                                         FAILED)).fetchone()
                    status = SUPPRESSED if seen else PENDING
                cursor = conn.execute("INSERT INTO notify_outbox(channel_id, kind, title, body, dedup_key, event_time,"
                                      " created_at, status, next_attempt_at, priority) VALUES(?,?,?,?,?,?,?,?,?,?)",
                                      (m.channel_id, m.kind, m.title, m.body, m.dedup_key, m.event_time, now, status,
                                       now, m.priority))
                created.append((cursor.lastrowid, status))
        return created

    def pending(self, channel_id: int, priority: int) -> list[Pending]:
        """Every pending row of one channel and priority, oldest first (the planner's view)."""
        rows = self._db.query("SELECT id, kind, created_at, next_attempt_at, attempts, LENGTH(body) AS size "
                              "FROM notify_outbox WHERE status=? AND channel_id=? AND priority=? "
                              "ORDER BY COALESCE(queue_position, id), id",
                              (PENDING, channel_id, priority))
        return [Pending(r["id"], r["kind"], r["created_at"], r["next_attempt_at"], r["attempts"], r["size"] or 0)
                for r in rows]

    def message(self, message_id: int) -> Optional[Message]:
        row = self._db.query_one("SELECT * FROM notify_outbox WHERE id=?", (message_id,))
        return _message(row) if row else None

    def digest_items(self, ids: Sequence[int]) -> list[DigestItem]:
        wanted = list(ids)
        rows = self._db.query(f"SELECT id, kind, title, body, event_time FROM notify_outbox WHERE id IN "
                              f"({','.join('?' * len(wanted))})", wanted)
        by_id = {r["id"]: DigestItem(r["kind"], r["title"], r["body"], r["event_time"] or "") for r in rows}
        return [by_id[i] for i in wanted if i in by_id]

    def coalesce(self, channel_id: int, message_ids: Sequence[int], title: str, body: str,
                 priority: int = ROUTINE) -> Message:
        """Replace the messages by one digest, atomically: after a crash either the parts or the digest is
        pending. The digest takes the place of its oldest part in the delivery order (`queue_position`), so
        a failed digest is retried before the later messages of a burst that did not fit in it."""
        now = self._now()
        ids = list(message_ids)
        with self._db.transaction() as conn:
            marks = ",".join("?" * len(ids))
            count = conn.execute(f"SELECT COALESCE(SUM(item_count), 0) FROM notify_outbox WHERE id IN ({marks})",
                                 ids).fetchone()[0]
            position = conn.execute(f"SELECT MIN(COALESCE(queue_position, id)) FROM notify_outbox WHERE id IN "
                                    f"({marks})", ids).fetchone()[0]
            cursor = conn.execute("INSERT INTO notify_outbox(channel_id, kind, title, body, created_at, status,"
                                  " next_attempt_at, item_count, priority, queue_position) VALUES(?,?,?,?,?,?,?,?,?,?)",
                                  (channel_id, DIGEST_KIND, title, body, now, PENDING, now, count, priority, position))
            digest_id = cursor.lastrowid
            conn.executemany("UPDATE notify_outbox SET status=?, digest_id=? WHERE id=? AND status=?",
                             [(COALESCED, digest_id, i, PENDING) for i in ids])
        return Message(digest_id, channel_id, DIGEST_KIND, title, body, 0, count)

    def sent_since(self, channel_id: int, since: float, priority: Optional[int] = None) -> int:
        """Messages sent to a channel since `since` (of one priority when given: each has its own budget)."""
        sql = "SELECT COUNT(*) FROM notify_outbox WHERE channel_id=? AND status=? AND sent_at>=?"
        params: list = [channel_id, SENT, since]
        if priority is not None:
            sql, params = sql + " AND priority=?", params + [priority]
        return self._db.query_one(sql, params)[0]

    def mark_sent(self, message_id: int) -> None:
        self._db.execute("UPDATE notify_outbox SET status=?, sent_at=?, attempts=attempts+1, last_error=NULL "
                         "WHERE id=?", (SENT, self._now(), message_id))

    def mark_failure(self, message_id: int, error: str, retry_in: Optional[float]) -> None:
        """A failed attempt: retried after `retry_in` seconds, or failed for good when it is None."""
        if retry_in is None:
            self._db.execute("UPDATE notify_outbox SET status=?, attempts=attempts+1, last_error=? WHERE id=?",
                             (FAILED, error, message_id))
        else:
            self._db.execute("UPDATE notify_outbox SET attempts=attempts+1, last_error=?, next_attempt_at=? WHERE id=?",
                             (error, self._now() + retry_in, message_id))

    def prune(self, older_than_seconds: float) -> int:
        """Delete finished messages older than the retention (pending ones are kept whatever their age)."""
        cursor = self._db.execute("DELETE FROM notify_outbox WHERE status!=? AND created_at<?",
                                  (PENDING, self._now() - older_than_seconds))
        return cursor.rowcount

    def messages(self, limit: int = 200, channel_id: Optional[int] = None) -> list[dict[str, Any]]:
        sql, params = "SELECT o.*, c.name AS channel_name FROM notify_outbox o LEFT JOIN notify_channels c " \
                      "ON c.id=o.channel_id", []
        if channel_id is not None:
            sql, params = sql + " WHERE o.channel_id=?", [channel_id]
        rows = self._db.query(sql + " ORDER BY o.id DESC LIMIT ?", params + [limit])
        return [{"id": r["id"], "channel_id": r["channel_id"], "channel_name": r["channel_name"] or "（已删除）",
                 "kind": r["kind"], "title": r["title"], "body": r["body"], "event_time": r["event_time"],
                 "created_at": _stamp(r["created_at"]), "status": r["status"],
                 "status_label": STATUS_LABELS.get(r["status"], r["status"]), "attempts": r["attempts"],
                 "last_error": r["last_error"], "sent_at": _stamp(r["sent_at"]), "digest_id": r["digest_id"],
                 "item_count": r["item_count"]} for r in rows]

    def status_counts(self, channel_id: int) -> dict[str, int]:
        rows = self._db.query("SELECT status, COUNT(*) AS n FROM notify_outbox WHERE channel_id=? GROUP BY status",
                              (channel_id,))
        return {r["status"]: r["n"] for r in rows}


def _channel(row) -> Channel:
    return Channel(row["id"], row["name"], row["url"], frozenset(json.loads(row["events"])), bool(row["enabled"]),
                   row["source"], row["consecutive_failures"], row["alarm"])


def _message(row) -> Message:
    return Message(row["id"], row["channel_id"], row["kind"], row["title"], row["body"], row["attempts"],
                   row["item_count"])


def _stamp(epoch: Optional[float]) -> Optional[str]:
    return None if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
