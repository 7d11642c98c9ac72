"""Circuit breakers (issue 21 item 8, per source since issue 25): a runaway loop of automatic orders or cancels
halts that order source for the stock (or for the account) through the trading state and publishes
CIRCUIT_BREAKER; manual orders, other sources and other stocks go on, the account keeps running; the day's
counts survive a restart; the defaults stay far below the exchanges' thresholds."""
from __future__ import annotations

import pytest

import config
from core.events import EventBus, EventKind
from core.models import OrderRejected, Rule
from position_manager import PositionManager
from core.risk_breakers import CircuitBreakers
from sim_trader import SimTrader
from persistence.storage import Database
from trading_executor import TradingExecutor
from core.trading_state import TradingState
from trading_support import QuoteBoard, make_settings, replay_clock

A, B = "600036.SH", "000001.SZ"


class FakeTime:
    def __init__(self):
        self.value = 1000.0

    def __call__(self):
        return self.value


class Rig:
    """The trading core as daemon/composition.py wires it, with the breakers; resting buys (limit below the market)."""

    def __init__(self, tmp_path, **limits):
        self.settings = make_settings(tmp_path, **{"MAX_ORDERS_PER_STOCK_PER_DAY": 1000, "MAX_CANCELS_PER_DAY": 1000,
                                                   "MAX_ACTIONS_PER_MINUTE": 1000,
                                                   "MAX_ACTIONS_PER_STOCK_PER_MINUTE": 1000,
                                                   "MAX_ORDERS_PER_DAY": 1000, **limits})
        self.clock = replay_clock("2024-03-04T10:00:00")
        self.quotes = QuoteBoard(self.clock)
        self.quotes.set(A, 10.0, 10.0, "招商银行")
        self.quotes.set(B, 12.0, 12.0, "平安银行")
        self.time = FakeTime()
        self.path = tmp_path / "sim_trading.db"
        self.events = EventBus(self.clock)
        self.seen = self.events.subscribe({EventKind.CIRCUIT_BREAKER})
        self.open()

    def open(self):
        self.db = Database(self.path)
        sim = SimTrader(self.db, self.settings, self.clock, self.quotes)
        positions = PositionManager(self.db, self.settings, self.clock, "simulation")
        self.state = TradingState(self.db, self.clock)
        self.breakers = CircuitBreakers(self.settings, self.clock, self.state, self.events,
                                        lambda day: self.executor.journal.counts_by_origin(day), now=self.time)
        self.executor = TradingExecutor(self.db, sim, positions, self.quotes, self.settings, self.clock, self.state,
                                        self.breakers)
        sim.set_listener(self.executor)
        self.executor.recover()

    def resting_buy(self, code=A, rule=Rule.GRID_BUY, volume=100):
        return self.executor.buy_stock(code, volume=volume, price=9.5 if code == A else 11.5, rule=rule)


def test_orders_per_stock_per_day_halt_that_stock_only(tmp_path):
    rig = Rig(tmp_path, MAX_ORDERS_PER_STOCK_PER_DAY=5)
    for _ in range(5):
        rig.resting_buy()
    assert rig.state.snapshot()["halted_stocks"] == {
        A: "网格交易：熔断：600036.SH 网格交易今日自动委托已达 5 笔（MAX_ORDERS_PER_STOCK_PER_DAY）"}
    with pytest.raises(OrderRejected) as refused:
        rig.resting_buy()
    assert refused.value.code == "SOURCE_HALTED"
    [event] = rig.seen.drain()
    assert event.kind is EventKind.CIRCUIT_BREAKER and event.stock_code == A and "请检查后手动恢复" in event.message
    rig.resting_buy(rule=Rule.MANUAL)  # a person may still trade it
    rig.resting_buy(B)  # other stocks go on
    rig.resting_buy(rule=Rule.ADD_POSITION)  # and other sources of the same stock
    assert len(rig.executor.list_orders()) == 8
    assert rig.state.snapshot()["state"] == "running"


def test_a_burst_within_a_minute_trips_and_a_resume_gives_a_fresh_allowance(tmp_path):
    rig = Rig(tmp_path, MAX_ACTIONS_PER_STOCK_PER_MINUTE=3)
    rig.resting_buy()
    rig.time.value += 61  # outside the window: not counted together
    rig.resting_buy()
    rig.resting_buy()
    assert A not in rig.state.snapshot()["halted_stocks"]
    rig.resting_buy()
    assert "一分钟内委托与撤单已达 3 笔" in rig.state.snapshot()["halted_stocks"][A]
    rig.state.resume_stock(A, "已检查", "web")
    rig.resting_buy()
    assert A not in rig.state.snapshot()["halted_stocks"]


def test_the_account_burst_halts_that_source_for_the_account_only(tmp_path):
    rig = Rig(tmp_path, MAX_ACTIONS_PER_MINUTE=4)
    for code in (A, B, A, B):
        rig.resting_buy(code)
    snapshot = rig.state.snapshot()
    assert snapshot["state"] == "running"
    assert snapshot["halted_sources"] == [{"stock_code": "", "source": "grid", "source_label": "网格交易",
                                           "reason": "熔断：账户网格交易一分钟内委托与撤单已达 4 笔（MAX_ACTIONS_PER_MINUTE）"}]
    with pytest.raises(OrderRejected) as refused:
        rig.resting_buy(B)
    assert refused.value.code == "SOURCE_HALTED"
    rig.resting_buy(B, rule=Rule.MACD_BUY)  # the rules' buys draw on their own budget
    assert [e.stock_code for e in rig.seen.drain()] == [""]


def test_cancels_per_day_halt_the_source_of_the_cancelled_orders(tmp_path):
    rig = Rig(tmp_path, MAX_CANCELS_PER_DAY=2)
    manual = [rig.resting_buy(rule=Rule.MANUAL) for _ in range(3)]  # a person's cancels trip nothing
    for order in manual:
        rig.executor.cancel_order(order.client_id)
    assert rig.state.snapshot()["halted_sources"] == []
    grid = [rig.resting_buy() for _ in range(2)]
    rig.executor.cancel_order(grid[0].client_id)
    assert rig.state.snapshot()["halted_sources"] == []
    rig.executor.cancel_order(grid[1].client_id)
    snapshot = rig.state.snapshot()
    assert snapshot["state"] == "running"
    assert [(h["stock_code"], h["source"], h["reason"]) for h in snapshot["halted_sources"]] == [
        ("", "grid", "熔断：账户网格交易今日撤单已达 2 笔（MAX_CANCELS_PER_DAY）")]


def test_an_automatic_order_above_max_order_volume_is_refused_and_halts_the_stock(tmp_path):
    rig = Rig(tmp_path, MAX_ORDER_VOLUME=1000)
    rig.resting_buy(volume=1000)
    with pytest.raises(OrderRejected) as refused:
        rig.resting_buy(volume=1100)
    assert refused.value.code == "CIRCUIT_BREAKER" and "1100 股超过上限 1000 股" in refused.value.message
    assert A in rig.state.snapshot()["halted_stocks"]
    assert len(rig.executor.list_orders()) == 1  # the refused one never reached the journal


def test_the_days_counts_survive_a_restart(tmp_path):
    rig = Rig(tmp_path, MAX_ORDERS_PER_STOCK_PER_DAY=5)
    for _ in range(3):
        rig.resting_buy()
    rig.db.close()
    rig.open()  # a restart (e.g. after kill -9): the breakers count from the journal
    rig.resting_buy()
    assert A not in rig.state.snapshot()["halted_stocks"]
    rig.resting_buy()
    assert A in rig.state.snapshot()["halted_stocks"]


def test_defaults_and_ranges_stay_far_below_the_exchange_thresholds():
    exchange_per_second, exchange_per_day = 300, 20_000
    per_minute = config.PARAMS_BY_KEY["MAX_ACTIONS_PER_MINUTE"]
    assert per_minute.default / 60 < exchange_per_second / 100
    assert per_minute.max / 60 < exchange_per_second
    daily = [config.PARAMS_BY_KEY[k] for k in ("MAX_ORDERS_PER_DAY", "MAX_CANCELS_PER_DAY")]
    assert sum(p.default for p in daily) < exchange_per_day / 100
    assert sum(p.max for p in daily) < exchange_per_day
    assert "每秒 300 笔或每日 2 万笔" in per_minute.meaning
