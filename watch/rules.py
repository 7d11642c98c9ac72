"""Watch tasks (智能盯盘) as data, with their pure condition functions `(task, quote, daily context) -> fired?`.
No I/O, no clock: the watch monitor passes the quote, the daily facts of completed bars and "now". Request
bodies are parsed in watch.requests."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import Enum
from functools import lru_cache
from typing import Any, Callable, Optional

import market_rules
from core.models import Quote

# Levels are compared after rounding to 1e-9 so that a price exactly on a level (e.g. 10 × 1.1 in binary)
# counts as reaching it, the same convention as strategy.py.
_DIGITS = 9
MINUTES_PER_DAY = 240.0  # continuous trading minutes of an A-share day (09:30–11:30, 13:00–15:00)
VOLUME_RATIO_DAYS = 5  # 量比 compares with the average minute volume of the previous five days
MAX_DAYS = 250


class ConditionType(str, Enum):
    PRICE_ABOVE = "price_above"
    PRICE_BELOW = "price_below"
    CHANGE_ABOVE = "change_above"  # percent change from the previous close
    CHANGE_BELOW = "change_below"
    NEAR_LIMIT_UP = "near_limit_up"  # within value % of limit-up
    NEAR_LIMIT_DOWN = "near_limit_down"
    NEW_HIGH = "new_high"  # above the highest high of the last `days` completed bars
    NEW_LOW = "new_low"
    MACD_GOLDEN = "macd_golden"  # on the last completed daily bar
    MACD_DEAD = "macd_dead"
    VOLUME_RATIO_ABOVE = "volume_ratio_above"
    IN_ZONE = "in_zone"  # low ≤ price ≤ high

    @property
    def label(self) -> str:
        return CONDITION_LABELS[self]


CONDITION_LABELS = {
    ConditionType.PRICE_ABOVE: "价格≥", ConditionType.PRICE_BELOW: "价格≤",
    ConditionType.CHANGE_ABOVE: "涨幅≥", ConditionType.CHANGE_BELOW: "涨幅≤",
    ConditionType.NEAR_LIMIT_UP: "接近涨停", ConditionType.NEAR_LIMIT_DOWN: "接近跌停",
    ConditionType.NEW_HIGH: "创N日新高", ConditionType.NEW_LOW: "创N日新低",
    ConditionType.MACD_GOLDEN: "MACD金叉", ConditionType.MACD_DEAD: "MACD死叉",
    ConditionType.VOLUME_RATIO_ABOVE: "量比≥", ConditionType.IN_ZONE: "进入区间",
}
NEEDS_VALUE = {ConditionType.PRICE_ABOVE, ConditionType.PRICE_BELOW, ConditionType.CHANGE_ABOVE,
                ConditionType.CHANGE_BELOW, ConditionType.NEAR_LIMIT_UP, ConditionType.NEAR_LIMIT_DOWN,
                ConditionType.VOLUME_RATIO_ABOVE}
NEEDS_DAYS = {ConditionType.NEW_HIGH, ConditionType.NEW_LOW}
# Conditions that need completed daily bars (the monitor loads the context only for tasks that have them).
DAILY_TYPES = NEEDS_DAYS | {ConditionType.MACD_GOLDEN, ConditionType.MACD_DEAD, ConditionType.VOLUME_RATIO_ABOVE}


class ActionType(str, Enum):
    NOTIFY = "notify"
    BUY = "buy"
    SELL = "sell"

    @property
    def label(self) -> str:
        return {"notify": "仅提醒", "buy": "买入信号", "sell": "卖出信号"}[self.value]


class TaskStatus(str, Enum):
    ACTIVE = "active"
    STOPPED = "stopped"  # paused by the operator
    DONE = "done"  # fired once and does not repeat
    EXPIRED = "expired"

    @property
    def label(self) -> str:
        return {"active": "运行中", "stopped": "已暂停", "done": "已完成", "expired": "已过期"}[self.value]


@dataclass(frozen=True)
class Condition:
    type: ConditionType
    value: Optional[float] = None
    low: Optional[float] = None
    high: Optional[float] = None
    days: Optional[int] = None

    def describe(self) -> str:
        if self.type is ConditionType.IN_ZONE:
            return f"进入区间 [{self.low:g}, {self.high:g}]"
        if self.type in NEEDS_DAYS:
            return f"创{self.days}日新{'高' if self.type is ConditionType.NEW_HIGH else '低'}"
        if self.type in (ConditionType.CHANGE_ABOVE, ConditionType.CHANGE_BELOW, ConditionType.NEAR_LIMIT_UP,
                         ConditionType.NEAR_LIMIT_DOWN):
            return f"{self.type.label} {self.value:g}%"
        if self.value is not None:
            return f"{self.type.label} {self.value:g}"
        return self.type.label


@dataclass(frozen=True)
class WatchAction:
    type: ActionType = ActionType.NOTIFY
    amount: Optional[float] = None  # buy: CNY
    volume: Optional[int] = None  # sell: shares
    ratio: Optional[float] = None  # sell: share of available, (0, 1]


@dataclass(frozen=True)
class Exits:
    """Exit parameters an entry task hands to the position it opens (become its per-stock parameters)."""

    stop_loss_ratio: Optional[float] = None
    take_profit_ratio: Optional[float] = None
    take_profit_sell_ratio: Optional[float] = None
    dynamic_take_profit: Optional[tuple[tuple[float, float], ...]] = None

    def as_params(self) -> dict[str, Any]:
        """Config keys → values, for the per-stock parameter store."""
        keys = {"stop_loss_ratio": "STOP_LOSS_RATIO", "take_profit_ratio": "INITIAL_TAKE_PROFIT_RATIO",
                "take_profit_sell_ratio": "INITIAL_TAKE_PROFIT_RATIO_PERCENTAGE",
                "dynamic_take_profit": "DYNAMIC_TAKE_PROFIT"}
        return {key: [list(row) for row in value] if isinstance(value, tuple) else value
                for name, key in keys.items() if (value := getattr(self, name)) is not None}


@dataclass(frozen=True)
class WatchTask:
    stock_code: str
    conditions: tuple[Condition, ...]
    sessions_only: bool = True
    repeat_cooldown: float = 0.0  # seconds; 0 = fire once
    expires: Optional[date] = None  # last day the task is active
    action: WatchAction = field(default_factory=WatchAction)
    exits: Optional[Exits] = None
    id: Optional[int] = None
    status: TaskStatus = TaskStatus.ACTIVE
    fired_count: int = 0
    last_fired_at: Optional[datetime] = None
    created_at: Optional[datetime] = None

    @property
    def needs_daily(self) -> bool:
        return any(c.type in DAILY_TYPES for c in self.conditions)

    def describe(self) -> str:
        return "且".join(c.describe() for c in self.conditions)


@dataclass(frozen=True)
class DailyContext:
    """Facts of a stock's completed daily bars before today (the monitor caches one per stock and day)."""

    highs: tuple[float, ...] = ()  # oldest first
    lows: tuple[float, ...] = ()
    volumes: tuple[float, ...] = ()
    macd_cross: Optional[str] = None  # 'golden' | 'death' | None on the last completed bar

    def prior_high(self, days: int) -> Optional[float]:
        return max(self.highs[-days:]) if len(self.highs) >= days else None

    def prior_low(self, days: int) -> Optional[float]:
        return min(self.lows[-days:]) if len(self.lows) >= days else None

    def average_volume(self, days: int = VOLUME_RATIO_DAYS) -> Optional[float]:
        if len(self.volumes) < days:
            return None
        average = sum(self.volumes[-days:]) / days
        return average if average > 0 else None


NO_DAILY = DailyContext()


# ---- eligibility and evaluation ----------------------------------------------------------------------

def task_due(task: WatchTask, now: datetime, in_session: bool) -> bool:
    """Whether the task may fire at `now`: active, not past its expiry, in a session when it asks for one,
    and past its cooldown when it has fired before."""
    if task.status is not TaskStatus.ACTIVE or is_expired(task, now):
        return False
    if task.sessions_only and not in_session:
        return False
    if task.last_fired_at is not None:
        if task.repeat_cooldown <= 0:
            return False
        return (now - task.last_fired_at).total_seconds() >= task.repeat_cooldown
    return True


def is_expired(task: WatchTask, now: datetime) -> bool:
    return task.expires is not None and now.date() > task.expires


def fires(task: WatchTask, quote: Quote, daily: DailyContext, now: datetime, in_session: bool) -> bool:
    """All conditions of a due task hold at this quote."""
    return task_due(task, now, in_session) and all(condition_holds(c, quote, daily) for c in task.conditions)


Check = Callable[[Quote, DailyContext], bool]


def condition_holds(condition: Condition, quote: Quote, daily: DailyContext = NO_DAILY) -> bool:
    return compile_condition(condition)(quote, daily)


def compile_condition(condition: Condition) -> Check:
    """The condition as a function of (quote, daily context), its levels computed once: the monitor compiles
    each task when it loads it, so a pass over thousands of tasks does no dispatch and no rounding."""
    kind = condition.type
    if kind is ConditionType.PRICE_ABOVE:
        level = _level(condition.value)
        return lambda q, d: q.price >= level
    if kind is ConditionType.PRICE_BELOW:
        level = _level(condition.value)
        return lambda q, d: q.price <= level
    if kind is ConditionType.IN_ZONE:
        low, high = _level(condition.low), _level(condition.high)
        return lambda q, d: low <= q.price <= high
    if kind is ConditionType.CHANGE_ABOVE:
        return lambda q, d: change_percent(q) >= condition.value
    if kind is ConditionType.CHANGE_BELOW:
        return lambda q, d: change_percent(q) <= condition.value
    if kind is ConditionType.NEAR_LIMIT_UP:
        return lambda q, d: q.price >= near_limit_up_price(limits(q)[0], condition.value)
    if kind is ConditionType.NEAR_LIMIT_DOWN:
        return lambda q, d: q.price <= near_limit_down_price(limits(q)[1], condition.value)
    if kind is ConditionType.NEW_HIGH:
        def new_high(q: Quote, d: DailyContext) -> bool:
            prior = d.prior_high(condition.days)
            return prior is not None and q.price > prior
        return new_high
    if kind is ConditionType.NEW_LOW:
        def new_low(q: Quote, d: DailyContext) -> bool:
            prior = d.prior_low(condition.days)
            return prior is not None and q.price < prior
        return new_low
    if kind is ConditionType.MACD_GOLDEN:
        return lambda q, d: d.macd_cross == "golden"
    if kind is ConditionType.MACD_DEAD:
        return lambda q, d: d.macd_cross == "death"
    if kind is ConditionType.VOLUME_RATIO_ABOVE:
        def volume_ratio_above(q: Quote, d: DailyContext) -> bool:
            ratio = volume_ratio(q, d)
            return ratio is not None and ratio >= condition.value
        return volume_ratio_above
    raise ValueError(f"未知条件类型 {kind}")


def change_percent(quote: Quote) -> float:
    """Percent change from the previous close, rounded to 1e-9 (10.50 on 10.00 is exactly 5.0)."""
    return round((quote.price / quote.prev_close - 1) * 100, _DIGITS)


def limits(quote: Quote) -> tuple[float, float]:
    """(limit-up, limit-down): the quote's own when the source gives them, else from the previous close."""
    if quote.limit_up and quote.limit_down:
        return quote.limit_up, quote.limit_down
    return _limits(quote.code, quote.prev_close, market_rules.is_st_name(quote.name),
                   quote.time.date() if quote.time else None)


@lru_cache(maxsize=8192)
def _limits(code: str, prev_close: float, is_st: bool, day: Optional[date]) -> tuple[float, float]:
    down, up = market_rules.price_limits(code, prev_close, is_st, day)
    return up, down


def near_limit_up_price(limit_up: float, percent: float) -> float:
    """The price from which the stock is within `percent` % of limit-up."""
    return round(limit_up * (1 - percent / 100), _DIGITS)


def near_limit_down_price(limit_down: float, percent: float) -> float:
    return round(limit_down * (1 + percent / 100), _DIGITS)


def volume_ratio(quote: Quote, daily: DailyContext) -> Optional[float]:
    """量比: today's volume per elapsed trading minute over the average minute volume of the last five days."""
    average = daily.average_volume()
    minutes = trading_minutes_elapsed(quote.time.time())
    if average is None or minutes <= 0 or quote.volume is None or quote.volume <= 0:
        return None
    return round((quote.volume / minutes) / (average / MINUTES_PER_DAY), _DIGITS)


def trading_minutes_elapsed(moment: time) -> float:
    """Continuous-trading minutes of the day up to `moment` (0 before 09:30, 240 after 15:00)."""
    def minutes(t: time) -> float:
        return t.hour * 60 + t.minute + t.second / 60

    now = minutes(moment)
    morning = min(max(now - minutes(time(9, 30)), 0.0), 120.0)
    afternoon = min(max(now - minutes(time(13, 0)), 0.0), 120.0)
    return morning + afternoon


def _level(value: Optional[float]) -> float:
    return round(float(value), _DIGITS)
