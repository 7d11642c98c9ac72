"""Routes of per-stock rule parameters, the stock lock and the MACD/pool-buy blacklist, and a position's rule state
edited by hand (issue 17). Every change is journaled in the config history with old → new."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response

import config
import webapi.requests as req
import webapi.views as views
from config import ConfigError
from core.position_review import HIGHEST_SOURCES, STATE_FIELDS, parse_state_edit, state_view
from core.stock_params import STOCK_KEYS
from webapi.routes import body, ctx
from webapi.openapi import OBJ, Body, document
from webapi.requests import ApiError
from webapi.common import ok, state

blueprint = Blueprint("api_stock", __name__, url_prefix="/api")

LOCK_REASON = "操作员锁定该股票（不自动交易）"
TAG = "个股参数"


def _param_schema(key: str) -> dict:
    """One per-stock parameter as config.py's table defines it (config.coerce_value checks it); null removes it."""
    param = config.PARAMS_BY_KEY[key]
    bounds = {k: v for k, v in (("minimum", param.min), ("maximum", param.max)) if v is not None}
    number = {"type": "integer" if param.kind == "int" else "number", **bounds}
    if param.kind == "float_list":
        value = {"type": "array", "minItems": 1, "items": number}
    elif param.kind == "rate_table":  # rows of (threshold within the bounds, factor)
        value = {"type": "array", "minItems": 1, "items": {"type": "array", "prefixItems": [
            {"type": "number", **bounds}, {"type": "number"}], "minItems": 2, "maxItems": 2, "items": False}}
    else:
        value = number
    return {"anyOf": [value, {"type": "null"}],
            "description": f"{param.meaning}（范围 {param.describe_range()}；null 恢复全局值）"}


def _stock_change_schema() -> dict:
    """The PUT body of /api/stock-params/<code>; the parameters and their ranges come from config.py's table."""
    return {"type": "object", "additionalProperties": False, "anyOf": [
        {"required": ["params"]}, {"required": ["locked"]}, {"required": ["blacklisted"]}], "properties": {
        "params": {"type": "object", "additionalProperties": False, "minProperties": 1,
                   "properties": {key: _param_schema(key) for key in STOCK_KEYS},
                   "description": "个股参数 {参数名: 值}，只影响该股"},
        "locked": {"type": "boolean", "description": "锁定（不自动交易）或解除锁定"},
        "blacklisted": {"type": "boolean", "description": "加入或移出 MACD / 股票池买入黑名单"},
        "reason": req.nullable(req.F_REASON.schema())}}


STOCK_CHANGE = Body("个股参数、锁定与黑名单，各项可选（至少一项）；参数先整体校验，任一被拒则什么都不改",
                    _stock_change_schema)
STOCK_FIELDS = set(_stock_change_schema()["properties"])
# Position state edit: the names are core.position_review's; its parse_state_edit checks the values.
STATE_EDIT = req.Shape("PositionStateEdit", "手动修改持仓的规则状态（只改给出的字段）；confirm=true 确认券商发现的持仓", (
    req.Field("highest_price", "number", "开仓以来最高价（元，不低于成本价）", low=0),
    req.Field("profit_triggered", "boolean", "是否已触发首次止盈"),
    req.Field("base_cost_price", "number", "基准成本价（元）", low=0),
    req.Field("used_add_levels", "array", "已用补仓档位序号（从 0 起）", items="integer"),
    req.Field("open_date", "string", "开仓日期 YYYY-MM-DD（不晚于今天；未给最高价时按日线重算）", fmt="date"),
    req.Field("confirm", "boolean", "确认该持仓的状态（结束「待确认」）")), (
    req.Variant((), (*STATE_FIELDS, "confirm")),))
STOCK_VIEW = {"type": "object", "required": ["stock_code", "overrides", "effective", "locked", "blacklisted"],
              "properties": {"stock_code": {"type": "string"}, "overrides": OBJ, "effective": OBJ,
                             "locked": {"type": "boolean"}, "blacklisted": {"type": "boolean"}}}


def _params() -> Any:
    store = ctx().stock_params
    if store is None:
        raise ApiError(404, "STOCK_PARAMS_UNAVAILABLE", "个股参数模块未启用")
    return store


def _stock_view(code: str) -> dict:
    c = ctx()
    store = _params()
    halted = c.trading_state.snapshot()["halted_stocks"] if c.trading_state is not None else {}
    view = {"stock_code": code, "overrides": store.overrides(code), "effective": store.effective(code),
            "locked": code in halted, "lock_reason": halted.get(code, ""), "blacklisted": store.is_blacklisted(code)}
    position = c.positions.get(code)
    if position is not None:
        view["trigger_prices"] = views.position_view(position, c.trigger_prices(position))["trigger_prices"]
    return view


def _refresh_views() -> None:
    """Trigger prices in the positions table and stream change with a stock's parameters."""
    app_state = state()
    app_state.positions.invalidate()
    app_state.stream.invalidate()


@blueprint.get("/stock-params")
@document("全部个股参数、黑名单、锁定的股票与待确认的持仓", data={"type": "object", "required": [
    "overrides", "blacklist", "locked", "pending_reviews"]}, tag=TAG)
def stock_params_all() -> Response:
    c = ctx()
    store = _params()
    halted = c.trading_state.snapshot()["halted_stocks"] if c.trading_state is not None else {}
    reviews = c.position_reviews.pending_codes() if c.position_reviews is not None else []
    return ok({"overrides": store.all_overrides(), "blacklist": store.blacklist(), "locked": halted,
               "pending_reviews": reviews})


@blueprint.get("/stock-params/<code>")
@document("一只股票的个股参数（含生效值与来源）、锁定、黑名单与触发价", data=STOCK_VIEW, tag=TAG)
def stock_params_get(code: str) -> Response:
    return ok(_stock_view(req.parse_code(code)))


@blueprint.put("/stock-params/<code>")
@document("修改个股参数、锁定或黑名单（记入参数修改历史）", body=STOCK_CHANGE, data=STOCK_VIEW, tag=TAG)
def stock_params_put(code: str) -> Response:
    """`{"params": {KEY: value | null}, "locked": bool, "blacklisted": bool, "reason": "…"}`, each optional.
    The parameters are validated first: a refused value changes nothing, not even the lock."""
    code = req.parse_code(code)
    parsed = body()
    req.ensure_only(parsed, STOCK_FIELDS)
    if not set(parsed) - {"reason"}:
        raise req.bad_request("没有要修改的内容：params、locked、blacklisted 至少一项", "EMPTY_CHANGE")
    req.parse_reason(parsed, LOCK_REASON)  # a given reason is checked even when only params change
    for flag in ("locked", "blacklisted"):
        if flag in parsed and not isinstance(parsed[flag], bool):
            raise req.bad_request(f"{flag} 必须是 true 或 false", "INVALID_FIELD")
    store = _params()
    c = ctx()
    if "params" in parsed:
        if not isinstance(parsed["params"], dict):
            raise req.bad_request("params 必须是 {参数名: 值} 对象", "INVALID_FIELD")
        try:
            store.update(code, parsed["params"], "web")
        except OverflowError:  # config.coerce_value cannot take a JSON integer beyond any float
            raise req.bad_request("参数值超出数字范围", "CONFIG_INVALID") from None
    if "locked" in parsed:
        if c.trading_state is None:
            raise ApiError(404, "TRADING_STATE_UNAVAILABLE", "交易状态模块未启用，无法锁定股票")
        if parsed["locked"]:
            c.trading_state.halt_stock(code, req.parse_reason(parsed, LOCK_REASON), "web")
        else:
            c.trading_state.resume_stock(code, req.parse_reason(parsed, "操作员解除锁定"), "web")
    if "blacklisted" in parsed:
        store.set_blacklisted(code, parsed["blacklisted"], "web")
    _refresh_views()
    return ok(_stock_view(code))


@blueprint.delete("/stock-params/<code>")
@document("删除一只股票的全部个股参数（恢复全局参数）", data=STOCK_VIEW, tag=TAG)
def stock_params_delete(code: str) -> Response:
    code = req.parse_code(code)
    try:
        _params().reset(code, "web")
    except ConfigError as exc:
        raise ApiError(404, "NO_STOCK_PARAMS", "；".join(exc.errors.values())) from None
    _refresh_views()
    return ok(_stock_view(code))


# ---- a position's rule state --------------------------------------------------------------------------

def _position(code: str):
    found = ctx().positions.get(code)
    if found is None:
        raise ApiError(404, "NO_POSITION", f"没有 {code} 的持仓")
    return found


def _state_view(code: str) -> dict:
    c = ctx()
    position = _position(code)
    review = c.position_reviews.get(code) if c.position_reviews is not None else None
    return {"stock_code": code, **state_view(position), "cost_price": position.cost_price,
            "current_price": position.current_price, "review": review,
            "add_levels": list(_params().params_for(code).add_levels) if c.stock_params is not None else []}


@blueprint.get("/positions/<code>/state")
@document("持仓的规则状态（最高价、首次止盈、基准成本、补仓档位、开仓日）", data=OBJ, tag="持仓")
def position_state_get(code: str) -> Response:
    return ok(_state_view(req.parse_code(code)))


@blueprint.put("/positions/<code>/state")
@document("手动修改持仓的规则状态（逐项记入参数修改历史）", body=STATE_EDIT, data=OBJ, tag="持仓")
def position_state_put(code: str) -> Response:
    """Validated edit of the episode state; each changed field is journaled as `<code>:position.<field>`.
    `{"confirm": true}` (alone or with changes) ends the 「待确认」 of a position found at the broker."""
    code = req.parse_code(code)
    c = ctx()
    position = _position(code)
    raw = body()
    add_levels = _params().params_for(code).add_levels
    bars_high = None
    if isinstance(raw, dict) and isinstance(raw.get("open_date"), str) and "highest_price" not in raw:
        bars_high = _bars_high_since(code, raw["open_date"])
    edit = parse_state_edit(raw, position, add_levels, c.clock.today(), bars_high)
    if edit.changes:
        c.positions.set_rule_state(code, **edit.changes)
        for key, new in edit.changes.items():
            old = getattr(position, key)
            c.settings.journal(f"{code}:position.{key}", _plain(old), _plain(new), "web")
    if c.position_reviews is not None:
        if edit.highest_source:
            c.position_reviews.set_highest_source(code, edit.highest_source)
        if edit.confirm:
            c.position_reviews.confirm(code)
    view = _state_view(code)
    view["highest_source_label"] = HIGHEST_SOURCES.get(edit.highest_source, "")
    return ok(view)


def _bars_high_since(code: str, open_date: str) -> float | None:
    """Highest daily high from the open date up to yesterday (today's bar is not complete)."""
    try:
        start = req.parse_date(open_date, "开仓日期")
    except ApiError:
        return None  # parse_state_edit names the bad date
    c = ctx()
    bars = c.data.bar_store.bars(code, start=start, end=c.clock.today() - timedelta(days=1))
    return max((b.high for b in bars), default=None)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
