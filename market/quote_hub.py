"""The latest validated quote per stock and its push delivery: refuses zero/NaN/stale quotes so that no rule
ever acts on them, wakes waiting threads and calls subscribers. Age is judged on the feed's own clock
(`feed_clock.FeedClock`), never on the box clock alone. Fetching quotes is the data sources' job."""
from __future__ import annotations

import logging
import math
import threading
from datetime import datetime, timedelta
from typing import Callable, Optional

import market_rules
from market.feed_clock import FeedClock
from core.models import Quote

log = logging.getLogger(__name__)


class QuoteHub:
    """Thread-safe store of the newest good quote per code. `version` grows by one per accepted quote."""

    def __init__(self, settings, clock, feed_clock: Optional[FeedClock] = None):
        self._settings = settings
        self._clock = clock
        self.feed_clock = feed_clock or FeedClock(settings, clock)
        self._cond = threading.Condition()
        self._quotes: dict[str, Quote] = {}
        self._refused_for_age: dict[str, Quote] = {}  # code -> a quote refused for its age after the last accepted one
        self._listeners: list[Callable[[Quote], None]] = []
        self._first_listeners: list[Callable[[Quote], None]] = []  # run before the quote is visible (subscribe)
        self._refusals = RefusalLog(settings, clock)
        self.version = 0
        self.rejected = 0
        self.last_error = ""
        self.last_error_time: Optional[datetime] = None
        self._reference = StalenessReference()

    # ---- publishing
    def publish(self, quote: Quote) -> bool:
        """Store `quote` and notify, or refuse it (False) when its price is unusable or it is stale."""
        problem = quote_problem(quote)
        if not problem:
            self.feed_clock.observe(quote)  # a stale-looking quote still tells how far off the box clock is
            problem = self._age_problem(quote)
            if problem:
                with self._cond:
                    self._refused_for_age[quote.code] = quote
        if problem:
            self._refuse(quote.code, problem)
            return False
        if self._first_listeners:
            if self._out_of_order(quote):
                return False
            self._deliver(self._first_listeners, quote)
        with self._cond:
            if self._out_of_order(quote):
                return False  # an out-of-order delivery: the newer quote already stands
            self._quotes[quote.code] = quote
            self._refused_for_age.pop(quote.code, None)
            self.version += 1
            self._cond.notify_all()
        self._deliver(self._listeners, quote)
        return True

    def subscribe(self, listener: Callable[[Quote], None], first: bool = False) -> None:
        """`listener(quote)` runs in the publisher's thread for every accepted quote; keep it short.
        `first`: it runs before the quote is stored, before waiting threads (the monitors) wake and before the
        other listeners — for state every rule must see already updated when it meets the quote (the ex-rights
        keeper adjusts the day's levels at the first quote of an ex-date, issue 28 §2)."""
        (self._first_listeners if first else self._listeners).append(listener)

    # ---- the feed's clock
    def feed_now(self, source: Optional[str] = None) -> datetime:
        """The market time on the feed's own clock: the local market clock corrected by the estimated offset of
        the feed's timestamps (`source` None: the source that delivered last). Quote ages are measured against
        this, so whoever judges a quote's freshness (the protection sentinel, the stale-quote alarm) should use
        `feed_now(quote.source) - quote.time`. Equal to the clock's now() under a replay and before any sample."""
        return self.feed_clock.now(source)

    def clock_skew(self, source: Optional[str] = None) -> float:
        """Estimated seconds the feed's clock is ahead of the local market clock (negative: the box is fast)."""
        return self.feed_clock.skew(source)

    def on_clock_skew_alarm(self, listener: Callable[..., None]) -> None:
        """`listener(message, source=…, skew_seconds=…)` once when the skew passes CLOCK_SKEW_ALARM_SECONDS."""
        self.feed_clock.on_alarm(listener)

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
        limit = timedelta(seconds=float(self._settings.get("QUOTE_STALE_SECONDS")))
        oldest: dict[str, datetime] = {}  # source -> the oldest fresh quote time
        with self._cond:
            found = [(code, self._quotes.get(code)) for code in codes]
        fresh = {}
        for code, quote in found:
            if quote is None:
                continue
            if quote.source not in oldest:
                oldest[quote.source] = self._reference.at(self.feed_now(quote.source), self._clock.calendar) - limit
            if quote.time >= oldest[quote.source]:
                fresh[code] = quote
        return fresh

    def last_seen(self, code: str) -> Quote | None:
        """The newest accepted quote even when stale (for display with its age, never for rules)."""
        with self._cond:
            return self._quotes.get(code)

    def newest_received(self, code: str) -> Quote | None:
        """The newest quote that ARRIVED for `code`: one refused for its age (stale, or stamped ahead of the feed's
        clock) after the last accepted one, else the last accepted one. Whoever judges whether the feed is usable
        (the protection sentinel) reads this: quotes that keep arriving but are all refused must not hide behind
        an older accepted one."""
        with self._cond:
            return self._refused_for_age.get(code) or self._quotes.get(code)

    def wait_for_update(self, seen_version: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen_version, timeout=timeout)
            return self.version

    def codes(self) -> list[str]:
        with self._cond:
            return sorted(self._quotes)

    # ---- internals
    def _out_of_order(self, quote: Quote) -> bool:
        with self._cond:
            current = self._quotes.get(quote.code)
            return current is not None and quote.time < current.time and not self._before_clock_step(current)

    @staticmethod
    def _deliver(listeners: list[Callable[[Quote], None]], quote: Quote) -> None:
        for listener in list(listeners):
            try:
                listener(quote)
            except Exception:  # one faulty subscriber must not stop the feed for the others
                log.exception("行情订阅者处理 %s 的行情时出错", quote.code)

    def _age_problem(self, quote: Quote) -> str:
        limit = float(self._settings.get("QUOTE_STALE_SECONDS"))
        feed_now = self.feed_now(quote.source)
        reference = self._reference.at(feed_now, self._clock.calendar)
        if quote.time < reference - timedelta(seconds=limit):
            return f"行情过期：{quote.code} 的行情时间 {quote.time:%Y-%m-%d %H:%M:%S} 已超过 {limit:g} 秒未更新"
        ahead = (quote.time - feed_now).total_seconds()
        if ahead > limit and not self._clock.is_replay:  # a bogus future stamp would shut out every later tick
            return f"行情时间异常：{quote.code} 的行情时间 {quote.time:%Y-%m-%d %H:%M:%S} 比行情时钟超前 {ahead:.0f} 秒"
        return ""

    def _before_clock_step(self, current: Quote) -> bool:
        """`current` lies more than QUOTE_STALE_SECONDS ahead of its feed's clock: stamped before that clock
        stepped back (issue 25), so it must not shut out the feed's later (lower-stamped) ticks."""
        ahead = (current.time - self.feed_now(current.source)).total_seconds()
        return ahead > float(self._settings.get("QUOTE_STALE_SECONDS")) and not self._clock.is_replay

    def _refuse(self, code: str, problem: str) -> None:
        with self._cond:
            self.rejected += 1
            self.last_error = problem
            self.last_error_time = self._clock.now()
        self._refusals.refused(code, problem)


class RefusalLog:
    """At most one log line per stock and QUOTE_REFUSAL_LOG_SECONDS for refused quotes (a skewed or frozen feed
    is refused at every tick: 94 lines in 30 s), each line counting the refusals it stood for; a different
    kind of problem is logged at once."""

    MAX_CODES = 20000  # bound on the per-code memory

    def __init__(self, settings, clock):
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, tuple[str, datetime]] = {}  # code -> (kind of problem, when logged)
        self._suppressed: dict[str, int] = {}

    def refused(self, code: str, problem: str) -> None:
        kind = problem.split("：", 1)[0]
        now = self._clock.now()
        interval = float(self._settings.get("QUOTE_REFUSAL_LOG_SECONDS"))
        with self._lock:
            last = self._last.get(code)
            if last is not None and last[0] == kind and (now - last[1]).total_seconds() < interval:
                self._suppressed[code] = self._suppressed.get(code, 0) + 1
                return
            if last is None and len(self._last) >= self.MAX_CODES:
                self._last.clear()
                self._suppressed.clear()
            self._last[code] = (kind, now)
            suppressed = self._suppressed.pop(code, 0)
        if suppressed:
            log.warning("拒绝行情：%s（上次记录后另有 %d 笔同类行情被拒，未逐条记录）", problem, suppressed)
        else:
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
