"""Circuit breakers against a runaway loop, per order source (STYLE "Budgets belong to sources"): counts of
orders and cancels per source, per stock and for the account, per minute and per day, and the largest order.
Tripping one halts that source only (for the stock, or for the account) through the trading state and
publishes CIRCUIT_BREAKER; a person resumes. Each source also has a daily budget for the account
(MAX_ORDERS_PER_DAY): once used up, its next order is refused ("MAX_ORDERS": an order file waits, a signal stays
queued) and nothing trips. Other sources go on, and the protective exits (stop-loss, dynamic take-profit, MACD
sell-all and their re-priced sells) draw on no budget and are never halted (DESIGN §8a).
The limits (MAX_ORDERS_PER_STOCK_PER_DAY, MAX_ORDERS_PER_DAY, MAX_CANCELS_PER_DAY, MAX_ORDER_VOLUME,
MAX_ACTIONS_PER_MINUTE, MAX_ACTIONS_PER_STOCK_PER_MINUTE) stay far below the exchanges' thresholds for
high-frequency programmatic trading (300 orders + cancels per second, or 20,000 per day, for one account)."""
from __future__ import annotations

import logging
import threading
from collections import defaultdict, deque
from datetime import date
from typing import Callable, Mapping, Optional

from core.events import EventKind
from core.models import OrderRejected, Rule
from core.order_sources import OrderSource, source_of
from core.trading_state import ACCOUNT_KEY

log = logging.getLogger(__name__)

SOURCE = "circuit_breaker"
MINUTE = 60.0
ACCOUNT = ACCOUNT_KEY  # the scope of the account-wide counters

Key = tuple[str, OrderSource]  # (stock code or ACCOUNT, source)


def budget_source(rule: Optional[Rule], operator_confirmed: bool = False) -> Optional[OrderSource]:
    """The budget an order draws from; None for a protective exit (it draws from none). An order a person
    asked for in that moment draws from the manual budget whatever its rule."""
    source = source_of(rule) if rule is not None else OrderSource.MANUAL
    if source is OrderSource.PROTECTIVE:
        return None
    return OrderSource.MANUAL if operator_confirmed else source


class CircuitBreakers:
    """Thread-safe. The executor calls `check_order` before journaling an order, `record_order` after
    journaling it and `record_cancel` after a cancel request, each with the rule of the original order (a
    re-priced sell passes its origin); `daily_counts(day)` gives the day's journaled orders per
    (stock, origin rule value) so a restart does not reset the counts."""

    def __init__(self, settings, clock, trading_state, events,
                 daily_counts: Callable[[date], Mapping[tuple[str, str], int]],
                 now: Optional[Callable[[], float]] = None):
        self._settings = settings
        self._clock = clock
        self._state = trading_state
        self._events = events
        self._daily_counts = daily_counts
        self._now = now or (lambda: clock.now().timestamp())  # market time: a replayed minute is a minute
        self._lock = threading.Lock()
        self._day: Optional[date] = None
        self._orders: dict[Key, int] = {}  # orders today per (stock, source) and (ACCOUNT, source)
        self._cancels: dict[OrderSource, int] = {}
        self._recent: dict[Key, deque] = defaultdict(deque)  # times of orders and cancels

    def check_order(self, code: str, volume: int, rule: Rule, operator_confirmed: bool = False) -> None:
        """Refuse an order beyond its source's daily budget (MAX_ORDERS_PER_DAY; nothing trips). Refuse (and
        trip) an automatic order larger than MAX_ORDER_VOLUME: a rule that computes such a volume is broken.
        Other limits trip when they are reached (`record_*`)."""
        with self._lock:
            self._roll()  # before this order is journaled: the journal's counts must not include it
            source = budget_source(rule, operator_confirmed)
            today = self._orders.get((ACCOUNT, source), 0) if source is not None else 0
        if source is None:
            return
        budget = self._limit("MAX_ORDERS_PER_DAY")
        if today >= budget:
            raise OrderRejected("MAX_ORDERS", f"今日来自「{source.label}」的委托已达上限 {budget} 笔（MAX_ORDERS_PER_DAY），"
                                              "该来源不再下单；止损等保护性卖出和其他来源不受影响")
        if source is OrderSource.MANUAL:
            return
        limit = self._limit("MAX_ORDER_VOLUME")
        if volume > limit:
            reason = f"单笔自动委托 {volume} 股超过上限 {limit} 股（MAX_ORDER_VOLUME）"
            self._trip(code, source, reason)
            raise OrderRejected("CIRCUIT_BREAKER", f"熔断：{reason}，{code} 的{source.label}已停止自动交易")

    def record_order(self, code: str, rule: Rule, operator_confirmed: bool = False) -> None:
        source = budget_source(rule, operator_confirmed)
        if source is None:
            return
        with self._lock:
            self._roll()
            stock_today = self._count(code, source)
            self._count(ACCOUNT, source)  # the source's daily budget (check_order)
            stock_minute, account_minute = self._stamp(code, source)
        if source is OrderSource.MANUAL:
            return  # a person is there: only the budget applies (check_order), nothing trips
        label = source.label
        self._trip_if(stock_today >= self._limit("MAX_ORDERS_PER_STOCK_PER_DAY"), code, source,
                      f"{code} {label}今日自动委托已达 {stock_today} 笔（MAX_ORDERS_PER_STOCK_PER_DAY）")
        self._trip_if(stock_minute >= self._limit("MAX_ACTIONS_PER_STOCK_PER_MINUTE"), code, source,
                      f"{code} {label}一分钟内委托与撤单已达 {stock_minute} 笔（MAX_ACTIONS_PER_STOCK_PER_MINUTE）")
        self._trip_if(account_minute >= self._limit("MAX_ACTIONS_PER_MINUTE"), ACCOUNT, source,
                      f"账户{label}一分钟内委托与撤单已达 {account_minute} 笔（MAX_ACTIONS_PER_MINUTE）")

    def record_cancel(self, code: str, rule: Optional[Rule] = None) -> None:
        """`rule`: the origin rule of the cancelled order (None: counted as manual)."""
        source = budget_source(rule)
        if source is None or source is OrderSource.MANUAL:
            return  # withdrawing a protective exit or a person's order trips nothing
        with self._lock:
            self._roll()
            self._cancels[source] = cancels = self._cancels.get(source, 0) + 1
            stock_minute, account_minute = self._stamp(code, source)
        label = source.label
        self._trip_if(cancels >= self._limit("MAX_CANCELS_PER_DAY"), ACCOUNT, source,
                      f"账户{label}今日撤单已达 {cancels} 笔（MAX_CANCELS_PER_DAY）")
        self._trip_if(stock_minute >= self._limit("MAX_ACTIONS_PER_STOCK_PER_MINUTE"), code, source,
                      f"{code} {label}一分钟内委托与撤单已达 {stock_minute} 笔（MAX_ACTIONS_PER_STOCK_PER_MINUTE）")
        self._trip_if(account_minute >= self._limit("MAX_ACTIONS_PER_MINUTE"), ACCOUNT, source,
                      f"账户{label}一分钟内委托与撤单已达 {account_minute} 笔（MAX_ACTIONS_PER_MINUTE）")

    # ---- internals
    def _limit(self, key: str) -> int:
        return int(self._settings.get(key))

    def _count(self, code: str, source: OrderSource) -> int:
        """Under `_lock`: count one order of the source for the key; the new count."""
        key = (code, source)
        self._orders[key] = self._orders.get(key, 0) + 1
        return self._orders[key]

    def _roll(self) -> None:
        today = self._clock.today()
        if today != self._day:
            self._day = today
            self._orders = {}
            for (code, origin), count in self._daily_counts(today).items():
                source = budget_source(Rule(origin))
                if source is None:
                    continue
                for key in ((code, source), (ACCOUNT, source)):
                    self._orders[key] = self._orders.get(key, 0) + count
            self._cancels = {}

    def _stamp(self, code: str, source: OrderSource) -> tuple[int, int]:
        """Record one action of the source now; its counts in the last minute for the stock and the account."""
        now = self._now()
        counts = []
        for key in ((code, source), (ACCOUNT, source)):
            window = self._recent[key]
            window.append(now)
            while window and window[0] <= now - MINUTE:
                window.popleft()
            counts.append(len(window))
        return counts[0], counts[1]

    def _trip_if(self, reached: bool, scope: str, source: OrderSource, reason: str) -> None:
        if reached:
            self._trip(scope, source, reason)

    def _trip(self, scope: str, source: OrderSource, reason: str) -> None:
        if self._state.halt_source(scope, source, f"熔断：{reason}", SOURCE):
            self._reset(scope, source)
            self._publish(scope, source, reason)

    def _reset(self, scope: str, source: OrderSource) -> None:
        """After a trip the person who resumes gets a fresh allowance (the halt stops the loop meanwhile); the
        source's daily budget for the account is not a breaker and is not reset."""
        with self._lock:
            self._recent[(scope, source)].clear()
            if scope == ACCOUNT:
                self._cancels[source] = 0
            else:
                self._orders[(scope, source)] = 0

    def _publish(self, code: str, source: OrderSource, reason: str) -> None:
        scope = f"{code} 的{source.label}已停止自动交易" if code else f"账户的{source.label}已暂停自动交易"
        message = f"熔断：{reason}，{scope}（止损等保护性卖出照常执行），请检查后手动恢复"
        log.error(message)
        self._events.emit(EventKind.CIRCUIT_BREAKER, message, stock_code=code, reason=reason, source=source.value)
