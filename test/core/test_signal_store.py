"""The persisted signal queue: dedup of active signals, cool-down, outcomes, claim, survival across restart."""
import threading
from datetime import datetime

from market.clock import ReplayClock
from core.models import Rule, Signal, SignalStatus
from core.signal_store import SignalStore
from persistence.storage import Database

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


class Wall:
    """A settable wall clock: the real seconds a person waits, apart from the replay's market time."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta
        self.now += timedelta(seconds=seconds)


def add_position(price, episode="2025-09-01", level=1):
    return Signal(stock_code="600036.SH", rule=Rule.ADD_POSITION, volume=1700, trigger_price=11.4762,
                  observed_price=price, created_at=T0, level_index=level, episode=episode, amount=20000.0)


def test_a_new_detection_refreshes_the_pending_signal_instead_of_adding_a_row(tmp_path):
    clock, wall = ReplayClock(T0), Wall(datetime(2026, 1, 5, 9, 0, 0))
    store = SignalStore(Database(tmp_path / "s.db"), clock, wall)
    first = store.add(add_position(11.47))
    assert store.age_seconds(first) == 0.0
    clock.advance(180)  # three market minutes at a fast replay ...
    wall.advance(0.5)   # ... are half a real second
    assert store.add(add_position(11.40)) is None
    refreshed = store.get(first.id)
    assert (refreshed.observed_price, refreshed.seen_at) == (11.40, datetime(2026, 1, 5, 9, 0, 0, 500000))
    wall.advance(59.5)
    assert store.age_seconds(store.get(first.id)) == 59.5
    assert [s.id for s in store.pending()] == [first.id] and store.history() == []
    # another episode (the position was closed and bought again) is another occurrence: not merged into it
    assert store.add(add_position(11.40, episode="2025-09-20")) is None
    assert store.get(first.id).observed_price == 11.40


def test_dismiss_with_snooze_silences_the_episode_and_history_filters(tmp_path):
    clock, wall = ReplayClock(T0), Wall(datetime(2026, 1, 5, 9, 0, 0))
    store = SignalStore(Database(tmp_path / "s.db"), clock, wall)
    plain = store.add(add_position(11.47, level=1))
    dismissed = store.dismiss(plain.id)
    assert (dismissed.status, dismissed.status.label, dismissed.reason) == (
        SignalStatus.DISMISSED, "已忽略", "人工忽略（web）")
    again = store.add(add_position(11.46, level=1))
    assert again is not None, "a plain dismissal does not silence the next detection"
    store.dismiss(again.id, snooze=True)
    assert store.get(again.id).reason == "人工忽略（web），本轮持仓内不再提示"
    assert store.add(add_position(11.45, level=1)) is None, "snoozed for this episode"
    assert store.add(add_position(11.45, level=1, episode="2025-10-01")) is not None, "a new episode is heard"
    stop = store.add(stop_loss())
    store.mark(stop.id, SignalStatus.EXPIRED, "过期")
    assert [s.id for s in store.history(status=SignalStatus.DISMISSED)] == [again.id, plain.id]
    assert [s.id for s in store.history(rule=Rule.STOP_LOSS)] == [stop.id]
    assert [s.id for s in store.history(code="000001.SZ")] == []
    import pytest
    from core.models import TradingError
    with pytest.raises(TradingError) as refused:
        store.dismiss(stop.id)
    assert refused.value.message == f"信号 #{stop.id} 当前状态为「已过期」，不能忽略"
