"""The daily bar history forward-adjusted (前复权) by known ex-rights events, for the indicators (issue 28 §2):
a replay of raw (unadjusted) bars has a gap on every ex-date (000661.SZ 2020-06-09: 666.46 → 333.00) that MACD
and the moving averages would read as a crash and a false death cross. The bars stay raw in the store (the
replay, the sim account and the charts trade raw prices); only what the indicator calculator reads is scaled.
Only events on or before the last stored bar count, so a replay never sees a future event."""
from __future__ import annotations

from datetime import date
from typing import Mapping, Optional, Sequence

import pandas as pd

from market import ex_rights
from market.bar_store import BarStore

PRICE_COLUMNS = ("open", "high", "low", "close")


def forward_adjusted(history: pd.DataFrame, actions: Sequence[ex_rights.CorporateAction]) -> pd.DataFrame:
    """`history` (BarStore.get_history's columns) with the prices before each ex-date multiplied by the
    event's factor (market.ex_rights.cumulative_factors: raw × factor = forward-adjusted, the last bar as
    reference); unchanged when no event falls inside it."""
    if history.empty or not actions:
        return history
    dates = list(history["date"])
    factors = ex_rights.cumulative_factors(dates, actions, history["close"].to_list())
    if all(f == 1.0 for f in factors):
        return history
    adjusted = history.copy()
    for column in PRICE_COLUMNS:
        adjusted[column] = adjusted[column] * factors
    return adjusted


class ForwardAdjustedBars:
    """What the indicator calculator reads of a BarStore (`get_history`, `last_date`), forward-adjusted by
    `events` (per code, market.ex_rights.events_by_code)."""

    def __init__(self, bar_store: BarStore, events: Mapping[str, Sequence[ex_rights.CorporateAction]]):
        self._bars = bar_store
        self._events = events
        self.db = bar_store.db

    def get_history(self, code: str, start: Optional[date] = None, end: Optional[date] = None) -> pd.DataFrame:
        """The whole history is adjusted before the range is cut: an event after `end` (but on or before the
        last stored bar) still scales the rows of the range."""
        history = forward_adjusted(self._bars.get_history(code), self._events.get(code, ()))
        if start is not None:
            history = history[history["date"] >= start]
        if end is not None:
            history = history[history["date"] <= end]
        return history.reset_index(drop=True)

    def last_date(self, code: str) -> Optional[date]:
        return self._bars.last_date(code)
