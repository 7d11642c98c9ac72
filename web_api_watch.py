"""Routes of the watch tasks (智能盯盘, issue 17): list, create, edit, delete, start/stop tasks and read the alert
history. Bodies are parsed by `watch_rules.parse_task` (one definition of the shape); the monitor does the rest."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

import web_requests as req
from web_api import _allow_query, body, ctx
from web_requests import ApiError
from web_server import ok
from watch_requests import parse_task
from watch_rules import TaskStatus, WatchTask
from watch_store import TaskNotFound, task_view

blueprint = Blueprint("api_watch", __name__, url_prefix="/api/watch")

LAST_ALERTS = 3
MAX_ALERTS = 500


def _store() -> Any:
    store = ctx().watch
    if store is None:
        raise ApiError(404, "WATCH_UNAVAILABLE", "盯盘模块未启用")
    return store


def _task(task_id: int) -> WatchTask:
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
            quote = c.data.get_latest_data(req.parse_code(code))
        except ApiError:
            quote = None  # parse_task names the bad code
    return parse_task(raw, c.clock.today(), quote, base)


@blueprint.get("/tasks")
def tasks_list() -> Response:
    _allow_query("stock_code", "status")
    code = req.parse_code(request.args["stock_code"]) if request.args.get("stock_code") else ""
    status = request.args.get("status", "")
    if status and status not in {s.value for s in TaskStatus}:
        raise req.bad_request(f"未知任务状态：{status[:20]}", "INVALID_STATUS")
    tasks = [t for t in _store().all(code) if not status or t.status.value == status]
    return ok({"tasks": [_view(t) for t in tasks], "count": len(tasks)})


@blueprint.post("/tasks")
def tasks_create() -> Response:
    task = _store().add(_parse(body()))
    return ok(_view(task), 201)


@blueprint.get("/tasks/<int:task_id>")
def task_get(task_id: int) -> Response:
    return ok(_view(_task(task_id)))


@blueprint.put("/tasks/<int:task_id>")
def task_put(task_id: int) -> Response:
    """Replace the task's conditions and options; its history stays, a finished task becomes active again."""
    current = _task(task_id)
    return ok(_view(_store().replace_body(_parse(body(), current))))


@blueprint.delete("/tasks/<int:task_id>")
def task_delete(task_id: int) -> Response:
    _task(task_id)
    _store().delete(task_id)
    return ok({"id": task_id, "message": f"盯盘任务 #{task_id} 已删除"})


@blueprint.post("/tasks/<int:task_id>/start")
def task_start(task_id: int) -> Response:
    """Active again; a task that had fired (or expired) is re-armed by an edit, not by start."""
    task = _task(task_id)
    if task.status in (TaskStatus.DONE, TaskStatus.EXPIRED):
        raise ApiError(409, "WATCH_TASK_FINISHED", f"盯盘任务 #{task_id} {task.status.label}，请修改条件后重新启用")
    return ok(_view(_store().set_status(task_id, TaskStatus.ACTIVE)))


@blueprint.post("/tasks/<int:task_id>/stop")
def task_stop(task_id: int) -> Response:
    task = _task(task_id)
    if task.status is not TaskStatus.ACTIVE:
        raise ApiError(409, "WATCH_TASK_NOT_ACTIVE", f"盯盘任务 #{task_id} 当前{task.status.label}，无需暂停")
    return ok(_view(_store().set_status(task_id, TaskStatus.STOPPED)))


@blueprint.get("/alerts")
def alerts() -> Response:
    _allow_query("stock_code", "date", "task_id", "limit")
    code = req.parse_code(request.args["stock_code"]) if request.args.get("stock_code") else ""
    day = req.parse_date(request.args.get("date"), "日期")
    task_id = _int_arg("task_id", 1, 2**31)
    limit = _int_arg("limit", 1, MAX_ALERTS) or 200
    return ok({"alerts": _store().alerts(code, day, task_id, limit)})


def _int_arg(name: str, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise req.bad_request(f"{name} 必须是 {low} 到 {high} 之间的整数", "INVALID_QUERY")
    return int(raw)
