"""Routes of per-stock rule parameters, the stock lock and the MACD/pool-buy blacklist, and a position's rule state
edited by hand (issue 17). Every change is journaled in the config history with old → new."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response

import web_requests as req
import web_views as views
from config import ConfigError
from position_review import HIGHEST_SOURCES, parse_state_edit, state_view
from web_api import body, ctx
from web_requests import ApiError
from web_server import ok, state

blueprint = Blueprint("api_stock", __name__, url_prefix="/api")

LOCK_REASON = "操作员锁定该股票（不自动交易）"
STOCK_FIELDS = {"params", "locked", "blacklisted", "reason"}


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
def stock_params_all() -> Response:
    c = ctx()
    store = _params()
    halted = c.trading_state.snapshot()["halted_stocks"] if c.trading_state is not None else {}
    reviews = c.position_reviews.pending_codes() if c.position_reviews is not None else []
    return ok({"overrides": store.all_overrides(), "blacklist": store.blacklist(), "locked": halted,
               "pending_reviews": reviews})


@blueprint.get("/stock-params/<code>")
def stock_params_get(code: str) -> Response:
    return ok(_stock_view(req.parse_code(code)))


@blueprint.put("/stock-params/<code>")
def stock_params_put(code: str) -> Response:
    """`{"params": {KEY: value | null}, "locked": bool, "blacklisted": bool, "reason": "…"}`, each optional.
    The parameters are validated first: a refused value changes nothing, not even the lock."""
    code = req.parse_code(code)
    parsed = body()
    req.ensure_only(parsed, STOCK_FIELDS)
    if not set(parsed) - {"reason"}:
        raise req.bad_request("没有要修改的内容：params、locked、blacklisted 至少一项", "EMPTY_CHANGE")
    for flag in ("locked", "blacklisted"):
        if flag in parsed and not isinstance(parsed[flag], bool):
            raise req.bad_request(f"{flag} 必须是 true 或 false", "INVALID_FIELD")
    store = _params()
    c = ctx()
    if "params" in parsed:
        if not isinstance(parsed["params"], dict):
            raise req.bad_request("params 必须是 {参数名: 值} 对象", "INVALID_FIELD")
        store.update(code, parsed["params"], "web")
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
def position_state_get(code: str) -> Response:
    return ok(_state_view(req.parse_code(code)))


@blueprint.put("/positions/<code>/state")
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
