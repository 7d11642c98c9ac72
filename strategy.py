"""The trading rules of DESIGN §6 as pure functions of (position, price, parameters): actions, trigger prices,
the MACD entry/exit decision and the episode bookkeeping of a fill. The live monitor, the web chart and the
backtest all call these; the strategy thread that executes signals lives in its own module."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, Mapping, Optional

import market_rules
from core.models import Position, Rule

# Trigger prices and ratios are compared after rounding to 1e-9: a price exactly on a trigger (9.05 against
# 10 × 0.905 = 9.049999999999999 in binary) must count as reaching it, and 12 / 10 − 1 must reach the 0.20 row.
_PRICE_DIGITS = 9

# What the rules need from the settings, as (field, key).
_SETTING_KEYS = (
    ("stop_loss_ratio", "STOP_LOSS_RATIO"),
    ("take_profit_ratio", "INITIAL_TAKE_PROFIT_RATIO"),
    ("take_profit_sell_ratio", "INITIAL_TAKE_PROFIT_RATIO_PERCENTAGE"),
    ("dynamic_take_profit", "DYNAMIC_TAKE_PROFIT"),
    ("add_levels", "BUY_GRID_LEVELS"),
    ("position_unit", "POSITION_UNIT"),
    ("max_position_value", "MAX_POSITION_VALUE"),
    ("exits_enabled", "ENABLE_DYNAMIC_STOP_PROFIT"),
    ("add_enabled", "ENABLE_ADD_POSITION"),
    ("buy_allowed", "ENABLE_ALLOW_BUY"),
    ("sell_allowed", "ENABLE_ALLOW_SELL"),
    ("macd_buy_enabled", "ENABLE_MACD_BUY"),
    ("ma_filter_enabled", "ENABLE_MA_FILTER"),
    ("macd_sell_enabled", "ENABLE_MACD_SELL"),
)


@dataclass(frozen=True)
class RuleParams:
    """The parameters the rules read, frozen so that one evaluation sees one consistent set."""

    stop_loss_ratio: float
    take_profit_ratio: float
    take_profit_sell_ratio: float
    dynamic_take_profit: tuple[tuple[float, float], ...]  # (threshold, coefficient), thresholds ascending
    add_levels: tuple[float, ...]  # BUY_GRID_LEVELS, descending; 1.0 at index 0 is the opening buy
    position_unit: float
    max_position_value: float
    exits_enabled: bool  # ENABLE_DYNAMIC_STOP_PROFIT: stop-loss, first take-profit, dynamic stop
    add_enabled: bool
    buy_allowed: bool
    sell_allowed: bool
    macd_buy_enabled: bool
    ma_filter_enabled: bool
    macd_sell_enabled: bool

    @classmethod
    def from_settings(cls, settings: Any) -> "RuleParams":
        """Read the rule parameters from a ConfigStore (`settings.get(key)`) or a mapping of config values."""
        values = {name: _setting(settings, key) for name, key in _SETTING_KEYS}
        values["dynamic_take_profit"] = tuple((float(t), float(c)) for t, c in values["dynamic_take_profit"])
        values["add_levels"] = tuple(float(level) for level in values["add_levels"])
        for name in ("stop_loss_ratio", "take_profit_ratio", "take_profit_sell_ratio", "position_unit",
                     "max_position_value"):
            values[name] = float(values[name])
        for name in ("exits_enabled", "add_enabled", "buy_allowed", "sell_allowed", "macd_buy_enabled",
                     "ma_filter_enabled", "macd_sell_enabled"):
            values[name] = bool(values[name])
        return cls(**values)


@dataclass(frozen=True)
class Action:
    """One thing the rules want done now. Sells carry the shares to sell; adds carry the money to spend
    (`amount`) and the shares that buys at the evaluated price (`volume`)."""

    rule: Rule
    volume: int
    trigger_price: float
    amount: float = 0.0
    level_index: Optional[int] = None


@dataclass(frozen=True)
class TriggerPrices:
    """Where each rule fires for the current state (None where a rule does not apply).

    stop_loss_price / dynamic_stop_price / next_add_price fire at or below; take_profit_price at or above.
    next_add_price already includes the budget: below it the add buys at least one lot."""

    stop_loss_price: Optional[float] = None
    take_profit_price: Optional[float] = None
    dynamic_stop_price: Optional[float] = None
    next_add_price: Optional[float] = None
    next_add_index: Optional[int] = None
    # for people reading the table (not part of the rule): the level's own price before the budget, and its
    # ordinal among the add levels (1 = the first add; the opening buy at level 1.0 is not an add)
    next_add_level_price: Optional[float] = field(default=None, compare=False)
    next_add_ordinal: Optional[int] = field(default=None, compare=False)


NO_TRIGGERS = TriggerPrices()


# ---- trigger prices ---------------------------------------------------------------------------------

def stop_loss_price(cost_price: float, params: RuleParams) -> float:
    """cost × (1 + STOP_LOSS_RATIO): at or below it, sell all available."""
    return round(cost_price * (1 + params.stop_loss_ratio), _PRICE_DIGITS)


def take_profit_price(cost_price: float, params: RuleParams) -> float:
    """cost × (1 + INITIAL_TAKE_PROFIT_RATIO): at or above it, the first take-profit sells its share."""
    return round(cost_price * (1 + params.take_profit_ratio), _PRICE_DIGITS)


def dynamic_stop_price(highest_price: float, cost_price: float, params: RuleParams) -> Optional[float]:
    """highest × coefficient of the largest threshold ≤ highest/cost − 1; None below the first threshold."""
    if cost_price <= 0 or highest_price <= 0:
        return None
    gain = round(highest_price / cost_price - 1, _PRICE_DIGITS)
    coefficient = None
    for threshold, row_coefficient in params.dynamic_take_profit:
        if threshold <= gain:
            coefficient = row_coefficient
    if coefficient is None:
        return None
    return round(highest_price * coefficient, _PRICE_DIGITS)


def add_budget(position: Position, params: RuleParams) -> float:
    """min(POSITION_UNIT, MAX_POSITION_VALUE − volume × cost) in CNY (cost includes buy fees).

    Rounded to the cent: volume × cost is a sum of cent amounts, the rounding only removes binary noise."""
    room = params.max_position_value - position.volume * position.cost_price
    return round(max(0.0, min(params.position_unit, room)), 2)


def next_add_level(position: Position, params: RuleParams) -> Optional[tuple[int, float]]:
    """(index, level) of the highest add level not yet used in this episode, or None.

    The opening buy of an episode is level 1.0: a level of exactly 1.0 at index 0 is never an add, whether
    or not the caller recorded index 0 in `used_add_levels` (the backtest does not; either way agrees)."""
    best: Optional[tuple[int, float]] = None
    for index, level in enumerate(params.add_levels):
        if index in position.used_add_levels or (index == 0 and level == 1.0):
            continue
        if best is None or level > best[1]:
            best = (index, level)
    return best


def trigger_prices(position: Position, params: RuleParams) -> TriggerPrices:
    """Trigger prices of every rule for this state (for the monitor, the chart and the backtest); none for an
    instrument the rules leave alone (issue 28: market_rules.untradable_reason)."""
    if position.volume <= 0 or position.cost_price <= 0 or market_rules.untradable_reason(position.stock_code):
        return NO_TRIGGERS
    stop = take = dynamic = None
    if params.exits_enabled:
        stop = stop_loss_price(position.cost_price, params)
        if position.profit_triggered:
            dynamic = dynamic_stop_price(position.highest_price, position.cost_price, params)
        else:
            take = take_profit_price(position.cost_price, params)
    add_price, add_index = _add_trigger(position, params)
    if add_index is None:
        return TriggerPrices(stop, take, dynamic, add_price, add_index)
    level_price = round(position.base_cost_price * params.add_levels[add_index], _PRICE_DIGITS)
    return TriggerPrices(stop, take, dynamic, add_price, add_index, level_price, add_ordinal(params, add_index))


def add_ordinal(params: RuleParams, index: int) -> int:
    """1 for the first add level: a level of exactly 1.0 at index 0 is the opening buy, not an add."""
    return index if params.add_levels and params.add_levels[0] == 1.0 else index + 1


# ---- evaluation -------------------------------------------------------------------------------------

def evaluate(position: Position, price: float, params: RuleParams, macd_exit: bool = False,
             triggers: Optional[TriggerPrices] = None) -> list[Action]:
    """The action to take at `price` now (a list of at most one), by precedence: sell-all exits
    (stop-loss, dynamic stop, MACD exit when `macd_exit`), then first take-profit, then add-position.

    Each fill changes the state every other rule reads, so callers execute the action, apply the fill
    (`apply_buy` / `apply_sell`) and evaluate again at the same price until nothing is returned; that is how
    two add levels gapped through at once fill one after the other, highest level first.

    Callers update `highest_price` with the price before calling. Sells need available shares (T+1) and
    ENABLE_ALLOW_SELL; adds need ENABLE_ALLOW_BUY. While an exit condition holds nothing is added to the
    position, even when the exit itself cannot sell (T+1, selling disabled); the same for first take-profit."""
    if position.volume <= 0 or not _is_price(price):
        return []
    triggers = triggers or trigger_prices(position, params)  # callers that already have them pass them in
    can_sell = params.sell_allowed and position.available > 0
    exit_trigger = _sell_all_exit(triggers, price, params, macd_exit)
    if exit_trigger is not None:
        rule, trigger = exit_trigger
        return [Action(rule, position.available, trigger)] if can_sell else []
    if triggers.take_profit_price is not None and price >= triggers.take_profit_price:
        if not can_sell:
            return []
        volume = market_rules.sell_volume_for_ratio(position.stock_code, position.available,
                                                    params.take_profit_sell_ratio)
        return [Action(Rule.TAKE_PROFIT, volume, triggers.take_profit_price)]
    if triggers.next_add_price is not None and price <= triggers.next_add_price:
        amount = add_budget(position, params)
        volume = market_rules.buy_volume_for_amount(position.stock_code, amount, price)
        if volume > 0:
            return [Action(Rule.ADD_POSITION, volume, triggers.next_add_price, amount, triggers.next_add_index)]
    return []


def macd_signal(prev_hist: Optional[float], hist: Optional[float], params: RuleParams,
                ma10: Optional[float] = None, ma20: Optional[float] = None, ma30: Optional[float] = None,
                ma60: Optional[float] = None) -> Optional[Rule]:
    """MACD decision on the last completed bar: Rule.MACD_BUY when the histogram crosses from ≤ 0 to > 0
    (and MA10 > MA20 > MA30 > MA60 when ENABLE_MA_FILTER), Rule.MACD_SELL when it crosses from ≥ 0 to < 0
    (only with ENABLE_MACD_SELL), else None. Missing values (None/NaN, e.g. during warm-up) decide nothing.
    The caller adds the conditions on the account: entries only for pool stocks without a position."""
    if not (_is_number(prev_hist) and _is_number(hist)):
        return None
    if prev_hist <= 0 < hist:
        if not (params.macd_buy_enabled and params.buy_allowed):
            return None
        if params.ma_filter_enabled and not _ma_aligned(ma10, ma20, ma30, ma60):
            return None
        return Rule.MACD_BUY
    if prev_hist >= 0 > hist and params.macd_sell_enabled and params.sell_allowed:
        return Rule.MACD_SELL
    return None


# ---- episode bookkeeping of fills -------------------------------------------------------------------

def apply_buy(position: Optional[Position], stock_code: str, price: float, volume: int, fees: float,
              day: date, level_index: Optional[int] = None) -> Position:
    """The position after a buy fill. Into a flat (or no) position it opens a fresh episode: base cost =
    fill price, highest = fill price, profit not triggered, no add level used. Cost includes buy fees.
    Bought shares are not available today (T+1): `available` is unchanged."""
    if volume <= 0:
        raise ValueError(f"{stock_code} 买入数量必须大于0：{volume}")
    paid = trade_amount(price, volume) + fees
    if position is None or position.volume <= 0:
        name = position.stock_name if position is not None else ""
        return Position(stock_code=stock_code, stock_name=name, volume=volume, available=0,
                        cost_price=paid / volume, base_cost_price=price, current_price=price,
                        open_date=day, highest_price=price,
                        used_add_levels=(level_index,) if level_index is not None else ())
    total_volume = position.volume + volume
    used = position.used_add_levels
    if level_index is not None and level_index not in used:
        used = used + (level_index,)
    return position.copy(volume=total_volume,
                         cost_price=(position.volume * position.cost_price + paid) / total_volume,
                         current_price=price, highest_price=max(position.highest_price, price),
                         used_add_levels=used)


def apply_sell(position: Position, volume: int, rule: Rule) -> Position:
    """The position after a sell fill (cost unchanged). The first take-profit sets `profit_triggered`.
    At volume 0 the episode is over; the next buy opens a fresh one."""
    if volume <= 0 or volume > position.available:
        raise ValueError(f"{position.stock_code} 卖出数量 {volume} 超过可用 {position.available}")
    return position.copy(volume=position.volume - volume, available=position.available - volume,
                         profit_triggered=position.profit_triggered or rule is Rule.TAKE_PROFIT)


def trade_amount(price: float, volume: int) -> float:
    """price × volume in CNY, exact to the cent (the amount of a fill, before fees)."""
    return float((Decimal(str(price)) * Decimal(int(volume))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# ---- helpers ----------------------------------------------------------------------------------------

def _sell_all_exit(triggers: TriggerPrices, price: float, params: RuleParams,
                   macd_exit: bool) -> Optional[tuple[Rule, float]]:
    if triggers.stop_loss_price is not None and price <= triggers.stop_loss_price:
        return Rule.STOP_LOSS, triggers.stop_loss_price
    if triggers.dynamic_stop_price is not None and price <= triggers.dynamic_stop_price:
        return Rule.DYNAMIC_STOP, triggers.dynamic_stop_price
    if macd_exit and params.macd_sell_enabled:
        return Rule.MACD_SELL, price
    return None


def _add_trigger(position: Position, params: RuleParams) -> tuple[Optional[float], Optional[int]]:
    """Price at or below which the next add level buys at least one lot: min(base × level, budget / lot)."""
    if (not params.add_enabled or not params.buy_allowed or position.profit_triggered
            or position.base_cost_price <= 0):
        return None, None
    level = next_add_level(position, params)
    if level is None:
        return None, None
    budget = add_budget(position, params)
    smallest_buy = _smallest_buy_volume(position.stock_code)
    if budget < smallest_buy * 0.01:
        return None, None
    index, ratio = level
    price = min(position.base_cost_price * ratio, budget / smallest_buy)
    return round(price, _PRICE_DIGITS), index


def add_evaluation_prices(position: Position, params: RuleParams) -> list[float]:
    """The trigger price of every add level not yet used (highest first). A refused higher level is retried
    wherever its condition still holds, so the crossing of a lower level is an evaluation point too (DESIGN §7
    decided cases); the action taken there is still `evaluate`'s (the highest unused level first)."""
    price, _ = _add_trigger(position, params)
    if price is None:
        return []
    budget_price = add_budget(position, params) / _smallest_buy_volume(position.stock_code)
    prices = [round(min(position.base_cost_price * level, budget_price), _PRICE_DIGITS)
              for index, level in enumerate(params.add_levels)
              if index not in position.used_add_levels and not (index == 0 and level == 1.0)]
    return sorted(set(prices), reverse=True)


@lru_cache(maxsize=4096)
def _smallest_buy_volume(code: str) -> int:
    return market_rules.min_buy_volume(code)  # by kind: 100, STAR 200, BSE 100, bonds 10 张 (issue 28)


def _ma_aligned(ma10: Any, ma20: Any, ma30: Any, ma60: Any) -> bool:
    values = (ma10, ma20, ma30, ma60)
    return all(_is_number(v) for v in values) and ma10 > ma20 > ma30 > ma60


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _is_price(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0


def _setting(settings: Any, key: str) -> Any:
    if isinstance(settings, Mapping):
        return settings[key]
    return settings.get(key)
