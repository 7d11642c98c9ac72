"""Today's intraday (分时) line per stock, from the quotes the daemon has seen: one point per market minute
(the minute's last price), kept in memory only and bounded, reset when the market day changes. Fed by the
quote hub's subscription; read by the chart's 分时 view."""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Optional

import market_rules
from core.models import Quote

MAX_POINTS_PER_STOCK = 480  # a trading day has 241 minutes; the margin covers the auctions
MAX_STOCKS = 500


@dataclass
class _Day:
    day: date
    points: deque  # [minute datetime, price, cumulative volume or None]
    prev_close: float
    limit_up: Optional[float]
    limit_down: Optional[float]
    name: str


class IntradayBuffer:
    """Thread-safe; `on_quote` runs in the publisher's thread and only appends or updates one point."""

    def __init__(self, max_points: int = MAX_POINTS_PER_STOCK, max_stocks: int = MAX_STOCKS):
        self._max_points = max_points
        self._max_stocks = max_stocks
        self._lock = threading.Lock()
        self._days: dict[str, _Day] = {}
        self.version = 0

    def on_quote(self, quote: Quote) -> None:
        minute = quote.time.replace(second=0, microsecond=0)
        with self._lock:
            current = self._days.get(quote.code)
            if current is None or current.day != minute.date():
                if current is None and len(self._days) >= self._max_stocks:
                    return  # a runaway watchlist must not grow memory without bound
                current = self._days[quote.code] = _Day(minute.date(), deque(maxlen=self._max_points),
                                                        quote.prev_close, None, None, quote.name)
            listing_day = market_rules.listing_rule_applies(quote.code, minute.date())  # issue 28
            if quote.limit_up and quote.limit_down and not listing_day:
                current.limit_up, current.limit_down = quote.limit_up, quote.limit_down
            elif current.limit_up is None or current.prev_close != quote.prev_close:
                # a source without limits in its quotes (or a new listing's days): the exchange rule, once per
                # previous close; no lines on a day without a limit
                band = None if market_rules.untradable_reason(quote.code) else market_rules.day_limits(
                    quote.code, quote.prev_close, market_rules.is_st_name(quote.name), minute.date())
                current.limit_down, current.limit_up = band if band is not None else (None, None)
            current.prev_close = quote.prev_close
            current.name = quote.name or current.name
            points = current.points
            if points and points[-1][0] == minute:
                points[-1][1], points[-1][2] = quote.price, quote.volume
            elif not points or points[-1][0] < minute:
                points.append([minute, quote.price, quote.volume])
            self.version += 1

    def series(self, code: str) -> Optional[dict[str, Any]]:
        """{'date', 'prev_close', 'limit_up', 'limit_down', 'name', 'points': [{'time', 'price', 'avg_price'}]}
        or None before the first quote. `avg_price` is the running mean of the minute prices (均价线)."""
        with self._lock:
            current = self._days.get(code)
            if current is None:
                return None
            rows = [tuple(point) for point in current.points]
            head = {"date": current.day.isoformat(), "prev_close": current.prev_close, "limit_up": current.limit_up,
                    "limit_down": current.limit_down, "name": current.name}
        points, total = [], 0.0
        for index, (minute, price, _volume) in enumerate(rows, start=1):
            total += price
            points.append({"time": _iso(minute), "price": price, "avg_price": round(total / index, 4)})
        return {**head, "points": points}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="minutes")
