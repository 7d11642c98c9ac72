"""JSON shapes of the API: domain objects (positions with trigger prices, orders, signals, quotes, bars)
turned into plain JSON values, Chinese labels for states, and the trade-record CSV export. Pure functions."""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, fields, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, Iterable, Mapping, Optional

import market_rules
from core.models import OrderStatus, Position, Rule, Side, Signal, SignalStatus

SESSION_LABELS = {
    "pre_open": "盘前", "call_auction": "集合竞价", "continuous": "连续竞价", "lunch_break": "午间休市",
    "closing_auction": "收盘集合竞价", "closed": "休市",
}
ORDER_STATUS_LABELS = {
    OrderStatus.PENDING_SUBMIT: "待报", OrderStatus.SUBMITTED: "已报", OrderStatus.OPEN: "已报待成",
    OrderStatus.PARTIALLY_FILLED: "部分成交", OrderStatus.CANCEL_PENDING: "撤单中", OrderStatus.CANCELLED: "已撤",
    OrderStatus.FILLED: "已成", OrderStatus.REJECTED: "废单", OrderStatus.UNKNOWN: "结果未知",
}
SIGNAL_STATUS_LABELS = {status: status.label for status in SignalStatus}
MODE_LABELS = {"simulation": "模拟", "live": "实盘"}
SWITCH_KEYS = ("ENABLE_AUTO_TRADING", "ENABLE_ALLOW_BUY", "ENABLE_ALLOW_SELL", "ENABLE_DYNAMIC_STOP_PROFIT",
               "ENABLE_GRID_TRADING", "ENABLE_MACD_BUY", "ENABLE_MACD_SELL", "ENABLE_ADD_POSITION")
TRIGGER_FIELDS = ("stop_loss_price", "take_profit_price", "dynamic_stop_price", "next_add_price", "next_add_index")
UPWARD_TRIGGERS = ("take_profit_price",)  # fill at the first tick at or above: rounded up (DESIGN §7)
DOWNWARD_TRIGGERS = ("stop_loss_price", "dynamic_stop_price", "next_add_price")  # rounded down


def to_json(value: Any) -> str:
    """Compact JSON text. Most values encode natively (the str-based enums too); NaN/infinity, which JSON
    lacks, are rare, so only then is the whole value cleaned through `jsonable`."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_encode)
    except ValueError:
        return json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _encode(value: Any) -> Any:
    converted = jsonable(value)
    if converted is value:
        raise TypeError(f"cannot encode {type(value).__name__}")
    return converted


def _iso(value: Any) -> Optional[str]:
    return None if value is None else jsonable(value)


def jsonable(value: Any) -> Any:
    """Plain JSON values: dataclasses and mappings become objects, enums their value, dates ISO text,
    NaN/infinity null (JSON has neither), numpy/pandas scalars Python numbers."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return jsonable(float(value))
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return jsonable(value.item())
    return str(value)


POSITION_FIELDS = tuple(f.name for f in fields(Position))


def position_view(position: Position, triggers: Any) -> dict:
    """Every column of the position plus the unrealised P&L and each rule's trigger price. Built field by
    field (not through `jsonable`): the live table sends hundreds of these per second."""
    row = {name: getattr(position, name) for name in POSITION_FIELDS}
    row["last_update"] = _iso(position.last_update)
    row["open_date"] = _iso(position.open_date)
    row["used_add_levels"] = list(position.used_add_levels)
    row["profit_amount"] = round((position.current_price - position.cost_price) * position.volume, 2) \
        if position.current_price > 0 else None
    exact = {name: getattr(triggers, name, None) for name in TRIGGER_FIELDS}
    row["trigger_prices"] = tick_triggers(position.stock_code, exact)
    row["trigger_prices_exact"] = exact
    row["next_add"] = next_add_view(position.stock_code, triggers)
    # issue 28: '' for an instrument the rules trade; else why the daemon only shows it (repo, unknown fund …)
    row["untradable_reason"] = market_rules.untradable_reason(position.stock_code)
    return row


def next_add_view(code: str, triggers: Any) -> Optional[dict]:
    """How the next add level reads for a person: 第N档 at its price; 「额度不足」 when the remaining budget
    buys no lot at the level's own price (the add could only fill far below it); unreachable when it lies at
    or below the stop-loss (the stop sells first)."""
    price = getattr(triggers, "next_add_price", None)
    if price is None:
        return None
    ordinal = getattr(triggers, "next_add_ordinal", None)
    level_price = getattr(triggers, "next_add_level_price", None)
    stop = getattr(triggers, "stop_loss_price", None)
    label = f"第{ordinal}档" if ordinal else "补仓"
    if level_price is not None and price < level_price - 1e-9:
        return {"state": "budget_short", "label": label, "price": None, "text": "额度不足",
                "explain": f"{label}价 {level_price:g} 处剩余补仓额度不足一手"}
    shown = market_rules.round_price_down(code, price)
    if stop is not None and price <= stop:
        return {"state": "below_stop", "label": label, "price": shown, "text": f"{shown:g}（{label}，低于止损价，无法到达）",
                "explain": f"{label}价 {shown:g} 不高于止损价 {stop:.2f}：价格先触发止损，补仓不会发生"}
    return {"state": "ok", "label": label, "price": shown, "text": f"{shown:g}（{label}）", "explain": ""}


def tick_triggers(code: str, exact: Mapping[str, Any]) -> dict:
    """Trigger prices as they fire: upward ones rounded up to the tick, downward ones down (DESIGN §7)."""
    shown = dict(exact)
    for name in UPWARD_TRIGGERS + DOWNWARD_TRIGGERS:
        value = exact.get(name)
        if value is not None:
            rounder = market_rules.round_price_up if name in UPWARD_TRIGGERS else market_rules.round_price_down
            shown[name] = rounder(code, value)
    return shown


def positions_snapshot(positions: Iterable[Position], data_version: int, trigger_prices) -> dict:
    rows = [position_view(p, trigger_prices(p)) for p in sorted(positions, key=lambda p: p.stock_code)]
    return {"data_version": data_version, "positions": rows, "count": len(rows)}


def order_view(order: Any) -> dict:
    """An Order dataclass or the executor's order dict, with Chinese labels for side and status."""
    row = jsonable(order)
    side, status = row.get("side"), row.get("status")
    row["side_label"] = _label(Side, side, lambda s: s.label)
    row["status_label"] = _label(OrderStatus, status, ORDER_STATUS_LABELS.get)
    rule = row.get("rule") or row.get("strategy")
    row["rule_label"] = _label(Rule, rule, lambda r: r.label)
    return row


def signal_view(signal: Signal) -> dict:
    row = jsonable(signal)
    row["side"] = signal.side.value
    row["side_label"] = signal.side.label
    row["rule_label"] = signal.rule.label
    row["status_label"] = SIGNAL_STATUS_LABELS[signal.status]
    return row


def trade_record_view(record: Mapping[str, Any]) -> dict:
    return order_view(record)


def bars_view(frame: Any) -> list[dict]:
    """A DataFrame of daily bars (date, open, high, low, close, volume, optional indicator columns)."""
    if frame is None or len(frame) == 0:
        return []
    return [jsonable(row) for row in frame.to_dict(orient="records")]


def with_today(bars: list[dict], quote: Any, today: date) -> list[dict]:
    """Append today's unfinished bar from the current quote (marked `partial`), so that the chart shows
    today's price and today's trades before the daily bar is stored."""
    if quote is None or quote.time.date() != today or (bars and str(bars[-1]["date"])[:10] >= today.isoformat()):
        return bars
    price = quote.price
    bar = {"date": today.isoformat(), "open": quote.open or price, "high": max(quote.high or price, price),
           "low": min(quote.low or price, price), "close": price, "volume": quote.volume or 0, "partial": True}
    return bars + [bar]


def with_macd_crosses(bars: list[dict]) -> list[dict]:
    """Mark `macd_cross` ('golden' / 'death' / None) on each bar with the MACD rule's own cross test, so the
    chart marks exactly the bars the rule would act on."""
    from indicator_calculator import cross_between

    previous = None
    for bar in bars:
        hist = bar.get("macd_hist")
        bar["macd_cross"] = cross_between(previous, hist)
        previous = hist
    return bars


# Columns of the CSV export: (record key, Chinese header). Keys a record lacks stay empty.
TRADE_CSV_COLUMNS = (
    ("trade_time", "成交时间"), ("stock_code", "股票代码"), ("stock_name", "股票名称"), ("side_label", "方向"),
    ("price", "成交价"), ("volume", "成交数量"), ("amount", "成交金额"), ("commission", "佣金"),
    ("stamp_duty", "印花税"), ("transfer_fee", "过户费"), ("fees", "费用合计"), ("realized_pnl", "已实现盈亏"),
    ("rule_label", "策略"),
    ("mode", "模式"), ("order_id", "委托编号"), ("client_id", "本地委托号"), ("fill_id", "成交编号"),
)


def trade_records_csv(records: Iterable[Mapping[str, Any]]) -> str:
    """UTF-8 text with a BOM so that Excel opens the Chinese headers correctly."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header for _, header in TRADE_CSV_COLUMNS])
    for record in records:
        row = trade_record_view(record)
        if isinstance(row.get("mode"), str):
            row["mode"] = MODE_LABELS.get(row["mode"], row["mode"])
        writer.writerow(["" if row.get(key) is None else row.get(key) for key, _ in TRADE_CSV_COLUMNS])
    return "\ufeff" + out.getvalue()


MOVING_AVERAGES = (10, 20, 30, 60)  # the MA lines of the chart (the MA filter's lines, DESIGN §6)


def with_moving_averages(bars: list[dict], windows: Iterable[int] = MOVING_AVERAGES) -> list[dict]:
    """Add `ma<n>` (simple mean of the last n closes, None until n bars exist) unless the bars carry it."""
    closes = [bar.get("close") for bar in bars]
    for window in windows:
        key = f"ma{window}"
        if bars and key in bars[0]:
            continue
        total = 0.0
        for index, close in enumerate(closes):
            total += close
            if index >= window:
                total -= closes[index - window]
            bars[index][key] = round(total / window, 4) if index >= window - 1 else None
    return bars


def today_pnl(positions: Iterable[Position], today_records: Iterable[Mapping[str, Any]],
              quote_of: Callable[[str], Any]) -> Optional[float]:
    """Today's profit and loss, the way a broker reports it: for every stock held or traded today,
    value now − value at yesterday's close of the shares held then − bought today + sold today − fees.
    None when a needed price (current price, or previous close for shares held overnight) is unknown."""
    held = {p.stock_code: p for p in positions if p.volume > 0}
    flows: dict[str, dict[str, float]] = {}
    for record in today_records:
        flow = flows.setdefault(record["stock_code"], {"bought": 0, "sold": 0, "cash": 0.0, "fees": 0.0})
        volume, amount = int(record["volume"]), float(record["amount"])
        if _side_of(record) == "buy":
            flow["bought"] += volume
            flow["cash"] -= amount
        else:
            flow["sold"] += volume
            flow["cash"] += amount
        flow["fees"] += _fees_of(record)
    total = 0.0
    for code in set(held) | set(flows):
        position = held.get(code)
        flow = flows.get(code, {"bought": 0, "sold": 0, "cash": 0.0, "fees": 0.0})
        volume_now = position.volume if position else 0
        volume_start = volume_now - flow["bought"] + flow["sold"]
        quote = quote_of(code) if (volume_start > 0 or (position and position.current_price <= 0)) else None
        price_now = position.current_price if position and position.current_price > 0 else (
            quote.price if quote else None)
        if volume_now > 0 and price_now is None:
            return None
        if volume_start > 0 and (quote is None or not quote.prev_close):
            return None
        value_now = volume_now * price_now if volume_now > 0 else 0.0
        value_start = volume_start * quote.prev_close if volume_start > 0 else 0.0
        total += value_now - value_start + flow["cash"] - flow["fees"]
    return round(total, 2)


def _side_of(record: Mapping[str, Any]) -> str:
    side = record.get("side", record.get("trade_type"))
    return str(getattr(side, "value", side)).lower()


def _fees_of(record: Mapping[str, Any]) -> float:
    if record.get("fees") is not None:
        return float(record["fees"])
    return sum(float(record.get(k) or 0.0) for k in ("commission", "stamp_duty", "transfer_fee"))


def session_view(clock: Any) -> dict:
    session = clock.session()
    now = clock.now()
    return {"time": jsonable(now), "date": now.date().isoformat(), "session": session,
            "session_label": SESSION_LABELS.get(session, session), "is_trading": clock.is_trading(),
            "is_trading_day": clock.is_trading_day(), "is_replay": bool(getattr(clock, "is_replay", False)),
            "calendar_warning": clock.calendar.fallback_warning}


def _label(enum_type: type[Enum], value: Any, label_of) -> Optional[str]:
    try:
        return label_of(enum_type(value))
    except (ValueError, TypeError):
        return None


def as_dict(value: Any) -> dict:
    return asdict(value) if is_dataclass(value) else dict(value)
