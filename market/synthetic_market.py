"""A seeded, deterministic synthetic daily market (「演示行情」) for machines with no market data: bars for any
valid code, about 2 % daily volatility, prices on the tick grid and inside the daily limits. Not real prices."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Optional

import numpy as np

import market_rules
from market.bar_store import DailyBar

SYNTHETIC_LABEL = "演示行情（随机生成，非真实价格）"
ORIGIN = date(2024, 1, 2)  # first synthetic trading day; fixed so a seed always gives the same market
DAYS = 600  # synthetic trading days from ORIGIN (inside the exchange calendar's table)
DAILY_VOLATILITY = 0.02
DAILY_DRIFT = 0.0003
OPEN_GAP_VOLATILITY = 0.006
RANGE_VOLATILITY = 0.008


class SyntheticMarket:
    source_name = "synthetic"
    label = SYNTHETIC_LABEL

    def __init__(self, seed: int, calendar=None):
        self._seed = int(seed)
        self._calendar = calendar or market_rules.DEFAULT_CALENDAR
        self._days: Optional[list[date]] = None
        self._cache: dict[str, list[DailyBar]] = {}

    def codes(self) -> None:
        return None  # any valid code

    def trading_days(self) -> list[date]:
        if self._days is None:
            days, day = [], ORIGIN - timedelta(days=1)
            for _ in range(DAYS):
                day = self._calendar.next_trading_day(day)
                days.append(day)
            self._days = days
        return self._days

    def bars(self, code: str) -> list[DailyBar]:
        code = market_rules.normalize_code(code)
        if code not in self._cache:
            self._cache[code] = self._generate(code)
        return self._cache[code]

    def stock_name(self, code: str) -> str:
        return f"演示{code[:6]}"

    def _generate(self, code: str) -> list[DailyBar]:
        """One independent random walk per code: the generator is seeded with (seed, code digits), so a
        code's bars do not depend on which other codes were asked for, or in what order."""
        rng = np.random.default_rng([self._seed, int(code[:6])])
        days = self.trading_days()
        count = len(days)
        returns = rng.standard_t(df=4, size=count) * DAILY_VOLATILITY / np.sqrt(2.0) + DAILY_DRIFT
        gaps = rng.normal(0.0, OPEN_GAP_VOLATILITY, size=count)
        upper_wicks = np.abs(rng.normal(0.0, RANGE_VOLATILITY, size=count))
        lower_wicks = np.abs(rng.normal(0.0, RANGE_VOLATILITY, size=count))
        volumes = rng.lognormal(mean=np.log(80_000), sigma=0.5, size=count)
        prev_close = market_rules.round_price(code, float(rng.uniform(4.0, 60.0)))
        bars = []
        for i, day in enumerate(days):
            down, up = market_rules.price_limits(code, prev_close)
            clamp = lambda p: min(max(market_rules.round_price(code, p), down), up)  # noqa: E731
            open_ = clamp(prev_close * (1 + gaps[i]))
            close = clamp(prev_close * (1 + returns[i]))
            high = clamp(max(open_, close) * (1 + upper_wicks[i]))
            low = clamp(min(open_, close) * (1 - lower_wicks[i]))
            bars.append(DailyBar(code, day, open_, high, low, close, float(round(volumes[i]) * market_rules.LOT)))
            prev_close = close
        return bars
