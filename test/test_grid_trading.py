"""Grid sessions end to end on the real engine: quotes published into the QuoteHub drive the real
PositionMonitor / StrategyRunner `run_once()`, the real SimTrader / TradingExecutor / PositionManager on a
tmp_path SQLite file and a ReplayClock. Exact prices, volumes, fees and P&L."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from persistence.config_store import ConfigStore
from grid_trading import GridManager
from market.clock import ReplayClock
from core.models import OrderRejected, OrderStatus, Quote, Rule, Side, SignalStatus, TradingError
from position_manager import PositionManager
from core.position_monitor import PositionMonitor
from market.quote_hub import QuoteHub
from core.signal_store import SignalStore
from sim_trader import SimTrader
from persistence.storage import Database
from core.strategy_runner import StrategyRunner
from trading_executor import TradingExecutor

CODE = "600036.SH"
BASE_DAY = datetime(2025, 9, 22, 14, 0)  # Monday: the base position is bought
DAY1 = datetime(2025, 9, 23, 9, 30)      # Tuesday: the grid runs
DAY2 = datetime(2025, 9, 24, 9, 30)


class Engine:
    """The daemon's trading components wired as daemon/composition.py wires them, driven by hand."""

    def __init__(self, tmp_path, start=BASE_DAY, sim_options=None, grid_hook=None, **overrides):
        self.path = tmp_path
        values = {"ENABLE_AUTO_TRADING": True, "ENABLE_GRID_TRADING": True, **overrides}
        self.settings = ConfigStore(Database(tmp_path / "settings.db"))
        self.settings.update(values, source="test")
        self.clock = ReplayClock(start)
        self.build(sim_options, grid_hook)

    def build(self, sim_options=None, grid_hook=None) -> None:
        """(Re)build every component on the same database files: a restart."""
        self.db = Database(self.path / "sim_trading.db")
        self.hub = QuoteHub(self.settings, self.clock)
        self.sim = SimTrader(self.db, self.settings, self.clock, self.hub.latest, **(sim_options or {}))
        self.hub.subscribe(self.sim.on_quote)
        self.positions = PositionManager(self.db, self.settings, self.clock, "simulation")
        self.executor = TradingExecutor(self.db, self.sim, self.positions, self.hub.latest, self.settings, self.clock)
        self.sim.set_listener(self.executor)
        self.executor.recover()
        self.signals = SignalStore(self.db, self.clock)
        self.runner = StrategyRunner(self.signals, self.positions, self.executor, self.hub, self.settings, self.clock)
        self.runner.recover()
        self.monitor = PositionMonitor(self.positions, self.hub, self.signals, self.executor, self.settings,
                                       self.clock)
        self.grid = GridManager(self.db, self.settings, self.clock, self.positions, self.hub, self.signals,
                                self.executor)
        if grid_hook:
            grid_hook(self.grid)
        self.grid.attach(self.monitor, self.runner)
        self.grid.recover()

    def publish(self, price: float, prev_close: float = 10.0) -> None:
        assert self.hub.publish(Quote(code=CODE, price=price, prev_close=prev_close, time=self.clock.now(),
                                      source="test"))

    def tick(self, price: float, seconds: float = 60, prev_close: float = 10.0) -> None:
        self.clock.advance(seconds)
        self.publish(price, prev_close)
        self.monitor.run_once()
        self.runner.run_once()

    def walk(self, prices, seconds: float = 60) -> None:
        for price in prices:
            self.tick(price, seconds)

    def open_day(self, moment: datetime, price: float, prev_close: float = 10.0) -> None:
        self.clock.set(moment)
        self.publish(price, prev_close)
        self.monitor.run_once()
        self.runner.run_once()

    def buy_base(self, volume: int = 2000, price: float = 10.0, next_day: datetime = DAY1) -> None:
        """The held position the grid works on, bought at `price`; then the clock moves to `next_day`."""
        self.publish(price)
        self.executor.buy_stock(CODE, volume=volume)
        if next_day is not None:
            self.clock.set(next_day)
            self.publish(price)

    def grid_fills(self, session_id: int = 1):
        return [(t.side, t.price, t.volume, t.time.strftime("%m-%d %H:%M")) for t in self.grid.trades(session_id)]

    def grid_signals(self):
        return [s for s in self.signals.history(500) if s.rule in (Rule.GRID_BUY, Rule.GRID_SELL)]


def at(moment: datetime, minutes: int) -> str:
    return (moment + timedelta(minutes=minutes)).strftime("%m-%d %H:%M")


B, S = Side.BUY, Side.SELL


def test_sawtooth_produces_the_expected_grid_trades(tmp_path):
    engine = Engine(tmp_path)
    engine.buy_base()
    position = engine.positions.get(CODE)
    assert (position.volume, position.available, position.cost_price) == (2000, 2000, 10.0031)  # 20,006.20 / 2000
    started = engine.grid.start_session(CODE)
    assert (started.id, started.center_price, started.next_buy_price, started.next_sell_price) == (1, 10.0, 9.8, 10.2)

    version = engine.grid.data_version
    engine.walk([9.90, 9.80])
    assert engine.grid.data_version > version  # the web pushes a new snapshot
    # the grid buy went through the executor into the position: cost incl. fees (20006.20 + 4905.05) / 2500
    position = engine.positions.get(CODE)
    assert (position.volume, position.available, position.cost_price) == (2500, 2000, 9.964500)  # 24,911.25 / 2500
    engine.walk([9.70, 9.60, 9.70, 9.80, 9.90, 10.00, 10.10, 10.20, 10.10, 10.00, 9.90])

    assert engine.grid_fills() == [
        (B, 9.80, 500, at(DAY1, 2)),   # one step (2 %) below the centre 10.00
        (B, 9.60, 500, at(DAY1, 4)),   # 9.80 × 0.98 = 9.604 → 9.60; 5000 / 9.80 → 500 shares
        (S, 9.80, 500, at(DAY1, 6)),   # 9.60 × 1.02 = 9.792 → 9.80
        (S, 10.00, 500, at(DAY1, 8)),  # 9.80 × 1.02 = 9.996 → 10.00
        (S, 10.20, 500, at(DAY1, 10)),  # base shares: the grid is now 500 short of its start
        (B, 9.90, 400, at(DAY1, 13)),  # 10.20 × 0.98 = 9.996 → 9.99, first tick at or below: 9.90; 5000/10.20 → 400
    ]
    trades = engine.grid.trades(1)
    assert [t.fees for t in trades] == [5.05, 5.05, 7.50, 7.55, 7.60, 5.04]
    assert [t.realized_pnl_after for t in trades] == [-5.05, -10.10, 32.40, 174.85, 167.25, 282.21]
    assert [t.net_volume_after for t in trades] == [500, 1000, 500, 0, -500, -100]

    session = engine.grid.session(1)
    assert (session.status, session.reference_price, session.next_buy_price, session.next_sell_price) == \
        ("active", 9.90, 9.70, 10.10)
    assert (session.net_volume, session.realized_pnl, session.unrealized_pnl, session.total_pnl, session.fees) == \
        (-100, 282.21, 30.0, 312.21, 37.79)
    assert (session.buy_count, session.sell_count, session.bought_volume, session.sold_volume) == (3, 3, 1400, 1500)

    # every grid order went through the signal queue and the executor, and is recorded with its rule
    grid_signals = engine.grid_signals()
    assert [(s.rule, s.status, s.grid_session_id) for s in reversed(grid_signals)] == [
        (Rule.GRID_BUY, SignalStatus.EXECUTED, 1), (Rule.GRID_BUY, SignalStatus.EXECUTED, 1),
        (Rule.GRID_SELL, SignalStatus.EXECUTED, 1), (Rule.GRID_SELL, SignalStatus.EXECUTED, 1),
        (Rule.GRID_SELL, SignalStatus.EXECUTED, 1), (Rule.GRID_BUY, SignalStatus.EXECUTED, 1)]
    records = engine.executor.trade_records(code=CODE)
    assert [(r["strategy"], r["price"], r["volume"]) for r in records] == [
        ("manual", 10.0, 2000), ("grid_buy", 9.8, 500), ("grid_buy", 9.6, 500), ("grid_sell", 9.8, 500),
        ("grid_sell", 10.0, 500), ("grid_sell", 10.2, 500), ("grid_buy", 9.9, 400)]
    position = engine.positions.get(CODE)
    assert (position.volume, position.available) == (1900, 500)  # today's 1400 bought shares wait for T+1


def test_callback_delays_the_buy_to_the_rebound_and_the_sell_to_the_pullback(tmp_path):
    path = [9.90, 9.80, 9.60, 9.50, 9.55, 9.59, 9.60, 9.70, 9.80, 10.00, 10.10, 10.05, 10.00, 9.99]
    plain = Engine(tmp_path / "plain")
    plain.buy_base()
    plain.grid.start_session(CODE)
    plain.walk(path[:3])
    assert plain.grid_fills() == [(B, 9.80, 500, at(DAY1, 2)), (B, 9.60, 500, at(DAY1, 3))]

    engine = Engine(tmp_path / "callback")
    engine.buy_base()
    session = engine.grid.start_session(CODE, GRID_CALLBACK_RATIO=0.01)
    assert session.callback_ratio == 0.01
    engine.walk(path[:6])
    assert engine.grid_fills() == []  # the buy level 9.80 was reached at minute 2, but the price kept falling
    watched = engine.grid.session(1)
    assert (watched.watch_low, watched.buy_trigger_price) == (9.50, 9.60)  # 9.50 × 1.01 = 9.595 → 9.60
    engine.walk(path[6:13])
    assert engine.grid_fills() == [(B, 9.60, 500, at(DAY1, 7))]
    watched = engine.grid.session(1)
    assert (watched.watch_high, watched.sell_trigger_price) == (10.10, 9.99)  # 10.10 × 0.99 = 9.999 → 9.99
    engine.walk(path[13:])
    assert engine.grid_fills() == [(B, 9.60, 500, at(DAY1, 7)), (S, 9.99, 500, at(DAY1, 14))]
    assert engine.grid.session(1).total_pnl == round(500 * 0.39 - 5.05 - 7.55, 2)  # 182.40


def test_t1_blocks_a_same_day_sell_of_grid_bought_shares(tmp_path):
    engine = Engine(tmp_path, start=DAY1)
    engine.buy_base(volume=1000, next_day=None)  # bought today: nothing is sellable until tomorrow
    engine.grid.start_session(CODE)
    engine.walk([9.90, 9.80, 9.90, 10.00, 10.10])
    assert engine.grid_fills() == [(B, 9.80, 500, at(DAY1, 2))]
    session = engine.grid.session(1)
    assert (session.next_sell_price, session.pending_signal_id) == (10.00, None)
    assert [s.rule for s in engine.grid_signals()] == [Rule.GRID_BUY]  # no sell signal while nothing is available
    position = engine.positions.get(CODE)
    assert (position.volume, position.available) == (1500, 0)
    with pytest.raises(OrderRejected):
        engine.executor.sell_stock(CODE, 500)

    engine.open_day(DAY2, 10.10)
    assert engine.grid_fills() == [(B, 9.80, 500, at(DAY1, 2)), (S, 10.10, 500, "09-24 09:30")]
    position = engine.positions.get(CODE)
    assert (position.volume, position.available) == (1000, 1000)


def test_cooldown_spaces_grid_fills(tmp_path):
    engine = Engine(tmp_path, GRID_COOLDOWN_SECONDS=300.0)
    engine.buy_base()
    engine.grid.start_session(CODE)
    engine.walk([9.80, 9.60, 9.60, 9.60, 9.60, 9.60])
    assert engine.grid_fills() == [(B, 9.80, 500, at(DAY1, 1)), (B, 9.60, 500, at(DAY1, 6))]  # 300 s after


def test_switch_off_detects_nothing_then_on_trades(tmp_path):
    engine = Engine(tmp_path, ENABLE_GRID_TRADING=False)
    engine.buy_base()
    engine.grid.start_session(CODE)
    engine.walk([9.80, 9.70])
    assert engine.grid_signals() == [] and engine.grid.session(1).status == "active"
    engine.settings.update({"ENABLE_GRID_TRADING": True})
    engine.tick(9.70)
    assert engine.grid_fills() == [(B, 9.70, 500, at(DAY1, 3))]


# ---- end reasons --------------------------------------------------------------------------------------

def test_ends_on_target_profit(tmp_path):
    engine = Engine(tmp_path)
    engine.buy_base()
    engine.grid.start_session(CODE, GRID_MAX_INVESTMENT=5000, GRID_TAKE_PROFIT_RATIO=0.01)  # target 50.00
    engine.walk([9.80, 9.90])
    assert (engine.grid.session(1).status, engine.grid.session(1).total_pnl) == ("active", 44.95)
    engine.walk([9.95, 10.00])
    session = engine.grid.session(1)
    assert (session.status, session.end_reason, session.total_pnl, session.target_profit) == \
        ("finished", "target_profit", 69.95, 50.0)
    assert session.end_message == "网格收益 69.95 元（已实现 -5.05，浮动 75.00）"
    assert session.ended_at == DAY1 + timedelta(minutes=3)
    assert engine.grid_fills() == [(B, 9.80, 500, at(DAY1, 1))]  # no sell at 10.00 after the end


def test_ends_on_stop_loss(tmp_path):
    engine = Engine(tmp_path)
    engine.buy_base()
    engine.grid.start_session(CODE, GRID_MAX_INVESTMENT=5000, GRID_STOP_LOSS_RATIO=-0.01)  # stop at -50.00
    engine.walk([9.80, 9.70, 9.60])
    session = engine.grid.session(1)
    assert (session.status, session.end_reason, session.total_pnl, session.stop_loss_amount) == \
        ("finished", "stop_loss", -55.05, -50.0)
    assert engine.grid_fills() == [(B, 9.80, 500, at(DAY1, 1))]  # no second buy at 9.60


def test_ends_on_expiry_in_trading_days(tmp_path):
    engine = Engine(tmp_path)
    engine.buy_base()
    engine.grid.start_session(CODE, GRID_MAX_HOLD_DAYS=1)
    engine.walk([10.00, 10.05])
    assert engine.grid.session(1).trading_days_held == 0
    engine.open_day(DAY2, 10.00)
    session = engine.grid.session(1)
    assert (session.status, session.end_reason, session.trading_days_held) == ("finished", "expired", 1)
    assert session.end_message == "已运行 1 个交易日（上限 1）"


def test_ends_on_deviation_from_the_centre(tmp_path):
    engine = Engine(tmp_path)
    engine.buy_base()
    engine.grid.start_session(CODE, GRID_MAX_DEVIATION=0.05)
    engine.walk([10.20, 10.30, 10.40, 10.50])
    assert engine.grid.session(1).status == "active"  # 10.50 is exactly 5 % away, not beyond
    engine.tick(10.51)
    session = engine.grid.session(1)
    assert (session.status, session.end_reason) == ("finished", "deviation")
    assert session.end_message == "现价 10.510 偏离中心价 10.000 超过 5%"
    assert engine.grid_fills() == [(S, 10.20, 500, at(DAY1, 1)), (S, 10.50, 400, at(DAY1, 4))]


def test_ends_when_the_position_is_gone(tmp_path):
    engine = Engine(tmp_path)
    engine.buy_base()
    engine.grid.start_session(CODE)
    engine.executor.sell_stock(CODE, 2000)  # by hand: the fill ends the grid at once
    assert engine.positions.get(CODE) is None
    session = engine.grid.session(1)
    assert (session.status, session.end_reason, session.end_message) == \
        ("finished", "position_gone", "600036.SH 已无持仓")
    with pytest.raises(TradingError) as refused:
        engine.grid.start_session(CODE)
    assert refused.value.code == "NO_POSITION"


def test_manual_stop_voids_the_queued_signal_and_refuses_twice(tmp_path):
    engine = Engine(tmp_path, ENABLE_AUTO_TRADING=False)
    engine.buy_base()
    engine.grid.start_session(CODE)
    engine.tick(9.80)
    queued = engine.grid.session(1).pending_signal_id
    assert engine.signals.get(queued).status is SignalStatus.PENDING
    stopped = engine.grid.stop_session(1)
    assert (stopped.status, stopped.end_reason, stopped.end_message, stopped.pending_signal_id) == \
        ("stopped", "manual", "用户手动停止", None)
    voided = engine.signals.get(queued)
    assert (voided.status, voided.reason) == (SignalStatus.REJECTED, "网格已停止：手动停止")
    with pytest.raises(TradingError) as again:
        engine.grid.stop_session(1)
    assert again.value.code == "GRID_NOT_ACTIVE"
    assert engine.grid.start_session(CODE).id == 2  # a new session may start on the same stock


# ---- interplay with the position rules ------------------------------------------------------------------

def test_position_stop_loss_stops_the_grid_and_sells_grid_shares_next_day(tmp_path):
    engine = Engine(tmp_path)
    engine.buy_base()
    engine.grid.start_session(CODE)
    engine.tick(9.80)  # grid buy: cost (20006.20 + 4905.05) / 2500 = 9.965 → stop-loss 9.965 × 0.905 = 9.018
    engine.tick(9.01)  # limit-down is 9.00
    session = engine.grid.session(1)
    assert (session.status, session.end_reason) == ("stopped", "position_exit")
    assert session.end_message.startswith("持仓止损已执行")
    records = engine.executor.trade_records(code=CODE)
    assert [(r["strategy"], r["price"], r["volume"]) for r in records] == [
        ("manual", 10.0, 2000), ("grid_buy", 9.8, 500), ("stop_loss", 9.01, 2000)]
    # 9.01 is also below the grid's buy level 9.60, but while the exit holds the grid queues nothing
    assert [(s.rule, s.status) for s in engine.grid_signals()] == [(Rule.GRID_BUY, SignalStatus.EXECUTED)]
    position = engine.positions.get(CODE)
    assert (position.volume, position.available) == (500, 0)  # the grid's shares are locked until tomorrow
    engine.open_day(DAY2, 9.01, prev_close=9.01)
    assert engine.positions.get(CODE) is None  # the stop-loss sold them at the next day's open
    assert engine.executor.trade_records(code=CODE)[-1]["strategy"] == "stop_loss"


def test_a_working_grid_sell_gives_way_to_the_position_stop_loss(tmp_path):
    engine = Engine(tmp_path)
    engine.buy_base()
    engine.build(sim_options={"max_fill_volume": 300})
    engine.publish(10.0)
    engine.grid.start_session(CODE)
    engine.tick(10.20)  # grid sell 500: 300 fill, 200 rest at 10.18
    # stop-loss 10.0031 × 0.905 = 9.0528: the working grid sell is withdrawn and, in the same pass, the stop-loss
    # sells every free share (issue 25 item 4: a resting sell never holds the exit back); it stops the grid
    engine.tick(9.01)
    assert [s.rule for s in engine.signals.history(50)] == [Rule.STOP_LOSS, Rule.GRID_SELL]
    session = engine.grid.session(1)
    assert (session.status, session.end_reason) == ("stopped", "position_exit")
    records = engine.executor.trade_records(code=CODE)
    assert [(r["strategy"], r["price"], r["volume"]) for r in records] == [
        ("manual", 10.0, 2000), ("grid_sell", 10.2, 300), ("stop_loss", 9.01, 300)]  # the thin market: 300 a quote
    assert [(o.side, o.volume, o.filled_volume) for o in engine.executor.open_orders(CODE)] == [(S, 1700, 300)]


def test_auto_start_after_first_take_profit(tmp_path):
    engine = Engine(tmp_path, GRID_AUTO_START_AFTER_TAKE_PROFIT=True)
    engine.buy_base()
    engine.tick(10.61)  # cost 10.0031 × 1.06 = 10.6033: the first take-profit sells 60 % of 2000
    sessions = engine.grid.sessions()
    assert [(s.id, s.stock_code, s.origin, s.center_price, s.status) for s in sessions] == \
        [(1, CODE, "take_profit", 10.61, "active")]
    assert engine.executor.trade_records(code=CODE)[-1]["strategy"] == "take_profit"


def test_auto_start_is_off_by_default(tmp_path):
    engine = Engine(tmp_path)
    engine.buy_base()
    engine.tick(10.61)
    assert engine.executor.trade_records(code=CODE)[-1]["strategy"] == "take_profit"
    assert engine.grid.sessions() == []


# ---- start checks and restarts -----------------------------------------------------------------------------

def test_start_checks(tmp_path):
    engine = Engine(tmp_path)
    with pytest.raises(TradingError) as no_position:
        engine.grid.start_session(CODE)
    assert no_position.value.code == "NO_POSITION"
    engine.buy_base()
    with pytest.raises(TradingError) as bad:
        engine.grid.start_session(CODE, GRID_STEP_RATIO=0.9)
    assert bad.value.code == "INVALID_GRID_PARAMS"
    session = engine.grid.start_session("600036", center_price=9.5, GRID_BUY_AMOUNT=3000)
    assert (session.stock_code, session.center_price, session.buy_amount, session.next_buy_price) == \
        (CODE, 9.5, 3000.0, 9.31)
    with pytest.raises(TradingError) as twice:
        engine.grid.start_session(CODE)
    assert twice.value.code == "GRID_ALREADY_ACTIVE"
    as_dict = session.to_dict()
    assert as_dict["created_at"] == "2025-09-23T09:30:00" and as_dict["status_label"] == "运行中"


def test_restart_cancels_the_stale_open_order_and_continues_from_the_last_fill(tmp_path):
    engine = Engine(tmp_path)
    engine.buy_base()
    engine.build(sim_options={"max_fill_volume": 300})  # a restart into a thin market
    engine.publish(10.0)
    engine.grid.start_session(CODE)
    engine.tick(9.80)  # the grid buys 500; the simulated market fills 300, 200 keep resting at 9.82
    engine.tick(9.90)  # above the limit: still open
    open_orders = engine.executor.open_orders(CODE)
    assert [(o.side, o.volume, o.filled_volume, o.status) for o in open_orders] == \
        [(B, 500, 300, OrderStatus.PARTIALLY_FILLED)]

    engine.build()  # restart on the same files, with an unlimited market
    assert engine.executor.open_orders(CODE) == []
    cancelled = engine.executor.list_orders(day=DAY1.date())[0]
    assert (cancelled["client_id"], cancelled["status"]) == (open_orders[0].client_id, "cancelled")
    session = engine.grid.session(1)
    assert (session.status, session.reference_price, session.net_volume, session.pending_signal_id) == \
        ("active", 9.80, 300, None)
    assert engine.grid_fills() == [(B, 9.80, 300, at(DAY1, 1))]
    engine.walk([9.90, 10.00])  # one step above the last fill: 9.80 × 1.02 = 9.996 → 10.00
    assert engine.grid_fills() == [(B, 9.80, 300, at(DAY1, 1)), (S, 10.00, 500, at(DAY1, 4))]
    assert engine.grid.session(1).realized_pnl == round(-5.03 + 300 * 0.20 - 7.55, 2)  # fees: 5.03 buy, 7.55 sell


def test_restart_voids_a_queued_grid_signal(tmp_path):
    engine = Engine(tmp_path, ENABLE_AUTO_TRADING=False)
    engine.buy_base()
    engine.grid.start_session(CODE)
    engine.tick(9.80)
    queued = engine.grid.session(1).pending_signal_id
    engine.build()
    voided = engine.signals.get(queued)
    assert (voided.status, voided.reason) == (SignalStatus.REJECTED, "进程重启，网格信号作废")
    assert engine.grid.session(1).pending_signal_id is None
    engine.settings.update({"ENABLE_AUTO_TRADING": True})
    engine.tick(9.80, seconds=31)  # after the signal cool-down the grid detects again and trades
    assert engine.grid_fills() == [(B, 9.80, 500, "09-23 09:31")]


def test_a_fill_the_listener_missed_is_booked_once_from_the_trade_records(tmp_path):
    def deaf(grid):
        grid.on_fill = lambda fill, rule: None  # as if the process had died before the grid heard of it
    engine = Engine(tmp_path, grid_hook=deaf)
    engine.buy_base()
    engine.grid.start_session(CODE)
    engine.tick(9.80)
    assert engine.grid_fills() == []  # filled in the executor, not yet known to the grid
    engine.tick(9.75)  # the next check follows the signal to its finished order and books its fill
    assert engine.grid_fills() == [(B, 9.80, 500, at(DAY1, 1))]
    assert engine.grid.session(1).reference_price == 9.80
    engine.build()  # the restart's listener-less recovery books nothing twice
    assert engine.grid_fills() == [(B, 9.80, 500, at(DAY1, 1))]


def test_a_timed_out_grid_sell_repriced_by_the_executor_stays_the_one_open_grid_order(tmp_path):
    engine = Engine(tmp_path)
    engine.buy_base()
    engine.build(sim_options={"max_fill_volume": 300})  # a thin market: 300 shares per quote
    engine.publish(10.0)
    engine.grid.start_session(CODE)
    engine.tick(10.20)  # grid sell 500 at limit 10.18: 300 fill at 10.20, 200 rest
    engine.tick(10.10)  # below the limit: nothing fills, and no second grid order is queued
    assert [s.rule for s in engine.grid_signals()] == [Rule.GRID_SELL]
    engine.clock.advance(1)  # 61 s old: the orders thread cancels and re-prices the rest
    engine.executor.check_open_orders()
    [reprice] = engine.executor.open_orders(CODE)
    assert (reprice.volume, reprice.price) == (200, 10.12)  # 10.18 × (1 − 0.005) = 10.129 → 10.12
    assert engine.grid.session(1).pending_signal_id is not None  # the chain is still the session's order
    engine.tick(10.15)
    assert engine.grid_fills() == [(S, 10.20, 300, at(DAY1, 1)), (S, 10.12, 200, "09-23 09:33")]
    assert [t.fees for t in engine.grid.trades(1)] == [6.56, 6.03]
    session = engine.grid.session(1)
    assert (session.reference_price, session.net_volume, session.pending_signal_id, session.realized_pnl) == \
        (10.12, -500, None, -12.59)
    assert [r["strategy"] for r in engine.executor.trade_records(code=CODE)][1:] == ["grid_sell", "grid_sell"]


def test_the_runner_revalidates_a_grid_signal_at_execution(tmp_path):
    engine = Engine(tmp_path, ENABLE_AUTO_TRADING=False)
    engine.buy_base()
    engine.grid.start_session(CODE)
    engine.tick(9.80)
    queued = engine.grid.session(1).pending_signal_id
    engine.tick(9.90)  # the price left the buy level before anyone executed the signal
    result = engine.runner.execute_signal(queued)
    assert (result.status, result.reason) == (SignalStatus.REJECTED, "600036.SH 网格买入条件在现价 9.900 已不成立（买入价 9.800）")
    engine.tick(9.85)
    assert engine.grid.session(1).pending_signal_id is None  # the session follows its signal to the end
    engine.tick(9.80, seconds=30)  # at the level again, after the signal cool-down
    again = engine.grid.session(1).pending_signal_id
    assert engine.runner.execute_signal(again).status is SignalStatus.EXECUTED
    assert engine.grid_fills() == [(B, 9.80, 500, "09-23 09:33")]


def test_a_stocks_own_grid_parameters_shape_its_session(tmp_path):
    """Per-stock parameters (issue 17) reach the grid: a 5 % step for this stock only, the global 2 % elsewhere."""
    from core.stock_params import StockParams

    engine = Engine(tmp_path)
    engine.buy_base()
    own = StockParams(engine.db, engine.settings, engine.clock)
    own.update(CODE, {"GRID_STEP_RATIO": 0.05, "GRID_BUY_AMOUNT": 6000.0}, source="test")
    grid = GridManager(engine.db, engine.settings, engine.clock, engine.positions, engine.hub, engine.signals,
                       engine.executor, settings_for=own.settings_for)
    started = grid.start_session(CODE)
    assert (started.center_price, started.next_buy_price, started.next_sell_price) == (10.0, 9.5, 10.5)
    assert (started.step_ratio, started.buy_amount) == (0.05, 6000.0)
    assert own.settings_for("600000.SH").get("GRID_STEP_RATIO") == 0.02
