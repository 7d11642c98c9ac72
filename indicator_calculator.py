"""Daily indicators with TA-Lib (MACD(12,26,9) and moving averages) kept in market.db `stock_indicators`,
recomputed when bars arrive, and the MACD cross / MA alignment questions asked on the last completed bar."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date
from typing import Optional

import numpy as np
import pandas as pd
import talib

from market.bar_store import BarStore
from persistence.storage import Database, migrate

log = logging.getLogger(__name__)

MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
MA_PERIODS = (5, 10, 20, 30, 60)
ALIGNMENT_PERIODS = (10, 20, 30, 60)  # MACD entry filter: MA10 > MA20 > MA30 > MA60
INDICATOR_COLUMNS = ["macd_dif", "macd_dea", "macd_hist"] + [f"ma{p}" for p in MA_PERIODS]
GOLDEN, DEATH = "golden", "death"

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS stock_indicators (
        stock_code TEXT NOT NULL, date TEXT NOT NULL,
        macd_dif REAL, macd_dea REAL, macd_hist REAL, ma5 REAL, ma10 REAL, ma20 REAL, ma30 REAL, ma60 REAL,
        PRIMARY KEY (stock_code, date))
    """,
)


@dataclass(frozen=True)
class IndicatorRow:
    """Indicators of one completed bar; None where the history is too short."""

    code: str
    day: date
    macd_dif: Optional[float]
    macd_dea: Optional[float]
    macd_hist: Optional[float]
    ma5: Optional[float]
    ma10: Optional[float]
    ma20: Optional[float]
    ma30: Optional[float]
    ma60: Optional[float]


# ---- pure functions -------------------------------------------------------------------------------

def compute_indicators(closes: np.ndarray) -> pd.DataFrame:
    """TA-Lib MACD(12,26,9) and SMAs over `closes` (oldest first); NaN during each warm-up."""
    closes = np.asarray(closes, dtype=float)
    if len(closes) == 0:
        return pd.DataFrame(columns=INDICATOR_COLUMNS, dtype=float)
    dif, dea, hist = talib.MACD(closes, fastperiod=MACD_FAST, slowperiod=MACD_SLOW, signalperiod=MACD_SIGNAL)
    data = {"macd_dif": dif, "macd_dea": dea, "macd_hist": hist}
    for period in MA_PERIODS:
        data[f"ma{period}"] = talib.SMA(closes, timeperiod=period)
    return pd.DataFrame(data)


def cross_between(previous_hist: Optional[float], last_hist: Optional[float]) -> Optional[str]:
    """'golden' when the MACD histogram goes from <= 0 to > 0, 'death' from >= 0 to < 0, else None."""
    if previous_hist is None or last_hist is None or math.isnan(previous_hist) or math.isnan(last_hist):
        return None
    if previous_hist <= 0 < last_hist:
        return GOLDEN
    if previous_hist >= 0 > last_hist:
        return DEATH
    return None


def is_ma_aligned(row: IndicatorRow) -> bool:
    """MA10 > MA20 > MA30 > MA60 (False while any of them is still warming up)."""
    values = [getattr(row, f"ma{p}") for p in ALIGNMENT_PERIODS]
    if any(v is None or math.isnan(v) for v in values):
        return False
    return all(a > b for a, b in zip(values, values[1:]))


# ---- the table ------------------------------------------------------------------------------------

class IndicatorCalculator:
    """Owns `stock_indicators`. Subscribe `update` to the BarStore so new bars recompute their code."""

    def __init__(self, bar_store: BarStore, db: Optional[Database] = None):
        """`db` defaults to the bar store's database (market.db holds both tables)."""
        self._db = db if db is not None else bar_store.db
        self._bars = bar_store
        migrate(self._db, "indicator_calculator", MIGRATIONS)

    def update(self, code: str) -> int:
        """Bring `code`'s indicators up to its bars. MACD is recursive from the first bar, so values are computed
        over the whole history; only rows after the stored ones are written, unless the stored rows no longer
        match (history replaced or re-adjusted), in which case all rows are rewritten. Returns rows written."""
        bars = self._bars.get_history(code)
        if bars.empty:
            with self._db.transaction() as conn:
                conn.execute("DELETE FROM stock_indicators WHERE stock_code=?", (code,))
            return 0
        values = compute_indicators(bars["close"].to_numpy(float))
        values.insert(0, "date", [d.isoformat() for d in bars["date"]])
        start = self._first_row_to_write(code, values)
        rows = [(code, r[0], *[_or_none(v) for v in r[1:]]) for r in values.iloc[start:].itertuples(index=False)]
        with self._db.transaction() as conn:
            if start == 0:
                conn.execute("DELETE FROM stock_indicators WHERE stock_code=?", (code,))
            conn.executemany(f"INSERT OR REPLACE INTO stock_indicators(stock_code, date, {', '.join(INDICATOR_COLUMNS)})"
                             f" VALUES({', '.join('?' * (len(INDICATOR_COLUMNS) + 2))})", rows)
        return len(rows)

    def rows(self, code: str, start: Optional[date] = None, end: Optional[date] = None) -> pd.DataFrame:
        """Stored indicators, columns date + INDICATOR_COLUMNS, ascending; inclusive range."""
        self._ensure_current(code)
        sql, params = "SELECT * FROM stock_indicators WHERE stock_code=?", [code]
        if start is not None:
            sql, params = sql + " AND date >= ?", params + [start.isoformat()]
        if end is not None:
            sql, params = sql + " AND date <= ?", params + [end.isoformat()]
        records = self._db.query(sql + " ORDER BY date", params)
        frame = pd.DataFrame([[date.fromisoformat(r["date"])] + [r[c] for c in INDICATOR_COLUMNS] for r in records],
                             columns=["date"] + INDICATOR_COLUMNS)
        return frame.astype({c: float for c in INDICATOR_COLUMNS})

    def last_completed(self, code: str, as_of: date, count: int = 1) -> list[IndicatorRow]:
        """The `count` latest rows of bars strictly before `as_of` (today's bar is not complete yet)."""
        self._ensure_current(code)
        records = self._db.query("SELECT * FROM stock_indicators WHERE stock_code=? AND date < ? ORDER BY date DESC"
                                 " LIMIT ?", (code, as_of.isoformat(), count))
        return [_row(r) for r in reversed(records)]

    def macd_cross(self, code: str, as_of: date) -> Optional[str]:
        """'golden' | 'death' | None on the last completed bar before `as_of`."""
        rows = self.last_completed(code, as_of, 2)
        if len(rows) < 2:
            return None
        return cross_between(rows[0].macd_hist, rows[1].macd_hist)

    def ma_aligned(self, code: str, as_of: date) -> bool:
        rows = self.last_completed(code, as_of, 1)
        return bool(rows) and is_ma_aligned(rows[0])

    def macd_decision(self, code: str, as_of: date, ma_filter: bool) -> Optional[str]:
        """'buy' on a golden cross (with MA10>MA20>MA30>MA60 when `ma_filter`), 'sell' on a death cross, else
        None; judged on the last completed bar before `as_of`."""
        cross = self.macd_cross(code, as_of)
        if cross == GOLDEN and (not ma_filter or self.ma_aligned(code, as_of)):
            return "buy"
        if cross == DEATH:
            return "sell"
        return None

    def _ensure_current(self, code: str) -> None:
        last_bar = self._bars.last_date(code)
        row = self._db.query_one("SELECT MAX(date) FROM stock_indicators WHERE stock_code=?", (code,))
        last_row = row[0] if row else None
        if (last_bar.isoformat() if last_bar else None) != last_row:
            self.update(code)

    def _first_row_to_write(self, code: str, values: pd.DataFrame) -> int:
        """Index of the first computed row to write: after the stored rows if they still agree, else 0."""
        stored = self._db.query_one("SELECT * FROM stock_indicators WHERE stock_code=? ORDER BY date DESC LIMIT 1",
                                    (code,))
        if stored is None:
            return 0
        matches = np.flatnonzero(values["date"].to_numpy() == stored["date"])
        if len(matches) == 0:
            return 0
        index = int(matches[0])
        count = self._db.query_one("SELECT COUNT(*) FROM stock_indicators WHERE stock_code=?", (code,))[0]
        if count != index + 1:
            return 0
        for column in INDICATOR_COLUMNS:
            new, old = values[column].iloc[index], stored[column]
            if (old is None) != bool(np.isnan(new)) or (old is not None and abs(old - new) > 1e-9):
                return 0
        return index + 1


def _or_none(value) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _row(record) -> IndicatorRow:
    return IndicatorRow(record["stock_code"], date.fromisoformat(record["date"]),
                        *[record[c] for c in INDICATOR_COLUMNS])
