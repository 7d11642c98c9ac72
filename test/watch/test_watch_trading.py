"""Issue 17: watch-task actions go through the one signal queue. With auto-trading off a buy task queues a signal
that a person executes; the entry task's exits become that stock's parameters and the stop fires at its own
ratio, not the global one; per-stock parameters are validated, journaled, and a lock / blacklist hold."""
from __future__ import annotations

from datetime import datetime

import pytest

import strategy
from config import ConfigError
from core.events import EventBus
from market.clock import ReplayClock
from core.models import OrderRejected, Quote, Rule, Side, SignalStatus
from core.position_monitor import PositionMonitor
from market.quote_hub import QuoteHub
from core.signal_store import SignalStore
from core.stock_params import StockParams
from core.strategy_runner import StrategyRunner
from trading_support import build_core, make_settings
from watch.monitor import WATCH_RULES, WatchMonitor, validate_watch_signal
from watch.requests import parse_task
from watch.store import WatchStore

SH, SZ = "600036.SH", "000001.SZ"
PREV_CLOSE = {SH: 10.20, SZ: 10.20}


class Desk:
    """The real trading core with the watch monitor, the position monitor and the strategy runner, driven
    quote by quote (auto-trading off unless asked)."""

    def __init__(self, tmp_path, auto: bool = False):
        self.settings = make_settings(tmp_path, ENABLE_AUTO_TRADING=auto, ENABLE_MACD_BUY=False)
        self.clock = ReplayClock(datetime(2025, 9, 29, 10, 0))
        self.hub = QuoteHub(self.settings, self.clock)
        self.core = build_core(tmp_path / "sim_trading.db", self.settings, self.clock, self.hub.latest)
        self.hub.subscribe(self.core.sim.on_quote)
        self.signals = SignalStore(self.core.db, self.clock)
        self.params = StockParams(self.core.db, self.settings, self.clock, self.settings.journal)
        self.store = WatchStore(self.core.db, self.clock)
        self.watch = WatchMonitor(self.store, self.hub, self.signals, self.core.positions, EventBus(self.clock),
                                  self.settings, self.clock,
                                  apply_exits=lambda code, params, source: self.params.update(code, params, source))
        self.monitor = PositionMonitor(self.core.positions, self.hub, self.signals, self.core.executor,
                                       self.settings, self.clock, params_for=self.params.params_for)
        self.runner = StrategyRunner(self.signals, self.core.positions, self.core.executor, self.hub, self.settings,
                                     self.clock, trading_state=self.core.state, params_for=self.params.params_for)
        for rule in WATCH_RULES:
            self.runner.register_validator(rule, validate_watch_signal(self.core.positions))

    def quote(self, code: str, price: float, when: str = "") -> None:
        if when:
            self.clock.set(datetime.fromisoformat(when))
        else:
            self.clock.advance(3)
        self.hub.publish(Quote(code=code, price=price, prev_close=PREV_CLOSE[code], time=self.clock.now(),
                               source="test"))
        self.watch.run_once()
        self.monitor.run_once()
        self.runner.run_once()

    def add_task(self, body: dict) -> int:
        return self.store.add(parse_task(body, self.clock.today())).id


def test_buy_task_with_auto_trading_off_waits_for_a_person(tmp_path):
    desk = Desk(tmp_path, auto=False)
    desk.add_task({"stock_code": SH, "conditions": [{"type": "price_below", "value": 10.0}],
                   "action": {"type": "buy", "amount": 20100}})
    desk.quote(SH, 10.01)
    assert desk.signals.pending() == []
    desk.quote(SH, 10.0)
    [signal] = desk.signals.pending()
    assert (signal.rule, signal.volume, signal.amount, signal.trigger_price) == (Rule.WATCH_BUY, 2000, 20100.0, 10.0)
    desk.quote(SH, 10.0)  # auto-trading off: the strategy thread leaves it queued
    assert desk.signals.get(signal.id).status is SignalStatus.PENDING
    assert desk.core.executor.list_orders() == []
    done = desk.runner.execute_signal(signal.id)  # the person
    assert done.status is SignalStatus.EXECUTED
    [order] = desk.core.executor.list_orders()
    assert (order["side"], order["rule"], order["volume"]) == ("buy", "watch_buy", 2000)
    desk.quote(SH, 10.0)
    assert desk.core.positions.get(SH).volume == 2000


def test_paused_trading_keeps_a_watch_signal_queued(tmp_path):
    desk = Desk(tmp_path, auto=True)
    desk.core.state.pause("测试暂停", "test")
    desk.add_task({"stock_code": SH, "conditions": [{"type": "price_below", "value": 10.0}],
                   "action": {"type": "buy", "amount": 20100}})
    desk.quote(SH, 10.0)
    [signal] = desk.signals.pending()
    assert desk.core.executor.list_orders() == []
    desk.core.state.resume("恢复", "test")
    desk.quote(SH, 10.0)
    assert desk.signals.get(signal.id).status is SignalStatus.EXECUTED


def test_entry_task_exits_become_the_positions_stop(tmp_path):
    desk = Desk(tmp_path, auto=True)
    desk.add_task({"stock_code": SH, "conditions": [{"type": "in_zone", "low": 9.9, "high": 10.0}],
                   "action": {"type": "buy", "amount": 20100}, "exits": {"stop_loss_ratio": -0.03}})
    desk.add_task({"stock_code": SZ, "conditions": [{"type": "in_zone", "low": 9.9, "high": 10.0}],
                   "action": {"type": "buy", "amount": 20100}})
    desk.quote(SH, 10.0)
    desk.quote(SZ, 10.0)
    desk.quote(SH, 10.0)
    desk.quote(SZ, 10.0)
    sh, sz = desk.core.positions.get(SH), desk.core.positions.get(SZ)
    assert sh.volume == sz.volume == 2000
    # cost = (20,000 + commission 6.00 + transfer fee 0.20) / 2,000 = 10.0031
    assert sh.cost_price == pytest.approx(10.0031, abs=1e-9)
    assert desk.params.overrides(SH) == {"STOP_LOSS_RATIO": -0.03}
    assert strategy.trigger_prices(sh, desk.params.params_for(SH)).stop_loss_price == pytest.approx(9.703007)
    assert strategy.trigger_prices(sz, desk.params.params_for(SZ)).stop_loss_price == pytest.approx(9.0528055)
    desk.quote(SH, 9.8, "2025-09-30T09:31")  # next day: T+1 released
    desk.quote(SZ, 9.70)
    desk.quote(SH, 9.71)
    assert [o["rule"] for o in desk.core.executor.list_orders() if o["side"] == "sell"] == []
    desk.quote(SH, 9.70)  # its own stop (−3 %): 9.70 ≤ 9.703007
    sells = [(o["stock_code"], o["rule"], o["volume"]) for o in desk.core.executor.list_orders() if o["side"] == "sell"]
    assert sells == [(SH, "stop_loss", 2000)]  # 000001 at 9.70 is far above the global −9.5 % stop


def test_stock_params_are_validated_and_journaled(tmp_path):
    desk = Desk(tmp_path)
    with pytest.raises(ConfigError) as caught:
        desk.params.update(SH, {"STOP_LOSS_RATIO": 0.05})
    assert caught.value.errors["STOP_LOSS_RATIO"] == f"{SH} 的 STOP_LOSS_RATIO 超出范围：0.05 大于最大值 -0.001"
    with pytest.raises(ConfigError):
        desk.params.update(SH, {"BUY_GRID_LEVELS": [1.0, 0.9, 0.95]})
    with pytest.raises(ConfigError):
        desk.params.update(SH, {"ENABLE_AUTO_TRADING": True})  # not a per-stock parameter
    assert desk.params.overrides(SH) == {}
    desk.params.update(SH, {"STOP_LOSS_RATIO": -0.15, "POSITION_UNIT": 30000})
    assert desk.params.params_for(SH).stop_loss_ratio == -0.15
    assert desk.params.params_for(SZ).stop_loss_ratio == -0.095
    history = [(h["key"], h["old_value"], h["new_value"]) for h in desk.settings.history()]
    assert (f"{SH}:STOP_LOSS_RATIO", -0.095, -0.15) in history
    assert (f"{SH}:POSITION_UNIT", 20000.0, 30000) in history
    desk.params.reset(SH)
    assert desk.params.params_for(SH).stop_loss_ratio == -0.095
    assert desk.settings.history()[0]["key"] in (f"{SH}:POSITION_UNIT", f"{SH}:STOP_LOSS_RATIO")
    # persisted: a new store on the same database sees the overrides
    desk.params.update(SZ, {"STOP_LOSS_RATIO": -0.2})
    assert StockParams(desk.core.db, desk.settings, desk.clock).params_for(SZ).stop_loss_ratio == -0.2


def test_a_locked_stock_gets_no_automatic_trades(tmp_path):
    desk = Desk(tmp_path, auto=True)
    desk.core.state.halt_stock(SH, "操作员锁定该股票（不自动交易）", "web")
    desk.add_task({"stock_code": SH, "conditions": [{"type": "price_below", "value": 10.0}],
                   "action": {"type": "buy", "amount": 20100}})
    desk.quote(SH, 10.0)
    assert desk.core.executor.list_orders() == []
    # the lock holds the automatic order back: the signal stays one queued row with the reason (issue 25)
    [signal] = desk.signals.pending()
    assert signal.status is SignalStatus.PENDING and "已停止自动交易" in signal.reason
    with pytest.raises(OrderRejected):
        desk.core.state.check_order(SH, Side.BUY, Rule.WATCH_BUY)


def test_a_position_found_at_the_broker_waits_for_confirmation(tmp_path):
    from daemon.composition import _sync_from_broker
    from core.models import BrokerPosition
    from core.position_review import PositionReviews

    desk = Desk(tmp_path)
    reviews = PositionReviews(desk.core.db, desk.clock)

    class Broker:
        def query_positions(self):
            return [BrokerPosition(SZ, 1000, 1000, 9.5, market_value=9800.0)]

    _sync_from_broker(desk.core.positions, Broker(), reviews)
    found = desk.core.positions.get(SZ)
    assert (found.volume, found.highest_price) == (1000, 9.8)  # max(cost 9.5, price 9.8)
    assert reviews.pending_codes() == [SZ]
    assert reviews.get(SZ)["highest_source_label"] == "成本价与现价的较高者（券商未提供开仓日）"
    _sync_from_broker(desk.core.positions, Broker(), reviews)  # seen again: still the same record
    reviews.confirm(SZ)
    assert reviews.pending_codes() == [] and reviews.get(SZ)["label"] == "已确认"
