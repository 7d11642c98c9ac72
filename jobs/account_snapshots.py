"""The daily account snapshot taken after the close (table `account_snapshots` of the trading db): one row per
trading day with the account's equity, so the daily report and the 收益 page read one equity curve.
Written by the post-close job (jobs.daily); the rows belong to the account, hence the trading db of its mode."""
from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any, Optional

from persistence.storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS account_snapshots (
        day TEXT PRIMARY KEY, total_asset REAL NOT NULL, cash REAL NOT NULL, frozen_cash REAL NOT NULL,
        market_value REAL NOT NULL, day_pnl REAL, recorded_at TEXT NOT NULL)
    """,
)


@dataclass(frozen=True)
class Snapshot:
    day: date
    total_asset: float
    cash: float
    frozen_cash: float
    market_value: float
    day_pnl: Optional[float]  # equity change since the previous snapshot (None for the first one)
    recorded_at: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat()}


class AccountSnapshots:
    """`record(day, asset)` (idempotent per day: a re-run replaces that day) and `history()`, oldest first."""

    def __init__(self, db: Database, clock=None):
        self._db = db
        self._clock = clock
        self._lock = threading.Lock()
        migrate(db, "account_snapshots", MIGRATIONS)

    def record(self, day: date, asset) -> Snapshot:
        """Store the close-of-day equity of `day` from a core.models.Asset; the day P&L is measured against the
        latest earlier snapshot."""
        with self._lock:
            previous = self._db.query_one("SELECT total_asset FROM account_snapshots WHERE day<? ORDER BY day DESC"
                                          " LIMIT 1", (day.isoformat(),))
            day_pnl = round(asset.total_asset - previous["total_asset"], 2) if previous else None
            stamp = (self._clock.now() if self._clock is not None else datetime.now()).isoformat(timespec="seconds")
            snapshot = Snapshot(day, round(asset.total_asset, 2), round(asset.cash, 2), round(asset.frozen_cash, 2),
                                round(asset.market_value, 2), day_pnl, stamp)
            with self._db.transaction() as conn:
                conn.execute("INSERT OR REPLACE INTO account_snapshots(day, total_asset, cash, frozen_cash, market_value,"
                             " day_pnl, recorded_at) VALUES(?,?,?,?,?,?,?)",
                             (day.isoformat(), snapshot.total_asset, snapshot.cash, snapshot.frozen_cash,
                              snapshot.market_value, day_pnl, stamp))
            return snapshot

    def history(self, start: Optional[date] = None, end: Optional[date] = None) -> list[Snapshot]:
        sql, params = "SELECT * FROM account_snapshots WHERE 1=1", []
        if start is not None:
            sql, params = sql + " AND day>=?", params + [start.isoformat()]
        if end is not None:
            sql, params = sql + " AND day<=?", params + [end.isoformat()]
        rows = self._db.query(sql + " ORDER BY day", params)
        return [Snapshot(date.fromisoformat(r["day"]), r["total_asset"], r["cash"], r["frozen_cash"],
                         r["market_value"], r["day_pnl"], r["recorded_at"]) for r in rows]

    def get(self, day: date) -> Optional[Snapshot]:
        rows = self.history(day, day)
        return rows[0] if rows else None
