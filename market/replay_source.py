"""The replay data source: plays daily bars (a BarFeed) as intraday quotes on the accelerated ReplayClock,
following the DESIGN §7 price path, and hands each day's bar to the bar store once the day has closed."""
from __future__ import annotations

import bisect
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import accumulate
from typing import Callable, Mapping, Optional, Sequence

import market_rules
from market.bar_store import DailyBar
from market import ex_rights
from market.clock import ReplayClock
from core.models import DataUnavailable, Quote
from market.replay_feeds import BarFeed
from market.source_base import Publish, SourceStep

log = logging.getLogger(__name__)

SESSION_SECONDS = 4 * 3600  # 09:30–11:30 and 13:00–15:00
MORNING_SECONDS = 2 * 3600
DEFAULT_START_INDEX = 60  # the 61st available day, so that MACD(12,26,9) has history before the first tick


# ---- pure path functions ----------------------------------------------------------------------------

def path_points(bar: DailyBar) -> list[float]:
    """O→L→H→C when the bar closes at or above its open, else O→H→L→C (DESIGN §7)."""
    if bar.close >= bar.open:
        return [bar.open, bar.low, bar.high, bar.close]
    return [bar.open, bar.high, bar.low, bar.close]


def sample_path(code: str, points: Sequence[float], count: int) -> list[float]:
    """`count` prices walking the path through `points` tick by tick, sampled evenly along its length and
    always containing every point; between points the prices move monotonically."""
    tick = float(market_rules.tick_size(code))
    decimals = 3 if tick < 0.01 else 2
    ticks = [round(p / tick) for p in points]
    lengths = [abs(b - a) for a, b in zip(ticks, ticks[1:])]
    keys = [sum(lengths[:i]) for i in range(len(points))]
    return [round(_tick_at(ticks, lengths, j) * tick, decimals) for j in sample_indices(keys[-1], keys, count)]


def sample_indices(total: int, keys: Sequence[int], count: int) -> list[int]:
    """`count` ascending positions in 0..total spread evenly, each of `keys` forced onto its nearest slot."""
    if total == 0:
        return [0] * count
    slots = [round(i * total / (count - 1)) for i in range(count)]
    taken: set[int] = set()
    for key in sorted(set(keys)):
        guess = round(key * (count - 1) / total)  # the slot whose even position is nearest to the key
        window = range(max(0, guess - len(keys) - 1), min(count, guess + len(keys) + 2))
        slot = min((j for j in window if j not in taken), key=lambda j: (abs(slots[j] - key), abs(j - guess)))
        slots[slot] = key
        taken.add(slot)
    return sorted(slots)


def slot_time(day: date, slot: int, count: int) -> datetime:
    """Market time of tick `slot` of `count`, spread over 09:30–11:30 and 13:00–15:00 (last one before 15:00)."""
    seconds = slot * SESSION_SECONDS / count
    if seconds < MORNING_SECONDS:
        return datetime.combine(day, market_rules.MORNING_OPEN) + timedelta(seconds=seconds)
    return datetime.combine(day, market_rules.AFTERNOON_OPEN) + timedelta(seconds=seconds - MORNING_SECONDS)


def replay_days(feed: BarFeed, start: str) -> tuple[list[date], int]:
    """The feed's days and the index of the first one to replay: `start` (YYYY-MM-DD) or the 61st day."""
    days = feed.trading_days()
    if not days:
        return days, 0
    if start:
        try:
            first = date.fromisoformat(start)
        except ValueError:
            raise DataUnavailable("REPLAY_START_INVALID", f"REPLAY_START_DATE 格式错误：「{start}」，应为 YYYY-MM-DD") from None
        return days, min(bisect.bisect_left(days, first), len(days) - 1)
    return days, min(DEFAULT_START_INDEX, len(days) - 1)


class ReplayProgress:
    """Remembers the last replay day started per data set (in market.db), so that a restarted daemon goes on
    from the next day: the market clock, T+1 and the persisted positions never see time run backwards."""

    MIGRATIONS = ("CREATE TABLE IF NOT EXISTS replay_progress (feed TEXT PRIMARY KEY, day TEXT NOT NULL)",
                  "CREATE TABLE IF NOT EXISTS replay_pace (feed TEXT NOT NULL, origin REAL NOT NULL, day TEXT NOT NULL, "
                  "PRIMARY KEY (feed, origin))")

    def __init__(self, db, feed_key: str):
        from persistence.storage import migrate

        self._db = db
        self._key = feed_key
        migrate(db, "replay_progress", self.MIGRATIONS)

    def last_started(self) -> Optional[date]:
        row = self._db.query_one("SELECT day FROM replay_progress WHERE feed=?", (self._key,))
        return date.fromisoformat(row["day"]) if row else None

    def latest_of_data_set(self, label: str) -> Optional[date]:
        """The last day started on the data set `label` under any REPLAY_START_DATE (keys are "label|start"):
        a restart that leaves the start date out, or names an earlier one, must not take the clock back."""
        prefix = f"{label}|"
        row = self._db.query_one("SELECT MAX(day) FROM replay_progress WHERE substr(feed, 1, ?)=?",
                                 (len(prefix), prefix))
        return date.fromisoformat(row[0]) if row and row[0] else None

    def record(self, day: date) -> None:
        with self._db.transaction() as conn:
            conn.execute("INSERT INTO replay_progress(feed, day) VALUES(?, ?) "
                         "ON CONFLICT(feed) DO UPDATE SET day=excluded.day", (self._key, day.isoformat()))

    def pace_origin_day(self, origin: float, first_day: date) -> date:
        """The day step 0 of the shared pace `origin` belongs to: `first_day` the first time this origin is
        seen, the same day after a restart under the same origin (so the restarted process stays in step)."""
        with self._db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO replay_pace(feed, origin, day) VALUES(?,?,?)",
                         (self._key, origin, first_day.isoformat()))
            row = conn.execute("SELECT day FROM replay_pace WHERE feed=? AND origin=?", (self._key, origin)).fetchone()
        return date.fromisoformat(row["day"])


def resume_index(days: list[date], start_index: int, last_started: Optional[date]) -> int:
    """The day after the last one started, when that is later than the configured start."""
    if last_started is None:
        return start_index
    return max(start_index, bisect.bisect_right(days, last_started))


def _tick_at(ticks: list[int], lengths: list[int], position: int) -> int:
    for start, length, end in zip(ticks, lengths, ticks[1:]):
        if position <= length:
            return start + position if end >= start else start - position
        position -= length
    return ticks[-1]


# ---- the source ---------------------------------------------------------------------------------------

@dataclass
class _DayPlan:
    bar: DailyBar
    prev_close: float
    limit_down: Optional[float]
    limit_up: Optional[float]
    prices: list[float]
    highs: list[float]  # running high after each tick
    lows: list[float]


@dataclass(frozen=True)
class ReplayPace:
    """A replay clock shared by several processes: step k (counted from the first step of `origin_index`)
    happens at wall time `origin + k × step seconds`, so accounts started apart (or restarted) see the same
    quotes at the same market times. A process that is behind runs its due steps without waiting."""

    origin: float  # Unix seconds of step 0
    origin_index: int  # index (in the replay's days) of the day step 0 belongs to
    wall: Callable[[], float] = field(default=time.time, compare=False)


class ReplaySource:
    """Each `run_once` is one market step: a tick for every watched stock that trades that day, or (after the
    last tick) the 15:00 close, when the day's bars are handed over and the replay moves to the next day."""

    def __init__(self, settings, clock: ReplayClock, feed: BarFeed, days: list[date], start_index: int,
                 on_day_start: Callable[[date], None] = lambda day: None, pace: Optional[ReplayPace] = None,
                 events: Optional[Mapping[str, Sequence[ex_rights.CorporateAction]]] = None):
        """`events`: the ex-rights events per code (market.ex_rights.events_by_code) of raw bars; on an ex-date
        a quote's previous close is the exchange's reference price and the day's limits are computed from it."""
        self._settings = settings
        self._events = events or {}
        self._pace = pace
        self._on_day_start = on_day_start
        self._clock = clock
        self._feed = feed
        self._days = days
        self._day_index = start_index
        self._ticks = int(settings.get("REPLAY_TICKS_PER_DAY"))
        self._slot = 0  # 0..ticks-1: intraday ticks; == ticks: the close step
        self._lock = threading.Lock()
        self._watch: list[str] = []
        self._needs_history: list[str] = []
        self._plans: dict[str, Optional[_DayPlan]] = {}
        self._errors: list[str] = []
        self._finished_reported = False
        self._reported: set[str] = set()
        self.name = feed.source_name
        self.label = feed.label
        self.connected = bool(days)
        if not days:
            self._errors.append(f"回放数据为空：{feed.label} 中没有任何日线")

    @staticmethod
    def start_moment(days: list[date], start_index: int) -> datetime:
        """Where the replay clock starts: just before the first replayed open."""
        return datetime.combine(days[start_index], market_rules.CALL_AUCTION_END)

    def start(self, publish: Publish) -> None:
        """The replay is pulled step by step through `run_once`; nothing to connect."""

    @property
    def finished(self) -> bool:
        return self._day_index >= len(self._days)

    @property
    def current_day(self) -> Optional[date]:
        return None if self.finished else self._days[self._day_index]

    def set_watchlist(self, codes: Sequence[str]) -> None:
        wanted = []
        for raw in codes:
            try:
                code = market_rules.normalize_code(raw)
            except ValueError as exc:
                self._report(str(exc))
                continue
            if not self._feed.bars(code):
                self._report(f"回放数据中没有 {code} 的日线（{self._feed.label}），该股票没有行情")
                continue
            wanted.append(code)
        with self._lock:
            added = [c for c in dict.fromkeys(wanted) if c not in self._watch]
            self._watch = list(dict.fromkeys(wanted))
            self._needs_history += added

    def watchlist(self) -> list[str]:
        with self._lock:
            return list(self._watch)

    def stock_name(self, code: str) -> str:
        namer = getattr(self._feed, "stock_name", None)
        return namer(code) if namer else ""

    def has_code(self, code: str) -> bool:
        return bool(self._feed.bars(code))

    def is_suspended(self, code: str) -> bool:
        """The stock traded before the replayed day but the data set has no bar for it that day (停牌)."""
        day = self.current_day
        if day is None:
            return False
        days = [b.day for b in self._feed.bars(code)]
        index = bisect.bisect_left(days, day)
        return index > 0 and (index >= len(days) or days[index] != day)

    def quote_now(self, code: str) -> Optional[Quote]:
        """The quote `code` has at this moment of the replay (the last tick played, or the last close before
        the next day opens), for a code asked for on demand before its first tick; None when the folder has
        no bar for it today (suspended or not in the data)."""
        if self.finished or not self.has_code(code):
            return None
        slot, day = self._slot, self._days[self._day_index]
        if slot > 0:
            plan = self._plan(code, day)
            if plan is None:
                return None
            tick = slot - 1
            volume = round(plan.bar.volume * (tick + 1) / self._ticks / market_rules.LOT) * market_rules.LOT
            return self._quote(code, plan, plan.prices[tick], plan.highs[tick], plan.lows[tick], volume,
                               self._clock.now())
        if self._day_index == 0:
            return None  # nothing has been played yet
        previous = self._days[self._day_index - 1]
        plan = self._make_plan(code, previous)
        if plan is None:
            return None
        return self._quote(code, plan, plan.bar.close, plan.bar.high, plan.bar.low, plan.bar.volume,
                           datetime.combine(previous, market_rules.MARKET_CLOSE))

    def run_once(self) -> SourceStep:
        early = self._seconds_until_due()
        if early > 0:
            return SourceStep(wait=early)
        step = SourceStep(wait=self._step_seconds())
        with self._lock:
            step.errors, self._errors = self._errors, []
            watch, history_codes, self._needs_history = list(self._watch), self._needs_history, []
        if self.finished:
            self._report_end(step)
            return step
        day = self._days[self._day_index]
        for code in history_codes:
            step.history[code] = self._bars_before(code, day)
        if self._slot == 0:
            self._on_day_start(day)
        if self._slot < self._ticks:
            self._clock.set(slot_time(day, self._slot, self._ticks))
            step.quotes = [q for q in (self._tick_quote(code, day) for code in watch) if q is not None]
            self._slot += 1
        else:
            self._clock.set(datetime.combine(day, market_rules.MARKET_CLOSE))
            step.quotes = [q for q in (self._close_quote(code, day) for code in watch) if q is not None]
            step.bars = [plan.bar for plan in (self._plan(code, day) for code in watch) if plan is not None]
            self._day_index += 1
            self._slot = 0
            self._plans = {}
        if self._pace is not None:
            step.wait = max(0.0, self._seconds_until_due())
        return step

    def _step_seconds(self) -> float:
        return float(self._settings.get("REPLAY_SECONDS_PER_DAY")) / (self._ticks + 1)

    def _seconds_until_due(self) -> float:
        """With a shared pace: real seconds until the next step is due (≤ 0: due now). Without: 0."""
        if self._pace is None:
            return 0.0
        number = (self._day_index - self._pace.origin_index) * (self._ticks + 1) + self._slot
        return self._pace.origin + number * self._step_seconds() - self._pace.wall()

    def close(self) -> None:
        self.connected = False

    # ---- internals
    def _tick_quote(self, code: str, day: date) -> Optional[Quote]:
        plan = self._plan(code, day)
        if plan is None:
            return None  # suspended (no bar) that day
        slot = self._slot
        volume = round(plan.bar.volume * (slot + 1) / self._ticks / market_rules.LOT) * market_rules.LOT
        return self._quote(code, plan, plan.prices[slot], plan.highs[slot], plan.lows[slot], volume, self._clock.now())

    def _close_quote(self, code: str, day: date) -> Optional[Quote]:
        plan = self._plan(code, day)
        if plan is None:
            return None
        return self._quote(code, plan, plan.bar.close, plan.bar.high, plan.bar.low, plan.bar.volume,
                           datetime.combine(day, market_rules.MARKET_CLOSE))

    def _quote(self, code, plan: _DayPlan, price, high, low, volume, moment) -> Quote:
        return Quote(code=code, price=price, prev_close=plan.prev_close, time=moment, source=self.name,
                     limit_up=plan.limit_up, limit_down=plan.limit_down, open=plan.bar.open, high=high, low=low,
                     volume=float(volume), name=self.stock_name(code))

    def _plan(self, code: str, day: date) -> Optional[_DayPlan]:
        if code not in self._plans:
            self._plans[code] = self._make_plan(code, day)
        return self._plans[code]

    def _make_plan(self, code: str, day: date) -> Optional[_DayPlan]:
        bars = self._feed.bars(code)
        index = bisect.bisect_left([b.day for b in bars], day)
        if index >= len(bars) or bars[index].day != day:
            return None
        bar = bars[index]
        if index == 0:  # first listed day: no previous close, so no limits to apply
            prev_close, limit_down, limit_up = bar.open, None, None
        else:
            prev_close = self._limit_reference(code, bars[index - 1], day)
            limit_down, limit_up = market_rules.price_limits(code, prev_close,
                                                             market_rules.is_st_name(self.stock_name(code)), day)
        prices = sample_path(code, path_points(bar), self._ticks)
        return _DayPlan(bar, prev_close, limit_down, limit_up, prices, list(accumulate(prices, max)),
                        list(accumulate(prices, min)))

    def _limit_reference(self, code: str, previous: DailyBar, day: date) -> float:
        """The day's previous close as the exchange publishes it: on an ex-date (or the first bar after one the
        stock was suspended on) the ex-rights reference price rounded to the tick, from which the exchanges
        compute the day's limits (SSE Trading Rules §3.3.17, §4.3.1; SZSE Trading Rules §3.3.19, §4.4.1; see
        market/ex_rights.py), else the previous bar's close."""
        reference = previous.close
        for action in ex_rights.events_between(self._events.get(code, ()), previous.day, day):
            reference = ex_rights.limit_reference(code, reference, action)
        return reference

    def _bars_before(self, code: str, day: date) -> list[DailyBar]:
        return [b for b in self._feed.bars(code) if b.day < day]

    def _report(self, message: str) -> None:
        """Hand `message` to the next step once (the same problem is not repeated at every watchlist update)."""
        with self._lock:
            if message in self._reported:
                return
            self._reported.add(message)
            self._errors.append(message)

    def _report_end(self, step: SourceStep) -> None:
        step.wait = float(self._settings.get("MONITOR_INTERVAL"))
        if not self._finished_reported and self._days:
            self._finished_reported = True
            step.errors.append(f"回放结束：{self.label} 的数据已播放到最后一天 {self._days[-1]}")

