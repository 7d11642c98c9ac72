"""Issue 26 item 8: a watch task's queued buy on a stock neither held nor in the pool stays executable. The task
is finished (fire-once) or paused once it fired, but the stock keeps its quotes until the signal is done."""
from __future__ import annotations

import pytest

from core.models import SignalStatus
from watch.requests import parse_task
from watch.rules import TaskStatus
from web_test_support import build_system

CODE = "000001.SZ"  # in the replay data, not in the pool below, not held


@pytest.mark.parametrize("repeat_cooldown, pause", [(0, False), (3600, True)])
def test_queued_watch_buy_keeps_its_stock_quoted_until_executed(tmp_path, repeat_cooldown, pause):
    system = build_system(tmp_path, pool=["600036.SH"])
    try:
        task = system.watch_store.add(parse_task(
            {"stock_code": CODE, "conditions": [{"type": "price_above", "value": 0.01}], "sessions_only": False,
             "repeat_cooldown": repeat_cooldown, "action": {"type": "buy", "amount": 20000}}, system.clock.today()))
        system.step()  # the first quote of the stock: the task fires and queues its buy (auto-trading off)
        [signal] = system.signals.pending()
        if pause:
            system.watch_store.set_status(task.id, TaskStatus.STOPPED)
        assert system.watch_store.get(task.id).status is (TaskStatus.STOPPED if pause else TaskStatus.DONE)
        assert system.watch_store.codes() == []
        assert CODE in system.watchlist()  # the queued signal still needs the stock's quotes
        system.step(3)  # the replay moves on: the stock's quote stays fresh
        done = system.runner.execute_signal(signal.id)  # the person confirms it
        assert done.status is SignalStatus.EXECUTED, done.reason
        [order] = system.executor.list_orders()
        assert (order["stock_code"], order["side"], order["rule"]) == (CODE, "buy", "watch_buy")
        assert CODE in system.watchlist()  # now held
    finally:
        system.close()
