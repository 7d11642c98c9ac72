"""The OpenAPI 3.1 document of the running Flask app: every route of `app.url_map`, with the request bodies,
query and path parameters taken from the declarations the parsers validate with (webapi.request_shapes), so the
contract cannot drift from the code. Routes are described here by endpoint name, or by `@document(...)` on
the view (for blueprints added later); a route with neither is listed in `undocumented(app)`."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from flask import Flask

import webapi.requests as req

OPENAPI_VERSION = "3.1.0"
API_TITLE = "miniQMT 无人值守交易守护进程 API"
API_VERSION = "1.0"
TOKEN_HEADER = "X-API-Token"
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}
MUTATING_ERRORS = (409, 413, 415)
ERROR_TEXT = {400: "请求无效（参数或请求体不符合要求）", 401: "缺少或错误的 API 令牌", 403: "主机名（Host）与本服务不符",
              404: "对象不存在", 405: "不支持该请求方法", 409: "与当前状态冲突（如券商未连接、委托已结束）",
              413: "请求体过大", 415: "请求体必须是 JSON", 429: "请求过多（实时推送连接数已达上限）"}


@dataclass(frozen=True)
class Body:
    """A nested JSON request body (webapi.request_shapes.Shape is flat by design): its schema is built by the module
    that parses the body, from the same declarations its parser validates with (e.g. watch.requests.task_schema)."""

    description: str
    schema_of: Callable[[], dict]
    required: bool = True

    def schema(self) -> dict:
        return {**self.schema_of(), "description": self.description}


@dataclass(frozen=True)
class Operation:
    """What a route does and takes, beyond what its URL rule already says."""

    summary: str
    description: str = ""
    body: Optional[req.Shape | Body] = None
    query: tuple[req.Field, ...] = ()
    path: tuple[req.Field, ...] = ()  # path parameters not in webapi.request_shapes.PATH_PARAMS
    data: dict = field(default_factory=dict)  # JSON schema of `data` in the success envelope
    errors: tuple[int, ...] = ()  # more documented error statuses than the defaults
    content: tuple[str, ...] = ("application/json",)  # media types of the 200 answer
    tag: str = ""
    upload: Optional[dict] = None  # a multipart/form-data schema instead of a JSON body
    raw: bool = False  # the 200 answer is not the JSON envelope (a page, a file, a stream)
    success: int = 200  # the status of the success answer (201 for a created resource)


def document(summary: str, **kwargs: Any) -> Callable:
    """Decorator for views in new blueprints: `@document("中文说明", body=SHAPE, query=(...))`."""
    def mark(view: Callable) -> Callable:
        view.__openapi__ = Operation(summary, **kwargs)  # type: ignore[attr-defined]
        return view
    return mark


OBJ = {"type": "object"}
LIST = {"type": "array", "items": OBJ}
TEXT, NUMBER, FLAG = {"type": "string"}, {"type": "number"}, {"type": "boolean"}
GRID_PROPOSAL = {"type": "object", "required": [
    "stock_code", "center_price", "lot", "configured_amount", "min_amount", "proposed_amount", "enough", "message",
    "grid_enabled"], "properties": {
    "stock_code": TEXT, "center_price": NUMBER, "lot": {"type": "integer", "description": "一手股数"},
    "configured_amount": {"type": "number", "description": "参数 GRID_BUY_AMOUNT（每格金额）"},
    "min_amount": {"type": "number", "description": "中心价下买到一手的最小每格金额"},
    "proposed_amount": {"type": "number", "description": "建议的每格金额"},
    "enough": {"type": "boolean", "description": "默认每格金额是否够买一手"},
    "message": {"type": "string", "description": "不够时的说明（够则为空）"},
    "grid_enabled": {"type": "boolean", "description": "网格交易开关 ENABLE_GRID_TRADING"}}}

# issue 25 (DESIGN §8a): the protection sentinel's report; null where no sentinel runs
PROTECTION_FAILURE = {"type": "object", "required": ["stock_code", "cause", "cause_label", "since"], "properties": {
    "stock_code": {"type": "string", "description": "股票代码；空字符串表示保护检查本身（涉及全部持仓）"},
    "cause": {"type": "string", "description": "原因代码，如 quote_stale、no_working_sell、broker_down"},
    "cause_label": {"type": "string", "description": "原因（中文）"},
    "since": {"type": ["string", "null"], "description": "开始时间（行情时钟）"},
    "reason": {"type": "string", "description": "详细说明"}}}
PROTECTION_POSITION = {"type": "object", "required": ["stock_code", "state", "reason"], "properties": {
    "stock_code": {"type": "string"},
    "state": {"type": "string", "enum": ["protected", "exit_working", "explained", "failure"],
              "description": "protected 未触发清仓条件；exit_working 卖单已在券商处工作；explained 有合理原因"
                             "（跌停、T+1、非交易时段、紧急停止、暂停、锁定）；failure 保护失效"},
    "reason": {"type": "string"}}}
PROTECTION = {"type": ["object", "null"], "required": ["ok", "failures", "positions"], "properties": {
    "ok": {"type": "boolean", "description": "每只持仓都受到保护（或有合理原因），没有保护失效"},
    "failures": {"type": "array", "items": PROTECTION_FAILURE},
    "positions": {"type": "array", "items": PROTECTION_POSITION},
    "checked_at": {"type": ["string", "null"], "description": "最近一次保护检查的时间（行情时钟）"}}}

# The routes of webapi.routes and webapi.server by endpoint name.
OPERATIONS: dict[str, Operation] = {
    "index": Operation("网页界面", content=("text/html",), raw=True, tag="页面"),
    "static": Operation("网页静态文件（脚本、样式、图标、第三方库）", content=("*/*",), raw=True, tag="页面"),
    "api.health": Operation("各线程存活与心跳、持仓保护状态（保护失效时 status 为 red）", tag="概览", data={
        "type": "object", "required": ["threads", "all_alive", "status"],
        "properties": {"threads": LIST, "all_alive": {"type": "boolean"}, "web": OBJ,
                       "status": {"type": "string", "enum": ["green", "red"]},
                       "broker": OBJ,  # issue 13: link_state, anomalies (live broker only)
                       "protection": PROTECTION}}),
    "api.status": Operation("运行模式、开关、账户、行情来源与市场时钟", tag="概览", data=OBJ),
    "api.connection_status": Operation("券商与行情连接状态", tag="概览", data={
        "type": "object", "required": ["broker", "data"], "properties": {"broker": OBJ, "data": OBJ}}),
    "api.positions": Operation("全部持仓（含各规则触发价）与数据版本", tag="持仓", data=OBJ),
    "api.position": Operation("单只股票的持仓", tag="持仓", data=OBJ),
    "api.positions_stream": Operation("持仓实时推送（server-sent events，每 15 秒心跳）", tag="持仓",
                                      content=("text/event-stream",), raw=True, errors=(429,)),
    "api.orders": Operation("委托列表", query=req.ORDERS_QUERY, tag="委托与成交", data=LIST),
    "api.trade_records": Operation("成交记录（format=csv 时下载 CSV）", query=req.TRADE_RECORDS_QUERY, tag="委托与成交",
                                   content=("application/json", "text/csv"), data=LIST),
    "api.signals_pending": Operation("排队中的交易信号", tag="信号", data=LIST),
    "api.signals_history": Operation("最近的交易信号（可按状态、规则、股票筛选）", query=req.SIGNAL_HISTORY_QUERY, tag="信号",
                                     data=LIST),
    "api.signals_latest": Operation("某只股票最近的信号（没有则为 null）", tag="信号",
                                    data={"type": ["object", "null"]}),
    "api.data_history": Operation("日线与指标", query=req.HISTORY_QUERY, tag="行情", data={
        "type": "object", "required": ["stock_code", "bars", "count"],
        "properties": {"stock_code": {"type": "string"}, "bars": LIST, "count": {"type": "integer"}}}),
    "api.data_realtime": Operation("最新行情", tag="行情", data=OBJ),
    "api.config_list": Operation("全部参数：类型、范围、含义、是否被覆盖", tag="参数", data=OBJ),
    "api.config_update": Operation("修改参数（逐项校验，记录历史）", tag="参数", data=OBJ, body=Body(
        req.CONFIG_CHANGES.description, req.config_changes_schema)),
    "api.config_history": Operation("参数修改历史", query=req.LIMIT_QUERY, tag="参数", data=LIST),
    "api.config_rollback": Operation("回滚参数修改", body=req.ROLLBACK, tag="参数", data=OBJ),
    "api.config_reset": Operation("恢复参数默认值", body=req.CONFIG_KEY, tag="参数", data=OBJ),
    "api.execute_buy": Operation("手动买入", body=req.BUY, tag="交易", data=OBJ),
    "api.execute_sell": Operation("手动卖出", body=req.SELL, tag="交易", data=OBJ),
    "api.execute_trading_signal": Operation("手动执行一个排队中的信号", body=req.SIGNAL_ID, tag="交易", data=OBJ),
    "api.dismiss_signal": Operation("忽略一个排队中的信号（可选本轮持仓内不再提示）", body=req.DISMISS, tag="信号",
                                    data=OBJ),
    "api.cancel_order": Operation("撤单", body=req.ORDER_ID, tag="交易", data=OBJ),
    "api_state.trading_state_get": Operation("交易状态（运行/暂停/紧急停止）及其变更历史", tag="交易状态", data=OBJ),
    "api_state.emergency_stop": Operation("紧急停止：不再产生任何新委托，并撤销全部未完成委托", body=req.REASON,
                                          tag="交易状态", data=OBJ),
    "api_state.pause": Operation("暂停自动交易（信号继续检测排队，手动委托不受影响）", body=req.REASON, tag="交易状态",
                                 data=OBJ),
    "api_state.resume": Operation("确认恢复交易", body=req.RESUME, tag="交易状态", data=OBJ),
    "api_state.cancel_all": Operation("撤销全部未完成委托（不改变交易状态）", body=req.EMPTY, tag="交易", data=OBJ),
    "api.stock_pool_get": Operation("股票池", tag="股票池", data=OBJ),
    "api.stock_pool_replace": Operation("替换股票池（逐个校验代码）", body=req.STOCK_POOL, tag="股票池", data=OBJ),
    "api.grid_sessions": Operation("网格会话列表", tag="网格", data=LIST),
    "api.grid_trades": Operation("网格会话的成交", tag="网格", data=LIST),
    "api.grid_start": Operation("启动网格会话", body=req.GRID_START, tag="网格", data=OBJ),
    "api.grid_proposal": Operation("网格表单的建议：每格金额（默认金额买不到一手时给出最小金额及原因）", tag="网格",
                                   data=GRID_PROPOSAL),
    "api.grid_stop": Operation("停止网格会话", body=req.EMPTY, tag="网格", data=OBJ),
}


def operation_for(app: Flask, endpoint: str) -> Optional[Operation]:
    view = app.view_functions.get(endpoint)
    return getattr(view, "__openapi__", None) or OPERATIONS.get(endpoint)


def routes(app: Flask) -> list[tuple[str, str, str]]:
    """(OpenAPI path, method, endpoint) of every route the app serves (HEAD/OPTIONS are automatic)."""
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - AUTOMATIC_METHODS):
            out.append((openapi_path(rule.rule), method.lower(), rule.endpoint))
    return sorted(out)


def undocumented(app: Flask) -> list[str]:
    return [f"{method.upper()} {path} ({endpoint})" for path, method, endpoint in routes(app)
            if operation_for(app, endpoint) is None]


def openapi_path(rule: str) -> str:
    """`/api/positions/<code>` → `/api/positions/{code}` (converters dropped)."""
    return re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>", r"{\1}", rule)


def build(app: Flask) -> dict:
    """The OpenAPI 3.1 document of `app`."""
    paths: dict[str, dict] = {}
    for path, method, endpoint in routes(app):
        op = operation_for(app, endpoint) or Operation("（未说明的接口）")
        paths.setdefault(path, {})[method] = {**_operation(path, method, endpoint, op),
                                              **_security(app, path, method)}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": API_TITLE, "version": API_VERSION, "description": (
            "A股无人值守交易守护进程的 HTTP API。成功时返回 {\"status\": \"success\", \"data\": …}；失败时返回 HTTP 4xx/5xx 与 "
            "{\"status\": \"error\", \"message\": 中文说明, \"code\": 机器可读代码}。修改类请求需要请求头 "
            f"{TOKEN_HEADER}（令牌见数据目录 api_token）；服务绑定非本机地址时读取也需要令牌。")},
        "paths": paths,
        "components": {
            "securitySchemes": {"apiToken": {"type": "apiKey", "in": "header", "name": TOKEN_HEADER,
                                             "description": "API 令牌（数据目录 api_token 或 WEB_API_TOKEN）"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
        "security": [{"apiToken": []}],
    }


ERROR_SCHEMA = {
    "type": "object", "required": ["status", "message", "code"],
    "properties": {"status": {"const": "error"}, "message": {"type": "string", "description": "中文错误说明"},
                   "code": {"type": "string", "description": "机器可读错误代码"},
                   "errors": {"type": ["object", "array"], "description": "逐字段（或逐项）的错误"}},
}


def _security(app: Flask, path: str, method: str) -> dict:
    """The operation's own `security` where the server lets it through without the token (a read on a loopback
    server, a page or a static file): the document says what webapi.common's token check does, not more."""
    from webapi.common import token_refusal

    app_state = app.extensions.get("qmt")
    if app_state is None or token_refusal(method.upper(), path, "", app_state) is not None:
        return {}  # the document's default: the token is required
    return {"security": []}


def _operation(path: str, method: str, endpoint: str, op: Operation) -> dict:
    out: dict[str, Any] = {"operationId": f"{method}_{endpoint.replace('.', '_')}", "summary": op.summary,
                           "responses": _responses(path, method, op)}
    if op.description:
        out["description"] = op.description
    if op.tag:
        out["tags"] = [op.tag]
    declared = {**req.PATH_PARAMS, **{f.name: f for f in op.path}}
    params = [_parameter(name, "path", declared.get(name), True) for name in re.findall(r"{(\w+)}", path)]
    params += [_parameter(f.name, "query", f, False) for f in op.query]
    if params:
        out["parameters"] = params
    if op.upload is not None:
        out["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": op.upload}}}
    elif op.body is not None:
        empty_ok = (not op.body.required if isinstance(op.body, Body)
                    else all(not v.required for v in op.body.variants))
        out["requestBody"] = {"required": not empty_ok, "description": op.body.description,
                              "content": {"application/json": {"schema": op.body.schema()}}}
    return out


def _parameter(name: str, where: str, declared: Optional[req.Field], required: bool) -> dict:
    schema = declared.schema() if declared else {"type": "string"}
    description = schema.pop("description", name)
    out = {"name": name, "in": where, "required": required, "description": description, "schema": schema}
    if where == "query":  # the routes read an empty query value (?start=) as the parameter left out
        out.update(allowEmptyValue=True, description=description + "（空值等同于省略）")
    return out


def _responses(path: str, method: str, op: Operation) -> dict:
    if op.raw:
        ok = {"description": "成功", "content": {media: {"schema": {}} for media in op.content}}
    else:
        envelope = {"type": "object", "required": ["status", "data"],
                    "properties": {"status": {"const": "success"}, "data": op.data or {}}}
        ok = {"description": "成功", "content": {
            media: {"schema": envelope if media == "application/json" else {"type": "string"}} for media in op.content}}
    statuses = {400, 401, 403, 404, 405} | set(op.errors)
    if method != "get":
        statuses |= set(MUTATING_ERRORS)
    responses: dict[str, Any] = {str(op.success): ok}
    for status in sorted(statuses):
        responses[str(status)] = {"description": ERROR_TEXT[status], "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return responses
