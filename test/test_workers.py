"""Watchdog: a worker that raises and a worker that hangs are both restarted and visible as restarted;
flapping is capped by the per-hour limit with an alarm."""
import threading

import pytest

from config_store import ConfigStore
from storage import Database
from trading_support import FakeTime
from workers import Watchdog, Worker


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


def test_restart_limit_raises_alarm_instead_of_flapping(settings):
    from datetime import datetime

    from events import EventBus, EventKind
    from market_clock import ReplayClock

    fake = FakeTime()
    bus = EventBus(ReplayClock(datetime(2024, 3, 5, 10, 0)))
    published = bus.subscribe([EventKind.THREAD_RESTARTED, EventKind.THREAD_ALARM])
    dog = Watchdog(settings, now=fake, events=bus)

    class AlwaysRaises(Worker):
        name = "flappy"

        def wait(self, stop, limit):
            pass

        def run_once(self):
            raise RuntimeError("always")

    dog.add(AlwaysRaises())
    dog.start()
    for _ in range(6):
        dog._runners["flappy"].thread.join(5)
        fake.value += 120  # past the back-off
        dog.run_once()
    row = health(dog, "flappy")
    assert row["restarts"] == 2
    assert "不再自动重启" in row["alarm"]
    events = [(e.kind, e.data["thread"]) for e in published.drain()]  # two restarts, then one alarm only
    assert events == [(EventKind.THREAD_RESTARTED, "flappy")] * 2 + [(EventKind.THREAD_ALARM, "flappy")]
    dog.stop(5)
