"""The backtest simulation (DESIGN §7): daily bars walked as price paths, the rules of strategy.py applied at
trigger crossings, A-share fills (ticks, limits, T+1, lots, fees), MACD entries, cash and daily equity.
Loading bars lives in backtesting/data.py; metrics and output files in backtesting/report.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Callable, Collection, Mapping, Optional, Sequence, Union

import numpy as np

import market_rules
import strategy
from backtesting.data import StockBars
from backtesting.market import PRICE_SCALE, MarketData
from core.models import Position, Rule, Side
from core.perf_stats import EpisodeResult
from market import ex_rights
from market.ex_rights import CorporateAction
from strategy import Action, RuleParams

# DESIGN §6/§7 fix the MACD at (12, 26, 9) on daily closes; config.py has no keys for them.
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
MA_PERIODS = (10, 20, 30, 60)
_FIRST_CHUNK = 32  # bars loaded at an entry; later chunks double (most episodes last a few weeks)
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


@dataclass
class EngineResult:
    initial_capital: float  # the starting cash plus the starting positions at their previous close
    trades: list[Trade]
    equity: list[EquityPoint]
    closed_episodes: list[EpisodeResult]
    open_positions: list[Position]
    fees_paid: float
    unseeded: list[str] = field(default_factory=list)  # starting positions without a bar before the start
    refusals: dict[str, int] = field(default_factory=dict)  # REFUSAL_LABELS key -> stock-days refused
    exposure: float = 0.0  # share of the days that ended with any position held


@dataclass(frozen=True)
class Slippage:
    """How much worse than the path price a fill is (`--slippage 2t` or `5bp`): buys higher, sells lower, by
    `ticks` ticks or `bps` basis points (rounded away from the trader to the tick), never past the day's limits.
    Triggers are still detected at the path price."""

    ticks: int = 0
    bps: float = 0.0

    @property
    def none(self) -> bool:
        return self.ticks == 0 and self.bps == 0


# Why a buy or an exit could not fill (the report counts them once per stock and day).
REFUSAL_LABELS = {"cash": "现金不足", "cap": "超过总仓位上限", "limit_up": "涨停买不进", "t1": "T+1 当日买入不可卖",
                  "limit_down": "跌停卖不出"}


@dataclass(frozen=True)
class StartingState:
    """An account as it stood before the first day (`backtest.py compare` from the middle of its life): its
    cash and its positions with their rule state (cost incl. fees, open date, first take-profit, add levels).
    A fresh run starts from SIMULATION_BALANCE and no positions."""

    cash: float
    positions: tuple[Position, ...] = ()


@dataclass
class _Stock:
    """One held stock's bars as Python lists (fast scalar access), from the bar before its entry onwards and
    extended in growing chunks while it stays held; dropped when it is sold, so the whole market stays in
    MarketData's arrays. Bar numbers of a holding count from `first_row` (the list index)."""

    index: int  # position in code order
    code: str
    first_row: int  # market row of list index 0
    end_row: int  # the stock's last market row + 1
    market: MarketData
    tick: float
    open: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    low: list[float] = field(default_factory=list)
    close: list[float] = field(default_factory=list)
    day: list[int] = field(default_factory=list)  # calendar index of each bar

    def has_bar(self, bar: int) -> bool:
        """Whether bar `bar` exists, loading the next chunk of bars when the lists end before it."""
        if bar < len(self.day):
            return True
        start = self.first_row + len(self.day)
        if start >= self.end_row:
            return False
        stop = min(self.end_row, start + max(_FIRST_CHUNK, len(self.day)))
        market = self.market
        for target, column in ((self.open, market.open), (self.high, market.high), (self.low, market.low),
                               (self.close, market.close)):
            target.extend((column[start:stop] / PRICE_SCALE).tolist())
        self.day.extend(market.day[start:stop].tolist())
        return bar < len(self.day)


@dataclass
class _Holding:
    stock: _Stock
    position: Position
    last_price: float
    invested: float = 0.0
    proceeds: float = 0.0
    # state of the current day
    bar: int = -1  # today's bar, −1 when suspended
    cursor: int = -1  # the last bar walked
    touched: bool = False  # something filled today: the bar must be walked in full
    macd_exit: bool = False  # a MACD exit signal from the previous close applies today
    cap_price: float = 0.0  # the price the portfolio cap values this holding at: its previous close
    triggers: strategy.TriggerPrices = strategy.NO_TRIGGERS
    triggers_key: Optional[tuple[int, float]] = None  # (fills so far, highest price) the triggers belong to
    fills: int = 0
    limits: Optional[tuple[float, float]] = None
    limits_known: bool = False
    add_prices: list[float] = field(default_factory=list)  # every unused add level's trigger
    add_prices_key: Optional[tuple[int, float]] = None  # the triggers_key they were computed for
    ex_action: Optional[CorporateAction] = None  # today's ex-rights event (its reference price sets the limits)


class BacktestEngine:
    """Runs the rules over `stocks` (MarketData, or per-stock bars) from `start` to `end` with the values in
    `settings` (a mapping of every config key). `progress(done, total)` is called once per day.

    `fast_path=False` walks every held stock's every bar in full instead of skipping days on which no
    trigger lies inside [low, high]; results must be identical (the tests compare both)."""

    def __init__(self, stocks: Union[MarketData, Sequence[StockBars]], settings: Mapping[str, Any],
                 start: Optional[date] = None,
                 end: Optional[date] = None, progress: Optional[Callable[[int, int], None]] = None,
                 fast_path: bool = True, stock_params: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 starting: Optional[StartingState] = None, no_entry: Collection[str] = (),
                 st_codes: Collection[str] = (), slippage: Optional[Slippage] = None,
                 events: Optional[Mapping[str, Sequence[CorporateAction]]] = None):
        """`stock_params`: per-stock overrides {code: {KEY: value}} (issue 17, `--stock-params`); `starting`:
        the cash and positions to start from; `no_entry`: codes never bought by a MACD entry (an account's
        blacklist, a holding outside its pool) while their held positions follow the rules as usual;
        `st_codes`: ST/*ST stocks, whose limits take the main-board ST band of each bar's date; `slippage`:
        fills worse than the path price (Slippage); `events`: ex-rights events per code for UNADJUSTED bars
        (issue 28): before the open of an ex-date a holding's levels are scaled by the factor, its shares and
        cash follow the event, the day's limits come from the reference price, and MACD reads forward-adjusted
        closes, so raw bars + events trade like forward-adjusted bars."""
        self._settings = settings
        self._params = RuleParams.from_settings(settings)
        self._stock_params = {code: RuleParams.from_settings({**settings, **overrides})
                              for code, overrides in (stock_params or {}).items()}
        self._progress = progress
        self._fast_path = fast_path
        self._position_unit = float(settings["POSITION_UNIT"])
        self._cap_ratio = float(settings["MAX_TOTAL_POSITION_RATIO"])
        self._no_entry = frozenset(no_entry)
        self._st_codes = frozenset(st_codes)
        self._st_rule = market_rules.StLimitRule.from_config(settings)
        self._slippage = slippage if slippage is not None and not slippage.none else None
        self._events = {code: sorted(actions, key=lambda a: a.ex_date) for code, actions in (events or {}).items()}
        self._refused: set[tuple[int, str, str]] = set()  # (calendar day, code, reason)
        self._held_days = 0
        market = stocks if isinstance(stocks, MarketData) else MarketData.from_stocks(stocks)
        self._market = market
        calendar = market.calendar
        self._first = int(np.searchsorted(calendar, np.datetime64(start, "D"))) if start is not None else 0
        last = int(np.searchsorted(calendar, np.datetime64(end, "D"), side="right")) if end is not None \
            else len(calendar)
        self._calendar_days: list[date] = [d.item() for d in calendar]
        self._days: list[date] = self._calendar_days[self._first:max(last, self._first)]
        self._last = self._first + len(self._days)
        self._entries: dict[int, list[tuple[int, int]]] = {}  # calendar day → (stock, bar) bought at that open
        self._exits: set[tuple[int, int]] = set()  # (stock, calendar day) of MACD exits at the open
        for index in range(len(market.codes)):
            self._macd_events(index)
        self._cash = float(settings["SIMULATION_BALANCE"]) if starting is None else float(starting.cash)
        self._holdings: dict[int, _Holding] = {}
        self._unseeded = self._seed(starting.positions) if starting is not None else []
        self.initial_capital = round(self._cash + self._market_value(), 2)
        self._exited_today: set[int] = set()  # stocks sold out today: no MACD re-entry the same day
        self._trades: list[Trade] = []
        self._episodes: list[EpisodeResult] = []
        self._fees_paid = 0.0
        self._day_index = 0

    @property
    def days(self) -> list[date]:
        return list(self._days)

    def run(self) -> EngineResult:
        equity = []
        total_days = len(self._days)
        for day_index in range(self._first, self._last):
            self._day_index = day_index
            self._run_day(day_index)
            equity.append(EquityPoint(self._calendar_days[day_index], round(self._cash, 2),
                                      round(self._market_value(), 2)))
            self._held_days += bool(self._holdings)
            if self._progress is not None:
                self._progress(day_index - self._first + 1, total_days)
        open_positions = []
        for holding in self._holdings.values():
            open_positions.append(holding.position.copy(current_price=holding.last_price,
                                                        market_value=round(holding.position.volume
                                                                           * holding.last_price, 2)))
        refusals = {reason: 0 for reason in REFUSAL_LABELS}
        for _, _, reason in self._refused:
            refusals[reason] += 1
        return EngineResult(self.initial_capital, self._trades, equity, self._episodes, open_positions,
                            round(self._fees_paid, 2), list(self._unseeded), refusals,
                            round(self._held_days / len(equity), 6) if equity else 0.0)

    # ---- one day: opens, MACD entries at the open, then the rest of each path (DESIGN §7) -------------

    def _run_day(self, day_index: int) -> None:
        self._exited_today.clear()
        for holding in self._holdings.values():  # the cap values every holding at its previous close from the
            holding.cap_price = holding.last_price  # first open on, whatever order the opens are walked in
        for stock_index in sorted(self._holdings):
            self._open(self._holdings[stock_index], day_index)
        for stock_index, bar in self._entries.get(day_index, ()):
            self._enter(stock_index, bar, day_index)
        for stock_index in sorted(self._holdings):
            holding = self._holdings.get(stock_index)
            if holding is not None and holding.bar >= 0:
                self._rest_of_day(holding)
        for holding in self._holdings.values():  # T+1: today's buys become available tomorrow
            holding.position.available = holding.position.volume

    def _open(self, holding: _Holding, day_index: int) -> None:
        following = holding.cursor + 1
        bar = following if holding.stock.has_bar(following) and holding.stock.day[following] == day_index else -1
        holding.bar = bar
        holding.touched = holding.limits_known = holding.macd_exit = False
        if bar < 0:
            return  # suspended: nothing happens, valued at the last close
        holding.cursor = bar
        holding.ex_action = self._apply_ex_rights(holding, bar)
        price = holding.stock.open[bar]
        holding.last_price = price
        position = holding.position
        if price > position.highest_price:
            position.highest_price = price
        holding.macd_exit = (holding.stock.index, day_index) in self._exits
        if not self._fast_path or holding.macd_exit or _fires_at(self._triggers(holding), price):
            self._settle(holding, price)

    def _enter(self, stock_index: int, bar: int, day_index: int) -> None:
        """MACD entry at the open for POSITION_UNIT, if cash, the portfolio cap and the limit-up allow.
        The stock must have been flat at the signal bar's close and not exited today (DESIGN §7 decided cases):
        held at that close means either still held now or sold at today's open."""
        if stock_index in self._holdings or stock_index in self._exited_today:
            return
        market = self._market
        row = int(market.offsets[stock_index]) + bar
        price = int(market.open[row]) / PRICE_SCALE
        code = market.codes[stock_index]
        ex_action = self._ex_action_on(code, day_index)
        limits = None if bar == 0 else self._limits_on(
            code, ex_rights.limit_reference(code, int(market.close[row - 1]) / PRICE_SCALE, ex_action), day_index)
        if limits is not None and price >= limits[1]:
            self._refuse(code, "limit_up")
            return  # a buy cannot fill at limit-up
        price = self._slipped(code, Side.BUY, price, limits)
        unit = self._params_for(code).position_unit if code in self._stock_params else self._position_unit
        volume = market_rules.buy_volume_for_amount(code, unit, price)
        if volume <= 0:
            return
        amount = strategy.trade_amount(price, volume)
        fees = self._fees(market.codes[stock_index], Side.BUY, price, volume)
        refusal = self._buy_refusal(amount, fees)
        if refusal:
            self._refuse(code, refusal)
            return
        stock = self._held_stock(stock_index, bar)
        bar = 1 if bar > 0 else 0  # list index of the entry bar: the lists start one bar before it
        position = strategy.apply_buy(None, stock.code, price, volume, fees, self._calendar_days[day_index])
        cap_price = stock.close[bar - 1] if bar > 0 else price
        holding = _Holding(stock, position, price, bar=bar, cursor=bar, touched=True, limits=limits,
                           limits_known=True, cap_price=cap_price, ex_action=ex_action)
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
            candidate = None
            for trigger in (triggers.stop_loss_price, triggers.dynamic_stop_price, *self._add_prices(holding)):
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
            if not actions:
                self._note_blocked_exit(holding, price)
                return
            if not self._fill(holding, actions[0], price):
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
                self._refuse(code, "limit_down")
                return False  # a sell cannot fill at or below limit-down
            price = self._slipped(code, Side.SELL, price, limits)
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
        if limits is not None and price >= limits[1]:
            self._refuse(code, "limit_up")
            return False  # a buy cannot fill at or above limit-up
        price = self._slipped(code, Side.BUY, price, limits)
        volume = action.volume
        amount, fees = strategy.trade_amount(price, volume), self._fees(code, Side.BUY, price, volume)
        refusal = self._buy_refusal(amount, fees)
        if refusal:
            self._refuse(code, refusal)
            return False  # the add level stays unused: it may fill at a later price point
        holding.position = strategy.apply_buy(holding.position, code, price, volume, fees,
                                              self._calendar_days[self._day_index], level_index=action.level_index)
        self._pay_for_buy(holding, price, volume, amount, fees, action.rule)
        return True

    def _pay_for_buy(self, holding: _Holding, price: float, volume: int, amount: float, fees: float,
                     rule: Rule) -> None:
        self._cash -= amount + fees
        self._fees_paid += fees
        holding.invested += amount + fees
        holding.last_price = price
        if market_rules.is_t0(holding.position.stock_code):  # bonds and T+0 funds sell the same day (issue 28)
            holding.position.available += volume
        self._record(holding, Side.BUY, price, volume, amount, fees, rule)

    def _buy_refusal(self, amount: float, fees: float) -> str:
        """'' when there is cash for amount + fees and market value stays within MAX_TOTAL_POSITION_RATIO of
        total assets, else 'cash' or 'cap'. Holdings are valued at their previous close (known before the day
        starts), so the answer does not depend on the order in which stocks are walked."""
        if amount + fees > self._cash + 1e-9:
            return "cash"
        market_value = sum(h.position.volume * h.cap_price for h in self._holdings.values())
        total_after = self._cash + market_value - fees
        return "" if market_value + amount <= self._cap_ratio * total_after + 1e-9 else "cap"

    def _refuse(self, code: str, reason: str) -> None:
        self._refused.add((self._day_index, code, reason))

    def _note_blocked_exit(self, holding: _Holding, price: float) -> None:
        """A sell-all exit that holds while nothing is available (bought today): a T+1 refusal."""
        position = holding.position
        if position.available > 0:
            return
        triggers = self._triggers(holding)
        if holding.macd_exit or any(trigger is not None and price <= trigger
                                    for trigger in (triggers.stop_loss_price, triggers.dynamic_stop_price)):
            self._refuse(position.stock_code, "t1")

    def _slipped(self, code: str, side: Side, price: float, limits: Optional[tuple[float, float]]) -> float:
        """The fill price under `--slippage`, within the day's limits."""
        if self._slippage is None:
            return price
        tick = float(market_rules.tick_size(code))
        move = max(self._slippage.ticks * tick, price * self._slippage.bps / 10_000)
        if side is Side.BUY:
            slipped = market_rules.round_price_up(code, price + move)
            return min(slipped, limits[1]) if limits is not None else slipped
        slipped = market_rules.round_price_down(code, price - move)
        return max(slipped, limits[0], tick) if limits is not None else max(slipped, tick)

    def _close_episode(self, holding: _Holding) -> None:
        position = holding.position
        self._episodes.append(EpisodeResult(position.stock_code, position.open_date,
                                            self._calendar_days[self._day_index], round(holding.invested, 2),
                                            round(holding.proceeds, 2)))
        del self._holdings[holding.stock.index]
        self._exited_today.add(holding.stock.index)

    def _record(self, holding: _Holding, side: Side, price: float, volume: int, amount: float, fees: float,
                rule: Rule) -> None:
        self._trades.append(Trade(self._calendar_days[self._day_index], holding.stock.code, side, price, volume, amount,
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

    def _add_prices(self, holding: _Holding) -> list[float]:
        """Every unused add level's trigger: each crossing is an evaluation point (a refused level retries)."""
        if holding.add_prices_key != holding.triggers_key:
            position = holding.position
            holding.add_prices = strategy.add_evaluation_prices(position, self._params_for(position.stock_code))
            holding.add_prices_key = holding.triggers_key
        return holding.add_prices

    def _is_held(self, holding: _Holding) -> bool:
        return holding.position.volume > 0

    def _limits(self, holding: _Holding) -> Optional[tuple[float, float]]:
        if not holding.limits_known:
            holding.limits = self._limits_of(holding.stock, holding.bar, holding.ex_action)
            holding.limits_known = True
        return holding.limits

    def _limits_of(self, stock: _Stock, bar: int,
                   ex_action: Optional[CorporateAction] = None) -> Optional[tuple[float, float]]:
        """(limit_down, limit_up) from the previous available close (on an ex-date: the exchange's reference
        price); None on a stock's first bar."""
        if bar <= 0:
            return None
        return self._limits_on(stock.code, ex_rights.limit_reference(stock.code, stock.close[bar - 1], ex_action),
                               stock.day[bar])

    def _limits_on(self, code: str, prev_close: float, day_index: int) -> Optional[tuple[float, float]]:
        """The limits of `code` on calendar day `day_index` (an ST stock's band depends on the date); None on a
        day without a limit (a new listing's first days, by the installed listing dates: issue 28)."""
        return market_rules.day_limits(code, prev_close, code in self._st_codes, self._calendar_days[day_index],
                                       self._st_rule)

    # ---- ex-rights days on unadjusted bars (issue 28) ---------------------------------------------------

    def _apply_ex_rights(self, holding: _Holding, bar: int) -> Optional[CorporateAction]:
        """Before the open of bar `bar`: the events since the previous bar (a stock suspended on its ex-date
        takes the event at its next bar) scale the holding's levels by their factor (as forward-adjusted bars
        would show them), add the bonus shares and pay the cash. Returns the last such event (its reference
        price is the day's limit base), None on other days."""
        stock = holding.stock
        actions = self._events.get(stock.code)
        if not actions or bar <= 0:
            return None
        after, through = self._calendar_days[stock.day[bar - 1]], self._calendar_days[stock.day[bar]]
        applied = None
        for action in ex_rights.events_between(actions, after, through):
            prev_close = stock.close[bar - 1]
            factor = ex_rights.price_factor(action, prev_close)
            position = holding.position
            change = ex_rights.holding_change(position.volume, position.cost_price * position.volume, action)
            holding.position = ex_rights.adjust_position(position, factor, change.volume_after)
            self._cash += change.cash_credit
            holding.proceeds += change.cash_credit
            holding.cap_price = ex_rights.adjust_level(holding.cap_price, factor)
            holding.triggers_key = holding.add_prices_key = None
            applied = action
        return applied

    def _ex_action_on(self, code: str, day_index: int) -> Optional[CorporateAction]:
        day = self._calendar_days[day_index]
        return next((a for a in self._events.get(code, ()) if a.ex_date == day), None)

    def _indicator_closes(self, stock_index: int) -> np.ndarray:
        """The closes MACD and the moving averages read: forward-adjusted when the bars are raw + events, so a
        bonus-share gap is not a crossing."""
        close = self._market.closes(stock_index)
        actions = self._events.get(self._market.codes[stock_index])
        if not actions:
            return close
        market = self._market
        start, end = int(market.offsets[stock_index]), int(market.offsets[stock_index + 1])
        days = [self._calendar_days[i] for i in market.day[start:end].tolist()]
        return close * np.array(ex_rights.cumulative_factors(days, actions, close.tolist()))

    # ---- preparation -----------------------------------------------------------------------------------

    def _seed(self, positions: Sequence[Position]) -> list[str]:
        """Holdings for the starting positions, valued at their last close before the first day; their highest
        price also counts the highs of the bars after their open date (the open day's own high may have come
        before the buy). Returns the codes that have no bar before the first day (left out)."""
        market = self._market
        index_of = {code: i for i, code in enumerate(market.codes)}
        left_out = []
        for position in positions:
            stock_index = index_of.get(position.stock_code)
            if stock_index is None or position.volume <= 0:
                left_out.append(position.stock_code)
                continue
            start, end = int(market.offsets[stock_index]), int(market.offsets[stock_index + 1])
            days = market.day[start:end]
            before = int(np.searchsorted(days, self._first))  # the stock's bars before the first day
            if before == 0:
                left_out.append(position.stock_code)
                continue
            opened = int(np.searchsorted(market.calendar, np.datetime64(position.open_date, "D"), side="right")) \
                if position.open_date is not None else 0
            since_open = market.high[start + int(np.searchsorted(days, opened)):start + before]
            highest = max(position.highest_price, float(since_open.max()) / PRICE_SCALE if len(since_open) else 0.0)
            stock = self._held_stock(stock_index, before)  # list index 0: the last bar before the first day
            previous_close = stock.close[0]
            self._holdings[stock_index] = _Holding(
                stock, position.copy(available=position.volume, highest_price=highest), previous_close,
                invested=round(position.cost_price * position.volume, 2), cursor=0, cap_price=previous_close)
        return left_out

    def _held_stock(self, stock_index: int, bar: int) -> _Stock:
        """Python lists of one stock's bars from the one before `bar` (its previous close), for its holding."""
        market = self._market
        code = market.codes[stock_index]
        row = int(market.offsets[stock_index]) + max(bar - 1, 0)
        stock = _Stock(stock_index, code, row, int(market.offsets[stock_index + 1]), market,
                       float(market_rules.tick_size(code)))
        stock.has_bar(1)
        return stock

    def _macd_events(self, stock_index: int) -> None:
        """MACD signals on each bar's close, decided by strategy.macd_signal, traded at the stock's next bar.
        numpy only narrows the bars to look at (histogram sign changes); the rule function decides."""
        params = self._params
        market = self._market
        start, end = int(market.offsets[stock_index]), int(market.offsets[stock_index + 1])
        if not (params.macd_buy_enabled or params.macd_sell_enabled) or end - start < MACD_SLOW + MACD_SIGNAL:
            return
        import talib  # imported lazily: only a run with MACD rules needs it

        close = self._indicator_closes(stock_index)
        hist = talib.MACD(close, MACD_FAST, MACD_SLOW, MACD_SIGNAL)[2]
        previous, current = hist[:-1], hist[1:]
        crossing = ((previous <= 0) & (current > 0)) | ((previous >= 0) & (current < 0))
        signal_bars = np.flatnonzero(crossing) + 1
        signal_bars = signal_bars[signal_bars + 1 < len(close)]
        trade_days = market.day[start:end][signal_bars + 1]
        inside = (trade_days >= self._first) & (trade_days < self._last)
        signal_bars, trade_days = signal_bars[inside], trade_days[inside]
        if len(signal_bars) == 0:
            return
        averages = [talib.SMA(close, period) for period in MA_PERIODS] if params.ma_filter_enabled \
            else [np.full(len(close), np.nan)] * len(MA_PERIODS)
        for bar, trade_day in zip(signal_bars.tolist(), trade_days.tolist()):
            rule = strategy.macd_signal(float(hist[bar - 1]), float(hist[bar]), params,
                                        *(float(series[bar]) for series in averages))
            if rule is Rule.MACD_BUY and market.codes[stock_index] not in self._no_entry:
                self._entries.setdefault(trade_day, []).append((stock_index, bar + 1))
            elif rule is Rule.MACD_SELL:
                self._exits.add((stock_index, trade_day))


def preload_talib_without_pandas() -> None:
    """Import TA-Lib without its optional pandas/polars wrappers (for the command line only: a process of its
    own). Importing pandas is a third of a warm 240-stock CLI run, and the engine passes numpy arrays only;
    in a process that has pandas already, or shares TA-Lib with code that passes pandas objects, do not call
    this."""
    import sys

    if "talib" in sys.modules:
        return
    blocked = [name for name in ("pandas", "polars") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # `import pandas` inside talib raises ImportError: its wrappers stay off
    try:
        import talib  # noqa: F401
    finally:
        for name in blocked:
            sys.modules.pop(name, None)


def _fires_at(triggers: strategy.TriggerPrices, price: float) -> bool:
    """Whether any trigger holds at `price` (a cheap pre-check before evaluating the rules)."""
    if triggers.take_profit_price is not None and price >= triggers.take_profit_price:
        return True
    for trigger in (triggers.stop_loss_price, triggers.dynamic_stop_price, triggers.next_add_price):
        if trigger is not None and price <= trigger:
            return True
    return False
