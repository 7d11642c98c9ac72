"""Ex-rights and ex-dividend days (除权除息, issue 28 §2) as pure functions: a corporate action and its price
factor, adjusting a price level, a holding and a bar series by it, the events file of a replay, and events
derived from a raw vs forward-adjusted (qfq) pair of series. No I/O beyond reading the text given, no clock."""
from __future__ import annotations

import bisect
import csv
import io
import math
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Iterable, Mapping, Optional, Sequence

import market_rules
from core.models import Position

# The exchanges' ex-rights (ex-dividend) reference price, SSE Trading Rules §4.3.1 (「流通股份变动比例」) and
# SZSE Trading Rules §4.4.1 (「股份变动比例」), the texts in force since the 2026-07-06 revisions as cited in
# ../shared/reference/instrument_rules.md §8 [S, 40] (checked 2026-12-08):
#   除权(息)参考价 = [(前收盘价 − 现金红利) + 配股价格 × 流通股份变动比例] ÷ (1 + 流通股份变动比例)
# Cash per share is pre-tax; 送股 and 转增 both count in the share change; a rights issue adds its price × ratio.
# The ex-date's price limits are computed from this reference, rounded half-up to the tick (SSE §3.3.17,
# SZSE §3.3.19), not from the previous close. Example from the reference: close 10.00, 10派2送3 →
# (10 − 0.2) ÷ 1.3 = 7.538.
FACTOR_DIGITS = 9  # factors are kept to 1e-9: far below a tick on any A-share price
LEVEL_DIGITS = 6  # adjusted levels: float noise removed, not rounded to the tick (the rules round triggers)
QFQ_ROUNDING = 0.005  # Tushare's qfq prices are rounded to 0.01 (../shared/data/full/SOURCES.md §1)
SHARE_RATIO_STEP = Decimal("0.1")  # derived bonus ratios are whole shares per 10 (10送3, 10转10): the usual notice
BONUS_FACTOR_BELOW = 0.95  # a derived factor below this is read as bonus shares (+ cash), above as cash only
MIN_DERIVED_CASH = 0.01  # 元/股: a derived step worth less is the qfq rounding drifting, not a dividend
EVENTS_HEADER = ("code", "ex_date", "cash_per_share", "shares_per_share", "rights_per_share", "rights_price",
                 "factor")


@dataclass(frozen=True)
class CorporateAction:
    """One ex-date of one stock. `cash_per_share` is the pre-tax cash dividend (元/股), `shares_per_share` the
    bonus + transfer shares per share (10送3转7 → 1.0), `rights_per_share`/`rights_price` a rights issue.
    `factor` (reference price ÷ previous close), when the source gives it (xtdata `dr`, a derived event), wins
    over the one computed from the previous close."""

    code: str
    ex_date: date
    cash_per_share: float = 0.0
    shares_per_share: float = 0.0
    rights_per_share: float = 0.0
    rights_price: float = 0.0
    factor: Optional[float] = None

    @property
    def key(self) -> str:
        """The journal key: one event per stock and ex-date."""
        return f"{self.code}:{self.ex_date.isoformat()}"

    def describe(self) -> str:
        """The notice's wording per 10 shares, e.g. 「10派2送3」."""
        parts = []
        if self.cash_per_share:
            parts.append(f"派{_per_ten(self.cash_per_share)}元")
        if self.shares_per_share:
            parts.append(f"送转{_per_ten(self.shares_per_share)}股")
        if self.rights_per_share:
            parts.append(f"配{_per_ten(self.rights_per_share)}股（{self.rights_price:g}元）")
        return "每10股" + "".join(parts) if parts else "除权因子"


class EventsFileError(ValueError):
    """A bad line of an events file (the message names the line, in Chinese)."""


def reference_price(prev_close: float, action: CorporateAction) -> float:
    """The exchange's ex-rights reference price (unrounded)."""
    change = action.shares_per_share + action.rights_per_share
    return (prev_close - action.cash_per_share + action.rights_price * action.rights_per_share) / (1 + change)


def limit_reference(code: str, prev_close: float, action: Optional[CorporateAction]) -> float:
    """The price the ex-date's limits are computed from: the reference price rounded half-up to the tick
    (the previous close on any other day)."""
    if action is None:
        return prev_close
    tick = market_rules.tick_size(code)
    exact = Decimal(repr(prev_close * price_factor(action, prev_close)))
    return float((exact / tick).quantize(Decimal(1), rounding=ROUND_HALF_UP) * tick)


def price_factor(action: CorporateAction, prev_close: Optional[float] = None) -> float:
    """Reference price ÷ previous close: what every per-episode price level is multiplied by before the open.
    The event's own factor when it has one; else computed from `prev_close` (required then)."""
    if action.factor is not None:
        return action.factor
    if prev_close is None or prev_close <= 0:
        raise ValueError(f"{action.key} 没有除权因子，也没有前收盘价")
    return round(reference_price(prev_close, action) / prev_close, FACTOR_DIGITS)


def adjust_level(price: Optional[float], factor: float) -> Optional[float]:
    """A price level after the event (None and 0 stay: they mean 'no level')."""
    if not price:
        return price
    return round(price * factor, LEVEL_DIGITS)


@dataclass(frozen=True)
class HoldingChange:
    """What an event does to a held position: shares added, cash paid out, the new cost basis."""

    volume_before: int
    volume_after: int
    cash_credit: float  # CNY, to the account's cash
    cost_amount_after: float  # total cost basis after: the cash paid out lowers it (brokers' 摊薄 cost)

    @property
    def bonus_shares(self) -> int:
        return self.volume_after - self.volume_before


def holding_change(volume: int, cost_amount: float, action: CorporateAction) -> HoldingChange:
    """Bonus shares are whole shares: CSDC allots the fractions one share at a time to the accounts with the
    largest fractions, ties drawn at random (中国结算上海分公司证券发行人业务指南 2024-01 §2.5; 深圳分公司
    2025-12 §2.5), which no single account can predict, so a simulation floors them; the pre-tax cash is credited to the cent (dividend tax is deducted at the later sale by
    财税〔2015〕101号, not here). A rights issue needs an active subscription, so a holding that did not
    subscribe gets nothing: only the price drops (the depositor is diluted)."""
    bonus = int((Decimal(volume) * Decimal(repr(action.shares_per_share))).to_integral_value(ROUND_FLOOR))
    cash = _cents(volume * action.cash_per_share)
    return HoldingChange(volume, volume + bonus, cash, max(0.0, _cents(cost_amount - cash)))


def adjust_position(position: Position, factor: float, volume_after: Optional[int] = None) -> Position:
    """The position's per-episode prices scaled by the factor: cost (the rules' cost, as forward-adjusted
    prices would show it), the first-buy price behind the add levels, the highest price, a persisted stop
    level, the last price; bonus shares added to volume and available (listed on the ex-date)."""
    bonus = 0 if volume_after is None else volume_after - position.volume
    return position.copy(
        cost_price=round(position.cost_price * factor, FACTOR_DIGITS),
        base_cost_price=adjust_level(position.base_cost_price, factor),
        highest_price=adjust_level(position.highest_price, factor),
        stop_loss_price=adjust_level(position.stop_loss_price, factor),
        current_price=adjust_level(position.current_price, factor),
        volume=position.volume + bonus, available=position.available + bonus)


def cumulative_factors(dates: Sequence[date], actions: Iterable[CorporateAction],
                       closes: Sequence[float]) -> list[float]:
    """Per bar, the product of the factors of every event after that bar: raw × this = forward-adjusted
    (前复权 with the last bar as reference). An event's factor comes from the close before its ex-date.
    O(bars + events · log bars): the backtest calls it for every stock of a whole market."""
    step = [1.0] * (len(dates) + 1)  # step[i]: the factor of the events whose first bar on or after is bar i
    for action in actions:
        first_after = bisect.bisect_left(dates, action.ex_date)
        if 0 < first_after < len(dates):
            step[first_after] *= price_factor(action, closes[first_after - 1])
    result = [1.0] * len(dates)
    running = 1.0
    for i in range(len(dates) - 1, -1, -1):
        running *= step[i + 1]
        result[i] = running
    return result


# ---- the events file of a replay -------------------------------------------------------------------------

def parse_events(text: str, source: str = "除权除息文件") -> list[CorporateAction]:
    """CSV, header required: `code,ex_date,cash_per_share,shares_per_share[,rights_per_share,rights_price,factor]`
    (cash in 元 per share, pre-tax; shares per share: 10送3转7 → 1.0; `factor` optional = reference ÷ previous
    close); `#` lines are comments. Raises EventsFileError naming the line."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    header = [name.strip() for name in reader.fieldnames or ()]
    missing = [name for name in EVENTS_HEADER[:4] if name not in header]
    if missing:
        raise EventsFileError(f"{source}：缺少列 {','.join(missing)}（需要 {','.join(EVENTS_HEADER[:4])}）")
    events, seen = [], set()
    for number, row in enumerate(reader, start=2):
        row = {key.strip(): (value or "").strip() for key, value in row.items() if key}
        try:
            action = _action_from_row(row)
        except ValueError as exc:
            raise EventsFileError(f"{source} 第{number}行：{exc}") from None
        if action.key in seen:
            raise EventsFileError(f"{source} 第{number}行：{action.code} {action.ex_date} 重复")
        seen.add(action.key)
        events.append(action)
    return sorted(events, key=lambda a: (a.ex_date, a.code))


def format_events(actions: Iterable[CorporateAction]) -> str:
    """The events file text for `actions` (what parse_events reads back)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EVENTS_HEADER)
    for a in sorted(actions, key=lambda a: (a.ex_date, a.code)):
        writer.writerow((a.code, a.ex_date.isoformat(), f"{a.cash_per_share:g}", f"{a.shares_per_share:g}",
                         f"{a.rights_per_share:g}", f"{a.rights_price:g}", "" if a.factor is None else f"{a.factor:.9f}"))
    return out.getvalue()


def events_by_code(actions: Iterable[CorporateAction]) -> dict[str, list[CorporateAction]]:
    grouped: dict[str, list[CorporateAction]] = {}
    for action in actions:
        grouped.setdefault(action.code, []).append(action)
    for events in grouped.values():
        events.sort(key=lambda a: a.ex_date)
    return grouped


def events_between(actions: Iterable[CorporateAction], after: Optional[date], through: date) -> list[CorporateAction]:
    """The events with after < ex_date ≤ through (a stock suspended on its ex-date takes it at its next bar)."""
    return [a for a in actions if (after is None or a.ex_date > after) and a.ex_date <= through]


# ---- events derived from a raw and a forward-adjusted series ---------------------------------------------

def derive_events(code: str, dates: Sequence[date], raw: Mapping[str, Sequence[float]],
                  adjusted: Mapping[str, Sequence[float]], tolerance: float = QFQ_ROUNDING) -> list[CorporateAction]:
    """The ex-dates of `code` where the qfq/raw ratio steps (same dates in both series, ascending; OHLC
    columns). Within an ex-date segment qfq = raw × constant up to the qfq rounding, so a bar starts a new
    segment when no constant fits it and the segment so far; the event's factor is the ratio of the two
    segments' constants (the middle of each one's feasible interval).

    The split into cash and shares is a reading of the factor, not data: a factor below BONUS_FACTOR_BELOW is
    bonus shares in whole shares per 10 plus the cash that makes up the rest, above it cash only. Any split
    with the same factor keeps an account's equity continuous at the reference price."""
    segments = _constant_segments(dates, raw, adjusted, tolerance)
    events = []
    for (_, before), (start, after) in zip(segments, segments[1:]):
        factor = round(before / after, FACTOR_DIGITS)
        if factor >= 1.0:
            continue  # not a distribution (a data quirk or a reverse split): nothing to adjust
        prev_close = raw["close"][start - 1]
        cash, shares = _split_factor(prev_close, factor)
        if shares == 0 and cash < MIN_DERIVED_CASH:
            continue
        events.append(CorporateAction(code, dates[start], cash, shares, factor=factor))
    return events


def _constant_segments(dates, raw, adjusted, tolerance) -> list[tuple[int, float]]:
    """(first bar, constant) of each run of bars with one qfq/raw constant."""
    segments: list[tuple[int, float]] = []
    low, high, start = -math.inf, math.inf, 0
    for i in range(len(dates)):
        bar_low, bar_high = -math.inf, math.inf
        for column in ("open", "high", "low", "close"):
            r, q = float(raw[column][i]), float(adjusted[column][i])
            bar_low, bar_high = max(bar_low, (q - tolerance) / r), min(bar_high, (q + tolerance) / r)
        if max(low, bar_low) > min(high, bar_high):
            segments.append((start, (low + high) / 2))
            low, high, start = bar_low, bar_high, i
        else:
            low, high = max(low, bar_low), min(high, bar_high)
    if len(dates):
        segments.append((start, (low + high) / 2))
    return segments


def _split_factor(prev_close: float, factor: float) -> tuple[float, float]:
    if factor >= BONUS_FACTOR_BELOW:
        return round(prev_close * (1 - factor), 4), 0.0
    implied = Decimal(repr(1 / factor - 1))  # the share ratio if there were no cash at all
    shares = float((implied / SHARE_RATIO_STEP).to_integral_value(ROUND_FLOOR) * SHARE_RATIO_STEP)
    cash = prev_close - factor * prev_close * (1 + shares)
    return round(max(cash, 0.0), 4), shares


# ---- helpers ---------------------------------------------------------------------------------------------

def _action_from_row(row: Mapping[str, str]) -> CorporateAction:
    try:
        code = market_rules.normalize_code(row.get("code", ""))
    except ValueError as exc:
        raise ValueError(f"股票代码无效：{exc}") from None
    try:
        ex_date = date.fromisoformat(row.get("ex_date", ""))
    except ValueError:
        raise ValueError(f"除权除息日无效：「{row.get('ex_date', '')}」（应为 YYYY-MM-DD）") from None
    numbers = {}
    for name in EVENTS_HEADER[2:6]:
        text = row.get(name, "")
        try:
            value = float(text) if text else 0.0
        except ValueError:
            raise ValueError(f"{name} 不是数字：「{text}」") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} 必须是非负数：「{text}」")
        numbers[name] = value
    factor_text = row.get("factor", "")
    factor = None
    if factor_text:
        try:
            factor = float(factor_text)
        except ValueError:
            raise ValueError(f"factor 不是数字：「{factor_text}」") from None
        if not 0 < factor <= 1:
            raise ValueError(f"factor 必须在 (0, 1] 之间：「{factor_text}」")
    if not factor and not any(numbers.values()):
        raise ValueError("没有任何分红、送转、配股或因子")
    return CorporateAction(code, ex_date, numbers["cash_per_share"], numbers["shares_per_share"],
                           numbers["rights_per_share"], numbers["rights_price"], factor)


def _per_ten(value: float) -> str:
    return f"{round(value * 10, 4):g}"


def _cents(value: float) -> float:
    return float(Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
