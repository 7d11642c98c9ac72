"""Events observed rather than raised: quotes gone stale during a session, signals waiting for a person while
automatic trading is off, signals refused (the daily loss limit among them), orders refused by the broker or
in an unknown state. It reads the quote hub and the
signal store on its own thread and publishes each condition once per occurrence, so the core modules stay
untouched by notification concerns."""
from __future__ import annotations

import logging
from datetime import date
from typing import Callable, Optional

from core.events import EventBus, EventKind
from core.models import OrderStatus, SignalStatus

log = logging.getLogger(__name__)


def stale_codes(ages: dict[str, Optional[float]], limit: float) -> list[str]:
    """Codes whose newest quote is older than `limit` seconds of market time (None = never had one)."""
    return sorted(code for code, age in ages.items() if age is None or age > limit)


class NotifyWatch:
    """`check()` is one look (run by an IntervalWorker); it remembers what it already published."""

    def __init__(self, bus: EventBus, clock, settings, hub, signals, watchlist: Callable[[], list[str]],
                 allows_automatic: Callable[[], bool], orders: Callable[..., list[dict]] = lambda **kw: []):
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
        self._orders = orders  # executor.list_orders(status=, day=)
        # refusals from before this start were told then; an order still unknown is told again after a restart
        self._announced_orders = {o["client_id"] for o in orders(status=OrderStatus.REJECTED.value,
                                                                  day=clock.today())}

    def check(self) -> None:
        self.check_quotes()
        self.check_signals()
        self.check_orders()

    def check_orders(self) -> None:
        """Orders the broker refused, and orders whose state cannot be proven (a person must check them)."""
        today = self._clock.today()
        for status in (OrderStatus.REJECTED, OrderStatus.UNKNOWN):
            for order in self._orders(status=status.value, day=today):
                if order["client_id"] in self._announced_orders:
                    continue
                self._announced_orders.add(order["client_id"])
                kind, text = order_trouble(status, order["reason"])
                side = "买入" if order["side"] == "buy" else "卖出"
                reason = f"：{order['reason']}" if order["reason"] else ""
                self._bus.emit(kind, f"{order['stock_code']} {side} {order['volume']} 股 @ {order['price']:g} "
                                     f"{text}{reason}（委托 {order['client_id']}）",
                               stock_code=order["stock_code"], order_id=order["client_id"])

    def check_quotes(self) -> None:
        if not self._clock.is_trading():
            self._stale = frozenset()
            return
        ages = {}
        for code in self._watchlist():
            quote = self._hub.last_seen(code)
            # on the feed's own clock: a box clock minutes off the feed is not a stale feed (issue 25 §2.3)
            ages[code] = None if quote is None else (self._hub.feed_now(quote.source) - quote.time).total_seconds()
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


def order_trouble(status: OrderStatus, reason: str) -> tuple[EventKind, str]:
    """Which event an order in trouble is: not delivered to the broker (failed), refused, or unknown."""
    if status is OrderStatus.UNKNOWN:
        return EventKind.ORDER_UNKNOWN, "委托状态未知，请在券商端核对"
    if "未送达" in (reason or ""):
        return EventKind.ORDER_FAILED, "委托失败"
    return EventKind.ORDER_REJECTED, "委托被拒"
