"""The request body of a watch task (issue 17), parsed into a `watch_rules.WatchTask` with a Chinese reason for
every refusal (nothing is stored on failure), and written back the same way (API answers and storage)."""
from __future__ import annotations

import math
from dataclasses import replace
from datetime import date
from typing import Any, Mapping, Optional

import market_rules
from models import Quote, TradingError
from watch_rules import (MAX_DAYS, NEEDS_DAYS, NEEDS_VALUE, ActionType, Condition, ConditionType, Exits, WatchAction,
                         WatchTask, limits)


class InvalidTask(TradingError):
    """A task body that cannot be stored; nothing is changed."""

    def __init__(self, message: str):
        super().__init__("INVALID_WATCH_TASK", message)


TASK_FIELDS = {"stock_code", "conditions", "sessions_only", "repeat_cooldown", "expires", "action", "exits"}
CONDITION_FIELDS = {"type", "value", "low", "high", "days"}
ACTION_FIELDS = {"type", "amount", "volume", "ratio"}
EXIT_FIELDS = {"stop_loss_ratio", "take_profit_ratio", "take_profit_sell_ratio", "dynamic_take_profit"}
MAX_CONDITIONS = 8


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
    cooldown = _number(body.get("repeat_cooldown", 0), "repeat_cooldown（重复提醒冷却秒数）", 0, 30 * 86400)
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


def _condition(raw: Any, index: int) -> Condition:
    where = f"第 {index} 个条件"
    if not isinstance(raw, Mapping):
        raise InvalidTask(f"{where}必须是 JSON 对象")
    _only(raw, CONDITION_FIELDS, where)
    try:
        kind = ConditionType(raw.get("type"))
    except ValueError:
        raise InvalidTask(f"{where}的类型 {raw.get('type')!r} 未知，可选：{', '.join(t.value for t in ConditionType)}")
    value = low = high = days = None
    if kind in NEEDS_VALUE:
        limits_by_kind = {ConditionType.CHANGE_ABOVE: (-30, 30), ConditionType.CHANGE_BELOW: (-30, 30),
                          ConditionType.NEAR_LIMIT_UP: (0, 20), ConditionType.NEAR_LIMIT_DOWN: (0, 20),
                          ConditionType.VOLUME_RATIO_ABOVE: (0.01, 100)}
        lo, hi = limits_by_kind.get(kind, (0.001, 100000))
        value = _number(raw.get("value"), f"{where}（{kind.label}）的 value", lo, hi)
    elif kind in NEEDS_DAYS:
        days = int(_number(raw.get("days"), f"{where}的 days（N 日）", 1, MAX_DAYS, integer=True))
    elif kind is ConditionType.IN_ZONE:
        low = _number(raw.get("low"), f"{where}的区间下限 low", 0.001, 100000)
        high = _number(raw.get("high"), f"{where}的区间上限 high", 0.001, 100000)
        if low > high:
            raise InvalidTask(f"{where}的区间下限 {low:g} 大于上限 {high:g}")
    return Condition(kind, value, low, high, days)


def _action(raw: Any) -> WatchAction:
    if not isinstance(raw, Mapping):
        raise InvalidTask("action 必须是 JSON 对象")
    _only(raw, ACTION_FIELDS, "action")
    try:
        kind = ActionType(raw.get("type", "notify"))
    except ValueError:
        raise InvalidTask(f"action 类型 {raw.get('type')!r} 未知，可选：notify、buy、sell")
    if kind is ActionType.NOTIFY:
        if any(raw.get(k) is not None for k in ("amount", "volume", "ratio")):
            raise InvalidTask("仅提醒的任务不能带买卖数量")
        return WatchAction()
    if kind is ActionType.BUY:
        if raw.get("volume") is not None or raw.get("ratio") is not None:
            raise InvalidTask("买入信号按金额 amount 下单，不接受 volume / ratio")
        return WatchAction(kind, amount=_number(raw.get("amount"), "买入金额 amount（元）", 100, 10_000_000))
    volume, ratio = raw.get("volume"), raw.get("ratio")
    if (volume is None) == (ratio is None):
        raise InvalidTask("卖出信号需要 volume（股数）或 ratio（可用比例）二者之一")
    if volume is not None:
        return WatchAction(kind, volume=int(_number(volume, "卖出数量 volume", 1, 100_000_000, integer=True)))
    ratio_value = _number(ratio, "卖出比例 ratio", 0, 1)
    if ratio_value <= 0:
        raise InvalidTask("卖出比例 ratio 必须大于 0 且不超过 1")
    return WatchAction(kind, ratio=ratio_value)


def _exits(raw: Any) -> Exits:
    if not isinstance(raw, Mapping):
        raise InvalidTask("exits 必须是 JSON 对象")
    _only(raw, EXIT_FIELDS, "exits")
    values: dict[str, Any] = {}
    if raw.get("stop_loss_ratio") is not None:
        values["stop_loss_ratio"] = _number(raw["stop_loss_ratio"], "止损比例 stop_loss_ratio", -0.5, 0)
        if values["stop_loss_ratio"] >= 0:
            raise InvalidTask("止损比例 stop_loss_ratio 必须小于 0")
    if raw.get("take_profit_ratio") is not None:
        values["take_profit_ratio"] = _number(raw["take_profit_ratio"], "首次止盈比例 take_profit_ratio", 0.001, 5)
    if raw.get("take_profit_sell_ratio") is not None:
        values["take_profit_sell_ratio"] = _number(raw["take_profit_sell_ratio"],
                                                   "首次止盈卖出比例 take_profit_sell_ratio", 0.01, 1)
    if raw.get("dynamic_take_profit") is not None:
        table = raw["dynamic_take_profit"]
        if not isinstance(table, list) or not table:
            raise InvalidTask("动态止盈表 dynamic_take_profit 必须是 [[涨幅, 系数], …] 列表")
        rows = []
        for row in table:
            if not isinstance(row, (list, tuple)) or len(row) != 2:
                raise InvalidTask("动态止盈表的每一行必须是 [涨幅, 系数]")
            rows.append((_number(row[0], "动态止盈涨幅", 0.001, 10), _number(row[1], "动态止盈系数", 0.01, 1)))
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
        raise InvalidTask(f"{where}包含未知字段：{', '.join(map(str, unknown))}")


def _code(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidTask("缺少股票代码 stock_code")
    try:
        return market_rules.normalize_code(raw)
    except ValueError as exc:
        raise InvalidTask(str(exc)) from None


def _number(raw: Any, label: str, low: float, high: float, integer: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or math.isnan(raw) or math.isinf(raw):
        raise InvalidTask(f"{label} 必须是数字")
    if integer and int(raw) != raw:
        raise InvalidTask(f"{label} 必须是整数")
    if not low <= raw <= high:
        raise InvalidTask(f"{label} 超出范围 [{low:g}, {high:g}]：{raw:g}")
    return float(raw)


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
