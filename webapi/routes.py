"""The routes of DESIGN §11: each one validates its input (webapi.requests), calls one component of the
WebContext and answers with the JSON shapes of webapi.views. Security and error shapes are webapi.server's."""
from __future__ import annotations

import logging
from typing import Any, Callable

from flask import Blueprint, Response, request

import config
import market_rules
import webapi.requests as req
import webapi.views as views
from core.models import OrderStatus, Rule, SignalStatus, TradingError
from webapi.requests import ApiError
from webapi.openapi import OBJ, document
from webapi.common import error_response, ok, state
from webapi.fastpath import positions_reply
from webapi.stream import PositionStream, StreamBody, VersionedCache

log = logging.getLogger(__name__)

blueprint = Blueprint("api", __name__, url_prefix="/api")


def ctx():
    return state().ctx


def body() -> dict:
    return req.parse_json_body(request.get_data(cache=True), request.headers.get("Content-Type", ""))


def _empty_body() -> None:
    """Actions without parameters accept no body or an empty JSON object."""
    if request.get_data(cache=True):
        req.ensure_only(body(), set())


def _allow_query(*allowed: req.Field | str) -> None:
    """Refuse query parameters not named (by declared field or by name: the watch routes name them)."""
    unknown = sorted(set(request.args) - {getattr(f, "name", f) for f in allowed})
    if unknown:
        raise req.bad_request(f"未知查询参数：{', '.join(unknown)}", "UNKNOWN_FIELD")


# ---- overview -------------------------------------------------------------------------------------

@blueprint.get("/health")
def health() -> Response:
    """Green (`ready`, and `all_alive` for older scripts) only once every thread beats AND the data source
    has delivered its first quotes: before that nothing can be priced, so scripts must not start trading.
    `status` is red whenever protection is not ok (DESIGN §8a: health answers "can it protect now?")."""
    threads = ctx().health()
    first = getattr(ctx().data, "first_quote_at", None)
    ready = bool(getattr(ctx().data, "ready", True))
    alive = all(t.get("alive") for t in threads)
    data = {"ready": ready, "first_quote_time": first.isoformat(timespec="seconds") if first else None,
            "message": "" if ready else "行情来源尚未送来第一笔行情"}
    alarms = [t["alarm"] for t in threads if t.get("alarm")]
    state = ctx().trading_state.snapshot() if ctx().trading_state is not None else None
    if state and state["state"] == "halted" and state["source"] == "storage":  # a broken or full disk
        alarms.append(state["reason"])
    protection = ctx().protection() if ctx().protection is not None else None
    if protection is not None and not protection["ok"]:
        alarms.append(protection_alarm(protection["failures"]))
    return ok({"threads": threads, "all_alive": alive and data["ready"], "threads_alive": alive, "data": data,
               "ready": alive and data["ready"], "alarms": alarms,
               "status": "green" if alive and not alarms else "red", "web": {"alive": True},
               "broker": broker_link_view(), "protection": protection})


def protection_alarm(failures: list[dict]) -> str:
    """「保护失效：600036.SH（无法判断：行情过期）；…」 for the health alarms."""
    named = "；".join(f"{f['stock_code'] or '全部持仓'}（{f['cause_label']}）" for f in failures)
    return f"保护失效：{named}"


@blueprint.get("/status")
def status() -> Response:
    c = ctx()
    return ok({
        "mode": c.mode, "mode_label": views.MODE_LABELS.get(c.mode, c.mode),
        "switches": {key: c.settings.get(key) for key in views.SWITCH_KEYS},
        "account": account_view(c),
        "data_source": data_source_view(),
        "clock": views.session_view(c.clock),
        "positions_count": sum(1 for p in c.positions.all() if p.volume > 0),
        "data_version": c.positions.data_version,
        "pending_signals": len(c.signals.pending()),
        "grid_available": c.grid is not None,
        "trading_state": c.trading_state.snapshot() if c.trading_state is not None else None,
        "run_overrides": sorted(c.settings.run_overridden()),
    })


@blueprint.get("/connection/status")
def connection_status() -> Response:
    return ok({"broker": broker_view(), "data": data_source_view()})


def account_view(c) -> dict:
    """Cash, frozen cash, market value, total asset and today's P&L; an unreachable broker is reported."""
    try:
        asset = c.executor.account()
    except TradingError as exc:
        return {"available": False, "error": exc.message}
    view = {"available": True, **views.jsonable(asset)}
    today = c.clock.today()
    view["today_pnl"] = views.today_pnl(c.positions.all(), c.executor.trade_records(start=today, end=today),
                                        c.data.get_latest_data)
    return view


def data_source_view() -> dict:
    data = ctx().data
    source_status = views.jsonable(data.status())
    name = getattr(data, "source_name", source_status.get("source"))
    return {**source_status, "source": name, "label": getattr(data, "source_label", source_status.get("label")),
            "synthetic": name == "synthetic"}


def broker_view() -> dict:
    """Whether the broker is connected: its own flag when the context has it, else an account query."""
    c = ctx()
    error = ""
    try:
        if c.broker is not None:
            connected = bool(c.broker.is_connected())
        else:
            c.executor.account()
            connected = True
    except TradingError as exc:
        connected, error = False, exc.message
    if not connected and not error:
        error = "券商未连接" if c.mode == "live" else "模拟券商已关闭"
    return {"mode": c.mode, "mode_label": views.MODE_LABELS.get(c.mode, c.mode), "connected": connected,
            "error": error, **broker_link_view()}


def broker_link_view() -> dict:
    """The live broker's link state and recent anomalies (issue 13); empty for a broker without them."""
    broker = ctx().broker
    snapshot = getattr(getattr(broker, "health", None), "snapshot", None)
    return snapshot() if callable(snapshot) else {}


# ---- positions ------------------------------------------------------------------------------------

@blueprint.get("/positions")
def positions() -> Response:
    """Served from the snapshot cache keyed by data_version; If-None-Match with the current ETag → 304. Only
    requests the fast path leaves to Flask (an Origin, a query string) arrive here (webapi.fastpath)."""
    status, headers, body = positions_reply(state(), request.headers.get("If-None-Match", ""))
    return Response(body, status=status, headers=headers)


@blueprint.get("/positions/<code>")
def position(code: str) -> Response:
    found = ctx().positions.get(code.strip().upper())  # issue 28: a held instrument outside the rules, as held
    if found is None:
        code = req.parse_code(code)
        found = ctx().positions.get(code)
    if found is None:
        raise ApiError(404, "NO_POSITION", f"没有 {code} 的持仓")
    return ok(views.position_view(found, ctx().trigger_prices(found)))


@blueprint.get("/positions/stream")
def positions_stream() -> Response:
    def make(app_state, disconnected) -> PositionStream:
        c = app_state.ctx
        return PositionStream(
            c.positions, app_state.stream.get,
            lambda: {"time": c.clock.now(), "data_version": c.positions.data_version},
            lambda: c.settings.get("SSE_HEARTBEAT_SECONDS"), app_state.stop, disconnected, bus=c.events)
    return sse_response(make)


def sse_response(make: Callable[[Any, Callable[[], bool]], PositionStream]) -> Response:
    """A server-sent-event response holding one of the bounded stream slots until it ends. `make(app_state,
    disconnected)` builds the stream; its frames run after the request context is gone, so it binds all."""
    app_state = state()
    client = request.remote_addr or ""
    refused = app_state.sse_slots.acquire(client)
    if refused:
        raise ApiError(429, "TOO_MANY_STREAMS", refused)
    try:
        disconnected = request.environ.get("waitress.client_disconnected") or (lambda: False)
        frames = StreamBody(make(app_state, disconnected).frames(), lambda: app_state.sse_slots.release(client))
    except Exception:
        app_state.sse_slots.release(client)
        raise
    response = Response(frames, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def positions_cache(c) -> VersionedCache:
    def build(version: int) -> dict:
        held = [p for p in c.positions.all() if p.volume > 0]
        return views.positions_snapshot(held, version, c.trigger_prices)
    return VersionedCache(c.positions, c.settings, build)


def stream_cache(c, positions: VersionedCache) -> VersionedCache:
    """A stream snapshot: the positions table plus the account and the market clock, shared by all streams."""
    def build(version: int) -> dict:
        return {**positions.get()[1], "account": account_view(c), "clock": views.session_view(c.clock)}
    return VersionedCache(c.positions, c.settings, build)


# ---- orders, trades, signals ----------------------------------------------------------------------

@blueprint.get("/orders")
def orders() -> Response:
    _allow_query(*req.ORDERS_QUERY)
    status_filter = req.parse_order_status(request.args.get("status"))
    day = req.parse_date(request.args.get("date"), "日期")
    if status_filter == req.ACTIVE_ORDERS:
        rows = [r for r in ctx().executor.list_orders(day=day) if OrderStatus(r["status"]).is_open]
    else:
        rows = ctx().executor.list_orders(status=status_filter, day=day)
    return ok([views.order_view(r) for r in rows])


@blueprint.get("/trade-records")
def trade_records() -> Response:
    _allow_query(*req.TRADE_RECORDS_QUERY)
    start, end = req.parse_date_range(request.args.get("start"), request.args.get("end"))
    code_text = request.args.get("stock_code")
    code = req.parse_code(code_text) if code_text else None
    output = request.args.get("format") or "json"  # an empty value is the parameter left out, as everywhere
    if output not in ("json", "csv"):
        raise req.bad_request("format 只能是 json 或 csv")
    records = ctx().executor.trade_records(start=start, end=end, code=code)[::-1]  # newest first, like orders
    if output == "csv":
        name = f"trade_records_{start or 'all'}_{end or 'all'}.csv"
        response = Response(views.trade_records_csv(records), mimetype="text/csv")
        response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    return ok([views.trade_record_view(r) for r in records])


@blueprint.get("/signals/pending")
def signals_pending() -> Response:
    """Queued signals with their age in real seconds (how long a person has had) and the limit."""
    c = ctx()
    max_age = c.settings.get("SIGNAL_MAX_AGE")
    return ok([{**views.signal_view(s), "age_seconds": round(c.signals.age_seconds(s), 1), "max_age": max_age}
               for s in c.signals.pending()])


@blueprint.get("/signals/history")
def signals_history() -> Response:
    _allow_query(*req.SIGNAL_HISTORY_QUERY)
    limit = req.parse_limit(request.args.get("limit"), 200)
    status, rule = req.parse_signal_filters(request.args.get("status"), request.args.get("rule"))
    code_text = request.args.get("stock_code")
    code = req.parse_code(code_text) if code_text else None
    return ok([views.signal_view(s) for s in ctx().signals.history(limit, status=status, rule=rule, code=code)])


@blueprint.get("/signals/latest/<code>")
def signals_latest(code: str) -> Response:
    found = ctx().signals.latest(req.parse_code(code))
    return ok(views.signal_view(found) if found else None)


# ---- market data ----------------------------------------------------------------------------------

@blueprint.get("/data/history/<code>")
def data_history(code: str) -> Response:
    _allow_query(*req.HISTORY_QUERY)
    code = req.parse_code(code)
    start, end = req.parse_date_range(request.args.get("start"), request.args.get("end"))
    c = ctx()
    if hasattr(c.data, "request_quote"):
        c.data.request_quote(code)  # subscribe on demand: its bars and quotes follow
    frame = c.data.get_history(code, start, end, with_indicators=True)
    bars = views.with_macd_crosses(views.with_moving_averages(views.bars_view(frame)))
    if end is None or end >= c.clock.today():
        bars = views.with_today(bars, c.data.get_latest_data(code), c.clock.today())
    return ok({"stock_code": code, "bars": bars, "count": len(bars)})


@blueprint.get("/data/realtime/<code>")
def data_realtime(code: str) -> Response:
    return ok(ensure_quote(req.parse_code(code)))


def ensure_quote(code: str):
    """The quote of any valid code, subscribed on demand; 404 with the precise reason when none can be had."""
    data = ctx().data
    request_quote = getattr(data, "request_quote", None)
    quote = request_quote(code) if request_quote is not None else data.get_latest_data(code)
    if quote is None:
        reason = (data.quote_unavailable_reason(code) if hasattr(data, "quote_unavailable_reason")
                  else f"{code} 暂无有效行情（未订阅、停牌或行情已过期）")
        raise ApiError(404, "NO_QUOTE", reason)
    return quote


# ---- configuration --------------------------------------------------------------------------------

@blueprint.get("/config")
def config_list() -> Response:
    settings = ctx().settings
    params = settings.describe()
    groups = list(dict.fromkeys(p["group"] for p in params))
    warnings = config.validate(settings.snapshot()).warnings
    return ok({"params": params, "groups": groups, "warnings": warnings})


@blueprint.post("/config/update")
def config_update() -> Response:
    changes = req.parse_config_changes(body())
    settings = ctx().settings
    warnings = settings.update(changes, source="web")
    shown = _shown_values(changes)
    restart = [k for k in changes if config.PARAMS_BY_KEY[k].restart]
    return ok({"changed": shown, "warnings": warnings, "restart_required": restart})


@blueprint.get("/config/history")
def config_history() -> Response:
    _allow_query(*req.LIMIT_QUERY)
    return ok(ctx().settings.history(req.parse_limit(request.args.get("limit"), 200)))


@blueprint.post("/config/rollback")
def config_rollback() -> Response:
    history_id = req.parse_rollback(body())
    restored = ctx().settings.rollback(history_id)
    return ok({"restored": _shown_values(restored)})


@blueprint.post("/config/reset")
def config_reset() -> Response:
    key = req.parse_config_key(body())
    if key not in config.PARAMS_BY_KEY:
        raise ApiError(400, "CONFIG_INVALID", f"未知参数 {key}", {key: f"未知参数 {key}"})
    ctx().settings.reset(key)
    return ok({"restored": _shown_values([key])})


def _shown_values(keys) -> dict:
    described = {p["key"]: p["value"] for p in ctx().settings.describe()}
    return {k: described[k] for k in keys}


# ---- trading actions ------------------------------------------------------------------------------

@blueprint.post("/actions/execute_buy")
def execute_buy() -> Response:
    parsed = req.parse_buy(body())
    executor = ctx().executor
    if isinstance(parsed, req.PoolBuy):
        return _buy_from_pool(parsed)
    ensure_quote(parsed.stock_code)
    if parsed.amount is not None:
        order = executor.buy_stock(parsed.stock_code, amount=parsed.amount, rule=Rule.MANUAL)
    else:
        order = executor.buy_stock(parsed.stock_code, volume=parsed.volume, price=parsed.price, rule=Rule.MANUAL)
    return ok(views.order_view(order))


def _buy_from_pool(parsed: req.PoolBuy) -> Response:
    """Buy `count` stocks drawn at random from the pool among those not held, each for `amount`."""
    c = ctx()
    held = {p.stock_code for p in c.positions.all() if p.volume > 0}
    pool = c.stock_pool.codes() if c.stock_params is None else c.stock_params.buyable(c.stock_pool.codes())
    candidates = [code for code in pool if code not in held]
    if not candidates:
        raise ApiError(409, "POOL_EMPTY", "股票池中没有可买入的股票（为空、都已持有或在黑名单中）")
    amount = parsed.amount or c.settings.get("POSITION_UNIT")
    affordable, skipped = _affordable(c, candidates, amount)
    if not affordable:
        reasons = "；".join(f"{s['stock_code']}：{s['message']}" for s in skipped)
        return error_response(409, "POOL_NOTHING_AFFORDABLE", f"股票池中没有 {amount:g} 元能买到一手的未持有股票："
                                                              f"{reasons}", skipped=skipped)
    chosen = state().random.sample(affordable, min(parsed.count, len(affordable)))
    results = []
    for code in chosen:
        try:
            order = c.executor.buy_stock(code, amount=amount, rule=Rule.MANUAL)
            results.append({"stock_code": code, "ok": True, "order": views.order_view(order)})
        except TradingError as exc:
            results.append({"stock_code": code, "ok": False, "code": exc.code, "message": exc.message})
    if not any(r["ok"] for r in results):
        reasons = "；".join(f"{r['stock_code']}：{r['message']}" for r in results)
        return error_response(409, "POOL_BUY_FAILED", f"随机买入全部失败：{reasons}", results=results)
    return ok({"results": results, "requested": parsed.count, "placed": sum(r["ok"] for r in results),
               "skipped": skipped})


def _affordable(c, codes: list[str], amount: float) -> tuple[list[str], list[dict]]:
    """Pool stocks one lot of which `amount` buys at the order price (the latest price plus the slippage the
    executor adds, capped at limit-up); the others with the reason."""
    affordable, skipped = [], []
    slippage = c.settings.get("ORDER_PRICE_SLIPPAGE")
    for code in codes:
        quote = c.data.get_latest_data(code)
        if quote is None:
            skipped.append({"stock_code": code, "message": "暂无行情"})
            continue
        price = market_rules.round_price(code, quote.price * (1 + slippage))
        if quote.limit_up:
            price = min(price, quote.limit_up)
        if market_rules.buy_volume_for_amount(code, amount, price) <= 0:
            lot = market_rules.min_buy_volume(code)
            skipped.append({"stock_code": code, "message": f"一手约 {price * lot:.2f} 元，超过每只金额 {amount:g} 元"})
        else:
            affordable.append(code)
    return affordable, skipped


@blueprint.post("/actions/execute_sell")
def execute_sell() -> Response:
    parsed = req.parse_sell(body())
    c = ctx()
    volume = _sell_volume(c, parsed)
    if parsed.confirmed:
        log.warning("操作员（网页）确认手动卖出 %s %d 股", parsed.stock_code, volume)
    order = c.executor.sell_stock(parsed.stock_code, volume, price=parsed.price, rule=Rule.MANUAL,
                                  operator_confirmed=parsed.confirmed)
    return ok(views.order_view(order))


def _sell_volume(c, parsed: req.SellOrder) -> int:
    """The volume asked, or the ratio of the available shares as a valid sell volume."""
    if parsed.ratio is None:
        return parsed.volume
    held = c.positions.get(parsed.stock_code)
    if held is None or held.volume <= 0:
        raise ApiError(409, "NO_POSITION", f"没有 {parsed.stock_code} 的持仓，无法卖出")
    if held.available <= 0:
        raise ApiError(409, "NO_AVAILABLE", f"{parsed.stock_code} 没有可卖数量（今日买入的股份需下一交易日才能卖出）")
    return market_rules.sell_volume_for_ratio(parsed.stock_code, held.available, parsed.ratio)


@blueprint.post("/actions/check_order")
@document("手动委托预检（不下单、不记录）：与手动买入/卖出相同的全部检查（数量与一手、限价与涨跌停、可用资金与仓位上限、"
          "可卖数量、交易状态与熔断），回答 ok、将委托的数量与价格，以及可买/可卖数量（max_volume）",
          body=req.CHECK_ORDER, tag="交易", data=OBJ)
def check_order() -> Response:
    """The page asks this before its confirm dialog, so the dialog only ever shows an order that passes."""
    fields = req.CHECK_ORDER.read(body())
    side = fields.pop("side")
    answer: dict[str, Any] = {"side": side, "side_label": "买入" if side == "buy" else "卖出",
                              "stock_code": fields["stock_code"], "ok": True, "code": "", "message": "",
                              "volume": None, "price": None, "amount": None, "max_volume": None}
    asks_order = bool({"amount", "volume", "ratio"} & set(fields))
    try:
        code = req.parse_code(fields["stock_code"])
        answer.update(stock_code=code, lot=market_rules.min_buy_volume(code))
        try:
            answer.update(_capacity(side, code, fields.get("price")))
        except (ApiError, TradingError):
            if not asks_order:
                raise
        if asks_order:
            checked = _dry_order(side, fields)
            answer.update(volume=checked.volume, price=checked.price,
                          amount=round(checked.volume * checked.price, 2),
                          message=f"将{answer['side_label']} {code} {checked.volume} 股，委托价 {checked.price:g} 元")
    except (ApiError, TradingError) as exc:
        answer.update(ok=False, code=exc.code, message=exc.message)
    return ok(answer)


def _capacity(side: str, code: str, price: Any) -> dict:
    """可买 (cash, MAX_ORDER_VALUE, position cap at the order price) or 可卖 (available shares)."""
    executor = ctx().executor
    if side == "sell":
        return {"max_volume": executor.sell_capacity(code)}
    ensure_quote(code)
    volume, order_price = executor.buy_capacity(code, price)
    return {"max_volume": volume, "price": order_price}


def _dry_order(side: str, fields: dict):
    """The real route's parsing and the executor's checks, without journaling or sending."""
    c = ctx()
    ensure_quote(fields["stock_code"])
    if side == "buy":
        parsed = req.parse_buy({k: v for k, v in fields.items() if k != "confirm"})  # never a pool buy here
        return c.executor.check_buy(parsed.stock_code, amount=parsed.amount, volume=parsed.volume,
                                    price=parsed.price, rule=Rule.MANUAL)
    sell = req.parse_sell(fields)
    return c.executor.check_sell(sell.stock_code, _sell_volume(c, sell), price=sell.price, rule=Rule.MANUAL,
                                 operator_confirmed=sell.confirmed)


@blueprint.post("/actions/execute_trading_signal")
def execute_trading_signal() -> Response:
    signal_id = req.parse_signal_id(body())
    signal = ctx().runner.execute_signal(signal_id, source="网页")
    view = views.signal_view(signal)
    if signal.status in (SignalStatus.REJECTED, SignalStatus.EXPIRED):
        code = "SIGNAL_REJECTED" if signal.status is SignalStatus.REJECTED else "SIGNAL_EXPIRED"
        return error_response(409, code, f"信号 #{signal_id} 未执行：{signal.reason}", signal=view)
    return ok(view)


@blueprint.post("/actions/dismiss_signal")
def dismiss_signal() -> Response:
    signal_id, snooze = req.parse_dismiss(body())
    signal = ctx().signals.dismiss(signal_id, snooze=snooze, source="网页")
    log.info("操作员（网页）忽略信号 #%s：%s %s%s", signal.id, signal.stock_code, signal.rule.label,
             "，本轮持仓内不再提示" if snooze else "")
    return ok(views.signal_view(signal))


@blueprint.post("/actions/cancel_order")
def cancel_order() -> Response:
    order_id = req.parse_order_id(body())
    ctx().executor.cancel_order(order_id)
    return ok({"order_id": order_id, "message": f"已提交撤单：{order_id}"})


# ---- stock pool -----------------------------------------------------------------------------------

@blueprint.get("/stock_pool")
def stock_pool_get() -> Response:
    codes = ctx().stock_pool.codes()
    return ok({"stocks": codes, "count": len(codes)})


@blueprint.post("/stock_pool")
def stock_pool_replace() -> Response:
    codes = ctx().stock_pool.replace(req.parse_stock_pool(body()))
    return ok({"stocks": codes, "count": len(codes)})


# ---- grid sessions --------------------------------------------------------------------------------

def _grid() -> Any:
    grid = ctx().grid
    if grid is None:
        raise ApiError(404, "GRID_UNAVAILABLE", "网格交易模块未启用")
    return grid


@blueprint.get("/grid/sessions")
def grid_sessions() -> Response:
    return ok([views.jsonable(s) for s in _grid().sessions()])


@blueprint.get("/grid/sessions/<session_id>/trades")
def grid_trades(session_id: str) -> Response:
    grid = _grid()
    return ok([t.to_dict() for t in grid.trades(req.parse_grid_session_id(session_id))])


@blueprint.post("/grid/sessions")
def grid_start() -> Response:
    grid = _grid()
    parsed = req.parse_grid_start(body())
    if not ctx().settings.get("ENABLE_GRID_TRADING"):  # a session that can never trade must not look running
        raise ApiError(409, "GRID_TRADING_OFF", "网格交易开关（ENABLE_GRID_TRADING）已关闭：启动的网格不会交易。"
                                                "请先开启「网格交易」开关再启动")
    return ok(views.jsonable(grid.start_session(parsed.stock_code, **parsed.options)))


@blueprint.get("/grid/proposal/<code>")
def grid_proposal(code: str) -> Response:
    """What the grid form proposes for `code`: the configured amount per grid, or the smallest amount that
    buys one lot at the centre price when the configured one buys none, with the reason."""
    from grid.rules import min_grid_amount

    _grid()
    code = req.parse_code(code)
    center = ensure_quote(code).price
    configured = ctx().settings.get("GRID_BUY_AMOUNT")
    minimum = min_grid_amount(code, center)
    enough = configured >= minimum
    lot = market_rules.min_buy_volume(code)
    message = "" if enough else (f"默认每格金额 {configured:g} 元在中心价 {center:g} 买不到一手（{lot} 股），"
                                 f"已建议每格 {minimum:g} 元")
    return ok({"stock_code": code, "center_price": center, "lot": lot, "configured_amount": configured,
               "min_amount": minimum, "proposed_amount": configured if enough else minimum, "enough": enough,
               "message": message, "grid_enabled": bool(ctx().settings.get("ENABLE_GRID_TRADING"))})


@blueprint.post("/grid/sessions/<session_id>/stop")
def grid_stop(session_id: str) -> Response:
    grid = _grid()
    ident = req.parse_grid_session_id(session_id)
    _empty_body()
    return ok(views.jsonable(grid.stop_session(ident)))
