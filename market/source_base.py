"""The contract between DataManager and its market-data sources (xtquant, mootdx, replay): what one step of a
source hands back. Each source lives in its own module."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from market.bar_store import DailyBar
from core.models import Quote

Publish = Callable[[Quote], bool]  # QuoteHub.publish (via DataManager): False when the quote was refused


@dataclass
class SourceStep:
    """What one `run_once` of a source produced."""

    wait: float  # real seconds until the source wants its next step
    quotes: list[Quote] = field(default_factory=list)  # to publish, in order
    bars: list[DailyBar] = field(default_factory=list)  # completed bars to upsert
    history: dict[str, list[DailyBar]] = field(default_factory=dict)  # code -> bars that replace its stored ones
    errors: list[str] = field(default_factory=list)  # Chinese, for the log and status()['last_error']


def idle_wait(settings, clock) -> float:
    """Seconds a live source waits between polls: MONITOR_INTERVAL while the market trades; outside sessions
    until the next one, but at most UPDATE_INTERVAL so that the bars of a day that just closed still arrive."""
    interval = float(settings.get("MONITOR_INTERVAL"))
    if clock.is_trading():
        return interval
    return max(interval, min(float(settings.get("UPDATE_INTERVAL")), clock.seconds_until_session()))


class MarketSource(Protocol):
    name: str  # 'xtquant' | 'mootdx' | 'replay' | 'synthetic'
    label: str  # Chinese, shown in the UI
    connected: bool

    def start(self, publish: Publish) -> None:
        """Connect. Push-capable sources keep `publish` to deliver quotes from their own threads.
        Raises core.models.DataUnavailable when the source cannot be used."""

    def set_watchlist(self, codes: Sequence[str]) -> None: ...

    def run_once(self) -> SourceStep: ...

    def stock_name(self, code: str) -> str: ...

    def close(self) -> None: ...
