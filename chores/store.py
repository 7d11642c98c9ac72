"""The chores' records (table `chore_records` of the trading db): each subscription sent, refused or skipped, each
allotment (中签) found with its payment due, each reverse repo; what the page, the daily report and the repo's
reserve of payments due read. One row per (kind, day, code); a re-run of a day replaces its row."""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Optional

from persistence.storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS chore_records (
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, day TEXT NOT NULL, code TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '', volume INTEGER NOT NULL, price REAL NOT NULL, amount REAL NOT NULL,
        status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', client_id TEXT NOT NULL DEFAULT '',
        due_day TEXT NOT NULL DEFAULT '', recorded_at TEXT NOT NULL, UNIQUE(kind, day, code))
    """,
)

SUBSCRIBE, ALLOTMENT, REPO = "subscribe", "allotment", "repo"
SENT, REFUSED, SKIPPED, FOUND = "sent", "refused", "skipped", "found"
STATUS_LABELS = {SENT: "已委托", REFUSED: "被拒绝", SKIPPED: "未申购", FOUND: "中签"}
KIND_LABELS = {SUBSCRIBE: "申购", ALLOTMENT: "中签", REPO: "逆回购"}


@dataclass(frozen=True)
class ChoreRecord:
    kind: str  # subscribe | allotment | repo
    day: date  # the subscription day (allotments too) or the repo day
    code: str
    name: str
    volume: int  # shares, or 张 (bonds, repo)
    price: float  # issue price, or the repo rate in %
    amount: float  # CNY
    status: str
    reason: str = ""
    client_id: str = ""
    due_day: Optional[date] = None  # allotments: payment due by the end of this day
    recorded_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat(), "due_day": self.due_day.isoformat() if self.due_day else "",
                "kind_label": KIND_LABELS.get(self.kind, self.kind), "status_label": self.status_label}

    @property
    def status_label(self) -> str:
        if self.kind == REPO and self.status == SKIPPED:
            return "未出借"
        return STATUS_LABELS.get(self.status, self.status)


class ChoreStore:
    def __init__(self, db: Database, clock):
        self._db = db
        self._clock = clock
        self._lock = threading.Lock()
        migrate(db, "chore_records", MIGRATIONS)

    def record(self, record: ChoreRecord) -> ChoreRecord:
        stamp = self._clock.now().isoformat(sep=" ", timespec="seconds")
        with self._lock, self._db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO chore_records(kind, day, code, name, volume, price, amount, status,"
                         " reason, client_id, due_day, recorded_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                         (record.kind, record.day.isoformat(), record.code, record.name, record.volume, record.price,
                          record.amount, record.status, record.reason, record.client_id,
                          record.due_day.isoformat() if record.due_day else "", stamp))
        return ChoreRecord(**{**asdict(record), "recorded_at": stamp})

    def on_day(self, day: date) -> list[ChoreRecord]:
        """Everything recorded for `day`, plus the allotments found on it (their own day is the subscription's)."""
        rows = self._db.query("SELECT * FROM chore_records WHERE day=? OR (kind=? AND substr(recorded_at, 1, 10)=?)"
                              " ORDER BY id", (day.isoformat(), ALLOTMENT, day.isoformat()))
        return [_record(r) for r in rows]

    def subscriptions_since(self, first_day: date) -> list[ChoreRecord]:
        rows = self._db.query("SELECT * FROM chore_records WHERE kind=? AND status=? AND day>=? ORDER BY day, code",
                              (SUBSCRIBE, SENT, first_day.isoformat()))
        return [_record(r) for r in rows]

    def allotments_since(self, first_day: date) -> list[ChoreRecord]:
        rows = self._db.query("SELECT * FROM chore_records WHERE kind=? AND day>=? ORDER BY day, code",
                              (ALLOTMENT, first_day.isoformat()))
        return [_record(r) for r in rows]

    def payments_due(self, day: date) -> float:
        """Allotment payments due today or later: cash that must stay in the account (instrument_rules.md §7)."""
        row = self._db.query_one("SELECT COALESCE(SUM(amount), 0) AS due FROM chore_records WHERE kind=? AND due_day>=?",
                                 (ALLOTMENT, day.isoformat()))
        return round(float(row["due"]), 2)


def _record(row) -> ChoreRecord:
    return ChoreRecord(row["kind"], date.fromisoformat(row["day"]), row["code"], row["name"], row["volume"],
                       row["price"], row["amount"], row["status"], row["reason"], row["client_id"],
                       date.fromisoformat(row["due_day"]) if row["due_day"] else None, row["recorded_at"])
