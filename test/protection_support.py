"""The protection guarantee (DESIGN §8a) checked on the in-process miniQMT counterpart: the REAL xttrader.py over
test/stand_ins/fake_xtpythonclient.py's FakeQmt, wired as daemon/composition.py wires the daemon (BrokerGuard, trading
state, breakers, executor, positions, quote hub, signal store, monitor, strategy runner, housekeeper, broker_sync)
with the REAL ProtectionSentinel reading the facts. The threads' passes are stepped by the test on a replay market
clock and a fake monotonic clock (the sentinel's deadline); the native callback threads stay real, and a step waits
(bounded, event-driven) until their outboxes are drained. `expect_protection` is the one invariant every bad-day
scenario asserts (issue 25 §3)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Callable, Optional

import strategy
from qmt.broker_guard import BrokerGuard
from daemon.daemon_workers import Housekeeper
from core.events import EventBus, EventKind
from market.clock import RealClock
from core.models import Quote, Side
from position_manager import PositionManager
from core.position_monitor import PositionMonitor
from protection.sentinel import Cause, DaemonFacts, ProtectionReport, ProtectionSentinel, ProtectionState
from market.quote_hub import QuoteHub
from core.risk_breakers import CircuitBreakers
from core.signal_store import SignalStore
from stand_ins.fake_xtpythonclient import FakeQmt, TERMINAL, STOCK_SELL
from persistence.storage import Database
from core.strategy_runner import StrategyRunner
from trading_executor import TradingExecutor
from core.trading_state import TradingState

CODE = "000001.SZ"  # the counterpart fixture holds 1000 × 000001.SZ at 10.00 (stop-loss 10.00 × 0.905 = 9.05)
PREV_CLOSE = 9.90  # limit-down 8.91: every price the scenarios use is tradable
CALM, CROSSED = 10.20, 9.00
STEP = 1.0  # seconds of market and monotonic time per pass
DEADLINE = 15.0  # PROTECTION_DEADLINE (config default), seconds on the sentinel's monotonic clock
DRAIN_WAIT = 2.0  # real seconds a native callback thread may take to deliver what is queued (bounded)
BROKER_SYNC_EVERY = 10  # passes: BROKER_SYNC_INTERVAL (10 s) at one pass per second
PROTECTIVE_NAMES = ("stop_loss", "dynamic_take_profit", "macd_sell", "reprice")  # strategy_name at the counter
RIG_SETTINGS = {"ENABLE_AUTO_TRADING": True, "ENABLE_MACD_BUY": False, "ENABLE_MACD_SELL": False,
                "BROKER_CALL_TIMEOUT": 2.0, "QMT_SEND_TIMEOUT": 1.0, "PROTECTION_DEADLINE": DEADLINE,
                "ORDER_ACK_TIMEOUT": 0.6, "LIVENESS_PROBE_INTERVAL": 0.2, "LIVENESS_PROBE_DEADLINE": 0.3,
                "ORDER_UNKNOWN_SETTLE_SECONDS": 1.0}


class FakeTime:
    """The sentinel's monotonic clock, moved by the test."""

    def __init__(self):
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


class WallClock:
    """The signal store's real-time clock (signal age, exit back-off), moved with the market clock."""

    def __init__(self):
        self.value = datetime(2026, 1, 5, 9, 0)

    def __call__(self) -> datetime:
        return self.value


class Relay:
    """The broker's listener in front of the executor; lets a step wait (bounded) for the executor's state."""

    def __init__(self, executor: TradingExecutor):
        self.executor = executor
        self.cond = threading.Condition()

    def on_order_update(self, order) -> None:
        self.executor.on_order_update(order)
        with self.cond:
            self.cond.notify_all()

    def on_fill(self, fill) -> None:
        self.executor.on_fill(fill)
        with self.cond:
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)


class _Marker:
    """A no-op event for the trader's `qmt-events` queue ("flush" does nothing) that tells when it is taken."""

    session = 0
    payload = None

    def __init__(self):
        self.taken = threading.Event()

    @property
    def kind(self) -> str:
        self.taken.set()
        return "flush"


class LiveRig:
    """The daemon's trading core on the in-process counterpart, stepped pass by pass."""

    def __init__(self, env, counterpart: FakeQmt, **overrides):
        env.settings.update({**RIG_SETTINGS, **overrides}, source="test")
        self.env, self.qmt, self.settings, self.clock = env, counterpart, env.settings, env.clock
        self.time, self.wall = FakeTime(), WallClock()
        self.backend_trader, _ = env.make(listen=False)  # the EasyQmtTrader on the counterpart
        self.trader = self._daemon_broker(self.backend_trader)  # what the daemon's core talks to
        self.db = Database(env.tmp_path / "trading.db")
        self.events = EventBus(self.clock)
        self.alarms = self.events.subscribe([EventKind.PROTECTION_FAILURE, EventKind.PROTECTION_RESTORED])
        self.state = TradingState(self.db, self.clock)
        self.broker = BrokerGuard(self.trader, lambda: self.settings.get("BROKER_CALL_TIMEOUT"))
        self.positions = PositionManager(self.db, self.settings, self.clock, "live")
        # the feed is judged on a non-replay clock reading the same market time, as in live mode (market/feed_clock.py
        # estimates no offset under a replay)
        self.hub = QuoteHub(self.settings, RealClock(source=self.clock.now))
        self.breakers = CircuitBreakers(self.settings, self.clock, self.state, self.events,
                                        lambda day: self.executor.journal.counts_by_origin(day))
        self.executor = TradingExecutor(self.db, self.broker, self.positions, self.hub.latest, self.settings,
                                        self.clock, self.state, self.breakers)
        self.relay = Relay(self.executor)
        self.trader.set_listener(self.relay)
        self.executor.recover()
        self.signals = SignalStore(self.db, self.clock, wall_clock=self.wall)
        self.monitor = PositionMonitor(self.positions, self.hub, self.signals, self.executor, self.settings,
                                       self.clock)
        self.runner = StrategyRunner(self.signals, self.positions, self.executor, self.hub, self.settings,
                                     self.clock, trading_state=self.state)
        self.runner.recover()
        self.housekeeper = Housekeeper(self.clock, self.settings, [self.positions.roll_day, self.executor.roll_day],
                                       self._day_report)
        rule_params = strategy.RuleParams.from_settings(self.settings)
        self.facts = DaemonFacts(self.positions, self.hub, self.executor.journal, self.broker, self.state,
                                 self.settings, self.clock, lambda code: rule_params)
        self.sentinel = ProtectionSentinel(self.facts.read, self.events, self.settings, self.clock, now=self.time)
        self.price = CALM
        self.feed_lag = 0.0  # seconds the feed's stamps lag the box clock (item 3)
        self.quotes_flow = True
        self.passes = 0
        self.report: Optional[ProtectionReport] = None
        self.housekeeper.run_once()  # remembers today, as the daemon's first pass does

    # ---- the market ----------------------------------------------------------------------------------------
    def quote(self, price: Optional[float] = None) -> None:
        if price is not None:
            self.price = price
        stamp = self.clock.now() - timedelta(seconds=self.feed_lag)
        self.hub.publish(Quote(CODE, self.price, PREV_CLOSE, stamp, "test", name="平安银行"))

    def set_day(self, moment: datetime) -> None:
        """The market clock jumps to `moment` (a later day); the counterpart stamps its trades on that day."""
        self.clock.set(moment)
        self.quote()
        seconds = int((moment - datetime(2024, 1, 2, 9, 30)).total_seconds())
        self.qmt.now = lambda: 1704159000 + seconds

    # ---- one pass of every thread --------------------------------------------------------------------------
    def step(self, seconds: float = STEP) -> ProtectionReport:
        """Market, wall and monotonic time move on by `seconds`; a quote (unless the feed is silent); one pass of
        the housekeeper, the monitor, the runner, the orders loop and (every 10 s) broker_sync; the native
        threads drain; one sentinel pass."""
        self.clock.advance(seconds)
        self.wall.value += timedelta(seconds=seconds)
        self.time.value += seconds
        self.passes += 1
        if self.quotes_flow:
            self.quote()
        for action in (self.housekeeper.run_once, self.monitor.run_once, self.runner.run_once,
                       self.executor.check_open_orders):
            action()
            self.drain()
        if self.passes % BROKER_SYNC_EVERY == 0:
            self.broker_sync()
        self.drain()
        self.report = self.sentinel.run_once()
        return self.report

    def broker_sync(self) -> None:
        """What the daemon's broker_sync worker does each BROKER_SYNC_INTERVAL (it must survive a hang)."""
        from daemon.composition import _sync_from_broker
        from core.position_review import PositionReviews

        _sync_from_broker(self.positions, self.broker, PositionReviews(self.db, self.clock), self.executor)

    def drain(self) -> None:
        """Wait (bounded) until every live native client has delivered what it had queued before this call, and
        the trader's `qmt-events` thread has handed every resulting event to the executor."""
        for client in self.qmt.live_clients():
            if not client.started:
                continue
            done = threading.Event()
            name = f"__drain_{id(done)}"
            client.callbacks[name] = done.set
            client.deliver(name)
            done.wait(DRAIN_WAIT)
            client.callbacks.pop(name, None)
        if self.trader.link_state != "connected":
            return  # the worker is busy reconnecting: it takes no events until the link is back
        marker = _Marker()
        self.trader._events.put(marker)  # FIFO: when the worker takes it, every earlier event was delivered
        marker.taken.wait(DRAIN_WAIT)

    def wait_calls_returned(self, timeout: float = 8.0) -> None:
        """Wait (bounded, on each call's own event) until every broker call outstanding in the BrokerGuard has
        returned: a call lost in a hang returns only at xttrader's own query deadline (real seconds), and the
        guard refuses every request meanwhile. A fault is over only once they are back."""
        for call in list(self.broker._calls):
            call.done.wait(timeout)

    def wait_link(self, timeout: float = 10.0) -> bool:
        """Wait (bounded, on the executor's events) until the trader's link is up again after a drop."""
        return self.relay.wait(lambda: self.trader.link_state == "connected" and self.trader.is_connected(), timeout)

    def _daemon_broker(self, trader):
        """The broker the daemon's core uses: the trader itself (test/gateway's RemoteLiveRig puts a gateway between)."""
        return trader

    def _day_report(self, day) -> str:
        from daemon.composition import _day_report
        return _day_report(self.executor, day)

    # ---- the facts a scenario compares ---------------------------------------------------------------------
    def working_sells(self, code: str = CODE) -> list:
        """Sell orders resting at the counterpart (not final, not just booked: reported, partly filled)."""
        with self.qmt.lock:
            return [o for o in self.qmt.orders.values()
                    if o.stock_code == code and o.order_type == STOCK_SELL and o.status not in TERMINAL]

    def verdict(self, code: str = CODE):
        if self.report is None:
            return None
        return next((v for v in self.report.verdicts if v.stock_code == code), None)

    def published(self) -> list[tuple[EventKind, str]]:
        """The protection alarms published since the last call (kind, stock)."""
        return [(e.kind, e.stock_code) for e in self.alarms.drain()]


# ---- the invariant ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expect:
    """What must hold within the deadline: `working` (a sell rests at the counterpart), a protection failure with
    `cause`, or an explained block whose reason contains `explained`."""

    working: bool = False
    cause: Optional[Cause] = None
    explained: str = ""

    def __str__(self) -> str:
        if self.explained == TOLD_MARK:
            return "sell working, failure raised or block explained"
        return ("sell working" if self.working else f"failure {self.cause.value}" if self.cause
                else f"explained ({self.explained})")


WORKING = Expect(working=True)
TOLD_MARK = "\0told"  # TOLD's marker (no reason contains it)
TOLD = Expect(explained=TOLD_MARK)  # any outcome that keeps the guarantee: working, a failure raised, explained


def failure(cause: Cause) -> Expect:
    return Expect(cause=cause)


def explained(words: str) -> Expect:
    return Expect(explained=words)


def met(rig: LiveRig, expect: Expect, code: str = CODE) -> bool:
    if expect is TOLD:
        return kept_or_told(rig, code)
    verdict = rig.verdict(code)
    if expect.working:
        return bool(rig.working_sells(code)) and verdict is not None and verdict.state in (
            ProtectionState.EXIT_WORKING, ProtectionState.PROTECTED) and verdict.cause is None
    if verdict is None:
        return False
    if expect.cause is not None:
        return verdict.state is ProtectionState.FAILURE and verdict.cause is expect.cause
    return verdict.state is ProtectionState.EXPLAINED and expect.explained in verdict.reason


def expect_protection(rig: LiveRig, expect: Expect, code: str = CODE,
                      each_step: Optional[Callable[[int], None]] = None) -> float:
    """THE bad-day invariant (issue 25 §3): stepping every thread, within PROTECTION_DEADLINE seconds of the
    sentinel's own clock `expect` holds (a sell works at the counterpart — and the sentinel agrees —, or the
    right failure is raised with its cause, or the block is explained), and meanwhile no order reached the
    counterpart twice. `each_step(i)` lets a scenario change the world between passes. Returns the seconds it
    took on the sentinel's clock from its first pass (where a failure's deadline starts)."""
    first_pass = None
    for i in range(int(DEADLINE / STEP) + 1):
        if each_step is not None:
            each_step(i)
        rig.step()
        first_pass = rig.time.value if first_pass is None else first_pass
        assert_no_duplicate(rig)
        if met(rig, expect, code):
            took = rig.time.value - first_pass
            assert took <= DEADLINE
            if expect.cause is not None:  # raised means told: the alarm went out naming the stock
                assert (EventKind.PROTECTION_FAILURE, code) in rig.published()
            return took
    verdict = rig.verdict(code)
    raise AssertionError(f"not {expect} within {DEADLINE:g} s: verdict={verdict}; "
                         f"at the counterpart={[(o.order_id, o.volume, o.status, o.remark) for o in rig.qmt.orders.values()]}; "
                         f"journal={[(e.client_id, e.order_id, e.status.value, e.reason) for e in rig.executor.journal.entries()]}")


def assert_no_duplicate(rig: LiveRig) -> None:
    """No order request reached the counterpart twice (by remark) and no stock has two working protective
    sells, nor working sells for more shares than it holds."""
    remarks = list(rig.qmt.sent_remarks)
    assert len(remarks) == len(set(remarks)), f"an order was sent twice: {remarks}"
    with rig.qmt.lock:
        by_stock: dict[str, list] = {}
        for order in rig.qmt.orders.values():
            if order.order_type == STOCK_SELL and order.status not in TERMINAL:
                by_stock.setdefault(order.stock_code, []).append(order)
        for code, orders in by_stock.items():
            protective = [o for o in orders if o.strategy_name in PROTECTIVE_NAMES]
            assert len(protective) <= 1, f"two working protective sells of {code}: {protective}"
            held = rig.qmt.positions[code].volume
            assert sum(o.remaining for o in orders) <= held, f"working sells of {code} exceed the {held} held"


def assert_books_equal(rig: LiveRig) -> None:
    """At the end our books equal the counterpart's: held volumes and available shares per stock, every trade
    booked once by order id, volume and price, and no order sent twice."""
    assert_no_duplicate(rig)
    rig.drain()
    held = {p.stock_code: (p.volume, p.available) for p in rig.positions.all() if p.volume > 0}
    theirs = {code: (p.volume, p.can_use_volume) for code, p in rig.qmt.positions.items() if p.volume > 0}
    assert held == theirs
    ours = sorted((r["order_id"], r["volume"], r["price"]) for r in rig.executor.trade_records())
    counter = sorted((str(t.order_id), t.traded_volume, t.traded_price) for t in rig.qmt.trade_history)
    assert ours == counter


def fill_working_sell(rig: LiveRig, code: str = CODE) -> None:
    """The exchange fills the working sell(s) of `code` completely at their limit price."""
    for order in rig.working_sells(code):
        if order.status == 48:
            rig.qmt.report(order.order_id)
        rig.qmt.fill(order.order_id, order.remaining)
    rig.drain()


def open_sells(rig: LiveRig, code: str = CODE) -> list:
    return rig.executor.journal.open_entries(code, Side.SELL)


# ---- outside pytest fixtures (hypothesis examples build their own) ------------------------------------------

def kept_or_told(rig: LiveRig, code: str = CODE) -> bool:
    """The guarantee holds now: the stock is no longer held, or a sell works (the sentinel agrees), or a failure
    is raised, or the block is explained."""
    if all(p.stock_code != code or p.volume <= 0 for p in rig.positions.all()):
        return True
    verdict = rig.verdict(code)
    return met(rig, WORKING, code) or (verdict is not None and verdict.state in (ProtectionState.FAILURE,
                                                                                 ProtectionState.EXPLAINED))


@contextmanager
def live_env(tmp_path, counterpart: FakeQmt):
    """What the `env` fixture of test_easy_qmt_trader.py gives, for code that runs outside a fixture (one
    hypothesis example): the stand-in native module installed, settings, a replay clock, `make()`."""
    import itertools

    from persistence.config_store import ConfigStore
    from easy_qmt_trader import BrokerTimings, EasyQmtTrader
    from market.clock import ReplayClock
    from qmt.account import AccountConfig
    from test_easy_qmt_trader import ACCOUNT_ID, MARKET_OPEN, native_modules

    # xttrader's own query deadline bounds how long a call lost in a hang stays outstanding (real seconds)
    timings = BrokerTimings(query_timeout=1.0, connect_timeout=1.0, reconnect_first_delay=0.01,
                            reconnect_max_delay=0.05)

    qmt_dir = tmp_path / "国金证券QMT交易端" / "userdata_mini"
    qmt_dir.mkdir(parents=True)
    settings = ConfigStore(Database(tmp_path / "config.db"))
    clock = ReplayClock(MARKET_OPEN)
    traders = []

    def make(session_start: int = 500, listen: bool = False):
        trader = EasyQmtTrader(Database(tmp_path / "trading.db"), settings, clock,
                               AccountConfig(ACCOUNT_ID, "STOCK", str(qmt_dir)), qmt_dir, timings=timings,
                               session_ids=itertools.count(session_start).__next__)
        traders.append(trader)
        trader.connect()
        return trader, None

    with native_modules(counterpart.module()):
        try:
            yield SimpleNamespace(make=make, settings=settings, clock=clock, tmp_path=tmp_path)
        finally:
            for trader in traders:
                trader.close()
            counterpart.close()
