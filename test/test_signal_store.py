"""The persisted signal queue: dedup of active signals, cool-down, outcomes, claim, survival across restart."""
import threading
from datetime import datetime

from market_clock import ReplayClock
from models import Rule, Signal, SignalStatus
from signal_store import SignalStore
from storage import Database

T0 = datetime(2025, 9, 30, 10, 0, 0)


def make(path, clock):
    return SignalStore(Database(path), clock)


def stop_loss(code="600036.SH", level=None, rule=Rule.STOP_LOSS):
    return Signal(stock_code=code, rule=rule, volume=1600, trigger_price=11.17, observed_price=11.15,
                  created_at=T0, level_index=level)


def test_same_active_signal_is_queued_once(tmp_path):
    clock = ReplayClock(T0)
    store = make(tmp_path / "s.db", clock)
    first = store.add(stop_loss())
    assert first.id == 1 and first.status is SignalStatus.PENDING
    assert store.add(stop_loss()) is None
    assert store.add(stop_loss(code="000001.SZ")).id == 2
    assert store.add(stop_loss(rule=Rule.ADD_POSITION, level=1)).id == 3
    assert store.add(stop_loss(rule=Rule.ADD_POSITION, level=2)).id == 4
    assert [s.id for s in store.pending()] == [1, 2, 3, 4]


def test_outcomes_are_written_and_cooldown_applies_after_rejection(tmp_path):
    clock = ReplayClock(T0)
    store = make(tmp_path / "s.db", clock)
    signal = store.add(stop_loss())
    assert store.claim(signal.id) is True
    assert store.claim(signal.id) is False  # nobody runs it twice
    store.mark(signal.id, SignalStatus.REJECTED, "条件已不成立")
    assert store.add(stop_loss(), cooldown_seconds=30) is None
    clock.advance(31)
    again = store.add(stop_loss(), cooldown_seconds=30)
    assert again is not None
    store.mark(again.id, SignalStatus.EXECUTED, "", "C-1")
    assert store.by_order("C-1").id == again.id
    history = store.history()
    assert [(s.id, s.status, s.reason) for s in history] == [
        (again.id, SignalStatus.EXECUTED, ""), (signal.id, SignalStatus.REJECTED, "条件已不成立")]
    assert store.latest("600036.SH").id == again.id


def test_signals_survive_restart(tmp_path):
    clock = ReplayClock(T0)
    store = make(tmp_path / "s.db", clock)
    signal = store.add(stop_loss())
    store.claim(signal.id)
    reopened = make(tmp_path / "s.db", clock)
    assert [s.id for s in reopened.executing()] == [signal.id]
    assert reopened.get(signal.id).trigger_price == 11.17
    assert reopened.exists_on_day("600036.SH", Rule.STOP_LOSS, T0.date())


def test_wait_wakes_on_add(tmp_path):
    clock = ReplayClock(T0)
    store = make(tmp_path / "s.db", clock)
    seen = store.version
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(store.wait(seen, 5)))
    waiter.start()
    store.add(stop_loss())
    waiter.join(5)
    assert woke and woke[0] != seen
