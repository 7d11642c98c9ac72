"""Issue 5 scenario: a price path through the RUNNING monitor and strategy threads with the sim broker.
With auto-trading on, the orders placed equal the hand-computed list exactly and none twice; with it off,
the signals stay pending and nothing is ordered."""
from __future__ import annotations

import time
from datetime import datetime

from market.clock import ReplayClock
from core.models import Quote, Rule, SignalStatus
from core.position_monitor import PositionMonitor
from market.quote_hub import QuoteHub
from core.signal_store import SignalStore
from core.strategy_runner import StrategyRunner
from trading_support import build_core, make_settings
from daemon.workers import Watchdog

SH, SZ = "600036.SH", "000001.SZ"


class Engine:
    """The real components, with the monitor and the strategy runner in their own watched threads."""

    def __init__(self, tmp_path, auto: bool):
        self.settings = make_settings(tmp_path, ENABLE_AUTO_TRADING=auto, ENABLE_MACD_BUY=False)
        self.clock = ReplayClock(datetime(2025, 9, 29, 9, 31))
        self.hub = QuoteHub(self.settings, self.clock)
        self.core = build_core(tmp_path / "sim_trading.db", self.settings, self.clock, self.hub.latest)
        self.hub.subscribe(self.core.sim.on_quote)
        self.signals = SignalStore(self.core.db, self.clock)
        self.monitor = PositionMonitor(self.core.positions, self.hub, self.signals, self.core.executor,
                                       self.settings, self.clock)
        self.runner = StrategyRunner(self.signals, self.core.positions, self.core.executor, self.hub,
                                     self.settings, self.clock)
        self.watchdog = Watchdog(self.settings)
        self.watchdog.add(self.monitor)
        self.watchdog.add(self.runner)
        self.prev_close = {SH: 12.30, SZ: 10.00}
        self.auto = auto
        self.threaded = False

    def start(self) -> None:
        self.threaded = True
        self.watchdog.start()

    def quote(self, code: str, price: float, when: str) -> None:
        """Publish one quote and wait (bounded, woken by events) until both threads have dealt with it."""
        self.clock.set(datetime.fromisoformat(when))
        self.hub.publish(Quote(code=code, price=price, prev_close=self.prev_close[code], time=self.clock.now(),
                               source="test"))
        if self.threaded:
            self._settle(code, price)
        else:
            for _ in range(2):
                self.monitor.run_once()
                self.runner.run_once()

    def _settle(self, code: str, price: float) -> None:
        deadline = time.monotonic() + 5
        version = self.core.positions.data_version
        published = self.hub.version
        while time.monotonic() < deadline:
            seen = self.monitor.processed_version >= published
            busy = self.core.executor.open_orders() or (self.auto and self.signals.pending())
            if seen and not busy and self.signals.executing() == []:
                return
            version = self.core.positions.wait_for_change(version, 0.02)
        raise AssertionError(f"engine did not settle after {code} @ {price}")

    def orders(self):
        return [(o["stock_code"], o["side"], o["rule"], o["volume"], o["price"], o["status"])
                for o in reversed(self.core.executor.list_orders())]

    def trades(self):
        return [(r["stock_code"], r["side"], r["strategy"], r["volume"], r["price"], r["fees"])
                for r in self.core.executor.trade_records()]


PATH = [  # (code, price, market time); prev close of 600036 moves with the days
    (SH, 11.47, "2025-09-29T10:30"),  # ≤ 12.34 × 0.93 = 11.4762: add level 1
    (SH, 11.40, "2025-09-29T10:31"),  # level 1 used, level 2 is 10.8592: nothing
    (SH, 11.20, "2025-09-30T09:31"),  # cost 39,255.16 / 3,300 = 11.8955, stop 10.7655: nothing
    (SH, 10.85, "2025-09-30T10:00"),  # ≤ 10.8592: add level 2 with the remaining budget
    (SH, 10.50, "2025-09-30T10:30"),  # cost 49,025.26 / 4,200 = 11.6727, stop 10.5638: sell the 3,300 available
    (SZ, 10.61, "2025-09-30T10:31"),  # ≥ 10.0031 × 1.06 = 10.6033: first take-profit 60 % of 1,900 → 1,100
    (SZ, 11.20, "2025-09-30T10:40"),  # highest 11.20, gain 11.97 % → row (0.10, 0.93): stop 10.416
    (SZ, 10.42, "2025-09-30T10:50"),  # above the dynamic stop: nothing
    (SZ, 10.41, "2025-09-30T10:51"),  # ≤ 10.416: sell the remaining 800
    (SH, 10.40, "2025-10-09T09:31"),  # after National Day the 900 bought on 09-30 are sellable: stop-loss
]

EXPECTED_ORDERS = [  # limit = quote × (1 ± 0.002) to the tick; volume from the amount at the limit price
    (SH, "buy", "manual", 1600, 12.36, "filled"),  # 20,000 / 12.36 → 1,600
    (SZ, "buy", "manual", 1900, 10.02, "filled"),  # 20,000 / 10.02 → 1,900
    (SH, "buy", "add_position", 1700, 11.49, "filled"),  # 20,000 / 11.49 → 1,700
    (SH, "buy", "add_position", 900, 10.87, "filled"),  # (50,000 − 39,255.16) / 10.87 → 900
    (SH, "sell", "stop_loss", 3300, 10.48, "filled"),
    (SZ, "sell", "take_profit", 1100, 10.59, "filled"),
    (SZ, "sell", "dynamic_take_profit", 800, 10.39, "filled"),
    (SH, "sell", "stop_loss", 900, 10.38, "filled"),
]

EXPECTED_TRADES = [  # fills at the quote; fees = commission (min 5) + stamp duty on sells + transfer fee
    (SH, "buy", "manual", 1600, 12.34, 6.12),  # 5.92 + 0.20
    (SZ, "buy", "manual", 1900, 10.00, 5.89),  # 5.70 + 0.19
    (SH, "buy", "add_position", 1700, 11.47, 6.04),  # 5.85 + 0.19
    (SH, "buy", "add_position", 900, 10.85, 5.10),  # 5.00 + 0.10
    (SH, "sell", "stop_loss", 3300, 10.50, 28.08),  # 10.40 + 17.33 + 0.35
    (SZ, "sell", "take_profit", 1100, 10.61, 10.96),  # 5.00 + 5.84 + 0.12
    (SZ, "sell", "dynamic_take_profit", 800, 10.41, 9.24),  # 5.00 + 4.16 + 0.08
    (SH, "sell", "stop_loss", 900, 10.40, 9.77),  # 5.00 + 4.68 + 0.09
]


def opening_buys(engine: Engine) -> None:
    engine.quote(SH, 12.34, "2025-09-29T10:00")
    engine.core.executor.buy_stock(SH, amount=20000)
    engine.quote(SZ, 10.00, "2025-09-29T10:01")
    engine.core.executor.buy_stock(SZ, amount=20000)
    engine.quote(SZ, 10.00, "2025-09-29T10:02")


def walk(engine: Engine) -> None:
    for code, price, when in PATH:
        if when.startswith("2025-09-30") and engine.prev_close[SH] == 12.30:
            engine.prev_close[SH] = 11.40
        if when.startswith("2025-10-09"):
            engine.prev_close[SH] = 10.50
        engine.quote(code, price, when)


def test_auto_trading_places_exactly_the_expected_orders(tmp_path):
    engine = Engine(tmp_path, auto=True)
    engine.start()
    try:
        opening_buys(engine)
        position = engine.core.positions.get(SH)
        assert (position.volume, position.cost_price, position.base_cost_price) == (1600, 12.343825, 12.34)
        walk(engine)
        assert engine.orders() == EXPECTED_ORDERS
        assert engine.trades() == EXPECTED_TRADES
        assert all(s.status is SignalStatus.EXECUTED for s in engine.signals.history())
        assert [s.rule for s in reversed(engine.signals.history())] == [
            Rule.ADD_POSITION, Rule.ADD_POSITION, Rule.STOP_LOSS, Rule.TAKE_PROFIT, Rule.DYNAMIC_STOP, Rule.STOP_LOSS]
        assert engine.core.positions.get(SH) is None or engine.core.positions.get(SH).volume == 0

        # A new episode after going flat starts fresh: base cost, add levels and flags reset.
        engine.core.executor.buy_stock(SH, amount=20000)
        engine.quote(SH, 10.40, "2025-10-09T09:40")
        fresh = engine.core.positions.get(SH)
        assert (fresh.volume, fresh.base_cost_price, fresh.profit_triggered) == (1900, 10.40, False)
        assert fresh.open_date.isoformat() == "2025-10-09"
        assert 1 not in fresh.used_add_levels and 2 not in fresh.used_add_levels
        engine.quote(SH, 9.67, "2025-10-09T09:45")  # ≤ 10.40 × 0.93 = 9.672: level 1 fires again
        assert engine.orders()[-1][:4] == (SH, "buy", "add_position", 2000)  # 20,000 / 9.69 → 2,000
    finally:
        assert engine.watchdog.stop(5)


def test_with_auto_trading_off_signals_wait_and_nothing_is_ordered(tmp_path):
    engine = Engine(tmp_path, auto=False)
    engine.start()
    try:
        opening_buys(engine)
        engine.quote(SH, 11.47, "2025-09-29T10:30")
        pending = engine.signals.pending()
        assert [(s.stock_code, s.rule, s.volume, s.trigger_price, s.level_index) for s in pending] == [
            (SH, Rule.ADD_POSITION, 1700, 11.4762, 1)]
        engine.quote(SH, 11.46, "2025-09-29T10:30:30")
        assert len(engine.signals.pending()) == 1  # the same signal is not queued twice
        engine.prev_close[SH] = 11.40
        engine.quote(SH, 10.50, "2025-09-30T10:30")  # cost unchanged 12.343825: stop 11.1712 → sell all 1,600
        pending = engine.signals.pending()
        assert [(s.stock_code, s.rule, s.volume) for s in pending] == [(SH, Rule.STOP_LOSS, 1600)]
        assert engine.signals.history()[0].status is SignalStatus.EXPIRED  # the add from yesterday aged out
        assert [o[2] for o in engine.orders()] == ["manual", "manual"]

        # A person runs the pending stop-loss by hand: exactly one order.
        executed = engine.runner.execute_signal(pending[0].id)
        assert executed.status is SignalStatus.EXECUTED
        engine.quote(SH, 10.50, "2025-09-30T10:30:10")
        assert engine.orders()[-1] == (SH, "sell", "stop_loss", 1600, 10.48, "filled")
        assert len(engine.orders()) == 3
    finally:
        assert engine.watchdog.stop(5)


def test_stale_quote_never_reaches_the_rules(tmp_path):
    engine = Engine(tmp_path, auto=True)
    opening_buys(engine)
    engine.clock.set(datetime(2025, 9, 30, 10, 30))  # the last 600036 quote is now 24 h old
    assert engine.hub.latest(SH) is None
    assert engine.monitor.run_once() == []
    stale = Quote(code=SH, price=1.00, prev_close=12.30, time=datetime(2025, 9, 30, 10, 0), source="test")
    zero = Quote(code=SH, price=0.0, prev_close=12.30, time=engine.clock.now(), source="test")
    assert engine.hub.publish(stale) is False and engine.hub.publish(zero) is False
    assert engine.monitor.run_once() == []
    assert engine.signals.pending() == []
