"""Issue 25 §2 item 13: a broker hang must not stop housekeeping for good, and the grid must not re-send an
order that failed more than GRID_SEND_RETRY_LIMIT times, with back-off between the attempts."""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from qmt.broker_guard import BrokerGuard
from daemon.composition import _day_report
from daemon.daemon_workers import Housekeeper
from grid.rules import retry_delay_seconds
from market.clock import ReplayClock
from position_manager import PositionManager
from sim_trader import SimTrader
from persistence.storage import Database
from test_grid_trading import CODE, Engine
from trading_executor import TradingExecutor
from core.trading_state import TradingState
from trading_support import QuoteBoard, make_settings


class HangingAccount:
    """The sim broker whose account query hangs, once `hang()` was called, until `release` is set."""

    def __init__(self, broker):
        self._broker = broker
        self.release = threading.Event()
        self.release.set()

    def hang(self) -> None:
        self.release.clear()

    def query_asset(self):
        self.release.wait(5)
        return self._broker.query_asset()

    def __getattr__(self, name):
        return getattr(self._broker, name)


def test_housekeeping_survives_a_hanging_account_query_and_still_rolls_the_day(tmp_path, caplog):
    settings = make_settings(tmp_path)
    clock = ReplayClock(datetime(2025, 9, 29, 10, 0))
    quotes = QuoteBoard(clock)
    quotes.set(CODE, 10.0, 10.0)
    db = Database(tmp_path / "sim_trading.db")
    sim = SimTrader(db, settings, clock, quotes)
    hanging = HangingAccount(sim)
    guard = BrokerGuard(hanging, timeout=lambda: 0.05)
    positions = PositionManager(db, settings, clock, "simulation")
    executor = TradingExecutor(db, guard, positions, quotes, settings, clock, TradingState(db, clock))
    sim.set_listener(executor)
    executor.buy_stock(CODE, volume=1000)
    rolled = []
    keeper = Housekeeper(clock, settings, [lambda day: rolled.append(day), positions.roll_day],
                         lambda day: _day_report(executor, day))
    keeper.run_once()
    hanging.hang()
    clock.set(datetime(2025, 9, 30, 9, 25))
    with caplog.at_level(logging.WARNING, logger="daemon.daemon_workers"):
        keeper.run_once()  # the account query overruns its deadline: BrokerCallTimeout inside the summary
        keeper.run_once()
    assert rolled == [datetime(2025, 9, 30).date()]
    assert positions.get(CODE).available == 1000  # T+1 released by the roll-over
    [line] = [r.getMessage() for r in caplog.records if "汇总未能生成" in r.getMessage()]
    assert line.startswith("交易日 2025-09-29 汇总未能生成（券商接口 query_asset 超过 0.05 秒未返回")
    hanging.release.set()
    deadline = time.monotonic() + 5
    while guard.hung_call() is not None and time.monotonic() < deadline:  # the hung call returns
        threading.Event().wait(0.01)
    clock.set(datetime(2025, 10, 9, 9, 25))
    with caplog.at_level(logging.INFO, logger="daemon.daemon_workers"):
        keeper.run_once()  # the hang is over: the next roll-over has its summary line again
    assert rolled[-1] == datetime(2025, 10, 9).date()
    assert any("当日成交 0 笔" in r.getMessage() for r in caplog.records)


def test_a_failing_roll_step_is_retried_and_does_not_stop_the_others(tmp_path):
    settings = make_settings(tmp_path)
    clock = ReplayClock(datetime(2025, 9, 29, 10, 0))
    calls = []

    def flaky(day):
        calls.append(("flaky", day))
        if len(calls) == 1:
            raise RuntimeError("磁盘繁忙")

    keeper = Housekeeper(clock, settings, [flaky, lambda day: calls.append(("other", day))], lambda day: "汇总")
    keeper.run_once()
    clock.set(datetime(2025, 9, 30, 9, 25))
    keeper.run_once()
    keeper.run_once()
    keeper.run_once()
    day = datetime(2025, 9, 30).date()
    assert calls == [("flaky", day), ("other", day), ("flaky", day)]


def test_the_grid_resends_a_failed_order_at_most_its_retry_limit_with_back_off(tmp_path):
    """The broker link is down for 10 minutes: the grid's sell is undeliverable. With a limit of 3 retries
    and a 5 s back-off doubling per failure, the grid sends 4 orders (at 0, ≥5, ≥10, ≥20 s after each
    failure) and then stops the session, instead of one order per quote."""
    engine = Engine(tmp_path, GRID_SEND_RETRY_LIMIT=3, GRID_RETRY_BACKOFF_SECONDS=5.0, SIGNAL_COOLDOWN_SECONDS=0.0)
    engine.buy_base()
    engine.grid.start_session(CODE)
    engine.sim.close()
    engine.walk([10.21] * 600, seconds=1)
    grid_orders = [o for o in engine.executor.list_orders() if o["rule"] == "grid_sell"]
    assert [o["status"] for o in grid_orders] == ["rejected"] * 4
    times = sorted(o["created_at"] for o in grid_orders)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert gaps == [6.0, 11.0, 21.0]  # each back-off, plus the second of the quote that noticed the failure
    [session] = engine.grid.sessions()
    assert (session.status, session.end_reason) == ("stopped", "send_failed")
    assert "连续 4 笔网格委托失败或结果未知（重发上限 3 次）" in session.end_message
    assert [retry_delay_seconds(n, 5.0) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
