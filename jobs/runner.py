"""The jobs thread (a watchdog `Worker`): runs each daily job once per trading day at its market-clock time
(the replay clock in replay mode), catches up a run missed while the daemon was down per the job's policy,
and runs a job on demand (the web's 「立即运行」). Runs are committed to the JobStore before they start."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Callable, Optional

from core.events import EventBus, EventKind
from jobs.schedule import CatchUp, decide, next_run, parse_hhmm
from jobs.store import SKIPPED, JobStore
from market_rules import MARKET_CLOSE
from core.models import TradingError
from daemon.workers import Worker

log = logging.getLogger(__name__)

REPLAY_CHECK_SECONDS = 0.2  # a replayed day lasts seconds: look often
REAL_CHECK_SECONDS = 15.0
DAY_END = time(23, 59, 59)
STOPPING_CODES = frozenset({"BROKER_STOPPING"})  # qmt.broker_guard's answer once the daemon has begun to stop


@dataclass(frozen=True)
class Job:
    id: str
    name: str  # Chinese, shown in the page
    time_key: str  # config key of its HH:MM
    catch_up: CatchUp
    action: Callable[[date], str]  # returns the Chinese result line; raises on failure


class JobRunner(Worker):
    name = "jobs"

    def __init__(self, jobs: list[Job], store: JobStore, clock, settings, bus: Optional[EventBus] = None):
        self._jobs = {job.id: job for job in jobs}
        self._store = store
        self._clock = clock
        self._settings = settings
        self._bus = bus
        self._started_at = clock.now()
        self._lock = threading.Lock()  # the thread and a manual trigger never run two jobs at once
        self._retried = False

    def wait(self, stop: threading.Event, limit: float) -> None:
        stop.wait(min(limit, REPLAY_CHECK_SECONDS if self._clock.is_replay else REAL_CHECK_SECONDS))

    def run_once(self, moment: Optional[datetime] = None) -> list[tuple[str, date, str]]:
        """Run every job that is due at `moment` (default: now); returns (job id, day, trigger) of what was
        done or skipped. The first pass first re-runs what a previous shutdown stopped half-way."""
        done = [] if self._retried else self._retry_released()
        for job in self._jobs.values():
            now = moment or self._clock.now()
            decision = decide(self._at(job), job.catch_up, now, self._clock.calendar, self._started_at,
                              self._store.last_day(job.id))
            if decision is None:
                continue
            if not decision.run:
                self._store.claim(job.id, decision.day, "skip", now, SKIPPED,
                                  f"错过运行时间，按补跑策略跳过：{job.catch_up.label}")
                log.info("定时任务「%s」%s 的运行已错过，按策略跳过", job.name, decision.day)
            else:
                self._run(job, decision.day, decision.trigger)
            done.append((job.id, decision.day, decision.trigger))
        return done

    def on_replay_day_end(self, previous: date, _new: date) -> None:
        """ReplayClock day listener: a replayed day jumps from its last tick (before 15:00) to the next open,
        so the jobs of the day that ended run now, on the replay thread, while the quotes are still that
        day's close: the snapshot and the report show the day's own figures."""
        self.run_once(datetime.combine(previous, DAY_END))

    def trigger(self, job_id: str) -> dict:
        """Run a job now for the current trading day (recorded as manual; the scheduled run still happens)."""
        job = self._jobs.get(job_id)
        if job is None:
            raise TradingError("JOB_NOT_FOUND", f"定时任务 {job_id} 不存在")
        run_id = self._run(job, self._clock.today(), "manual")
        return next(r for r in self._store.runs(job_id, limit=5) if r["id"] == run_id)

    def view(self) -> list[dict]:
        now = self._clock.now()
        rows = []
        for job in self._jobs.values():
            at = self._at(job)
            upcoming = next_run(at, now, self._clock.calendar)
            rows.append({"id": job.id, "name": job.name, "schedule": f"每个交易日 {at:%H:%M}（行情时钟）",
                         "catch_up": job.catch_up.value, "catch_up_label": job.catch_up.label,
                         "last_run": self._store.last_run(job.id),
                         "next_run": upcoming.isoformat(sep=" ", timespec="minutes") if upcoming else None})
        return rows

    def _run(self, job: Job, day: date, trigger: str) -> Optional[int]:
        with self._lock:
            run_id = self._store.claim(job.id, day, trigger, self._clock.now())
            if run_id is None:
                return None  # another path already ran it for this day
            return self._execute(job, day, trigger, run_id)

    def _retry_released(self) -> list[tuple[str, date, str]]:
        """Runs the previous process released at its shutdown (e.g. the day's account snapshot): they were
        due and started, only the exit stopped them, so they run now even when newer days have passed. A
        same-session job (pre-open checks) is skipped once its day's market has closed."""
        self._retried = True
        done = []
        now = self._clock.now()
        for job in self._jobs.values():
            for run_id, day in self._store.retries(job.id):
                if job.catch_up is CatchUp.SAME_SESSION and not (now.date() == day and now.time() < MARKET_CLOSE):
                    self._store.skip_released(
                        run_id, f"程序退出时未完成，当日已收盘，按补跑策略跳过：{job.catch_up.label}", now)
                    done.append((job.id, day, "skip"))
                    continue
                with self._lock:
                    if self._store.reclaim(run_id, self._clock.now()):
                        self._execute(job, day, "catch_up", run_id)
                        done.append((job.id, day, "catch_up"))
        return done

    def _execute(self, job: Job, day: date, trigger: str, run_id: int) -> Optional[int]:
        """Run a claimed job (under the lock). A run stopped by the daemon's own shutdown is released for the
        next start, quietly: it is no failure and needs no alarm."""
        log.info("定时任务「%s」开始（%s，%s）", job.name, day, trigger)
        try:
            result = job.action(day)
            ok = True
        except Exception as exc:  # recorded and alarmed; the next day's run is unaffected
            if getattr(exc, "code", None) in STOPPING_CODES:
                return self._stopped(job, day, trigger, run_id)
            log.exception("定时任务「%s」失败", job.name)
            result, ok = f"失败：{getattr(exc, 'message', None) or exc}", False
        self._store.finish(run_id, ok, result, self._clock.now())
        if not ok and self._bus is not None:
            self._bus.emit(EventKind.ALARM, f"定时任务「{job.name}」{day} {result}", job_id=job.id)
        log.info("定时任务「%s」结束：%s", job.name, result)
        return run_id

    def _stopped(self, job: Job, day: date, trigger: str, run_id: int) -> Optional[int]:
        result = "程序正在退出，未完成"
        if trigger == "manual":  # asked by hand: not re-run by itself
            self._store.finish(run_id, False, result, self._clock.now())
            log.info("程序正在退出，手动运行的定时任务「%s」未完成", job.name)
            return run_id
        self._store.release(run_id, f"{result}，下次启动时补跑", self._clock.now())
        log.info("程序正在退出，定时任务「%s」%s 未完成，下次启动时补跑", job.name, day)
        return None

    def _at(self, job: Job):
        return parse_hhmm(self._settings.get(job.time_key))
