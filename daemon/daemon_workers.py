"""The daemon's small periodic workers: market data, position sync, order supervision, broker sync and
housekeeping (day roll-over). Each wraps one component's `run_once`."""
from __future__ import annotations

import logging
import threading
import time
from datetime import date
from typing import Callable, Optional

from daemon.workers import ScheduledWorker, Worker

log = logging.getLogger(__name__)


class DataWorker(ScheduledWorker):
    """Drives the data source; it says itself how long to wait (a replay tick, a poll interval, or the time
    until the next session)."""

    name = "data"
    WATCHLIST_REFRESH_SECONDS = 1.0
    REFRESH_BETWEEN_POLLS_UP_TO = 10.0  # a longer source wait is the sleep outside sessions: no refresh wakes

    def __init__(self, data_manager, watchlist: Callable[[], list[str]], now: Callable[[], float] = time.monotonic):
        super().__init__(now, float("-inf"))
        self._data = data_manager
        self._watchlist = watchlist
        self._watchlist_at = float("-inf")
        self._refresh_only = False
        self._last_wait = 0.0  # the source's last requested wait (seconds)

    def wait(self, stop: threading.Event, limit: float) -> None:
        remaining = self._next_wake() - self._now()
        if remaining > 0:
            stop.wait(min(limit, remaining))

    def is_due(self) -> bool:
        now = self._now()
        self._refresh_only = now < self._due_at  # woken only to refresh the watchlist (see run_once)
        return now >= self._next_wake()

    def run_once(self) -> None:
        if self._now() - self._watchlist_at >= self.WATCHLIST_REFRESH_SECONDS:
            self._data.set_watchlist(self._watchlist())  # new positions and pool edits get quotes
            self._watchlist_at = self._now()
        if self._refresh_only:  # a new position is subscribed within a second, not at the next poll
            self._refresh_only = False
            return
        next_wait = self._data.run_once()
        self._last_wait = next_wait
        self._due_at = self._now() + next_wait

    def _next_wake(self) -> float:
        if self._last_wait > self.REFRESH_BETWEEN_POLLS_UP_TO:
            return self._due_at  # the sleep until the next session: no extra wakes (near-zero CPU)
        return min(self._due_at, self._watchlist_at + self.WATCHLIST_REFRESH_SECONDS)


class IntervalWorker(ScheduledWorker):
    """Calls `action()` every `settings[interval_key]` seconds; sleeps until the next session while the
    market is closed when `only_in_session` (near-zero CPU outside trading hours)."""

    def __init__(self, name: str, action: Callable[[], object], settings, interval_key: str, clock=None,
                 only_in_session: bool = False, final: Optional[Callable[[], object]] = None,
                 now: Callable[[], float] = time.monotonic, max_step: Optional[Callable[[], float]] = None):
        self.name = name
        self._max_step = max_step
        self._action = action
        self._settings = settings
        self._interval_key = interval_key
        self._clock = clock
        self._only_in_session = only_in_session
        self._final = final
        super().__init__(now, now() + self._interval())  # the first call comes one interval after start

    @property
    def max_step_seconds(self) -> Optional[float]:  # type: ignore[override]
        return self._max_step() if self._max_step is not None else None

    def run_once(self) -> None:
        self._due_at = self._now() + self._interval()  # set first: a failing action is not retried at once
        self._action()

    def on_stop(self) -> None:
        if self._final is not None:
            self._final()

    def _interval(self) -> float:
        """The configured interval; while the market is closed (`only_in_session`), until the next session."""
        interval = float(self._settings.get(self._interval_key))
        if self._only_in_session and self._clock is not None and not self._clock.is_trading():
            interval = max(interval, self._clock.seconds_until_session())
        return interval


class Housekeeper(Worker):
    """Day roll-over on the market clock (T+1 release, daily counters, the day's summary line). Log cleanup,
    backups and the report file are timed jobs (jobs.daily, issue 16)."""

    name = "housekeeping"

    def __init__(self, clock, settings, roll_day: list[Callable[[date], object]], day_report: Callable[[date], str]):
        self._clock = clock
        self._settings = settings
        self._roll_day = roll_day
        self._day_report = day_report
        self._day: Optional[date] = None
        self._pending_rolls: list[Callable[[date], object]] = []  # roll-over steps still to do for `_day`

    def wait(self, stop: threading.Event, limit: float) -> None:
        stop.wait(min(limit, 1.0 if self._clock.is_replay else 30.0))

    def run_once(self) -> None:
        today = self._clock.today()
        if self._day is None:
            self._day = today
            return
        if today != self._day:
            log.info("交易日切换：%s → %s。%s", self._day, today, self._summary(self._day))
            self._day = today
            self._pending_rolls = list(self._roll_day)
        self._run_pending_rolls()

    def _summary(self, day: date) -> str:
        """The day's summary line; it asks the broker for the account, which may fail (a hang, a link down):
        then the line is skipped and the roll-over goes on (issue 25 item 13)."""
        try:
            return self._day_report(day)
        except Exception as exc:  # any broker failure: the summary is informative, the roll-over is not
            log.warning("交易日 %s 汇总未能生成（%s），已跳过该行，换日处理继续", day, exc)
            return "（当日汇总暂不可用）"

    def _run_pending_rolls(self) -> None:
        """Each roll-over step once; a step that fails is logged and tried again next pass, the others go on."""
        failed = []
        for roll in self._pending_rolls:
            try:
                roll(self._day)
            except Exception as exc:
                log.error("换日处理 %s 失败（%s），下一轮重试", getattr(roll, "__qualname__", roll), exc)
                failed.append(roll)
        self._pending_rolls = failed
