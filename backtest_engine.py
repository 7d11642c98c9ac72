"""The backtest simulation (DESIGN §7): daily bars walked as price paths, the rules of strategy.py applied at
trigger crossings, A-share fills (ticks, limits, T+1, lots, fees), MACD entries, cash and daily equity.
Loading bars lives in backtest_data.py; metrics and output files in backtest_report.py."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

import market_rules
import strategy
from backtest_data import StockBars
from models import Position, Rule, Side
from strategy import Action, RuleParams

# DESIGN §6/§7 fix the MACD at (12, 26, 9) on daily closes; config.py has no keys for them.
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
MA_PERIODS = (10, 20, 30, 60)
_MAX_FILLS_AT_ONE_PRICE = 64  # a guard against a rule loop; a real day never needs more than a handful


@dataclass(frozen=True)
class Trade:
    day: date
    stock_code: str
    side: Side
    price: float
    volume: int
    amount: float
    fees: float
    rule: Rule


@dataclass(frozen=True)
class EquityPoint:
    day: date
    cash: float
    market_value: float  # positions at their last close (a suspended stock at its last close before)

    @property
    def total(self) -> float:
        return round(self.cash + self.market_value, 2)


@dataclass(frozen=True)
class Episode:
    """One position episode from the buy into a flat position until flat again."""

    stock_code: str
    open_date: date
    close_date: Optional[date]
    invested: float  # buy amounts + buy fees
    proceeds: float  # sell amounts − sell fees

    @property
    def profit(self) -> float:
        return round(self.proceeds - self.invested, 2)


@dataclass
class EngineResult:
    initial_capital: float
    trades: list[Trade]
    equity: list[EquityPoint]
    closed_episodes: list[Episode]
    open_positions: list[Position]
    fees_paid: float


@dataclass
class _Stock:
    """One stock's bars as Python lists (fast scalar access) and where each calendar day finds its bar."""

    index: int  # position in code order
    code: str
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    bar_of_day: np.ndarray  # calendar index → bar index, −1 when the stock has no bar that day
    tick: float


@dataclass
class _Holding:
    stock: _Stock
    position: Position
    last_price: float
    invested: float = 0.0
    proceeds: float = 0.0
    # state of the current day
    bar: int = -1
    touched: bool = False  # something filled today: the bar must be walked in full
    macd_exit: bool = False  # a MACD exit signal from the previous close applies today
    adds_rejected: bool = False  # an add was refused for cash or the portfolio cap: no more adds today
    triggers: strategy.TriggerPrices = strategy.NO_TRIGGERS
    triggers_key: Optional[tuple[int, float]] = None  # (fills so far, highest price) the triggers belong to
    fills: int = 0
    limits: Optional[tuple[float, float]] = None
    limits_known: bool = False


class BacktestEngine:
    """Runs the rules over `stocks` (sorted by code) from `start` to `end` with the values in `settings`
    (a mapping of every config key). `progress(done, total)` is called once per day.

    `fast_path=False` walks every held stock's every bar in full instead of skipping days on which no
    trigger lies inside [low, high]; results must be identical (the tests compare both)."""

    def __init__(self, stocks: Sequence[StockBars], settings: Mapping[str, Any], start: Optional[date] = None,
                 end: Optional[date] = None, progress: Optional[Callable[[int, int], None]] = None,
                 fast_path: bool = True, stock_params: Optional[Mapping[str, Mapping[str, Any]]] = None):
        """`stock_params`: per-stock overrides {code: {KEY: value}} (issue 17, `--stock-params`)."""
        self._settings = settings
        self._params = RuleParams.from_settings(settings)
        self._stock_params = {code: RuleParams.from_settings({**settings, **overrides})
                              for code, overrides in (stock_params or {}).items()}
        self._progress = progress
        self._fast_path = fast_path
        self._position_unit = float(settings["POSITION_UNIT"])
        self._cap_ratio = float(settings["MAX_TOTAL_POSITION_RATIO"])
        self.initial_capital = float(settings["SIMULATION_BALANCE"])
        stocks = sorted(stocks, key=lambda bars: bars.code)
        self._calendar = _calendar(stocks, start, end)
        self._days: list[date] = [d.item() for d in self._calendar]
        self._stocks = [self._prepare(index, bars) for index, bars in enumerate(stocks)]
        self._entries: dict[int, list[int]] = {}
        self._exits: set[tuple[int, int]] = set()
        for index, bars in enumerate(stocks):
            self._macd_events(index, bars)
        self._cash = self.initial_capital
        self._holdings: dict[int, _Holding] = {}
        self._trades: list[Trade] = []
        self._episodes: list[Episode] = []
        self._fees_paid = 0.0
        self._day_index = 0

    @property
    def days(self) -> list[date]:
        return list(self._days)

    def run(self) -> EngineResult:
        equity = []
        total_days = len(self._days)
        for day_index in range(total_days):
            self._day_index = day_index
            self._run_day(day_index)
            equity.append(EquityPoint(self._days[day_index], round(self._cash, 2), round(self._market_value(), 2)))
            if self._progress is not None:
                self._progress(day_index + 1, total_days)
        open_positions = []
        for holding in self._holdings.values():
            open_positions.append(holding.position.copy(current_price=holding.last_price,
                                                        market_value=round(holding.position.volume
                                                                           * holding.last_price, 2)))
        return EngineResult(self.initial_capital, self._trades, equity, self._episodes, open_positions,
                            round(self._fees_paid, 2))

    # ---- one day: opens, MACD entries at the open, then the rest of each path (DESIGN §7) -------------

    def _run_day(self, day_index: int) -> None:
        for stock_index in sorted(self._holdings):
            self._open(self._holdings[stock_index], day_index)
        for stock_index in self._entries.get(day_index, ()):
            self._enter(stock_index, day_index)
        for stock_index in sorted(self._holdings):
            holding = self._holdings.get(stock_index)
            if holding is not None and holding.bar >= 0:
                self._rest_of_day(holding)
        for holding in self._holdings.values():  # T+1: today's buys become available tomorrow
            holding.position.available = holding.position.volume

    def _open(self, holding: _Holding, day_index: int) -> None:
        bar = int(holding.stock.bar_of_day[day_index])
        holding.bar = bar
        holding.touched = holding.adds_rejected = holding.limits_known = holding.macd_exit = False
        if bar < 0:
            return  # suspended: nothing happens, valued at the last close
        price = holding.stock.open[bar]
        holding.last_price = price
        position = holding.position
        if price > position.highest_price:
            position.highest_price = price
        holding.macd_exit = (holding.stock.index, day_index) in self._exits
        if not self._fast_path or holding.macd_exit or _fires_at(self._triggers(holding), price):
            self._settle(holding, price)

    def _enter(self, stock_index: int, day_index: int) -> None:
        """MACD entry at the open for POSITION_UNIT, if cash, the portfolio cap and the limit-up allow."""
        if stock_index in self._holdings:
            return
        stock = self._stocks[stock_index]
        bar = int(stock.bar_of_day[day_index])
        if bar < 0:
            return
        price = stock.open[bar]
        limits = self._limits_of(stock, bar)
        if limits is not None and price >= limits[1]:
            return  # a buy cannot fill at limit-up
        unit = self._params_for(stock.code).position_unit if stock.code in self._stock_params else self._position_unit
        volume = market_rules.buy_volume_for_amount(stock.code, unit, price)
        if volume <= 0:
            return
        amount, fees = strategy.trade_amount(price, volume), self._fees(stock.code, Side.BUY, price, volume)
        if not self._buy_allowed(amount, fees):
            return
        position = strategy.apply_buy(None, stock.code, price, volume, fees, self._days[day_index])
        holding = _Holding(stock, position, price, bar=bar, touched=True, limits=limits, limits_known=True)
        self._holdings[stock_index] = holding
        self._pay_for_buy(holding, price, volume, amount, fees, Rule.MACD_BUY)

    def _rest_of_day(self, holding: _Holding) -> None:
        stock, bar = holding.stock, holding.bar
        price_open, high, low, close = stock.open[bar], stock.high[bar], stock.low[bar], stock.close[bar]
        if self._fast_path and not holding.touched and not holding.macd_exit and self._quiet(holding, high, low):
            if high > holding.position.highest_price:
                holding.position.highest_price = high
        else:
            path = (price_open, low, high, close) if close >= price_open else (price_open, high, low, close)
            for start, end in zip(path, path[1:]):
                if not self._is_held(holding):
                    return
                if end > start:
                    self._rise(holding, start, end)
                elif end < start:
                    self._fall(holding, start, end)
        if self._is_held(holding):
            holding.last_price = close

    def _quiet(self, holding: _Holding, high: float, low: float) -> bool:
        """No trigger inside [low, high], including the dynamic stop of a new highest reached today."""
        triggers = self._triggers(holding)
        if triggers.take_profit_price is not None and high >= triggers.take_profit_price:
            return False
        for trigger in (triggers.stop_loss_price, triggers.dynamic_stop_price, triggers.next_add_price):
            if trigger is not None and low <= trigger:
                return False
        position = holding.position
        params = self._params_for(position.stock_code)
        if position.profit_triggered and params.exits_enabled and high > position.highest_price:
            later_stop = strategy.dynamic_stop_price(high, position.cost_price, params)
            if later_stop is not None and low <= later_stop:
                return False
        return True

    # ---- walking a path segment: stop only where a trigger (or a limit that blocked a fill) is crossed --

    def _rise(self, holding: _Holding, start: float, end: float) -> None:
        """Upward triggers fill at the first tick at or above them; `highest_price` rises with the price."""
        price = start
        code, tick = holding.stock.code, holding.stock.tick
        while self._is_held(holding):
            triggers = self._triggers(holding)
            candidate = None
            if triggers.take_profit_price is not None:
                level = market_rules.round_price_up(code, triggers.take_profit_price)
                if price < level <= end:
                    candidate = level
            limits = self._limits(holding)
            if limits is not None and price <= limits[0]:  # a sell blocked at limit-down may fill just above it
                level = round(limits[0] + tick, 3)
                if level <= end and (candidate is None or level < candidate):
                    candidate = level
            if candidate is None:
                break
            price = candidate
            if price > holding.position.highest_price:
                holding.position.highest_price = price
            self._settle(holding, price)
        if self._is_held(holding) and end > holding.position.highest_price:
            holding.position.highest_price = end

    def _fall(self, holding: _Holding, start: float, end: float) -> None:
        """Downward triggers fill at the first tick at or below them, highest trigger first; after each
        fill the triggers are recomputed and the walk continues down the segment."""
        price = start
        code, tick = holding.stock.code, holding.stock.tick
        while self._is_held(holding):
            triggers = self._triggers(holding)
            add_price = None if holding.adds_rejected else triggers.next_add_price
            candidate = None
            for trigger in (triggers.stop_loss_price, triggers.dynamic_stop_price, add_price):
                if trigger is not None:
                    level = market_rules.round_price_down(code, trigger)
                    if end <= level < price and (candidate is None or level > candidate):
                        candidate = level
            limits = self._limits(holding)
            if limits is not None and price >= limits[1]:  # a buy blocked at limit-up may fill just below it
                level = round(limits[1] - tick, 3)
                if end <= level < price and (candidate is None or level > candidate):
                    candidate = level
            if candidate is None:
                break
            price = candidate
            self._settle(holding, price)

    def _settle(self, holding: _Holding, price: float) -> None:
        """Apply the rules at one price until nothing more fires there (or what fires cannot fill)."""
        for _ in range(_MAX_FILLS_AT_ONE_PRICE):
            if not self._is_held(holding):
                return
            actions = strategy.evaluate(holding.position, price, self._params_for(holding.position.stock_code),
                                        macd_exit=holding.macd_exit)
            if not actions or not self._fill(holding, actions[0], price):
                return
            holding.touched = True
            holding.fills += 1
        raise RuntimeError(f"{holding.stock.code} 在价格 {price} 连续成交超过 {_MAX_FILLS_AT_ONE_PRICE} 次，规则可能循环")

    # ---- fills -----------------------------------------------------------------------------------------

    def _fill(self, holding: _Holding, action: Action, price: float) -> bool:
        """Fill `action` at `price`; False when limits, cash or the portfolio cap refuse it."""
        code = holding.stock.code
        limits = self._limits(holding)
        if action.rule.side is Side.SELL:
            if limits is not None and price <= limits[0]:
                return False  # a sell cannot fill at or below limit-down
            volume = action.volume
            amount, fees = strategy.trade_amount(price, volume), self._fees(code, Side.SELL, price, volume)
            self._cash += amount - fees
            self._fees_paid += fees
            holding.proceeds += amount - fees
            holding.position = strategy.apply_sell(holding.position, volume, action.rule)
            holding.last_price = price
            self._record(holding, Side.SELL, price, volume, amount, fees, action.rule)
            if holding.position.volume == 0:
                self._close_episode(holding)
            return True
        if holding.adds_rejected or (limits is not None and price >= limits[1]):
            return False  # a buy cannot fill at or above limit-up
        volume = action.volume
        amount, fees = strategy.trade_amount(price, volume), self._fees(code, Side.BUY, price, volume)
        if not self._buy_allowed(amount, fees):
            holding.adds_rejected = True
            return False
        holding.position = strategy.apply_buy(holding.position, code, price, volume, fees,
                                              self._days[self._day_index], level_index=action.level_index)
        self._pay_for_buy(holding, price, volume, amount, fees, action.rule)
        return True

    def _pay_for_buy(self, holding: _Holding, price: float, volume: int, amount: float, fees: float,
                     rule: Rule) -> None:
        self._cash -= amount + fees
        self._fees_paid += fees
        holding.invested += amount + fees
        holding.last_price = price
        self._record(holding, Side.BUY, price, volume, amount, fees, rule)

    def _buy_allowed(self, amount: float, fees: float) -> bool:
        """Cash for amount + fees, and market value within MAX_TOTAL_POSITION_RATIO of total assets."""
        if amount + fees > self._cash + 1e-9:
            return False
        market_value = self._market_value()
        total_after = self._cash + market_value - fees
        return market_value + amount <= self._cap_ratio * total_after + 1e-9

    def _close_episode(self, holding: _Holding) -> None:
        position = holding.position
        self._episodes.append(Episode(position.stock_code, position.open_date, self._days[self._day_index],
                                      round(holding.invested, 2), round(holding.proceeds, 2)))
        del self._holdings[holding.stock.index]

    def _record(self, holding: _Holding, side: Side, price: float, volume: int, amount: float, fees: float,
                rule: Rule) -> None:
        self._trades.append(Trade(self._days[self._day_index], holding.stock.code, side, price, volume, amount,
                                  fees, rule))

    def _fees(self, code: str, side: Side, price: float, volume: int) -> float:
        return market_rules.fees(code, side, price, volume, self._settings)["total"]

    # ---- state helpers ---------------------------------------------------------------------------------

    def _market_value(self) -> float:
        return sum(h.position.volume * h.last_price for h in self._holdings.values())

    def _params_for(self, code: str) -> RuleParams:
        return self._stock_params.get(code, self._params)

    def _triggers(self, holding: _Holding) -> strategy.TriggerPrices:
        """strategy.trigger_prices, recomputed only after a fill or, once profit is triggered, a new high."""
        position = holding.position
        key = (holding.fills, position.highest_price if position.profit_triggered else 0.0)
        if key != holding.triggers_key:
            holding.triggers = strategy.trigger_prices(position, self._params_for(position.stock_code))
            holding.triggers_key = key
        return holding.triggers

    def _is_held(self, holding: _Holding) -> bool:
        return holding.position.volume > 0


    def _limits(self, holding: _Holding) -> Optional[tuple[float, float]]:
        if not holding.limits_known:
            holding.limits = self._limits_of(holding.stock, holding.bar)
            holding.limits_known = True
        return holding.limits

    @staticmethod
    def _limits_of(stock: _Stock, bar: int) -> Optional[tuple[float, float]]:
        """(limit_down, limit_up) from the previous available close; None on a stock's first bar."""
        if bar <= 0:
            return None
        return market_rules.price_limits(stock.code, stock.close[bar - 1])

    # ---- preparation -----------------------------------------------------------------------------------

    def _prepare(self, index: int, bars: StockBars) -> _Stock:
        positions = np.searchsorted(self._calendar, bars.dates)
        inside = positions < len(self._calendar)
        inside[inside] = self._calendar[positions[inside]] == bars.dates[inside]
        bar_of_day = np.full(len(self._calendar), -1, dtype=np.int64)
        bar_of_day[positions[inside]] = np.flatnonzero(inside)
        return _Stock(index, bars.code, bars.open.tolist(), bars.high.tolist(), bars.low.tolist(), bars.close.tolist(),
                      bar_of_day, float(market_rules.tick_size(bars.code)))

    def _macd_events(self, stock_index: int, bars: StockBars) -> None:
        """MACD signals on each bar's close, decided by strategy.macd_signal, traded at the stock's next bar.
        numpy only narrows the bars to look at (histogram sign changes); the rule function decides."""
        params = self._params
        if not (params.macd_buy_enabled or params.macd_sell_enabled) or len(bars.close) < MACD_SLOW + MACD_SIGNAL:
            return
        import talib  # imported lazily: only a run with MACD rules needs it

        close = np.ascontiguousarray(bars.close, dtype=float)
        hist = talib.MACD(close, MACD_FAST, MACD_SLOW, MACD_SIGNAL)[2]
        previous, current = hist[:-1], hist[1:]
        crossing = ((previous <= 0) & (current > 0)) | ((previous >= 0) & (current < 0))
        signal_bars = np.flatnonzero(crossing) + 1
        signal_bars = signal_bars[signal_bars + 1 < len(close)]
        if len(signal_bars) == 0:
            return
        averages = [talib.SMA(close, period) for period in MA_PERIODS]
        day_of_bar = np.full(len(close), -1, dtype=np.int64)
        stock = self._stocks[stock_index]
        known = stock.bar_of_day >= 0
        day_of_bar[stock.bar_of_day[known]] = np.flatnonzero(known)
        for bar in signal_bars.tolist():
            trade_day = int(day_of_bar[bar + 1])
            if trade_day < 0:
                continue  # the next bar lies outside the backtest period
            rule = strategy.macd_signal(float(hist[bar - 1]), float(hist[bar]), params,
                                        *(float(series[bar]) for series in averages))
            if rule is Rule.MACD_BUY:
                self._entries.setdefault(trade_day, []).append(stock_index)
            elif rule is Rule.MACD_SELL:
                self._exits.add((stock_index, trade_day))


def _fires_at(triggers: strategy.TriggerPrices, price: float) -> bool:
    """Whether any trigger holds at `price` (a cheap pre-check before evaluating the rules)."""
    if triggers.take_profit_price is not None and price >= triggers.take_profit_price:
        return True
    for trigger in (triggers.stop_loss_price, triggers.dynamic_stop_price, triggers.next_add_price):
        if trigger is not None and price <= trigger:
            return True
    return False


def _calendar(stocks: Sequence[StockBars], start: Optional[date], end: Optional[date]) -> np.ndarray:
    """The backtest days: every date on which at least one stock has a bar, within [start, end]."""
    if not stocks:
        return np.array([], dtype="datetime64[D]")
    days = np.unique(np.concatenate([bars.dates for bars in stocks]))
    if start is not None:
        days = days[days >= np.datetime64(start, "D")]
    if end is not None:
        days = days[days <= np.datetime64(end, "D")]
    return days
