"""The latest validated quote per stock and its push delivery: refuses zero/NaN/stale quotes so that no rule
ever acts on them, wakes waiting threads and calls subscribers. Fetching quotes is the data sources' job."""
from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timedelta
from typing import Callable, Optional

import market_rules
from models import Quote

log = logging.getLogger(__name__)


class QuoteHub:
    """Thread-safe store of the newest good quote per code. `version` grows by one per accepted quote."""

    def __init__(self, settings, clock):
        self._settings = settings
        self._clock = clock
        self._cond = threading.Condition()
        self._quotes: dict[str, Quote] = {}
        self._listeners: list[Callable[[Quote], None]] = []
        self._reported: dict[str, str] = {}  # code -> last problem logged, so a bad feed does not flood the log
        self.version = 0
        self.rejected = 0
        self.last_error = ""
        self.last_error_time: Optional[datetime] = None
        self._reference = StalenessReference()

    # ---- publishing
    def publish(self, quote: Quote) -> bool:
        """Store `quote` and notify, or refuse it (False) when its price is unusable or it is stale."""
        problem = quote_problem(quote) or self._age_problem(quote)
        if problem:
            self._refuse(quote.code, problem)
            return False
        with self._cond:
            current = self._quotes.get(quote.code)
            if current is not None and quote.time < current.time:
                return False  # an out-of-order delivery: the newer quote already stands
            self._quotes[quote.code] = quote
            self.version += 1
            self._cond.notify_all()
        self._reported.pop(quote.code, None)
        for listener in list(self._listeners):
            try:
                listener(quote)
            except Exception:  # one faulty subscriber must not stop the feed for the others
                log.exception("行情订阅者处理 %s 的行情时出错", quote.code)
        return True

    def subscribe(self, listener: Callable[[Quote], None]) -> None:
        """`listener(quote)` runs in the publisher's thread for every accepted quote; keep it short."""
        self._listeners.append(listener)

    # ---- reading
    def latest(self, code: str) -> Quote | None:
        """The newest quote of `code`, or None when there is none or it has gone stale."""
        with self._cond:
            quote = self._quotes.get(code)
        if quote is None or self._age_problem(quote):
            return None
        return quote

    def latest_many(self, codes) -> dict[str, Quote]:
        """The newest fresh quote of each of `codes` that has one, judged against one staleness reference for
        the whole batch (the watch monitor reads thousands of tasks' quotes per pass)."""
        limit = float(self._settings.get("QUOTE_STALE_SECONDS"))
        oldest = self._reference.at(self._clock.now(), self._clock.calendar) - timedelta(seconds=limit)
        with self._cond:
            found = [(code, self._quotes.get(code)) for code in codes]
        return {code: quote for code, quote in found if quote is not None and quote.time >= oldest}

    def last_seen(self, code: str) -> Quote | None:
        """The newest accepted quote even when stale (for display with its age, never for rules)."""
        with self._cond:
            return self._quotes.get(code)

    def wait_for_update(self, seen_version: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen_version, timeout=timeout)
            return self.version

    def codes(self) -> list[str]:
        with self._cond:
            return sorted(self._quotes)

    # ---- internals
    def _age_problem(self, quote: Quote) -> str:
        limit = float(self._settings.get("QUOTE_STALE_SECONDS"))
        reference = self._reference.at(self._clock.now(), self._clock.calendar)
        if quote.time < reference - timedelta(seconds=limit):
            return f"行情过期：{quote.code} 的行情时间 {quote.time:%Y-%m-%d %H:%M:%S} 已超过 {limit:g} 秒未更新"
        return ""

    def _refuse(self, code: str, problem: str) -> None:
        with self._cond:
            self.rejected += 1
            self.last_error = problem
            self.last_error_time = self._clock.now()
        if self._reported.get(code) != problem:
            self._reported[code] = problem
            log.warning("拒绝行情：%s", problem)


class StalenessReference:
    """last_trading_moment(now), asking the calendar once per minute: every session boundary falls on a whole
    minute, so within one minute the answer is either `now` itself (a trading session) or one fixed moment.
    A monitor pass reads a thousand quotes at one `now`; each used to ask the calendar again."""

    def __init__(self):
        self._cached: tuple = (None, None, None)  # (minute, calendar, fixed moment or None while trading)

    def at(self, now: datetime, calendar=None) -> datetime:
        minute = now.replace(second=0, microsecond=0)
        cached_minute, cached_calendar, fixed = self._cached  # one tuple: a reader never sees half an update
        if cached_minute != minute or cached_calendar is not calendar:
            trading = market_rules.session_at(now, calendar) in market_rules.TRADING_SESSIONS
            fixed = None if trading else last_trading_moment(now, calendar)
            self._cached = (minute, calendar, fixed)
        return now if fixed is None else fixed


def quote_problem(quote: Quote) -> str:
    """Chinese reason why a quote's prices cannot be used, or '' when they can."""
    for label, value in (("现价", quote.price), ("昨收价", quote.prev_close)):
        if value is None or not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
            return f"行情数据无效：{quote.code} 的{label}为 {value}"
        if value <= 0:
            return f"行情数据无效：{quote.code} 的{label}为 {value:g}（不大于 0）"
    return ""


def last_trading_moment(now: datetime, calendar=None) -> datetime:
    """The latest market moment at or before `now` when prices could change. After the close (or at lunch,
    or on a holiday) the last trade price stays current, so staleness is measured from here."""
    session = market_rules.session_at(now, calendar)
    if session in market_rules.TRADING_SESSIONS:
        return now
    day, moment = now.date(), now.time()
    if market_rules.is_trading_day(day, calendar):
        if moment >= market_rules.MARKET_CLOSE:
            return datetime.combine(day, market_rules.MARKET_CLOSE)
        if moment >= market_rules.MORNING_CLOSE:
            return datetime.combine(day, market_rules.MORNING_CLOSE)
        if moment >= market_rules.CALL_AUCTION_END:
            return datetime.combine(day, market_rules.CALL_AUCTION_END)
    previous = (calendar or market_rules.DEFAULT_CALENDAR).previous_trading_day(day)
    return datetime.combine(previous, market_rules.MARKET_CLOSE)
