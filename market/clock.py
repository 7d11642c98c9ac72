"""The market clock: the one object every module asks for "now" and for the session, so that real time
and replayed time are interchangeable. Times are naive datetimes in China Standard Time."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from typing import Callable, Optional
from zoneinfo import ZoneInfo

import market_rules
from market_rules import TradingCalendar

MARKET_TZ = ZoneInfo("Asia/Shanghai")


class Clock:
    """Base: subclasses supply `now()`; sessions and trading days follow from the calendar."""

    is_replay = False

    def __init__(self, calendar: Optional[TradingCalendar] = None):
        self.calendar = calendar or market_rules.DEFAULT_CALENDAR

    def now(self) -> datetime:
        raise NotImplementedError

    def today(self) -> date:
        return self.now().date()

    def session(self) -> str:
        return market_rules.session_at(self.now(), self.calendar)

    def is_trading(self) -> bool:
        return self.session() in market_rules.TRADING_SESSIONS

    def is_trading_day(self, day: Optional[date] = None) -> bool:
        return self.calendar.is_trading_day(day or self.today())

    def seconds_until_session(self) -> float:
        """Real seconds a loop may sleep before the market trades again (0 while it trades)."""
        current = self.now()
        return max(0.0, (market_rules.next_session_start(current, self.calendar) - current).total_seconds())


class RealClock(Clock):
    """Wall-clock time in Beijing, whatever the machine's own time zone."""

    def __init__(self, calendar: Optional[TradingCalendar] = None,
                 source: Callable[[], datetime] = lambda: datetime.now(MARKET_TZ)):
        super().__init__(calendar)
        self._source = source

    def now(self) -> datetime:
        return self._source().replace(tzinfo=None)


class ReplayClock(Clock):
    """Market time set by whoever drives the replay (the replay data source, a test). It only moves forward.
    Sleeping until the next session makes no sense here: the replay itself jumps between sessions."""

    is_replay = True

    def __init__(self, start: datetime, calendar: Optional[TradingCalendar] = None):
        super().__init__(calendar)
        self._now = start
        self._lock = threading.Lock()
        self._day_listeners: list[Callable[[date, date], None]] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        """Move market time to `moment` (ignored if it is earlier); tell listeners when the day changes."""
        with self._lock:
            if moment <= self._now:
                return
            previous, self._now = self._now, moment
        if previous.date() != moment.date():
            for listener in list(self._day_listeners):
                listener(previous.date(), moment.date())

    def advance(self, seconds: float) -> None:
        self.set(self.now() + timedelta(seconds=seconds))

    def on_new_day(self, listener: Callable[[date, date], None]) -> None:
        self._day_listeners.append(listener)

    def seconds_until_session(self) -> float:
        return 0.0
