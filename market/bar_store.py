"""Daily bars in market.db (table `stock_daily_data`): incremental upserts, history queries, and listeners
told which codes got new bars (the indicator calculator). Fetching bars is the data sources' job."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date
from typing import Callable, Iterable, Optional, Sequence

import pandas as pd

from persistence.storage import Database, migrate

log = logging.getLogger(__name__)

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS stock_daily_data (
        stock_code TEXT NOT NULL, date TEXT NOT NULL,
        open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL,
        source TEXT NOT NULL DEFAULT '', updated_at TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (stock_code, date))
    """,
)

BAR_COLUMNS = ["date", "open", "high", "low", "close", "volume"]


@dataclass(frozen=True)
class DailyBar:
    """One completed trading day of one stock; volume in shares."""

    code: str
    day: date
    open: float
    high: float
    low: float
    close: float
    volume: float

    def problem(self) -> str:
        """Chinese reason why this bar is unusable, or ''."""
        prices = (self.open, self.high, self.low, self.close)
        if any(p is None or math.isnan(p) or p <= 0 for p in prices):
            return f"{self.code} {self.day} 日线价格无效（为 0 或缺失）"
        if not self.low <= min(self.open, self.close) <= max(self.open, self.close) <= self.high:
            return f"{self.code} {self.day} 日线高低价不一致"
        if self.volume is None or math.isnan(self.volume) or self.volume < 0:
            return f"{self.code} {self.day} 日线成交量无效"
        return ""


class BarStore:
    def __init__(self, db: Database):
        self.db = db
        self._db = db
        migrate(db, "bar_store", MIGRATIONS)
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """`listener(code)` after bars of `code` were written."""
        self._listeners.append(listener)

    def upsert(self, bars: Iterable[DailyBar], source: str = "", stamp: str = "") -> int:
        """Insert or replace bars (one transaction); bad bars are skipped and logged. Returns rows written."""
        good = []
        for bar in bars:
            problem = bar.problem()
            if problem:
                log.warning("丢弃无效日线：%s", problem)
                continue
            good.append(bar)
        if not good:
            return 0
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT INTO stock_daily_data(stock_code, date, open, high, low, close, volume, source, updated_at)"
                " VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(stock_code, date) DO UPDATE SET open=excluded.open,"
                " high=excluded.high, low=excluded.low, close=excluded.close, volume=excluded.volume,"
                " source=excluded.source, updated_at=excluded.updated_at",
                [(b.code, b.day.isoformat(), b.open, b.high, b.low, b.close, b.volume, source, stamp) for b in good])
        self._notify({b.code for b in good})
        return len(good)

    def replace(self, code: str, bars: Sequence[DailyBar], source: str = "", stamp: str = "") -> int:
        """Make `bars` the whole stored history of `code` (a replay restarting, an ex-right re-adjustment)."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM stock_daily_data WHERE stock_code=?", (code,))
        written = self.upsert(bars, source, stamp)
        if not written:
            self._notify({code})
        return written

    def last_date(self, code: str) -> Optional[date]:
        row = self._db.query_one("SELECT MAX(date) FROM stock_daily_data WHERE stock_code=?", (code,))
        return date.fromisoformat(row[0]) if row and row[0] else None

    def last_bar(self, code: str) -> Optional[DailyBar]:
        row = self._db.query_one("SELECT * FROM stock_daily_data WHERE stock_code=? ORDER BY date DESC LIMIT 1",
                                 (code,))
        return _bar(row) if row else None

    def bars(self, code: str, start: Optional[date] = None, end: Optional[date] = None) -> list[DailyBar]:
        sql, params = _range_query("SELECT * FROM stock_daily_data WHERE stock_code=?", code, start, end)
        return [_bar(r) for r in self._db.query(sql + " ORDER BY date", params)]

    def get_history(self, code: str, start: Optional[date] = None, end: Optional[date] = None) -> pd.DataFrame:
        """Columns date (datetime.date), open, high, low, close, volume, ascending by date; inclusive range."""
        rows = self.bars(code, start, end)
        return pd.DataFrame([(b.day, b.open, b.high, b.low, b.close, b.volume) for b in rows], columns=BAR_COLUMNS)

    def codes(self) -> list[str]:
        return [r[0] for r in self._db.query("SELECT DISTINCT stock_code FROM stock_daily_data ORDER BY stock_code")]

    def _notify(self, codes: set[str]) -> None:
        for code in sorted(codes):
            for listener in list(self._listeners):
                listener(code)


def _range_query(sql: str, code: str, start: Optional[date], end: Optional[date]) -> tuple[str, list]:
    params: list = [code]
    if start is not None:
        sql += " AND date >= ?"
        params.append(start.isoformat())
    if end is not None:
        sql += " AND date <= ?"
        params.append(end.isoformat())
    return sql, params


def _bar(row) -> DailyBar:
    return DailyBar(row["stock_code"], date.fromisoformat(row["date"]), row["open"], row["high"], row["low"],
                    row["close"], row["volume"])
