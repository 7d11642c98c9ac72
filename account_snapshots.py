"""The account's own daily history: one row per trading day with cash, frozen cash, market value and total
assets, recorded at the close (and at the day roll-over for a day the daemon missed at its close), so the equity
curve survives restarts. Owns the `account_daily` table; the statistics live in `perf_stats`."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date
from typing import Callable, Optional

import market_rules
from models import Asset
from storage import Database, migrate

log = logging.getLogger(__name__)

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS account_daily (
        day TEXT PRIMARY KEY, cash REAL NOT NULL, frozen_cash REAL NOT NULL, market_value REAL NOT NULL,
        total_asset REAL NOT NULL, recorded_at TEXT NOT NULL)
    """,
)


@dataclass(frozen=True)
class DailySnapshot:
    day: date
    cash: float
    frozen_cash: float
    market_value: float
    total_asset: float


class AccountSnapshots:
    """Records `account()` per trading day. `record_if_closed` is called often (the housekeeping thread);
    it writes once per day after the close, later calls that day overwrite nothing."""

    def __init__(self, db: Database, clock, account: Callable[[], Asset]):
        self._db = db
        self._clock = clock
        self._account = account
        self._lock = threading.Lock()
        self._closed_day: Optional[date] = None
        migrate(db, "account_snapshots", MIGRATIONS)

    def record(self, day: date) -> DailySnapshot:
        """Store the account as it is now as `day`'s closing row (replacing an earlier one of that day)."""
        asset = self._account()
        snapshot = DailySnapshot(day, round(asset.cash, 2), round(asset.frozen_cash, 2), round(asset.market_value, 2),
                                 round(asset.total_asset, 2))
        self._db.execute(
            "INSERT INTO account_daily(day, cash, frozen_cash, market_value, total_asset, recorded_at) "
            "VALUES(?,?,?,?,?,?) ON CONFLICT(day) DO UPDATE SET cash=excluded.cash, frozen_cash=excluded.frozen_cash,"
            " market_value=excluded.market_value, total_asset=excluded.total_asset, recorded_at=excluded.recorded_at",
            (day.isoformat(), snapshot.cash, snapshot.frozen_cash, snapshot.market_value, snapshot.total_asset,
             self._clock.now().isoformat(timespec="seconds")))
        return snapshot

    def record_if_closed(self) -> Optional[DailySnapshot]:
        """After 15:00 on a trading day, record that day once."""
        now = self._clock.now()
        today = now.date()
        with self._lock:
            if self._closed_day == today or now.time() < market_rules.MARKET_CLOSE:
                return None
            if not self._clock.is_trading_day(today):
                return None
            self._closed_day = today
        snapshot = self.record(today)
        log.info("已记录 %s 收盘账户：总资产 %.2f 元，持仓市值 %.2f 元", today, snapshot.total_asset,
                 snapshot.market_value)
        return snapshot

    def roll_day(self, today: date) -> None:
        """The day changed: the previous trading day gets its row if the close was missed (the values are
        still those of its close, since nothing has traded since)."""
        previous = self._clock.calendar.previous_trading_day(today)
        if not self._db.query_one("SELECT 1 FROM account_daily WHERE day=?", (previous.isoformat(),)):
            self.record(previous)

    def history(self, start: Optional[date] = None, end: Optional[date] = None) -> list[DailySnapshot]:
        rows = self._db.query("SELECT * FROM account_daily WHERE day >= ? AND day <= ? ORDER BY day",
                              ((start or date.min).isoformat(), (end or date.max).isoformat()))
        return [DailySnapshot(date.fromisoformat(r["day"]), r["cash"], r["frozen_cash"], r["market_value"],
                              r["total_asset"]) for r in rows]
