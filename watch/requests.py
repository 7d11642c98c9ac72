"""The request body of a watch task (issue 17), parsed into a `watch.rules.WatchTask` with a Chinese reason for
every refusal (nothing is stored on failure), and written back the same way (API answers and storage). The
declarations the parser validates with also build the body's JSON schema for the OpenAPI document."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, Mapping, Optional

import market_rules
from core.models import Quote, TradingError
from watch.rules import (MAX_DAYS, ActionType, Condition, ConditionType, Exits, WatchAction,
                         WatchTask, limits)


class InvalidTask(TradingError):
    """A task body that cannot be stored; nothing is changed."""

    def __init__(self, message: str):
        super().__init__("INVALID_WATCH_TASK", message)


# ---- declarations: each number of a task body is declared once; `read` validates it and `schema` describes it
# for the OpenAPI document (webapi.openapi), so the contract and the parser cannot drift apart ----------------------

@dataclass(frozen=True)
class Number:
    """A numeric field: its bounds (inclusive unless open) and its Chinese label."""

    name: str
    label: str
    low: float
    high: float
    integer: bool = False
    low_open: bool = False  # `low` itself is refused (a ratio that must be above 0)
    high_open: bool = False

    def schema(self) -> dict[str, Any]:
        return {"type": "integer" if self.integer else "number", "description": self.label,
                "exclusiveMinimum" if self.low_open else "minimum": self.low,
                "exclusiveMaximum" if self.high_open else "maximum": self.high}

    def read(self, raw: Any, where: str = "") -> float:
        """The checked value as a float, or InvalidTask naming the field (prefixed by `where`)."""
        label = f"{where}{self.label}"
        # a JSON integer may exceed any float (math.isnan would overflow); the range check below refuses it
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (
                isinstance(raw, float) and not math.isfinite(raw)):
            raise InvalidTask(f"{label} 必须是数字")
        if self.integer and isinstance(raw, float) and not raw.is_integer():
            raise InvalidTask(f"{label} 必须是整数")
        if not self.low <= raw <= self.high or (self.low_open and raw == self.low) or (
                self.high_open and raw == self.high):
            shown = f"{raw:g}" if isinstance(raw, float) else _shown(raw, 20)
            raise InvalidTask(f"{label} 超出范围 {'(' if self.low_open else '['}{self.low:g}, "
                              f"{self.high:g}{')' if self.high_open else ']'}：{shown}")
        return float(raw)


PRICE_LEVEL = Number("value", "价格 value（元）", 0.001, 100000)
CHANGE_PERCENT = Number("value", "涨跌幅 value（%，相对昨收）", -30, 30)
LIMIT_DISTANCE = Number("value", "距涨跌停 value（%）", 0, 20)
VOLUME_RATIO = Number("value", "量比 value", 0.01, 100)
DAYS = Number("days", "天数 days（N 日）", 1, MAX_DAYS, integer=True)
ZONE_LOW = Number("low", "区间下限 low（元）", 0.001, 100000)
ZONE_HIGH = Number("high", "区间上限 high（元）", 0.001, 100000)
# What each condition type takes, exactly: nothing else is accepted.
CONDITION_PARAMS: dict[ConditionType, tuple[Number, ...]] = {
    ConditionType.PRICE_ABOVE: (PRICE_LEVEL,), ConditionType.PRICE_BELOW: (PRICE_LEVEL,),
    ConditionType.CHANGE_ABOVE: (CHANGE_PERCENT,), ConditionType.CHANGE_BELOW: (CHANGE_PERCENT,),
    ConditionType.NEAR_LIMIT_UP: (LIMIT_DISTANCE,), ConditionType.NEAR_LIMIT_DOWN: (LIMIT_DISTANCE,),
    ConditionType.VOLUME_RATIO_ABOVE: (VOLUME_RATIO,),
    ConditionType.NEW_HIGH: (DAYS,), ConditionType.NEW_LOW: (DAYS,),
    ConditionType.IN_ZONE: (ZONE_LOW, ZONE_HIGH),
    ConditionType.MACD_GOLDEN: (), ConditionType.MACD_DEAD: (),
}

BUY_AMOUNT = Number("amount", "买入金额 amount（元）", 100, 10_000_000)
SELL_VOLUME = Number("volume", "卖出数量 volume", 1, 100_000_000, integer=True)
SELL_RATIO = Number("ratio", "卖出比例 ratio", 0, 1, low_open=True)
# (action type, the one quantity it takes, title); a sell takes a volume or a ratio.
ACTION_VARIANTS: tuple[tuple[ActionType, Optional[Number], str], ...] = (
    (ActionType.NOTIFY, None, "仅提醒"), (ActionType.BUY, BUY_AMOUNT, "买入信号（按金额）"),
    (ActionType.SELL, SELL_VOLUME, "卖出信号（按股数）"), (ActionType.SELL, SELL_RATIO, "卖出信号（按可用比例）"))

STOP_LOSS = Number("stop_loss_ratio", "止损比例 stop_loss_ratio", -0.5, 0, high_open=True)
TAKE_PROFIT = Number("take_profit_ratio", "首次止盈比例 take_profit_ratio", 0.001, 5)
TAKE_PROFIT_SELL = Number("take_profit_sell_ratio", "首次止盈卖出比例 take_profit_sell_ratio", 0.01, 1)
EXIT_NUMBERS = (STOP_LOSS, TAKE_PROFIT, TAKE_PROFIT_SELL)
DYNAMIC_GAIN = Number("gain", "动态止盈涨幅", 0.001, 10)
DYNAMIC_KEEP = Number("keep", "动态止盈系数", 0.01, 1)

COOLDOWN = Number("repeat_cooldown", "重复提醒冷却秒数 repeat_cooldown（0 表示只提醒一次）", 0, 30 * 86400)
MAX_CONDITIONS = 8

TASK_FIELDS = {"stock_code", "conditions", "sessions_only", "repeat_cooldown", "expires", "action", "exits"}
ACTION_FIELDS = {"type"} | {n.name for _, n, _ in ACTION_VARIANTS if n is not None}
EXIT_FIELDS = {n.name for n in EXIT_NUMBERS} | {"dynamic_take_profit"}


def parse_task(body: Any, today: date, quote: Optional[Quote] = None,
               base: Optional[WatchTask] = None) -> WatchTask:
    """A WatchTask from a request body, or InvalidTask with a Chinese reason. `quote` (the current price, when
    known) refuses a zone the price has already passed; `base` keeps id and state on an edit."""
    if not isinstance(body, Mapping):
        raise InvalidTask("请求体必须是 JSON 对象")
    _only(body, TASK_FIELDS, "任务")
    code = _code(body.get("stock_code"))
    raw_conditions = body.get("conditions")
    if not isinstance(raw_conditions, list) or not raw_conditions:
        raise InvalidTask("conditions 必须是至少包含一个条件的列表")
    if len(raw_conditions) > MAX_CONDITIONS:
        raise InvalidTask(f"一个任务最多 {MAX_CONDITIONS} 个条件")
    conditions = tuple(_condition(c, i + 1) for i, c in enumerate(raw_conditions))
    action = _action(body.get("action", {"type": "notify"}))
    exits = _exits(body.get("exits")) if body.get("exits") is not None else None
    if exits is not None and action.type is not ActionType.BUY:
        raise InvalidTask("只有买入信号任务可以附带止损止盈参数（exits）")
    expires = _expires(body.get("expires"), today)
    cooldown = COOLDOWN.read(body.get("repeat_cooldown", 0))
    task = WatchTask(stock_code=code, conditions=conditions, sessions_only=_bool(body.get("sessions_only", True)),
                     repeat_cooldown=cooldown, expires=expires, action=action, exits=exits)
    if quote is not None:
        _check_zone_not_passed(task, quote)
    if base is not None:
        task = replace(task, id=base.id, status=base.status, fired_count=base.fired_count,
                       last_fired_at=base.last_fired_at, created_at=base.created_at)
    return task


def task_to_body(task: WatchTask) -> dict[str, Any]:
    """The JSON body of a task (parse_task(task_to_body(t)) == t, state aside); also its storage form."""
    body: dict[str, Any] = {
        "stock_code": task.stock_code,
        "conditions": [{k: v for k, v in (("type", c.type.value), ("value", c.value), ("low", c.low),
                                          ("high", c.high), ("days", c.days)) if v is not None}
                       for c in task.conditions],
        "sessions_only": task.sessions_only, "repeat_cooldown": task.repeat_cooldown,
        "expires": task.expires.isoformat() if task.expires else None,
        "action": {k: v for k, v in (("type", task.action.type.value), ("amount", task.action.amount),
                                     ("volume", task.action.volume), ("ratio", task.action.ratio)) if v is not None},
    }
    if task.exits is not None:
        body["exits"] = {k: ([list(r) for r in v] if isinstance(v, tuple) else v)
                         for k in sorted(EXIT_FIELDS) if (v := getattr(task.exits, k)) is not None}
    return body


# ---- the OpenAPI description, built from the declarations above ------------------------------------------------

def task_schema(stock_code: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON schema of a task body; `stock_code` is the web layer's declaration of a code."""
    return {
        "type": "object", "additionalProperties": False, "required": ["stock_code", "conditions"],
        "description": "盯盘任务：股票、触发条件（全部满足才触发）、触发后的动作及选项",
        "properties": {
            "stock_code": dict(stock_code),
            "conditions": {"type": "array", "minItems": 1, "maxItems": MAX_CONDITIONS, "items": condition_schema(),
                           "description": f"触发条件（同时满足，1–{MAX_CONDITIONS} 个）"},
            "sessions_only": {"type": "boolean", "description": "只在交易时段内检测（默认 true）"},
            "repeat_cooldown": COOLDOWN.schema(),
            "expires": {"type": ["string", "null"], "format": "date", "description": "到期日 YYYY-MM-DD（不早于今天）"},
            "action": action_schema(),
            "exits": exits_schema(),
        },
    }


def condition_schema() -> dict[str, Any]:
    """oneOf per group of condition types taking the same parameters."""
    groups: dict[tuple[Number, ...], list[ConditionType]] = {}
    for kind, params in CONDITION_PARAMS.items():
        groups.setdefault(params, []).append(kind)
    variants = []
    for params, kinds in groups.items():
        variants.append({
            "type": "object", "additionalProperties": False, "required": ["type", *(p.name for p in params)],
            "title": "、".join(k.label for k in kinds),
            "properties": {"type": {"type": "string", "enum": [k.value for k in kinds], "description": "条件类型"},
                           **{p.name: p.schema() for p in params}}})
    return {"oneOf": variants, "description": "一个触发条件"}


def action_schema() -> dict[str, Any]:
    variants = []
    for kind, quantity, title in ACTION_VARIANTS:
        variant = {"type": "object", "additionalProperties": False, "title": title,
                   "properties": {"type": {"const": kind.value, "description": "动作类型"}},
                   "required": ["type"]}
        if quantity is None:
            variant["required"] = []  # notify is the default type
        else:
            variant["properties"][quantity.name] = quantity.schema()
            variant["required"].append(quantity.name)
        variants.append(variant)
    return {"oneOf": variants, "description": "触发后的动作（默认仅提醒；买卖信号进入信号队列）"}


def exits_schema() -> dict[str, Any]:
    row = {"type": "array", "prefixItems": [DYNAMIC_GAIN.schema(), DYNAMIC_KEEP.schema()], "minItems": 2,
           "maxItems": 2, "items": False}
    return {"type": ["object", "null"], "additionalProperties": False, "minProperties": 1,
            "description": "买入后的止损止盈参数（仅买入信号任务；覆盖该股的全局参数）",
            "properties": {**{n.name: n.schema() for n in EXIT_NUMBERS},
                           "dynamic_take_profit": {"type": "array", "minItems": 1, "items": row,
                                                   "description": "动态止盈表 [[涨幅, 系数], …]，涨幅从小到大"}}}


# ---- parsing the parts -----------------------------------------------------------------------------------------

def _condition(raw: Any, index: int) -> Condition:
    where = f"第 {index} 个条件"
    if not isinstance(raw, Mapping):
        raise InvalidTask(f"{where}必须是 JSON 对象")
    try:
        kind = ConditionType(raw.get("type"))
    except (ValueError, TypeError):
        raise InvalidTask(f"{where}的类型 {_shown(raw.get('type'))} 未知，"
                          f"可选：{', '.join(t.value for t in ConditionType)}") from None
    params = CONDITION_PARAMS[kind]
    _only(raw, {"type", *(p.name for p in params)}, f"{where}（{kind.label}）")
    values: dict[str, Any] = {p.name: p.read(raw.get(p.name), f"{where}（{kind.label}）的") for p in params}
    if "days" in values:
        values["days"] = int(values["days"])
    if kind is ConditionType.IN_ZONE and values["low"] > values["high"]:
        raise InvalidTask(f"{where}的区间下限 {values['low']:g} 大于上限 {values['high']:g}")
    return Condition(kind, values.get("value"), values.get("low"), values.get("high"), values.get("days"))


def _action(raw: Any) -> WatchAction:
    if not isinstance(raw, Mapping):
        raise InvalidTask("action 必须是 JSON 对象")
    _only(raw, ACTION_FIELDS, "action")
    try:
        kind = ActionType(raw.get("type", "notify"))
    except (ValueError, TypeError):
        raise InvalidTask(f"action 类型 {_shown(raw.get('type'))} 未知，可选：notify、buy、sell") from None
    given = [n for k, n, _ in ACTION_VARIANTS if k is kind and n is not None and raw.get(n.name) is not None]
    others = sorted(k for k in raw if k != "type" and raw[k] is not None and k not in {n.name for n in given})
    if kind is ActionType.NOTIFY:
        if others:
            raise InvalidTask("仅提醒的任务不能带买卖数量")
        return WatchAction()
    if kind is ActionType.BUY:
        if others:
            raise InvalidTask("买入信号按金额 amount 下单，不接受 volume / ratio")
        return WatchAction(kind, amount=BUY_AMOUNT.read(raw.get("amount")))
    if len(given) != 1 or others:
        raise InvalidTask("卖出信号需要 volume（股数）或 ratio（可用比例）二者之一")
    if given[0] is SELL_VOLUME:
        return WatchAction(kind, volume=int(SELL_VOLUME.read(raw["volume"])))
    return WatchAction(kind, ratio=SELL_RATIO.read(raw["ratio"]))


def _exits(raw: Any) -> Exits:
    if not isinstance(raw, Mapping):
        raise InvalidTask("exits 必须是 JSON 对象")
    _only(raw, EXIT_FIELDS, "exits")
    values: dict[str, Any] = {n.name: n.read(raw[n.name]) for n in EXIT_NUMBERS if raw.get(n.name) is not None}
    if raw.get("dynamic_take_profit") is not None:
        table = raw["dynamic_take_profit"]
        if not isinstance(table, list) or not table:
            raise InvalidTask("动态止盈表 dynamic_take_profit 必须是 [[涨幅, 系数], …] 列表")
        rows = []
        for row in table:
            if not isinstance(row, (list, tuple)) or len(row) != 2:
                raise InvalidTask("动态止盈表的每一行必须是 [涨幅, 系数]")
            rows.append((DYNAMIC_GAIN.read(row[0]), DYNAMIC_KEEP.read(row[1])))
        if [r[0] for r in rows] != sorted(r[0] for r in rows):
            raise InvalidTask("动态止盈表的涨幅必须从小到大排列")
        values["dynamic_take_profit"] = tuple(rows)
    if not values:
        raise InvalidTask("exits 至少需要一个参数")
    return Exits(**values)


def _check_zone_not_passed(task: WatchTask, quote: Quote) -> None:
    """An entry zone entirely below today's limit-down or above limit-up can never be reached today; and a
    price_above / price_below level the price already stands beyond would fire at once: both are mistakes."""
    up, down = limits(quote)
    for c in task.conditions:
        if c.type is ConditionType.IN_ZONE and (c.high < down or c.low > up):
            raise InvalidTask(f"区间 [{c.low:g}, {c.high:g}] 超出今日涨跌停范围 [{down:g}, {up:g}]，无法到达")


def _only(raw: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise InvalidTask(f"{where}包含未知字段：{', '.join(map(str, unknown))}；允许：{', '.join(sorted(allowed))}")


def _code(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidTask("缺少股票代码 stock_code")
    try:
        return market_rules.normalize_code(raw)
    except ValueError as exc:
        raise InvalidTask(str(exc)) from None


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise InvalidTask("sessions_only 必须是 true 或 false")
    return raw


def _expires(raw: Any, today: date) -> Optional[date]:
    if raw is None or raw == "":
        return None
    try:
        day = date.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        day = None
    if day is None:
        raise InvalidTask(f"到期日 expires 必须是 YYYY-MM-DD：{raw!r}")
    if day < today:
        raise InvalidTask(f"到期日 {day} 早于今天 {today}")
    return day
