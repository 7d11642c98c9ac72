"""Circuit breakers against a runaway loop: counts of automatic orders and of cancels per stock and for the
account, per minute and per day, and the largest order. Tripping one halts automatic trading for the stock
(or pauses it for the account) through the trading state and publishes CIRCUIT_BREAKER; a person resumes.
The limits (MAX_ORDERS_PER_STOCK_PER_DAY, MAX_ORDERS_PER_DAY, MAX_CANCELS_PER_DAY, MAX_ORDER_VOLUME,
MAX_ACTIONS_PER_MINUTE, MAX_ACTIONS_PER_STOCK_PER_MINUTE) stay far below the exchanges' thresholds for
high-frequency programmatic trading (300 orders + cancels per second, or 20,000 per day, for one account)."""
from __future__ import annotations

import logging
import threading
from collections import defaultdict, deque
from datetime import date
from typing import Callable, Optional

from events import EventKind
from models import OrderRejected, Rule

log = logging.getLogger(__name__)

SOURCE = "circuit_breaker"
MINUTE = 60.0
ACCOUNT = ""  # the key of the account-wide counters


def is_automatic(rule: Rule, operator_confirmed: bool) -> bool:
    """Orders no person asked for in that moment (re-priced sells included: a loop can re-price too)."""
    return rule is not Rule.MANUAL and not operator_confirmed


class CircuitBreakers:
    """Thread-safe. The executor calls `check_order` before journaling an automatic order, `record_order`
    after journaling it and `record_cancel` after a cancel request; `daily_counts(day)` seeds the day's order
    counts from the journal so a restart does not reset them."""

    def __init__(self, settings, clock, trading_state, events, daily_counts: Callable[[date], dict[str, int]],
                 now: Optional[Callable[[], float]] = None):
        self._settings = settings
        self._clock = clock
        self._state = trading_state
        self._events = events
        self._daily_counts = daily_counts
        self._now = now or (lambda: clock.now().timestamp())  # market time: a replayed minute is a minute
        self._lock = threading.Lock()
        self._day: Optional[date] = None
        self._orders: dict[str, int] = {}  # stock -> automatic orders today (ACCOUNT: all stocks)
        self._cancels = 0
        self._recent: dict[str, deque] = defaultdict(deque)  # stock (ACCOUNT) -> times of orders and cancels

    def check_order(self, code: str, volume: int, rule: Rule, operator_confirmed: bool = False) -> None:
        """Refuse (and trip) an automatic order larger than MAX_ORDER_VOLUME: a rule that computes such a
        volume is broken. Other limits trip when they are reached (`record_*`)."""
        with self._lock:
            self._roll()  # before this order is journaled: the journal's counts must not include it
        if not is_automatic(rule, operator_confirmed):
            return
        limit = int(self._settings.get("MAX_ORDER_VOLUME"))
        if volume > limit:
            reason = f"单笔自动委托 {volume} 股超过上限 {limit} 股（MAX_ORDER_VOLUME）"
            self._trip_stock(code, reason)
            raise OrderRejected("CIRCUIT_BREAKER", f"熔断：{reason}，{code} 已停止自动交易")

    def record_order(self, code: str, rule: Rule, operator_confirmed: bool = False) -> None:
        if not is_automatic(rule, operator_confirmed):
            return
        with self._lock:
            self._roll()
            self._orders[code] = self._orders.get(code, 0) + 1
            self._orders[ACCOUNT] = self._orders.get(ACCOUNT, 0) + 1
            stock_today, account_today = self._orders[code], self._orders[ACCOUNT]
            stock_minute, account_minute = self._stamp(code)
        self._trip_if(stock_today >= self._limit("MAX_ORDERS_PER_STOCK_PER_DAY"), code,
                      f"{code} 今日自动委托已达 {stock_today} 笔（MAX_ORDERS_PER_STOCK_PER_DAY）")
        self._trip_if(stock_minute >= self._limit("MAX_ACTIONS_PER_STOCK_PER_MINUTE"), code,
                      f"{code} 一分钟内委托与撤单已达 {stock_minute} 笔（MAX_ACTIONS_PER_STOCK_PER_MINUTE）")
        self._trip_if(account_today >= self._limit("MAX_ORDERS_PER_DAY"), ACCOUNT,
                      f"账户今日自动委托已达 {account_today} 笔（MAX_ORDERS_PER_DAY）")
        self._trip_if(account_minute >= self._limit("MAX_ACTIONS_PER_MINUTE"), ACCOUNT,
                      f"账户一分钟内委托与撤单已达 {account_minute} 笔（MAX_ACTIONS_PER_MINUTE）")

    def record_cancel(self, code: str) -> None:
        with self._lock:
            self._roll()
            self._cancels += 1
            cancels = self._cancels
            stock_minute, account_minute = self._stamp(code)
        self._trip_if(cancels >= self._limit("MAX_CANCELS_PER_DAY"), ACCOUNT,
                      f"账户今日撤单已达 {cancels} 笔（MAX_CANCELS_PER_DAY）")
        self._trip_if(stock_minute >= self._limit("MAX_ACTIONS_PER_STOCK_PER_MINUTE"), code,
                      f"{code} 一分钟内委托与撤单已达 {stock_minute} 笔（MAX_ACTIONS_PER_STOCK_PER_MINUTE）")
        self._trip_if(account_minute >= self._limit("MAX_ACTIONS_PER_MINUTE"), ACCOUNT,
                      f"账户一分钟内委托与撤单已达 {account_minute} 笔（MAX_ACTIONS_PER_MINUTE）")

    # ---- internals
    def _limit(self, key: str) -> int:
        return int(self._settings.get(key))

    def _roll(self) -> None:
        today = self._clock.today()
        if today != self._day:
            self._day = today
            self._orders = dict(self._daily_counts(today))
            self._orders[ACCOUNT] = sum(self._orders.values())
            self._cancels = 0

    def _stamp(self, code: str) -> tuple[int, int]:
        """Record one action now; the counts of actions in the last minute for the stock and the account."""
        now = self._now()
        counts = []
        for key in (code, ACCOUNT):
            window = self._recent[key]
            window.append(now)
            while window and window[0] <= now - MINUTE:
                window.popleft()
            counts.append(len(window))
        return counts[0], counts[1]

    def _trip_if(self, reached: bool, scope: str, reason: str) -> None:
        if reached:
            if scope == ACCOUNT:
                self._trip_account(reason)
            else:
                self._trip_stock(scope, reason)

    def _trip_stock(self, code: str, reason: str) -> None:
        if self._state.halt_stock(code, f"熔断：{reason}", SOURCE):
            self._reset(code)
            self._publish(code, reason)

    def _trip_account(self, reason: str) -> None:
        if self._state.pause(f"熔断：{reason}", SOURCE):
            self._reset(ACCOUNT)
            self._publish("", reason)

    def _reset(self, key: str) -> None:
        """After a trip the person who resumes gets a fresh allowance (the halt stops the loop meanwhile)."""
        with self._lock:
            self._recent[key].clear()
            if key == ACCOUNT:
                self._orders = {}
                self._orders[ACCOUNT] = 0
                self._cancels = 0
            else:
                self._orders[key] = 0

    def _publish(self, code: str, reason: str) -> None:
        scope = f"{code} 已停止自动交易" if code else "账户已暂停自动交易"
        message = f"熔断：{reason}，{scope}，请检查后手动恢复"
        log.error(message)
        self._events.emit(EventKind.CIRCUIT_BREAKER, message, stock_code=code, reason=reason)
