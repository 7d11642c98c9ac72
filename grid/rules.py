"""Grid trading rules as pure functions: trigger prices around the last grid fill, the callback (rebound /
pullback) tracking, order sizing within lots and the investment cap, the grid's own P&L and the conditions
that end a session. No I/O, no clock, no logging: callers pass prices, times and holdings in."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from enum import Enum
from typing import Any, Mapping, Optional

import config
import market_rules
from core.models import Side


class GridStatus(str, Enum):
    ACTIVE = "active"
    STOPPED = "stopped"  # ended from outside: the user, or an exit rule of the position
    FINISHED = "finished"  # ended by one of its own end conditions

    @property
    def label(self) -> str:
        return {"active": "运行中", "stopped": "已停止", "finished": "已结束"}[self.value]


class GridEndReason(str, Enum):
    MANUAL = "manual"
    TARGET_PROFIT = "target_profit"
    STOP_LOSS = "stop_loss"
    EXPIRED = "expired"
    DEVIATION = "deviation"
    POSITION_GONE = "position_gone"
    POSITION_EXIT = "position_exit"  # the position's stop-loss / dynamic stop / MACD exit was executed
    SEND_FAILED = "send_failed"  # its orders failed or got no answer more than GRID_SEND_RETRY_LIMIT times

    @property
    def label(self) -> str:
        return END_REASON_LABELS[self]

    @property
    def status(self) -> GridStatus:
        outside = (GridEndReason.MANUAL, GridEndReason.POSITION_EXIT, GridEndReason.SEND_FAILED)
        return GridStatus.STOPPED if self in outside else GridStatus.FINISHED


END_REASON_LABELS = {
    GridEndReason.MANUAL: "手动停止",
    GridEndReason.TARGET_PROFIT: "达到目标收益",
    GridEndReason.STOP_LOSS: "触发网格止损",
    GridEndReason.EXPIRED: "超过最长运行天数",
    GridEndReason.DEVIATION: "价格偏离网格中心过远",
    GridEndReason.POSITION_GONE: "持仓已清空",
    GridEndReason.POSITION_EXIT: "持仓触发止损/止盈卖出",
    GridEndReason.SEND_FAILED: "委托多次失败或结果未知",
}


def retry_delay_seconds(failures: int, backoff: float) -> float:
    """Seconds to wait after the `failures`-th consecutive failed send before the grid sends again:
    `backoff`, doubled with each further failure."""
    return backoff * 2 ** max(0, failures - 1)

# Session parameter ↔ config key. These may be overridden per session; the cool-down is global.
PARAM_KEYS = {
    "step_ratio": "GRID_STEP_RATIO",
    "buy_amount": "GRID_BUY_AMOUNT",
    "callback_ratio": "GRID_CALLBACK_RATIO",
    "max_investment": "GRID_MAX_INVESTMENT",
    "take_profit_ratio": "GRID_TAKE_PROFIT_RATIO",
    "stop_loss_ratio": "GRID_STOP_LOSS_RATIO",
    "max_hold_days": "GRID_MAX_HOLD_DAYS",
    "max_deviation": "GRID_MAX_DEVIATION",
}


class GridParamError(ValueError):
    """Refused session parameters; `errors` maps each key to a Chinese reason."""

    def __init__(self, errors: Mapping[str, str]):
        super().__init__("；".join(errors.values()))
        self.errors = dict(errors)


@dataclass(frozen=True)
class GridParams:
    step_ratio: float
    buy_amount: float
    callback_ratio: float
    max_investment: float
    take_profit_ratio: float
    stop_loss_ratio: float
    max_hold_days: int
    max_deviation: float

    @classmethod
    def from_settings(cls, settings: Any, overrides: Optional[Mapping[str, Any]] = None) -> "GridParams":
        """Current GRID_* settings, with `overrides` (GRID_* keys) type- and range-checked like config.py."""
        overrides = dict(overrides or {})
        errors: dict[str, str] = {}
        unknown = set(overrides) - set(PARAM_KEYS.values())
        for key in sorted(unknown):
            errors[key] = f"网格参数 {key} 不存在"
        values = {}
        for name, key in PARAM_KEYS.items():
            value = overrides[key] if key in overrides else settings.get(key)
            try:
                values[name] = config.coerce_value(config.PARAMS_BY_KEY[key], value)
            except ValueError as exc:
                errors[key] = str(exc)
        if not errors and values["stop_loss_ratio"] >= 0:
            errors["GRID_STOP_LOSS_RATIO"] = "网格止损率必须小于 0"
        if not errors and values["buy_amount"] > values["max_investment"]:
            errors["GRID_BUY_AMOUNT"] = "每格买入金额不能大于网格最大投入"
        if errors:
            raise GridParamError(errors)
        return cls(**values)


# ---- price levels -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridLevels:
    reference_price: float  # the last grid fill (the centre before the first fill)
    buy_price: float  # one step below, rounded down to the tick: the first tick at or below the step
    sell_price: float  # one step above, rounded up to the tick


def levels(code: str, reference_price: float, params: GridParams) -> GridLevels:
    ref, step = _dec(reference_price), _dec(params.step_ratio)
    return GridLevels(reference_price, _to_tick(code, ref * (1 - step), ROUND_FLOOR),
                      _to_tick(code, ref * (1 + step), ROUND_CEILING))


@dataclass(frozen=True)
class GridWatch:
    """Callback tracking: the lowest price since the buy level was reached (None: not reached) and the
    highest price since the sell level was reached. Reset by every grid fill."""

    low: Optional[float] = None
    high: Optional[float] = None


def track(watch: GridWatch, grid: GridLevels, price: float) -> GridWatch:
    """Fold one price into the watch. A dip that climbs back to the reference price without a buy is over
    (and likewise a rise that falls back to it), so the next dip starts a fresh low."""
    low, high = watch.low, watch.high
    if low is not None and price >= grid.reference_price:
        low = None
    elif price <= grid.buy_price or low is not None:
        low = price if low is None else min(low, price)
    if high is not None and price <= grid.reference_price:
        high = None
    elif price >= grid.sell_price or high is not None:
        high = price if high is None else max(high, price)
    return GridWatch(low, high)


def rebound_price(code: str, watch: GridWatch, params: GridParams) -> Optional[float]:
    """Where a grid buy fires: the low raised by the callback ratio, rounded up to the tick."""
    if watch.low is None:
        return None
    return _to_tick(code, _dec(watch.low) * (1 + _dec(params.callback_ratio)), ROUND_CEILING)


def pullback_price(code: str, watch: GridWatch, params: GridParams) -> Optional[float]:
    """Where a grid sell fires: the high lowered by the callback ratio, rounded down to the tick."""
    if watch.high is None:
        return None
    return _to_tick(code, _dec(watch.high) * (1 - _dec(params.callback_ratio)), ROUND_FLOOR)


def buy_holds(code: str, grid: GridLevels, watch: GridWatch, price: float, params: GridParams) -> bool:
    """Without callback: price at or below the buy level. With callback: the buy level was reached and the
    price has rebounded by the callback ratio from the low, still below the last fill."""
    if params.callback_ratio <= 0:
        return price <= grid.buy_price
    trigger = rebound_price(code, watch, params)
    return trigger is not None and trigger <= price < grid.reference_price


def sell_holds(code: str, grid: GridLevels, watch: GridWatch, price: float, params: GridParams) -> bool:
    if params.callback_ratio <= 0:
        return price >= grid.sell_price
    trigger = pullback_price(code, watch, params)
    return trigger is not None and grid.reference_price < price <= trigger


# ---- the grid's own book ------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridBook:
    """Net shares the grid bought (negative: it sold more than it bought, i.e. base shares of the position),
    their cost basis (average cost, signed like the volume), realized P&L net of all fees, and counters."""

    net_volume: int = 0
    open_cost: float = 0.0
    realized_pnl: float = 0.0
    fees: float = 0.0
    buy_count: int = 0
    sell_count: int = 0
    bought_volume: int = 0
    sold_volume: int = 0

    @property
    def average_price(self) -> float:
        return self.open_cost / self.net_volume if self.net_volume else 0.0

    @property
    def invested(self) -> float:
        """Money tied up in the grid's net long shares (0 when net short)."""
        return self.open_cost if self.net_volume > 0 else 0.0

    @property
    def sold_short(self) -> float:
        """Proceeds basis of base shares the grid sold beyond what it bought (0 when net long)."""
        return -self.open_cost if self.net_volume < 0 else 0.0


def apply_fill(book: GridBook, side: Side, price: float, volume: int, fees: float) -> GridBook:
    """Average-cost accounting of one grid fill; a fill that crosses zero closes, then opens the rest."""
    signed = volume if side is Side.BUY else -volume
    net, open_cost, realized = book.net_volume, book.open_cost, book.realized_pnl
    if net != 0 and (net > 0) != (signed > 0):
        closing = min(abs(signed), abs(net))
        direction = 1 if net > 0 else -1
        average = open_cost / net
        realized += closing * (price - average) * direction
        open_cost -= average * closing * direction
        net -= closing * direction
        signed += closing * direction
        if net == 0:
            open_cost = 0.0  # no float residue on a flat book
    open_cost += signed * price
    net += signed
    return replace(book, net_volume=net, open_cost=open_cost, realized_pnl=realized - fees, fees=book.fees + fees,
                   buy_count=book.buy_count + (side is Side.BUY), sell_count=book.sell_count + (side is Side.SELL),
                   bought_volume=book.bought_volume + (volume if side is Side.BUY else 0),
                   sold_volume=book.sold_volume + (volume if side is Side.SELL else 0))


@dataclass(frozen=True)
class GridPnl:
    realized: float
    unrealized: float
    total: float


def pnl(book: GridBook, price: float) -> GridPnl:
    """Realized (net of fees) + unrealized (net shares marked at `price`), in CNY rounded to cents."""
    unrealized = book.net_volume * price - book.open_cost if book.net_volume else 0.0
    realized = cents(book.realized_pnl)
    unrealized = cents(unrealized)
    return GridPnl(realized, unrealized, cents(realized + unrealized))


# ---- decisions ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GridState:
    """What a session knows between quotes."""

    reference_price: float
    watch: GridWatch
    book: GridBook
    last_fill_time: Optional[datetime] = None


@dataclass(frozen=True)
class GridOrder:
    side: Side
    volume: int
    trigger_price: float  # the grid level (no callback) or the rebound / pullback price


def grid_volume(code: str, reference_price: float, params: GridParams) -> int:
    """Shares of one grid: GRID_BUY_AMOUNT at the last fill price, in buy lots. Sized at the reference (not
    the trade price) so that a sell one step up returns the shares the buy one step down took."""
    return market_rules.buy_volume_for_amount(code, params.buy_amount, reference_price)


def min_grid_amount(code: str, center_price: float) -> float:
    """The smallest whole-yuan amount per grid that buys one lot at the centre price (what the grid form
    proposes when the configured amount buys none)."""
    amount = float((_dec(center_price) * market_rules.min_buy_volume(code)).to_integral_value(ROUND_CEILING))
    while market_rules.buy_volume_for_amount(code, amount, center_price) <= 0:  # float edge: one yuan more
        amount += 1
    return amount


def buy_volume(code: str, state: GridState, price: float, params: GridParams) -> int:
    """One grid, cut so that the grid's net long cost never exceeds max_investment (buying back base shares
    the grid sold adds no investment); 0 when not even one lot fits."""
    book = state.book
    buy_back = max(0, -book.net_volume)
    room = params.max_investment - book.invested
    fits = buy_back + (int(_dec(room) // _dec(price)) if room > 0 else 0)
    return _round_lot(code, min(grid_volume(code, state.reference_price, params), fits))


def sell_volume(code: str, state: GridState, price: float, sellable: int, params: GridParams) -> int:
    """One grid, within `sellable` (the position's available shares, net of open sell orders), and so that
    base shares sold beyond the grid's own purchases stay within max_investment; 0 when no lot fits."""
    book = state.book
    own = max(0, book.net_volume)
    room = params.max_investment - book.sold_short
    fits = own + (int(_dec(room) // _dec(price)) if room > 0 else 0)
    return _round_lot(code, min(grid_volume(code, state.reference_price, params), fits, max(0, sellable)))


def in_cooldown(state: GridState, now: datetime, cooldown_seconds: float) -> bool:
    return state.last_fill_time is not None and (now - state.last_fill_time).total_seconds() < cooldown_seconds


def decide(code: str, state: GridState, price: float, sellable: int, params: GridParams, now: datetime,
           cooldown_seconds: float) -> Optional[GridOrder]:
    """The grid order due at `price` (the watch already updated with it), or None."""
    if in_cooldown(state, now, cooldown_seconds):
        return None
    grid = levels(code, state.reference_price, params)
    if buy_holds(code, grid, state.watch, price, params):
        volume = buy_volume(code, state, price, params)
        trigger = grid.buy_price if params.callback_ratio <= 0 else rebound_price(code, state.watch, params)
        return GridOrder(Side.BUY, volume, trigger) if volume > 0 else None
    if sell_holds(code, grid, state.watch, price, params):
        volume = sell_volume(code, state, price, sellable, params)
        trigger = grid.sell_price if params.callback_ratio <= 0 else pullback_price(code, state.watch, params)
        return GridOrder(Side.SELL, volume, trigger) if volume > 0 else None
    return None


def still_valid(code: str, state: GridState, side: Side, volume: int, price: float, sellable: int,
                params: GridParams) -> str:
    """Execution-time check of a queued grid order at the current price: '' or the Chinese reason."""
    grid = levels(code, state.reference_price, params)
    if side is Side.BUY:
        if not buy_holds(code, grid, state.watch, price, params):
            return f"{code} 网格买入条件在现价 {price:.3f} 已不成立（买入价 {grid.buy_price:.3f}）"
        if volume > buy_volume(code, state, price, params):
            return f"{code} 网格买入 {volume} 股将超过网格最大投入 {params.max_investment:.2f} 元"
        return ""
    if not sell_holds(code, grid, state.watch, price, params):
        return f"{code} 网格卖出条件在现价 {price:.3f} 已不成立（卖出价 {grid.sell_price:.3f}）"
    if volume > sell_volume(code, state, price, sellable, params):
        return f"{code} 可卖数量不足（可用 {sellable} 股），网格卖出 {volume} 股不再执行"
    return ""


def end_reason(book: GridBook, params: GridParams, center_price: float, price: float, trading_days_held: int,
               position_volume: int) -> Optional[GridEndReason]:
    """Why the session must end now, or None. Checked in this order: position gone, grid stop-loss, target
    profit, deviation from the centre, expiry."""
    if position_volume <= 0:
        return GridEndReason.POSITION_GONE
    total = _dec(pnl(book, price).total)
    budget = _dec(params.max_investment)
    if total <= _cents_dec(budget * _dec(params.stop_loss_ratio)):
        return GridEndReason.STOP_LOSS
    if total >= _cents_dec(budget * _dec(params.take_profit_ratio)):
        return GridEndReason.TARGET_PROFIT
    if abs(_dec(price) - _dec(center_price)) > _dec(center_price) * _dec(params.max_deviation):
        return GridEndReason.DEVIATION
    if trading_days_held >= params.max_hold_days:
        return GridEndReason.EXPIRED
    return None


def cents(value: float) -> float:
    return float(_cents_dec(_dec(value)))


# ---- internals ----------------------------------------------------------------------------------------

def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _cents_dec(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _to_tick(code: str, price: Decimal, rounding: str) -> float:
    tick = market_rules.tick_size(code)
    return float((price / tick).to_integral_value(rounding=rounding) * tick)


def _round_lot(code: str, shares: int) -> int:
    """Largest valid order size ≤ shares (lots of 100; STAR: any size from 200; BSE from 100; bonds × 10)."""
    if shares <= 0:
        return 0
    rule = market_rules.lot_rule(code)
    rounded = shares // rule.step * rule.step
    return rounded if rounded >= rule.minimum else 0
