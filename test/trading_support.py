"""Shared set-up for the trading-core tests: settings on a temp db, a quote board, the wired core."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

from persistence.config_store import ConfigStore
from market.clock import ReplayClock
from core.models import Quote
from position_manager import PositionManager
from sim_trader import SimTrader
from persistence.storage import Database
from trading_executor import TradingExecutor
from core.trading_state import TradingState


class QuoteBoard:
    """Latest quote per code as the test sets it (the role QuoteHub.latest plays in the daemon)."""

    def __init__(self, clock):
        self._clock = clock
        self._lock = threading.Lock()
        self._quotes: dict[str, Quote] = {}

    def set(self, code: str, price: float, prev_close: float, name: str = "") -> Quote:
        quote = Quote(code=code, price=price, prev_close=prev_close, time=self._clock.now(), source="test", name=name)
        with self._lock:
            self._quotes[code] = quote
        return quote

    def __call__(self, code: str) -> Optional[Quote]:
        with self._lock:
            return self._quotes.get(code)


def make_settings(tmp_path: Path, **overrides) -> ConfigStore:
    return ConfigStore(Database(tmp_path / "settings.db"), run_overrides=overrides)


@dataclass
class Core:
    db: Database
    sim: SimTrader
    positions: PositionManager
    executor: TradingExecutor
    state: TradingState


def build_core(db_path: Path, settings, clock, quotes, **sim_options) -> Core:
    """Wired as daemon/composition.py does: one trading db shared by the sim broker, positions and the executor."""
    db = Database(db_path)
    sim = SimTrader(db, settings, clock, quotes, **sim_options)
    positions = PositionManager(db, settings, clock, "simulation")
    state = TradingState(db, clock)
    executor = TradingExecutor(db, sim, positions, quotes, settings, clock, state)
    sim.set_listener(executor)
    executor.recover()
    return Core(db, sim, positions, executor, state)


def replay_clock(moment: str) -> ReplayClock:
    return ReplayClock(datetime.fromisoformat(moment))


class FakeTime:
    """A monotonic-time stand-in for the watchdog (`now=`): tests move `value` forward by hand."""

    def __init__(self):
        self.value = 1000.0

    def __call__(self):
        return self.value
