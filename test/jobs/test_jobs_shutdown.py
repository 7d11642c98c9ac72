"""A job the daemon's own shutdown stops half-way (issue 26 item 5): the broker guard answers BROKER_STOPPING,
the run is released quietly (no traceback, no alarm) and the next start runs it again for its day, whatever
the job's catch-up policy, so that day's account snapshot is not lost. A worker thread that meets the stopping
broker ends without a crash report."""
from __future__ import annotations

import logging
from datetime import date, datetime

from persistence.config_store import ConfigStore
from core.events import EventBus, EventKind
from jobs.runner import Job, JobRunner
from jobs.schedule import CatchUp
from jobs.store import RETRY, JobStore
from market.clock import ReplayClock
from core.models import BrokerUnavailable
from persistence.storage import Database
from daemon.workers import Watchdog, Worker

DAY = date(2024, 3, 5)  # a Tuesday, a trading day


class Settings:
    def get(self, key):
        return {"JOB_POST_CLOSE_TIME": "15:05"}[key]


class Snapshot:
    """The post-close job: records the day's account snapshot, unless the broker is already stopping."""

    def __init__(self, stopping: bool):
        self.stopping = stopping
        self.days: list[date] = []

    def __call__(self, day: date) -> str:
        if self.stopping:
            raise BrokerUnavailable("BROKER_STOPPING", "程序正在退出，不再调用券商接口")
        self.days.append(day)
        return f"已记录 {day} 的账户快照"


def runner(db: Database, clock: ReplayClock, action: Snapshot, bus: EventBus,
           policy: CatchUp = CatchUp.LATEST_DAY) -> JobRunner:
    job = Job("post_close", "盘后快照与每日报告", "JOB_POST_CLOSE_TIME", policy, action)
    return JobRunner([job], JobStore(db), clock, Settings(), bus)


def test_a_job_stopped_by_the_shutdown_is_released_quietly_and_run_at_the_next_start(tmp_path, caplog):
    db = Database(tmp_path / "jobs.db")
    clock = ReplayClock(datetime(2024, 3, 5, 15, 0))
    bus = EventBus(clock)
    alarms = bus.subscribe([EventKind.ALARM])
    first = runner(db, clock, Snapshot(stopping=True), bus)
    with caplog.at_level(logging.INFO):
        assert first.run_once(datetime(2024, 3, 5, 15, 6)) == [("post_close", DAY, "schedule")]
    assert [r["status"] for r in JobStore(db).runs()] == [RETRY]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.text
    assert "下次启动时补跑" in caplog.text
    assert alarms.drain() == []  # stopping is no failure: no alarm

    # the next start is two days later, after the 6th's close: the 5th (released) and the 6th (missed) both
    # run; the latest-day policy alone would have caught up only the 6th
    clock.set(datetime(2024, 3, 7, 9, 0))
    action = Snapshot(stopping=False)
    second = runner(db, clock, action, bus)
    done = second.run_once(datetime(2024, 3, 7, 9, 0))
    assert done == [("post_close", DAY, "catch_up"), ("post_close", date(2024, 3, 6), "catch_up")]
    assert action.days == [DAY, date(2024, 3, 6)]
    runs = JobStore(db).runs()
    assert sorted((r["day"], r["trigger"], r["status"], r["result"]) for r in runs) == [
        ("2024-03-05", "catch_up", "ok", "已记录 2024-03-05 的账户快照"),
        ("2024-03-06", "catch_up", "ok", "已记录 2024-03-06 的账户快照")]
    assert second.run_once(datetime(2024, 3, 7, 9, 1)) == []  # never twice for a day
    db.close()


def test_a_released_same_session_job_is_skipped_once_its_day_has_closed(tmp_path):
    db = Database(tmp_path / "jobs.db")
    clock = ReplayClock(datetime(2024, 3, 5, 9, 0))
    bus = EventBus(clock)
    runner(db, clock, Snapshot(stopping=True), bus, CatchUp.SAME_SESSION).run_once(datetime(2024, 3, 5, 15, 6))
    clock.set(datetime(2024, 3, 6, 8, 0))
    action = Snapshot(stopping=False)
    assert runner(db, clock, action, bus, CatchUp.SAME_SESSION).run_once(datetime(2024, 3, 6, 8, 0)) == [
        ("post_close", DAY, "skip")]
    assert action.days == []
    assert [(r["day"], r["status"]) for r in JobStore(db).runs()] == [("2024-03-05", "skipped")]
    db.close()


def test_a_real_failure_is_still_a_failure_with_its_alarm(tmp_path, caplog):
    db = Database(tmp_path / "jobs.db")
    clock = ReplayClock(datetime(2024, 3, 5, 15, 0))
    bus = EventBus(clock)
    alarms = bus.subscribe([EventKind.ALARM])

    def broken(day):
        raise BrokerUnavailable("NOT_CONNECTED", "券商未连接")

    job = Job("post_close", "盘后快照与每日报告", "JOB_POST_CLOSE_TIME", CatchUp.LATEST_DAY, broken)
    with caplog.at_level(logging.INFO):
        JobRunner([job], JobStore(db), clock, Settings(), bus).run_once(datetime(2024, 3, 5, 15, 6))
    assert [r["status"] for r in JobStore(db).runs()] == ["failed"]
    assert any(r.exc_info for r in caplog.records)
    assert [e.message for e in alarms.drain()] == ["定时任务「盘后快照与每日报告」2024-03-05 失败：券商未连接"]
    db.close()


class StoppingSync(Worker):
    """A worker whose final step meets the broker guard after the shutdown began."""

    name = "sync"

    def wait(self, stop, limit):
        stop.wait(limit)

    def on_stop(self):
        raise BrokerUnavailable("BROKER_STOPPING", "程序正在退出，不再调用券商接口")


def test_a_thread_ending_on_the_stopping_broker_is_no_crash(tmp_path, caplog):
    settings = ConfigStore(Database(tmp_path / "c.db"))
    dog = Watchdog(settings)
    dog.add(StoppingSync())
    dog.start()
    with caplog.at_level(logging.INFO):
        assert dog.stop(5) is True
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.text
    assert "线程 sync 随程序退出而结束（程序正在退出，不再调用券商接口）" in caplog.text
