"""Pure order rules shared by the executor's pre-trade checks and the simulated broker: each check returns
normally or raises core.models.OrderRejected with a machine code and a Chinese reason."""
from __future__ import annotations

import math
from typing import Any

import market_rules
from core.models import OrderRejected, Quote, Side


def normalized_code(text: str) -> str:
    try:
        return market_rules.normalize_code(text)
    except ValueError as exc:
        raise OrderRejected("INVALID_CODE", str(exc)) from None


NO_LIMIT_UP = math.inf  # the upper bound on a day without a price limit (a new listing's first days)


def limits(quote: Quote) -> tuple[float, float]:
    """(limit_down, limit_up) of the quote's day: the exchange's own limits the quote carries, else computed
    from its previous close (market_rules.day_limits). On a day without a price limit (a new listing's first
    days, issue 28): (one tick, infinity), so no price is out of range and nothing is ever sealed."""
    day = quote.time.date() if quote.time else None
    if quote.limit_down and quote.limit_up and not market_rules.listing_rule_applies(quote.code, day):
        return quote.limit_down, quote.limit_up
    band = market_rules.day_limits(quote.code, quote.prev_close, market_rules.is_st_name(quote.name), day)
    if band is None:
        return float(market_rules.tick_size(quote.code)), NO_LIMIT_UP
    return band


def marketable_price(code: str, side: Side, quote: Quote, slippage: float) -> float:
    """A limit price that trades now: buy price × (1 + slippage) capped at limit-up, sell × (1 − slippage)
    floored at limit-down, rounded half-up to the tick."""
    down, up = limits(quote)
    if side is Side.BUY:
        return min(market_rules.round_price(code, quote.price * (1 + slippage)), up)
    return max(market_rules.round_price(code, quote.price * (1 - slippage)), down)


def check_volume_type(volume: Any) -> int:
    if isinstance(volume, bool) or not isinstance(volume, (int, float)) or not float(volume).is_integer() \
            or volume <= 0:
        raise OrderRejected("INVALID_VOLUME", f"委托数量必须是正整数股，收到：{volume}")
    return int(volume)


def check_buy_volume(code: str, volume: int) -> None:
    if market_rules.is_valid_buy_volume(code, volume):
        return
    raise OrderRejected("INVALID_VOLUME", market_rules.buy_lot_message(code, volume))


def check_sell_available(code: str, volume: int, available: int, held: int, frozen: int) -> None:
    """Enough sellable shares: distinguishes T+1 (bought today) from shares tied up in open sell orders."""
    if held <= 0:
        raise OrderRejected("NO_POSITION", f"没有 {code} 的持仓，无法卖出")
    if volume <= available:
        return
    bought_today = max(0, held - frozen - available)
    if volume <= available + bought_today:
        raise OrderRejected("T1_UNAVAILABLE", f"今日买入的股份需下一交易日才能卖出：{code} 当前可卖 {available} 股，"
                                              f"今日买入未解冻 {bought_today} 股，委托 {volume} 股")
    if frozen > 0:
        raise OrderRejected("INSUFFICIENT_AVAILABLE", f"{code} 可卖数量不足：委托 {volume} 股，可卖 {available} 股"
                                                      f"（另有 {frozen} 股已在未成交卖单中）")
    raise OrderRejected("INSUFFICIENT_AVAILABLE", f"{code} 可卖数量不足：委托 {volume} 股，可卖 {available} 股")


def check_sell_volume(code: str, volume: int, available: int) -> None:
    """Whole lots (STAR ≥ 200, BSE ≥ 100, bonds × 10 张), or the whole odd remainder at once."""
    if market_rules.is_valid_sell_volume(code, volume, available):
        return
    rule, kind, unit = market_rules.lot_rule(code), market_rules.board(code), market_rules.volume_unit(code)
    if rule.step == 1:
        raise OrderRejected("INVALID_VOLUME", f"{kind.label}卖出数量至少 {rule.minimum} {unit}，"
                                              f"不足部分须一次全部卖出（可卖 {available} {unit}，委托 {volume} {unit}）")
    odd = "零股" if unit == "股" else "零头"
    raise OrderRejected("INVALID_VOLUME", f"卖出数量必须是 {rule.step} {unit}的整数倍，{odd}须一次全部卖出"
                                          f"（可卖 {available} {unit}，委托 {volume} {unit}）")


def check_price(code: str, side: Side, price: float, quote: Quote) -> None:
    """A positive price on the tick, inside today's limits; no buy into a sealed limit-up, no sell into a
    sealed limit-down (the order could not trade there)."""
    if isinstance(price, bool) or not isinstance(price, (int, float)) or math.isnan(price) or price <= 0:
        raise OrderRejected("INVALID_PRICE", f"委托价无效：{price}")
    if market_rules.round_price(code, price) != round(price, 6):
        raise OrderRejected("INVALID_PRICE", f"委托价 {price} 不是最小变动价位 {market_rules.tick_size(code)} 元的整数倍")
    down, up = limits(quote)
    if price > up or price < down:
        raise OrderRejected("PRICE_OUT_OF_LIMITS", f"{code} 委托价 {price:g} 超出今日涨跌停范围 {down:g} ~ {up:g}")
    if side is Side.BUY and quote.price >= up:
        raise OrderRejected("LIMIT_UP", f"{code} 已涨停（{up:g} 元），买入无法成交，不下单")
    if side is Side.SELL and quote.price <= down:
        raise OrderRejected("LIMIT_DOWN", f"{code} 已跌停（{down:g} 元），卖出无法成交，不下单")


def buy_cost(code: str, price: float, volume: int, settings: Any) -> float:
    """Cash a buy needs: amount plus its fees (what a broker freezes)."""
    fees = market_rules.fees(code, Side.BUY.value, price, volume, settings)
    return round(round(price * volume, 2) + fees["total"], 2)
