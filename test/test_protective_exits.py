"""Issue 25 §2 items 7, 8 and 9, on the real trading core (sim broker, trading state, breakers, journal, real
SQLite) with the monitor and the strategy runner driven pass by pass:
- breakers and budgets apply per order source and never to a protective exit (stop-loss, dynamic take-profit,
  MACD sell-all, and a re-priced sell of one); a tripped source halts only itself; a blocked signal is one row;
- a refused or failed exit starts no cooldown and is sent at the next quote after the link returns;
- `profit_triggered` is set by the fill of the first take-profit, not by sending it."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from core.events import EventBus, EventKind
from market.clock import ReplayClock
from core.models import OrderRejected, OrderStatus, Quote, Rule, Side, Signal
from core.order_sources import OrderSource, is_protective, source_of
from position_manager import PositionManager
from core.position_monitor import PositionMonitor
from market.quote_hub import QuoteHub
from core.risk_breakers import CircuitBreakers
from core.signal_store import SignalStore, signal_to_dict
from sim_trader import SimTrader
from persistence.storage import Database
from core.strategy_runner import StrategyRunner
from trading_executor import TradingExecutor
from core.trading_state import TradingState
from trading_support import make_settings

A, B = "600036.SH", "000001.SZ"
DAY1 = datetime(2025, 9, 29, 10, 0)
DAY2 = datetime(2025, 9, 30, 10, 0)
PREV_CLOSE = {A: 10.00, B: 12.00}
GENEROUS = {"MAX_ORDERS_PER_STOCK_PER_DAY": 1000, "MAX_CANCELS_PER_DAY": 1000, "MAX_ACTIONS_PER_MINUTE": 1000,
            "MAX_ACTIONS_PER_STOCK_PER_MINUTE": 1000, "MAX_ORDERS_PER_DAY": 1000}


class WallClock:
    """The signal store's real-time clock, moved by hand (signal age and exit back-off are real seconds)."""

    def __init__(self):
        self.value = datetime(2026, 1, 5, 9, 0)

    def __call__(self) -> datetime:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += timedelta(seconds=seconds)


class Rig:
    """Wired as daemon/composition.py wires the trading core; the threads' passes are run by the test."""

    def __init__(self, tmp_path, **overrides):
        self.settings = make_settings(tmp_path, **{"ENABLE_AUTO_TRADING": True, "ENABLE_MACD_BUY": False,
                                                   **GENEROUS, **overrides})
        self.clock = ReplayClock(DAY1)
        self.hub = QuoteHub(self.settings, self.clock)
        self.wall = WallClock()
        self.db = Database(tmp_path / "sim_trading.db")
        self.broker_price: dict[str, float] = {}  # what the exchange trades at when it differs from our feed
        self.sim = SimTrader(self.db, self.settings, self.clock, self._broker_quote)
        self.positions = PositionManager(self.db, self.settings, self.clock, "simulation")
        self.state = TradingState(self.db, self.clock)
        self.events = EventBus(self.clock)
        self.tripped = self.events.subscribe({EventKind.CIRCUIT_BREAKER})
        self.breakers = CircuitBreakers(self.settings, self.clock, self.state, self.events,
                                        lambda day: self.executor.journal.counts_by_origin(day))
        self.executor = TradingExecutor(self.db, self.sim, self.positions, self.hub.latest, self.settings,
                                        self.clock, self.state, self.breakers)
        self.sim.set_listener(self.executor)
        self.executor.recover()
        self.hub.subscribe(self.sim.on_quote)
        self.signals = SignalStore(self.db, self.clock, wall_clock=self.wall)
        self.monitor = PositionMonitor(self.positions, self.hub, self.signals, self.executor, self.settings,
                                       self.clock)
        self.runner = StrategyRunner(self.signals, self.positions, self.executor, self.hub, self.settings,
                                     self.clock, trading_state=self.state)

    def _broker_quote(self, code: str):
        quote = self.hub.latest(code)
        if quote is None or code not in self.broker_price:
            return quote
        return Quote(code=code, price=self.broker_price[code], prev_close=quote.prev_close, time=quote.time,
                     source="test")

    def quote(self, code: str, price: float, seconds: float = 0.0) -> None:
        """Market and real time move on by `seconds`; one quote; one pass of the monitor and the runner."""
        if seconds:
            self.clock.advance(seconds)
            self.wall.advance(seconds)
        self.hub.publish(Quote(code=code, price=price, prev_close=PREV_CLOSE[code], time=self.clock.now(),
                               source="test"))
        self.monitor.run_once()
        self.runner.run_once()

    def hold_from_yesterday(self, code: str = A, volume: int = 1000) -> None:
        """Buy on DAY1 (manual), then move to DAY2 so that all of it is available (T+1)."""
        self.hub.publish(Quote(code=code, price=PREV_CLOSE[code], prev_close=PREV_CLOSE[code],
                               time=self.clock.now(), source="test"))
        self.executor.buy_stock(code, volume=volume, rule=Rule.MANUAL)
        self.clock.set(DAY2)

    def orders(self, code: str = A) -> list[tuple[str, str, int, str]]:
        return [(o["rule"], o["side"], o["volume"], o["status"])
                for o in reversed(self.executor.list_orders(day=DAY2.date())) if o["stock_code"] == code]

    def signal_rows(self, rule: Rule) -> list[dict]:
        return [dict(r) for r in self.db.query("SELECT id, status, hold_count, reason FROM signals WHERE rule=? "
                                               "ORDER BY id", (rule.value,))]


def test_the_source_of_each_rule_is_decided_in_one_place():
    assert {rule for rule in Rule if is_protective(rule)} == {Rule.STOP_LOSS, Rule.DYNAMIC_STOP, Rule.MACD_SELL}
    assert source_of(Rule.REPRICE, Rule.STOP_LOSS) is OrderSource.PROTECTIVE
    assert source_of(Rule.REPRICE, Rule.GRID_SELL) is OrderSource.GRID
    assert source_of(Rule.REPRICE) is OrderSource.MANUAL
    assert [source_of(r).value for r in (Rule.ADD_POSITION, Rule.TAKE_PROFIT, Rule.GRID_BUY, Rule.ORDER_FILE,
                                         Rule.WATCH_SELL, Rule.MANUAL)] == \
        ["rules", "rules", "grid", "order_file", "watch", "manual"]


def test_a_burst_of_broker_rejections_halts_the_grid_of_that_stock_but_never_its_stop_loss(tmp_path):
    """Item 8a: three grid sells refused while the link is down trip the per-stock minute breaker: only the
    grid of that stock stops; five refused stop-loss sells count for nothing; once the link is back the
    stop-loss and a rules' add of the same stock go through, the grid stays halted until a person resumes."""
    rig = Rig(tmp_path, MAX_ACTIONS_PER_STOCK_PER_MINUTE=3)
    rig.hold_from_yesterday(A, 1000)
    rig.hub.publish(Quote(code=A, price=10.0, prev_close=10.0, time=rig.clock.now(), source="test"))
    rig.sim.close()
    for _ in range(3):
        with pytest.raises(Exception):
            rig.executor.sell_stock(A, 100, rule=Rule.GRID_SELL)
    assert [(h["stock_code"], h["source"]) for h in rig.state.snapshot()["halted_sources"]] == [(A, "grid")]
    for _ in range(5):
        with pytest.raises(Exception):
            rig.executor.sell_stock(A, 100, rule=Rule.STOP_LOSS)
    assert len(rig.state.snapshot()["halted_sources"]) == 1
    [event] = rig.tripped.drain()
    assert event.stock_code == A and "网格交易已停止自动交易（止损等保护性卖出照常执行）" in event.message
    rig.sim.connect()
    with pytest.raises(OrderRejected) as refused:
        rig.executor.sell_stock(A, 100, rule=Rule.GRID_SELL)
    assert refused.value.code == "SOURCE_HALTED" and "止损等保护性卖出不受影响" in refused.value.message
    rig.executor.sell_stock(A, 500, rule=Rule.STOP_LOSS)
    rig.executor.buy_stock(A, volume=100, rule=Rule.ADD_POSITION)
    assert rig.orders()[-2:] == [("stop_loss", "sell", 500, "filled"), ("add_position", "buy", 100, "filled")]
    assert rig.positions.get(A).volume == 600
    assert rig.state.snapshot()["state"] == "running"
    assert rig.state.resume_stock(A, "已检查", "web")
    rig.executor.sell_stock(A, 100, rule=Rule.GRID_SELL)
    assert rig.positions.get(A).volume == 500


def test_after_a_grid_runaway_trips_the_stop_loss_executes_and_the_blocked_grid_signal_is_one_row(tmp_path):
    """Item 8b: with the grid of A halted, 26 passes over a held-back grid signal leave one pending row with
    its hold count at 26 (no rejected rows); the stop-loss of A is detected and sold on its first quote."""
    rig = Rig(tmp_path)
    rig.hold_from_yesterday(A, 1000)
    rig.state.halt_source(A, OrderSource.GRID, "熔断：测试", "circuit_breaker")
    grid = Signal(stock_code=A, rule=Rule.GRID_SELL, volume=100, trigger_price=10.2, observed_price=10.2,
                  created_at=rig.clock.now(), grid_session_id=1)
    rig.signals.add(grid)
    for _ in range(26):
        rig.quote(A, 10.0, seconds=1)
        rig.signals.add(grid)  # the grid detects it again at every quote
    [row] = rig.signal_rows(Rule.GRID_SELL)
    assert (row["status"], row["hold_count"]) == ("pending", 26)
    assert row["reason"] == ("600036.SH 的网格交易已停止自动交易：熔断：测试（止损等保护性卖出不受影响）")
    shown = signal_to_dict(rig.signals.get(row["id"]))  # the API shows the count and the last time
    assert (shown["status"], shown["hold_count"], shown["held_at"]) == ("pending", 26, "2026-01-05T09:00:26")
    rig.quote(A, 9.03, seconds=1)  # 9.03 ≤ stop-loss price (cost × 0.905), above limit-down 9.00
    [stop] = rig.signal_rows(Rule.STOP_LOSS)
    assert (stop["status"], stop["hold_count"]) == ("executed", 0)
    assert rig.orders() == [("stop_loss", "sell", 1000, "filled")]
    assert rig.positions.get(A) is None


def test_an_order_file_using_up_max_orders_per_day_stops_only_the_order_files(tmp_path):
    """Item 8c: MAX_ORDERS_PER_DAY = 3 is each source's budget: the fourth order-file line is refused
    ("MAX_ORDERS", the file waits), nothing is paused or halted; a grid buy and the stop-loss go through (the
    journal holds 5 orders of the day), and a restart keeps the order files' count."""
    rig = Rig(tmp_path, MAX_ORDERS_PER_DAY=3)
    rig.hold_from_yesterday(A, 1000)
    rig.hub.publish(Quote(code=B, price=12.0, prev_close=12.0, time=rig.clock.now(), source="test"))
    for _ in range(3):
        rig.executor.buy_stock(B, volume=100, rule=Rule.ORDER_FILE)
    with pytest.raises(OrderRejected) as refused:
        rig.executor.buy_stock(B, volume=100, rule=Rule.ORDER_FILE)
    assert refused.value.code == "MAX_ORDERS"
    assert refused.value.message == ("今日来自「委托文件」的委托已达上限 3 笔（MAX_ORDERS_PER_DAY），该来源不再下单；"
                                     "止损等保护性卖出和其他来源不受影响")
    snapshot = rig.state.snapshot()
    assert (snapshot["state"], snapshot["halted_sources"], rig.tripped.drain()) == ("running", [], [])
    rig.executor.buy_stock(B, volume=100, rule=Rule.GRID_BUY)
    rig.quote(A, 9.03, seconds=1)
    assert rig.orders() == [("stop_loss", "sell", 1000, "filled")]
    assert len(rig.executor.list_orders(day=DAY2.date())) == 5
    restarted = CircuitBreakers(rig.settings, rig.clock, rig.state, rig.events,
                                lambda day: rig.executor.journal.counts_by_origin(day))
    with pytest.raises(OrderRejected) as again:
        restarted.check_order(B, 100, Rule.ORDER_FILE)
    assert again.value.code == "MAX_ORDERS"
    restarted.check_order(B, 100, Rule.GRID_BUY)  # 1 grid order of 3


def test_a_reprice_carries_its_stop_loss_origin_past_breakers_and_halts(tmp_path):
    """Item 8: a timed-out stop-loss is cancelled and re-placed lower; neither the cancel nor the re-price
    draws on a budget (a limit of 1 action per stock per minute trips nothing), even with A's grid halted."""
    rig = Rig(tmp_path, MAX_ACTIONS_PER_STOCK_PER_MINUTE=1, SELL_ORDER_TIMEOUT=30)
    rig.hold_from_yesterday(A, 1000)
    rig.hub.publish(Quote(code=A, price=9.03, prev_close=10.0, time=rig.clock.now(), source="test"))
    rig.state.halt_source(A, OrderSource.GRID, "熔断：测试", "circuit_breaker")
    first = rig.executor.sell_stock(A, 1000, price=9.50, rule=Rule.STOP_LOSS)  # rests above the market
    rig.clock.advance(31)
    rig.hub.publish(Quote(code=A, price=9.03, prev_close=10.0, time=rig.clock.now(), source="test"))
    rig.executor.check_open_orders()
    rig.executor.check_open_orders()
    entries = rig.executor.journal.entries()
    reprice = [e for e in entries if e.rule is Rule.REPRICE]
    assert [(e.origin_rule, e.volume) for e in reprice] == [(Rule.STOP_LOSS, 1000)]
    assert rig.executor.journal.get(first.client_id).status is OrderStatus.CANCELLED
    assert [(h["stock_code"], h["source"]) for h in rig.state.snapshot()["halted_sources"]] == [(A, "grid")]
    assert rig.tripped.drain() == []


def test_a_three_second_link_drop_delays_the_stop_loss_by_at_most_the_retry_interval(tmp_path):
    """Item 7: the stop-loss is refused three times while the link is down (one row, hold count 3, no
    cooldown); one second after the link returns, the next quote sells it."""
    rig = Rig(tmp_path, SIGNAL_COOLDOWN_SECONDS=30, EXIT_RETRY_SECONDS=1.0)
    rig.hold_from_yesterday(A, 1000)
    rig.sim.close()
    rig.quote(A, 9.04, seconds=1)
    rig.quote(A, 9.03, seconds=1)
    rig.quote(A, 9.02, seconds=1)
    [row] = rig.signal_rows(Rule.STOP_LOSS)
    assert (row["status"], row["hold_count"]) == ("pending", 3)
    assert row["reason"].startswith("未能卖出，将在下一个行情重试：")
    rig.sim.connect()
    rig.quote(A, 9.01, seconds=0.5)  # within the 1 s back-off of the last refusal: not yet
    assert [o[3] for o in rig.orders()] == ["rejected"] * 3
    rig.quote(A, 9.01, seconds=0.5)
    [row] = rig.signal_rows(Rule.STOP_LOSS)
    assert (row["status"], row["hold_count"]) == ("executed", 3)
    assert rig.orders() == [("stop_loss", "sell", 1000, "rejected")] * 3 + [("stop_loss", "sell", 1000, "filled")]
    assert rig.positions.get(A) is None


def test_a_refused_exit_wakes_the_runner_no_later_than_its_back_off(tmp_path):
    """Item 7: without a new quote the runner waits at most the remaining back-off, not MONITOR_INTERVAL."""
    rig = Rig(tmp_path, EXIT_RETRY_SECONDS=1.0, MONITOR_INTERVAL=3.0)
    rig.hold_from_yesterday(A, 1000)
    rig.sim.close()
    rig.quote(A, 9.03, seconds=1)
    assert rig.runner.next_retry_seconds == 1.0  # just refused: the runner wakes within EXIT_RETRY_SECONDS
    rig.wall.advance(0.25)
    rig.runner.run_once()
    assert rig.runner.next_retry_seconds == pytest.approx(0.75)


def test_an_unsold_take_profit_leaves_profit_triggered_unset_and_the_fill_sets_it(tmp_path):
    """Item 9: a first take-profit (600 of 1000 at ≥ cost × 1.06) reaches the exchange when it trades lower,
    so it rests unfilled; cancelled, it has not set `profit_triggered`, so it fires again at the next quote;
    its fill then sets it (and it is persisted)."""
    rig = Rig(tmp_path)
    rig.hold_from_yesterday(A, 1000)
    rig.broker_price[A] = 10.50  # below the take-profit's limit 10.70 × (1 − 0.002)
    rig.quote(A, 10.70, seconds=1)
    [order] = rig.executor.open_orders(A)
    assert (order.volume, rig.positions.get(A).profit_triggered) == (600, False)
    rig.executor.cancel_order(order.client_id)
    assert rig.positions.get(A).profit_triggered is False
    del rig.broker_price[A]
    rig.quote(A, 10.71, seconds=1)
    position = rig.positions.get(A)
    assert (position.volume, position.profit_triggered) == (400, True)
    assert [o for o in rig.orders() if o[0] == "take_profit"] == [("take_profit", "sell", 600, "cancelled"),
                                                                   ("take_profit", "sell", 600, "filled")]
    reloaded = PositionManager(rig.db, rig.settings, rig.clock, "simulation").get(A)
    assert reloaded.profit_triggered is True


def test_manual_orders_have_their_own_budget_that_refuses_but_trips_nothing(tmp_path):
    rig = Rig(tmp_path, MAX_ORDERS_PER_DAY=2)
    rig.hold_from_yesterday(A, 1000)  # a manual buy on DAY1: another day's budget
    rig.hub.publish(Quote(code=B, price=12.0, prev_close=12.0, time=rig.clock.now(), source="test"))
    for _ in range(2):
        rig.executor.buy_stock(B, volume=100, rule=Rule.MANUAL)
    with pytest.raises(OrderRejected) as refused:
        rig.executor.buy_stock(B, volume=100, rule=Rule.MANUAL)
    assert refused.value.code == "MAX_ORDERS" and "今日来自「手动委托」的委托已达上限 2 笔" in refused.value.message
    assert rig.state.snapshot()["halted_sources"] == [] and rig.tripped.drain() == []
    rig.executor.buy_stock(B, volume=100, rule=Rule.GRID_BUY)  # other sources draw on their own budgets


def test_an_earlier_breaker_stock_halt_or_account_pause_becomes_halts_of_the_automatic_sources(tmp_path):
    from persistence.storage import migrate
    from core.trading_state import MIGRATIONS

    db = Database(tmp_path / "old.db")
    migrate(db, "trading_state", MIGRATIONS[:1])  # a database of the version before issue 25
    db.execute("INSERT INTO stock_halts VALUES(?,?,?,?)", (A, "熔断：旧的停止", "circuit_breaker", "2025-09-29T10:00"))
    db.execute("INSERT INTO stock_halts VALUES(?,?,?,?)", (B, "操作员锁定", "web", "2025-09-29T10:00"))
    db.execute("INSERT INTO trading_state VALUES(1,'paused','熔断：旧的暂停','circuit_breaker','2025-09-29T10:00','')")
    state = TradingState(db, ReplayClock(DAY2))
    snapshot = state.snapshot()
    assert snapshot["state"] == "running"
    assert [(h["stock_code"], h["source"]) for h in snapshot["halted_sources"]] == [
        ("", "grid"), ("", "order_file"), ("", "rules"), ("", "watch"),
        (A, "grid"), (A, "order_file"), (A, "rules"), (A, "watch")]
    assert snapshot["halted_stocks"][B] == "操作员锁定"
    state.check_order(A, Side.SELL, Rule.STOP_LOSS)  # the protective exit is free again
    with pytest.raises(OrderRejected):
        state.check_order(B, Side.SELL, Rule.STOP_LOSS)  # the owner's lock still holds (an explained block)


def test_a_signal_refused_by_its_sources_budget_stays_one_queued_row(tmp_path):
    """Item 8: the rules' budget used up (MAX_ORDERS_PER_DAY = 1), an add-position signal seen at 20 quotes
    is one pending row (held back 10 times: once per EXIT_RETRY_SECONDS), not 20 rejected rows."""
    rig = Rig(tmp_path, MAX_ORDERS_PER_DAY=1, EXIT_RETRY_SECONDS=1.0)
    rig.hold_from_yesterday(A, 1000)
    rig.hub.publish(Quote(code=B, price=12.0, prev_close=12.0, time=rig.clock.now(), source="test"))
    rig.executor.buy_stock(B, volume=100, rule=Rule.MACD_BUY)  # the rules' one order of the day
    for _ in range(20):
        rig.quote(A, 9.30, seconds=0.5)  # ≤ base 10.00 × 0.93: add level 1
    [row] = rig.signal_rows(Rule.ADD_POSITION)
    assert (row["status"], row["hold_count"]) == ("pending", 10)
    assert row["reason"].startswith("今日来自「策略规则」的委托已达上限 1 笔")
    assert rig.orders() == []
    assert rig.positions.get(A).used_add_levels == (0,)  # level 1 was reverted each time: still to use
