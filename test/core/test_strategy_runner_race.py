"""A quote that goes stale between two lookups must not crash the strategy thread (issue 21 item 5): the
MACD entry reads the quote once per decision and queues its signal at that quote's price."""
from __future__ import annotations

from core.models import Quote, Rule
from position_manager import PositionManager
from core.signal_store import SignalStore
from persistence.storage import Database
from core.strategy_runner import StrategyRunner
from trading_support import make_settings, replay_clock

CODE = "600036.SH"


class GoesStaleHub:
    """Answers the first lookup of each code with a quote and every later one with None (stale)."""

    def __init__(self, clock):
        self.clock = clock
        self.lookups: dict[str, int] = {}

    def latest(self, code):
        self.lookups[code] = self.lookups.get(code, 0) + 1
        if self.lookups[code] > 1:
            return None
        return Quote(code=code, price=10.0, prev_close=9.9, time=self.clock.now(), source="test", name="招商银行")


class MacdSaysBuy:
    def macd_decision(self, code, day, ma_filter):
        return "buy"


def test_a_quote_going_stale_between_lookups_does_not_crash_the_macd_entry(tmp_path):
    settings = make_settings(tmp_path, ENABLE_MACD_BUY=True, POSITION_UNIT=20000.0)
    clock = replay_clock("2024-03-04T10:00:00")
    assert clock.is_trading()
    db = Database(tmp_path / "t.db")
    signals = SignalStore(db, clock)
    positions = PositionManager(db, settings, clock, "simulation")
    hub = GoesStaleHub(clock)
    runner = StrategyRunner(signals, positions, None, hub, settings, clock, MacdSaysBuy(), lambda: [CODE])
    assert runner.queue_macd_signals() == 1
    [signal] = signals.pending()
    assert (signal.rule, signal.volume, signal.trigger_price) == (Rule.MACD_BUY, 2000, 10.0)
    assert hub.lookups[CODE] == 1
    db.close()
