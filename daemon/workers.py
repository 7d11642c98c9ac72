"""Named worker threads and the heartbeat watchdog: every loop is a `Worker` (`run_once` + `wait`), run in
a thread that beats; the watchdog restarts a worker whose thread died or stopped beating (within
2 × THREAD_CHECK_INTERVAL + the worker's declared maximum step time), with doubling back-off. No worker is
abandoned (DESIGN §8a): past its hourly restart budget it raises an alarm (health red) and keeps being retried
at the capped back-off until a step succeeds again; a worker stuck twice at the same call raises an alarm too."""
from __future__ import annotations

import logging
import os
import sys
import sysconfig
import threading
import time
from typing import Callable, Optional

from core.events import EventKind
from core.models import Heartbeat

log = logging.getLogger(__name__)


class Worker:
    """One loop. `run_once()` does one unit of work; `wait(stop, limit)` blocks until the next unit is due
    (a queue, a condition, or a timer), never longer than `limit` real seconds so that heartbeats continue."""

    name = "worker"
    # The longest one `run_once` may take (seconds) before the thread counts as stuck; None = the global
    # THREAD_STUCK_SECONDS. A worker that calls the broker declares room for one broker deadline.
    max_step_seconds: Optional[float] = None

    def run_once(self) -> None:
        raise NotImplementedError

    def wait(self, stop: threading.Event, limit: float) -> None:
        stop.wait(limit)

    def is_due(self) -> bool:
        """Whether `run_once` should run after a `wait`. A worker whose next unit is further away than `limit`
        (e.g. the next session) answers False until then: its thread keeps beating without working."""
        return True

    def on_stop(self) -> None:
        """Called once in the worker's thread when it stops normally (final flush)."""


STOP_CHECK_SECONDS = 0.25  # how often a worker blocked on a condition looks at its stop event


class ScheduledWorker(Worker):
    """A worker that runs when its next due time (`_due_at`, monotonic seconds) has come."""

    def __init__(self, now: Callable[[], float], first_due: float):
        self._now = now
        self._due_at = first_due

    def wait(self, stop: threading.Event, limit: float) -> None:
        remaining = self._due_at - self._now()
        if remaining > 0:
            stop.wait(min(limit, remaining))

    def is_due(self) -> bool:
        return self._now() >= self._due_at


def wait_for_version(wait: Callable[[int, float], int], seen: int, stop: threading.Event, timeout: float) -> int:
    """Block on `wait(seen, t)` (a condition-backed version wait) until the version changes, `timeout` real
    seconds pass, or `stop` is set; returns the version. Lets condition waits honour a prompt shutdown."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        version = wait(seen, min(remaining, STOP_CHECK_SECONDS))
        if version != seen:
            return version
    return seen


def quote_wait_seconds(settings, clock, limit: float) -> float:
    """How long a quote-driven monitor may sleep when no quote arrives: MONITOR_INTERVAL while the market
    trades (or replays), else up to the watchdog's `limit` (outside sessions nothing moves)."""
    interval = settings.get("MONITOR_INTERVAL")
    return min(limit, interval if clock.is_trading() or clock.is_replay else limit)


class _Runner:
    """The thread of one worker: beat, wait, beat, work; exceptions end the thread (the watchdog restarts)."""

    def __init__(self, worker: Worker, beat: Heartbeat, max_wait: Callable[[], float], now: Callable[[], float]):
        self.worker = worker
        self.beat = beat
        self.stop_event = threading.Event()
        self._max_wait = max_wait
        self._now = now
        self.completed_steps = 0  # `run_once` calls that returned: a restarted worker that works again
        self.thread = threading.Thread(target=self._run, name=worker.name, daemon=True)

    def _run(self) -> None:
        worker = self.worker
        try:
            while not self.stop_event.is_set():
                self.beat.last_beat = self._now()
                worker.wait(self.stop_event, self._max_wait())
                if self.stop_event.is_set():
                    break
                self.beat.last_beat = self._now()
                if worker.is_due():
                    worker.run_once()
                    self.completed_steps += 1
            worker.on_stop()
        except Exception as exc:  # the thread ends here; the watchdog sees it dead and restarts it
            if getattr(exc, "code", None) == "BROKER_STOPPING":  # the daemon is stopping: an end, not a crash
                log.info("线程 %s 随程序退出而结束（%s）", worker.name, getattr(exc, "message", exc))
                return
            log.exception("线程 %s 异常退出，等待看门狗重启", worker.name)


class Watchdog(Worker):
    """Supervises the other workers; itself a worker run by the daemon."""

    name = "watchdog"

    def __init__(self, settings, now: Callable[[], float] = time.monotonic, events=None):
        self._settings = settings
        self._events = events  # core.events.EventBus: restarts and alarms reach the notifier (issue 16)
        self._now = now
        self._runners: dict[str, _Runner] = {}
        self._beats: dict[str, Heartbeat] = {}
        self._next_restart_at: dict[str, float] = {}
        self._stuck_at: dict[str, dict[str, int]] = {}  # worker -> where its hung threads were stuck -> count
        self._over_budget: set[str] = set()  # workers whose budget alarm stands until a step succeeds again
        self._lock = threading.Lock()
        self._stopping = False

    def add(self, worker: Worker) -> None:
        self._beats[worker.name] = Heartbeat(worker.name)
        self._runners[worker.name] = self._new_runner(worker)

    def start(self) -> None:
        for runner in self._runners.values():
            self._start_runner(runner)

    def stuck_after(self, worker: Worker) -> float:
        """Seconds without a beat after which `worker` counts as stuck: one wait (≤ THREAD_CHECK_INTERVAL)
        or one step (≤ its declared maximum), whichever it is in, with the other as margin."""
        step = worker.max_step_seconds
        if step is None:
            step = self._settings.get("THREAD_STUCK_SECONDS")
        return float(self._settings.get("THREAD_CHECK_INTERVAL")) + float(step)

    def run_once(self) -> None:
        """Restart every worker whose thread died or whose heartbeat is older than `stuck_after`."""
        now = self._now()
        with self._lock:
            if self._stopping:
                return
            for name, runner in list(self._runners.items()):
                beat = self._beats[name]
                stuck_after = self.stuck_after(runner.worker)
                dead = not runner.thread.is_alive()
                stuck = not dead and now - beat.last_beat > stuck_after
                beat.alive = not dead and not stuck
                if stuck:
                    self._note_stuck(name, runner.thread)
                if dead or stuck:
                    self._restart(runner, "已退出" if dead else f"超过 {stuck_after:g} 秒无心跳", now)
                elif name in self._over_budget and runner.completed_steps:
                    self._recovered(name)

    def wait(self, stop: threading.Event, limit: float) -> None:
        stop.wait(min(limit, self._settings.get("THREAD_CHECK_INTERVAL")))

    def health(self) -> list[dict]:
        now = self._now()
        rows = []
        for name, beat in self._beats.items():
            runner = self._runners[name]
            age = now - beat.last_beat if beat.last_beat else None
            stuck = age is not None and age > self.stuck_after(runner.worker)
            rows.append({"name": name, "alive": runner.thread.is_alive() and not stuck,
                         "seconds_since_beat": round(age, 3) if age is not None else None,
                         "restarts": beat.restarts, "alarm": beat.alarm})
        return rows

    def stop(self, timeout: float) -> bool:
        """Ask every worker to stop and join them within `timeout` seconds in total; True if all stopped."""
        with self._lock:
            self._stopping = True
            runners = list(self._runners.values())
        for runner in runners:
            runner.stop_event.set()
        deadline = time.monotonic() + timeout
        for runner in runners:
            if runner.thread.ident is not None:
                runner.thread.join(max(0.0, deadline - time.monotonic()))
        return not any(r.thread.is_alive() for r in runners)

    def _restart(self, runner: _Runner, why: str, now: float) -> None:
        name = runner.worker.name
        beat = self._beats[name]
        hour_ago = now - 3600
        beat.restart_times = [t for t in beat.restart_times if t > hour_ago]
        if now < self._next_restart_at.get(name, 0.0):
            return  # back-off
        limit = self._settings.get("THREAD_MAX_RESTARTS_PER_HOUR")
        cap = float(self._settings.get("THREAD_RESTART_BACKOFF_MAX_SECONDS"))
        over_budget = len(beat.restart_times) >= limit
        if over_budget and name not in self._over_budget:
            self._over_budget.add(name)
            if not beat.alarm:
                self._raise_alarm(name, f"线程 {name} 一小时内已重启 {limit} 次仍异常，将每隔最多 {cap:g} 秒继续重试，"
                                        "恢复前健康状态为红色，请检查日志")
        log.error("线程 %s %s，正在重启（第 %d 次）", name, why, beat.restarts + 1)
        runner.stop_event.set()  # a hung thread that wakes up later exits instead of running twice
        beat.restart_times.append(now)
        beat.restarts += 1
        self._next_restart_at[name] = now + restart_backoff(len(beat.restart_times), cap)
        fresh = self._new_runner(runner.worker)
        self._runners[name] = fresh
        self._start_runner(fresh)
        if not over_budget:  # past the budget the standing alarm speaks for every further retry
            self._emit(EventKind.THREAD_RESTARTED,
                       f"线程 {name} {why}，已自动重启（一小时内第 {len(beat.restart_times)} 次）", thread=name)

    def _recovered(self, name: str) -> None:
        """A worker retried past its budget completed a step: its budget alarm clears (health green again)."""
        self._over_budget.discard(name)
        beat = self._beats[name]
        if beat.alarm.startswith(f"线程 {name} 一小时内已重启"):
            beat.alarm = ""
        log.warning("线程 %s 重启后已恢复正常运行", name)

    def _emit(self, kind: EventKind, message: str, **data) -> None:
        if self._events is not None:
            self._events.emit(kind, message, **data)

    def _note_stuck(self, name: str, thread: threading.Thread) -> None:
        """A stuck thread is left behind (it cannot be killed); the second one stuck at the same call means
        a restart does not help: alarm, and /api/health turns red."""
        where = stuck_location(thread)
        counts = self._stuck_at.setdefault(name, {})
        counts[where] = counts.get(where, 0) + 1
        if counts[where] >= 2 and not self._beats[name].alarm:
            self._raise_alarm(name, f"线程 {name} 已两次卡在同一调用（{where}），重启无效，请检查券商客户端或日志")

    def _raise_alarm(self, name: str, message: str) -> None:
        self._beats[name].alarm = message
        log.error(message)
        self._emit(EventKind.THREAD_ALARM, message, thread=name)

    def _new_runner(self, worker: Worker) -> _Runner:
        def max_wait() -> float:  # an idle worker beats at least once per watchdog check
            return max(0.05, float(self._settings.get("THREAD_CHECK_INTERVAL")))
        return _Runner(worker, self._beats[worker.name], max_wait, self._now)

    def _start_runner(self, runner: _Runner) -> None:
        runner.beat.last_beat = self._now()
        runner.beat.alive = True
        runner.thread.start()


def restart_backoff(restarts_this_hour: int, cap: float) -> float:
    """Seconds before the next restart: 1, 2, 4 … doubling with each restart in the last hour, up to `cap`."""
    return min(cap, 2.0 ** min(restarts_this_hour - 1, 30))


STDLIB_DIR = os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep


def stuck_location(thread: threading.Thread) -> str:
    """Where a thread is blocked: the innermost frame outside the standard library ("file.py:function:line"),
    else the innermost frame at all. Two hung threads at the same place are the same stuck call."""
    frame = sys._current_frames().get(thread.ident or -1)
    innermost = ""
    while frame is not None:
        code = frame.f_code
        text = f"{os.path.basename(code.co_filename)}:{code.co_name}:{frame.f_lineno}"
        innermost = innermost or text
        if not os.path.abspath(code.co_filename).startswith(STDLIB_DIR):
            return text
        frame = frame.f_back
    return innermost or "未知位置"
