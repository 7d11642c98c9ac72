"""Watchdog: a worker that raises and a worker that hangs are both restarted and visible as restarted;
past the per-hour budget a worker is alarmed and retried with capped back-off, never abandoned."""
import threading

import pytest

from persistence.config_store import ConfigStore
from persistence.storage import Database
from trading_support import FakeTime
from daemon.workers import Watchdog, Worker


class Raiser(Worker):
    name = "raiser"

    def __init__(self):
        self.calls = 0
        self.ran_after_restart = threading.Event()

    def wait(self, stop, limit):
        stop.wait(0.001)

    def run_once(self):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("boom")
        self.ran_after_restart.set()
        threading.Event().wait(0.01)


class Hanger(Worker):
    name = "hanger"

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls = 0

    def wait(self, stop, limit):
        stop.wait(0.001)

    def run_once(self):
        self.calls += 1
        self.entered.release()
        if self.calls == 1:
            self.release.wait(10)  # hangs without beating until released
        else:
            self.release.wait(0.01)


@pytest.fixture
def settings(tmp_path):
    store = ConfigStore(Database(tmp_path / "c.db"))
    store.update({"THREAD_STUCK_SECONDS": 5.0, "THREAD_MAX_RESTARTS_PER_HOUR": 2})
    return store


def health(dog, name):
    return next(h for h in dog.health() if h["name"] == name)


def test_raising_worker_is_restarted(settings):
    fake = FakeTime()
    dog = Watchdog(settings, now=fake)
    worker = Raiser()
    dog.add(worker)
    dog.start()
    dog._runners["raiser"].thread.join(5)
    assert not dog._runners["raiser"].thread.is_alive()
    dog.run_once()
    assert worker.ran_after_restart.wait(5)
    assert health(dog, "raiser")["restarts"] == 1
    assert health(dog, "raiser")["alive"] is True
    dog.stop(5)


def test_hanging_worker_is_restarted_and_old_thread_exits(settings):
    fake = FakeTime()
    dog = Watchdog(settings, now=fake)
    worker = Hanger()
    dog.add(worker)
    dog.start()
    assert worker.entered.acquire(timeout=5)
    first = dog._runners["hanger"].thread
    dog.run_once()
    assert health(dog, "hanger")["restarts"] == 0  # still beating recently
    fake.value += 11  # no beat for longer than THREAD_CHECK_INTERVAL (5) + the default step (THREAD_STUCK_SECONDS 5)
    assert health(dog, "hanger")["alive"] is False
    dog.run_once()
    assert worker.entered.acquire(timeout=5)  # the new thread runs
    assert health(dog, "hanger")["restarts"] == 1
    assert dog._runners["hanger"].thread is not first
    worker.release.set()
    first.join(5)
    assert not first.is_alive()  # the hung thread exits once it wakes, it does not run twice
    assert dog.stop(5)


def test_past_the_restart_budget_a_worker_is_alarmed_and_retried_with_back_off_never_abandoned(settings):
    from datetime import datetime

    from core.events import EventBus, EventKind
    from market.clock import ReplayClock

    settings.update({"THREAD_RESTART_BACKOFF_MAX_SECONDS": 8.0})
    fake = FakeTime()
    bus = EventBus(ReplayClock(datetime(2024, 3, 5, 10, 0)))
    published = bus.subscribe([EventKind.THREAD_RESTARTED, EventKind.THREAD_ALARM])
    dog = Watchdog(settings, now=fake, events=bus)

    class FailsUntilFixed(Worker):
        name = "flappy"

        def __init__(self):
            self.broken = True
            self.worked = threading.Event()

        def wait(self, stop, limit):
            stop.wait(0.001)

        def run_once(self):
            if self.broken:
                raise RuntimeError("always")
            self.worked.set()

    worker = FailsUntilFixed()
    dog.add(worker)
    dog.start()
    dog._runners["flappy"].thread.join(5)
    dog.run_once()  # the first restart comes at once
    waits = []
    for _ in range(6):
        dog._runners["flappy"].thread.join(5)
        before = health(dog, "flappy")["restarts"]
        dog.run_once()
        assert health(dog, "flappy")["restarts"] == before  # still within its back-off
        waits.append(dog._next_restart_at["flappy"] - fake.value)
        fake.value = dog._next_restart_at["flappy"]
        dog.run_once()
        assert health(dog, "flappy")["restarts"] == before + 1  # retried once the back-off has passed
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # doubling up to the cap, never abandoned
    row = health(dog, "flappy")
    assert row["restarts"] == 7 and "将每隔最多 8 秒继续重试" in row["alarm"]
    events = [(e.kind, e.data["thread"]) for e in published.drain()]  # two restarts, then one alarm only
    assert events == [(EventKind.THREAD_RESTARTED, "flappy")] * 2 + [(EventKind.THREAD_ALARM, "flappy")]

    dog._runners["flappy"].thread.join(5)
    worker.broken = False  # the cause went away (e.g. disk space is back): the next retry works
    fake.value = dog._next_restart_at["flappy"]
    dog.run_once()
    assert worker.worked.wait(5)
    dog.run_once()
    row = health(dog, "flappy")
    assert row["alarm"] == "" and row["alive"] is True and row["restarts"] == 8
    dog.stop(5)
