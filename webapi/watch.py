"""Routes of the watch tasks (智能盯盘, issue 17): list, create, edit, delete, start/stop tasks and read the alert
history. Bodies are parsed by `watch.requests.parse_task`, whose declarations also describe them in the OpenAPI
document (one definition of the shape); the monitor does the rest."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

import webapi.requests as req
from webapi.routes import _allow_query, _empty_body, body, ctx
from webapi.requests import ApiError
from webapi.openapi import LIST, OBJ, Body, document
from webapi.common import ok
from watch.requests import parse_task, task_schema
from watch.rules import TaskStatus, WatchTask
from watch.store import TaskNotFound, task_view

blueprint = Blueprint("api_watch", __name__, url_prefix="/api/watch")

LAST_ALERTS = 3
MAX_ALERTS = 500
MAX_TASK_ID = 2**31 - 1
TAG = "智能盯盘"

# Declared once: the routes validate with these and the OpenAPI document describes them.
P_TASK_ID = req.Field("task_id", "integer", "盯盘任务编号", low=1, high=MAX_TASK_ID)
Q_TASK_STATUS = req.Field("status", "string", "任务状态", enum=tuple(s.value for s in TaskStatus))
Q_TASK_ID = req.Field("task_id", "integer", "只看该任务的提醒（任务编号）", low=1, high=MAX_TASK_ID)
Q_ALERT_LIMIT = req.Field("limit", "integer", "最多返回条数（默认 200）", low=1, high=MAX_ALERTS)
TASKS_QUERY = (req.Q_STOCK_CODE, Q_TASK_STATUS)
ALERTS_QUERY = (req.Q_STOCK_CODE, req.Q_DATE, Q_TASK_ID, Q_ALERT_LIMIT)
TASK_BODY = Body("盯盘任务：stock_code、conditions（同时满足），可选 action（默认仅提醒）、exits、sessions_only、"
                 "repeat_cooldown、expires", lambda: task_schema(req.F_STOCK_CODE.schema()))
TASK_LIST = {"type": "object", "required": ["tasks", "count"],
             "properties": {"tasks": LIST, "count": {"type": "integer", "minimum": 0}}}


def _store() -> Any:
    store = ctx().watch
    if store is None:
        raise ApiError(404, "WATCH_UNAVAILABLE", "盯盘模块未启用")
    return store


def _task(task_id: int) -> WatchTask:
    if not 1 <= task_id <= MAX_TASK_ID:  # the URL converter takes any digits; SQLite integers do not
        raise ApiError(404, "WATCH_TASK_NOT_FOUND", f"盯盘任务 #{task_id} 不存在")
    try:
        return _store().get(task_id)
    except TaskNotFound as exc:
        raise ApiError(404, exc.code, exc.message) from None


def _view(task: WatchTask) -> dict:
    return task_view(task, _store().alerts(task_id=task.id, limit=LAST_ALERTS))


def _parse(raw: dict, base: WatchTask | None = None) -> WatchTask:
    """Validate against today's date and the stock's current quote (a zone it cannot reach is refused)."""
    c = ctx()
    code = raw.get("stock_code") if isinstance(raw.get("stock_code"), str) else ""
    quote = None
    if code:
        try:
            normalized = req.parse_code(code)
        except ApiError:
            normalized = ""  # parse_task names the bad code
        if normalized and c.data.lacks_code(normalized):  # it could never fire: refused now, not 行情停滞 later
            raise ApiError(400, "INVALID_WATCH_TASK",
                           f"{c.data.quote_unavailable_reason(normalized)}，不能为它创建盯盘任务")
        if normalized:
            quote = c.data.get_latest_data(normalized)
    return parse_task(raw, c.clock.today(), quote, base)


@blueprint.get("/tasks")
@document("盯盘任务列表（可按股票、状态筛选）", query=TASKS_QUERY, data=TASK_LIST, tag=TAG)
def tasks_list() -> Response:
    _allow_query(*TASKS_QUERY)
    code = req.parse_code(request.args["stock_code"]) if request.args.get("stock_code") else ""
    status = request.args.get("status", "")
    if status and status not in Q_TASK_STATUS.enum:
        raise req.bad_request(f"未知任务状态：{status[:20]}，可选 {', '.join(Q_TASK_STATUS.enum)}", "INVALID_STATUS")
    tasks = [t for t in _store().all(code) if not status or t.status.value == status]
    return ok({"tasks": [_view(t) for t in tasks], "count": len(tasks)})


@blueprint.post("/tasks")
@document("新建盯盘任务（条件按现价与涨跌停校验）", body=TASK_BODY, data=OBJ, success=201, tag=TAG)
def tasks_create() -> Response:
    task = _store().add(_parse(body()))
    return ok(_view(task), 201)


@blueprint.get("/tasks/<int:task_id>")
@document("一个盯盘任务及最近的提醒", path=(P_TASK_ID,), data=OBJ, tag=TAG)
def task_get(task_id: int) -> Response:
    return ok(_view(_task(task_id)))


@blueprint.put("/tasks/<int:task_id>")
@document("修改盯盘任务（已触发或已过期的任务修改后重新启用）", path=(P_TASK_ID,), body=TASK_BODY, data=OBJ,
          tag=TAG)
def task_put(task_id: int) -> Response:
    """Replace the task's conditions and options; its history stays, a finished task becomes active again."""
    current = _task(task_id)
    return ok(_view(_store().replace_body(_parse(body(), current))))


@blueprint.delete("/tasks/<int:task_id>")
@document("删除盯盘任务", path=(P_TASK_ID,), data=OBJ, tag=TAG)
def task_delete(task_id: int) -> Response:
    _task(task_id)
    _store().delete(task_id)
    return ok({"id": task_id, "message": f"盯盘任务 #{task_id} 已删除"})


@blueprint.post("/tasks/<int:task_id>/start")
@document("启用已暂停的盯盘任务", path=(P_TASK_ID,), body=req.EMPTY, data=OBJ, tag=TAG)
def task_start(task_id: int) -> Response:
    """Active again; a task that had fired (or expired) is re-armed by an edit, not by start."""
    _empty_body()
    task = _task(task_id)
    if task.status in (TaskStatus.DONE, TaskStatus.EXPIRED):
        raise ApiError(409, "WATCH_TASK_FINISHED", f"盯盘任务 #{task_id} {task.status.label}，请修改条件后重新启用")
    return ok(_view(_store().set_status(task_id, TaskStatus.ACTIVE)))


@blueprint.post("/tasks/<int:task_id>/stop")
@document("暂停盯盘任务", path=(P_TASK_ID,), body=req.EMPTY, data=OBJ, tag=TAG)
def task_stop(task_id: int) -> Response:
    _empty_body()
    task = _task(task_id)
    if task.status is not TaskStatus.ACTIVE:
        raise ApiError(409, "WATCH_TASK_NOT_ACTIVE", f"盯盘任务 #{task_id} 当前{task.status.label}，无需暂停")
    return ok(_view(_store().set_status(task_id, TaskStatus.STOPPED)))


@blueprint.get("/alerts")
@document("盯盘提醒历史（最新在前）", query=ALERTS_QUERY, data={
    "type": "object", "required": ["alerts"], "properties": {"alerts": LIST}}, tag=TAG)
def alerts() -> Response:
    _allow_query(*ALERTS_QUERY)
    code = req.parse_code(request.args["stock_code"]) if request.args.get("stock_code") else ""
    day = req.parse_date(request.args.get("date"), "日期")
    task_id = Q_TASK_ID.from_query(request.args.get(Q_TASK_ID.name))
    limit = Q_ALERT_LIMIT.from_query(request.args.get(Q_ALERT_LIMIT.name)) or 200
    return ok({"alerts": _store().alerts(code, day, task_id, limit)})

