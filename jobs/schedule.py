"""Pure schedule rules of the daily jobs: which trading day a job is due for at a market moment, whether a
run missed while the daemon was down is caught up (the job's policy), and when it runs next. No I/O; the
calendar and the last run are passed in."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import Enum
from typing import Optional

import market_rules


class CatchUp(str, Enum):
    """What happens to a run whose moment passed while the daemon was down."""

    SAME_SESSION = "same_session"  # only while that day's market has not closed yet (pre-open checks)
    LATEST_DAY = "latest_day"  # the most recent missed day runs once at start; older missed days are skipped

    @property
    def label(self) -> str:
        return {"same_session": "错过后当日收盘前补跑，收盘后跳过",
                "latest_day": "错过后启动时补跑最近一个交易日（更早的跳过；首次启动不补跑）"}[self.value]


@dataclass(frozen=True)
class Decision:
    day: date
    run: bool  # False: the missed run is skipped (recorded so it is not reconsidered)
    trigger: str  # schedule | catch_up | skip


def parse_hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def due_day(at: time, now: datetime, calendar) -> Optional[date]:
    """The latest trading day whose scheduled moment `at` is not after `now` (None if none in 30 days)."""
    day = now.date()
    for _ in range(30):
        if calendar.is_trading_day(day) and datetime.combine(day, at) <= now:
            return day
        day -= timedelta(days=1)
    return None


def decide(at: time, policy: CatchUp, now: datetime, calendar, started_at: datetime,
           last_day: Optional[date]) -> Optional[Decision]:
    """What to do now for a job scheduled daily at `at` on trading days. `last_day` = the latest day it ran
    (or was skipped) for; `started_at` = market time this daemon started. None = nothing to do."""
    day = due_day(at, now, calendar)
    if day is None or (last_day is not None and day <= last_day):
        return None
    if datetime.combine(day, at) >= started_at:
        return Decision(day, True, "schedule")
    if policy is CatchUp.SAME_SESSION and not (now.date() == day and now.time() < market_rules.MARKET_CLOSE):
        return Decision(day, False, "skip")
    if policy is CatchUp.LATEST_DAY and last_day is None:
        return Decision(day, False, "skip")  # the first start ever: nothing was missed, there was no daemon
    return Decision(day, True, "catch_up")


def next_run(at: time, now: datetime, calendar) -> Optional[datetime]:
    """The next scheduled moment after `now` (a due run not yet made is taken at the next check, seconds away)."""
    candidate = now.date()
    for _ in range(30):
        moment = datetime.combine(candidate, at)
        if calendar.is_trading_day(candidate) and moment > now:
            return moment
        candidate += timedelta(days=1)
    return None
