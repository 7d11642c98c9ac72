"""Events observed rather than raised: quotes gone stale during a session, signals waiting for a person while
automatic trading is off, signals refused (the daily loss limit among them). It reads the quote hub and the
signal store on its own thread and publishes each condition once per occurrence, so the core modules stay
untouched by notification concerns."""
from __future__ import annotations

import logging
from datetime import date
from typing import Callable, Optional

from events import EventBus, EventKind
from models import SignalStatus

log = logging.getLogger(__name__)


def stale_codes(ages: dict[str, Optional[float]], limit: float) -> list[str]:
    """Codes whose newest quote is older than `limit` seconds of market time (None = never had one)."""
    return sorted(code for code, age in ages.items() if age is None or age > limit)


class NotifyWatch:
    """`check()` is one look (run by an IntervalWorker); it remembers what it already published."""

    def __init__(self, bus: EventBus, clock, settings, hub, signals, watchlist: Callable[[], list[str]],
                 allows_automatic: Callable[[], bool]):
        self._bus = bus
        self._clock = clock
        self._settings = settings
        self._hub = hub
        self._signals = signals
        self._watchlist = watchlist
        self._allows_automatic = allows_automatic
        self._stale: frozenset[str] = frozenset()
        self._announced_waiting: set[int] = set()
        self._last_finished_id = max((s.id for s in signals.history(1)), default=0)
        self._loss_limit_day: Optional[date] = None

    def check(self) -> None:
        self.check_quotes()
        self.check_signals()

    def check_quotes(self) -> None:
        if not self._clock.is_trading():
            self._stale = frozenset()
            return
        now = self._clock.now()
        ages = {}
        for code in self._watchlist():
            quote = self._hub.last_seen(code)
            ages[code] = None if quote is None else (now - quote.time).total_seconds()
        stale = frozenset(stale_codes(ages, self._settings.get("QUOTE_STALE_SECONDS")))
        fresh_problem = stale - self._stale
        if fresh_problem:
            shown = "、".join(sorted(stale)[:10]) + (f" 等 {len(stale)} 只" if len(stale) > 10 else "")
            self._bus.emit(EventKind.QUOTES_STALE, f"交易时段内行情超过 {self._settings.get('QUOTE_STALE_SECONDS'):g} 秒"
                                                   f"未更新：{shown}", codes=sorted(stale))
        self._stale = stale

    def check_signals(self) -> None:
        auto = bool(self._settings.get("ENABLE_AUTO_TRADING")) and self._allows_automatic()
        for signal in self._signals.pending():
            if not auto and signal.id not in self._announced_waiting:
                self._announced_waiting.add(signal.id)
                self._bus.emit(EventKind.SIGNAL_WAITING,
                               f"{signal.stock_code} {signal.rule.label}（{signal.side.label}）信号等待人工处理，触发价 "
                               f"{signal.trigger_price:g}；自动交易未开启，请在「交易信号」页执行或忽略",
                               stock_code=signal.stock_code, signal_id=signal.id, rule=signal.rule.value)
        finished = [s for s in self._signals.history(50) if s.id > self._last_finished_id]
        for signal in sorted(finished, key=lambda s: s.id):
            self._last_finished_id = max(self._last_finished_id, signal.id)
            self._announced_waiting.discard(signal.id)
            if signal.status is not SignalStatus.REJECTED:
                continue
            if "亏损" in signal.reason and "停止自动买入" in signal.reason:
                today = self._clock.today()
                if self._loss_limit_day != today:
                    self._loss_limit_day = today
                    self._bus.emit(EventKind.DAILY_LOSS_LIMIT, signal.reason, stock_code=signal.stock_code)
                continue
            self._bus.emit(EventKind.ORDER_REJECTED, f"{signal.stock_code} {signal.rule.label}信号被拒绝：{signal.reason}",
                           stock_code=signal.stock_code, signal_id=signal.id)
