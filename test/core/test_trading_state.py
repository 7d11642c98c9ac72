"""The trading state above every parameter layer: the gate on every order (automatic, manual, confirmed
manual sells, re-priced sells), persistence across a restart, per-stock halts and the history of changes."""
from datetime import datetime

import pytest

from market.clock import ReplayClock
from core.models import OrderRejected, Rule, Side
from persistence.storage import Database
from core.trading_state import State, TradingState


@pytest.fixture
def clock():
    return ReplayClock(datetime(2024, 3, 4, 10, 0))


def open_state(tmp_path, clock):
    return TradingState(Database(tmp_path / "sim_trading.db"), clock,
                        wall_clock=lambda: datetime(2026, 11, 28, 21, 30, 5))


def refused(state, code, side, rule, confirmed=False) -> str:
    with pytest.raises(OrderRejected) as info:
        state.check_order(code, side, rule, confirmed)
    return info.value.code


def test_running_lets_every_order_through(tmp_path, clock):
    state = open_state(tmp_path, clock)
    assert state.state is State.RUNNING and state.allows_automatic("600036.SH")
    for rule in (Rule.STOP_LOSS, Rule.MACD_BUY, Rule.MANUAL, Rule.REPRICE):
        state.check_order("600036.SH", rule.side, rule)


def test_pause_stops_automatic_orders_only(tmp_path, clock):
    state = open_state(tmp_path, clock)
    assert state.pause("午间观察", "web") is True
    assert not state.allows_automatic()
    assert refused(state, "600036.SH", Side.SELL, Rule.STOP_LOSS) == "TRADING_PAUSED"
    assert refused(state, "600036.SH", Side.BUY, Rule.ADD_POSITION) == "TRADING_PAUSED"
    state.check_order("600036.SH", Side.BUY, Rule.MANUAL)
    state.check_order("600036.SH", Side.SELL, Rule.STOP_LOSS, operator_confirmed=True)  # a signal run by hand
    state.check_order("600036.SH", Side.SELL, Rule.REPRICE)  # a working stop-loss keeps being re-priced


def test_halt_allows_only_confirmed_sells_and_cannot_be_softened(tmp_path, clock):
    state = open_state(tmp_path, clock)
    state.halt("操作员紧急停止", "web")
    assert refused(state, "600036.SH", Side.BUY, Rule.MANUAL) == "TRADING_HALTED"
    assert refused(state, "600036.SH", Side.BUY, Rule.MANUAL, confirmed=True) == "TRADING_HALTED"
    assert refused(state, "600036.SH", Side.SELL, Rule.MANUAL) == "TRADING_HALTED"
    assert refused(state, "600036.SH", Side.SELL, Rule.REPRICE) == "TRADING_HALTED"
    assert refused(state, "600036.SH", Side.SELL, Rule.STOP_LOSS) == "TRADING_HALTED"
    state.check_order("600036.SH", Side.SELL, Rule.MANUAL, operator_confirmed=True)
    assert state.pause("想改成暂停", "web") is False and state.state is State.HALTED
    assert state.halt("第二次", "web") is False and state.reason == "操作员紧急停止"


def test_state_survives_a_restart_with_its_history(tmp_path, clock):
    state = open_state(tmp_path, clock)
    state.halt("操作员紧急停止", "web")
    state.halt_stock("000001.SZ", "撤单次数超限", "circuit_breaker")
    reopened = open_state(tmp_path, clock)
    assert reopened.state is State.HALTED and reopened.reason == "操作员紧急停止"
    assert reopened.snapshot()["halted_stocks"] == {"000001.SZ": "撤单次数超限"}
    assert reopened.resume("确认恢复", "web") is True
    again = open_state(tmp_path, clock)
    assert again.state is State.RUNNING
    assert [(h["scope"], h["old_state"], h["new_state"], h["source"], h["changed_at"], h["market_time"])
            for h in again.history()] == [
        ("account", "halted", "running", "web", "2026-11-28T21:30:05", "2024-03-04T10:00:00"),
        ("000001.SZ", "running", "halted", "circuit_breaker", "2026-11-28T21:30:05", "2024-03-04T10:00:00"),
        ("account", "running", "halted", "web", "2026-11-28T21:30:05", "2024-03-04T10:00:00")]


def test_stock_halt_blocks_automatic_orders_of_that_stock_only(tmp_path, clock):
    state = open_state(tmp_path, clock)
    changes = []
    state.subscribe(changes.append)
    assert state.halt_stock("000001.SZ", "每分钟委托过多", "circuit_breaker") is True
    assert state.halt_stock("000001.SZ", "again", "circuit_breaker") is False
    assert refused(state, "000001.SZ", Side.BUY, Rule.GRID_BUY) == "STOCK_HALTED"
    state.check_order("600036.SH", Side.BUY, Rule.GRID_BUY)
    state.check_order("000001.SZ", Side.SELL, Rule.MANUAL)
    assert not state.allows_automatic("000001.SZ") and state.allows_automatic("600036.SH")
    assert state.resume_stock("000001.SZ", "人工确认", "web") is True
    state.check_order("000001.SZ", Side.BUY, Rule.GRID_BUY)
    assert [(c.scope, c.new) for c in changes] == [("000001.SZ", "halted"), ("000001.SZ", "running")]
