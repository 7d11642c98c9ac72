"""Wiring of the chores for daemon/composition.py: the store on the trading db, the rates of the repo codes from
miniQMT's own quotes (live), and the two jobs, so the shared composition root only gains a few lines."""
from __future__ import annotations

from typing import Optional, Sequence

from chores.jobs import ChoreJobs
from chores.store import ChoreStore


def build_chores(settings, trading_db, clock, executor, broker, bus, signals, watch_store, live: bool) -> ChoreJobs:
    return ChoreJobs(clock, settings, executor, broker, ChoreStore(trading_db, clock), bus, signals, watch_store,
                     xtdata_bid_rates if live else no_rates, live)


def xtdata_bid_rates(codes: Sequence[str]) -> dict[str, Optional[float]]:
    """The best bid rate (%) of each repo code from miniQMT's quotes (xtdata.get_full_tick, `bidPrice`): the rate a
    lender's sell meets at once. Raises DataUnavailable (Chinese) where xtdata cannot load."""
    from market.xtquant_source import load_xtdata

    ticks = load_xtdata().get_full_tick(list(codes)) or {}
    return {code: _best_bid((ticks.get(code) or {}).get("bidPrice")) for code in codes}


def no_rates(codes: Sequence[str]) -> dict[str, Optional[float]]:
    return {code: None for code in codes}


def _best_bid(values) -> Optional[float]:
    for value in values or ():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if number > 0:
            return number
    return None
