"""Routes of the scheduled jobs and the daily reports (issue 16): the jobs with schedule, last and next run,
a manual trigger, the list of report files and one report (self-contained HTML, its own strict policy). Path
parameters are declared once below: the routes validate with them and the OpenAPI document describes them."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

import jobs.report as jobs_report
import webapi.requests as req
from jobs.store import STATUS_LABELS
from webapi.routes import _empty_body, ctx
from webapi.openapi import TEXT, document
from webapi.requests import ApiError
from webapi.common import ok

blueprint = Blueprint("api_jobs", __name__, url_prefix="/api")

# The report is a file we wrote: inline style and a data: PNG, never a script; framed only by our page.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
TAG = "定时任务与报告"

P_JOB_ID = req.Field("job_id", "string", "任务编号（见 GET /api/jobs 的 id，如 post_close）", pattern=r"^[a-z][a-z0-9_]{0,39}$")
P_DAY = req.Field("day", "string", "报告日期 YYYY-MM-DD", fmt="date")
OPTIONAL_TEXT = {"type": ["string", "null"]}
RUN_VIEW = {"type": "object", "required": ["id", "job_id", "day", "trigger", "started_at", "status", "status_label",
                                           "result"], "properties": {
    "id": {"type": "integer"}, "job_id": TEXT, "day": {"type": "string", "format": "date"},
    "trigger": {"type": "string", "enum": ["schedule", "catch_up", "skip", "manual"],
                "description": "触发方式：schedule（定时）、catch_up（补跑）、skip（跳过）、manual（手动）"},
    "started_at": TEXT, "finished_at": OPTIONAL_TEXT, "status": {"type": "string", "enum": sorted(STATUS_LABELS)},
    "status_label": TEXT, "result": {"type": "string", "description": "运行结果说明"}}}
JOB_VIEW = {"type": "object", "required": ["id", "name", "schedule", "catch_up", "catch_up_label", "last_run",
                                           "next_run"], "properties": {
    "id": TEXT, "name": TEXT, "schedule": TEXT, "catch_up": TEXT, "catch_up_label": TEXT,
    "last_run": {"anyOf": [RUN_VIEW, {"type": "null"}], "description": "最近一次运行"},
    "next_run": {"type": ["string", "null"], "description": "下次运行时间（行情时钟）"}}}
REPORT_VIEW = {"type": "object", "required": ["day", "file", "size"], "properties": {
    "day": {"type": "string", "format": "date"}, "file": TEXT, "size": {"type": "integer", "minimum": 0}}}


def _jobs() -> Any:
    jobs = ctx().jobs
    if jobs is None:
        raise ApiError(404, "JOBS_UNAVAILABLE", "定时任务模块未启用")
    return jobs


@blueprint.get("/jobs")
@document("定时任务：时间表、补跑策略、最近一次与下次运行", tag=TAG, data={
    "type": "object", "required": ["jobs"], "properties": {"jobs": {"type": "array", "items": JOB_VIEW}}})
def jobs() -> Response:
    return ok({"jobs": _jobs().view()})


@blueprint.post("/jobs/<job_id>/trigger")
@document("立即运行一个定时任务（按当前交易日，记为手动运行；不影响定时运行）", path=(P_JOB_ID,), body=req.EMPTY, tag=TAG,
          data={"type": "object", "required": ["run", "message"], "properties": {"run": RUN_VIEW, "message": TEXT}})
def trigger(job_id: str) -> Response:
    _empty_body()
    jobs = _jobs()
    P_JOB_ID.take({"job_id": job_id})  # the declared pattern (400); an id that matches but is unknown is a 404
    run = jobs.trigger(job_id)
    return ok({"run": run, "message": f"任务已运行：{run['status_label']}，{run['result']}"})


@blueprint.get("/reports")
@document("每日报告文件列表（最新在前）", tag=TAG, data={
    "type": "object", "required": ["reports"], "properties": {"reports": {"type": "array", "items": REPORT_VIEW}}})
def reports() -> Response:
    folder = ctx().reports_dir
    return ok({"reports": jobs_report.list_reports(folder) if folder is not None else []})


@blueprint.get("/reports/<day>")
@document("某日的每日报告（自包含的 HTML 页面）", path=(P_DAY,), content=("text/html",), raw=True, tag=TAG)
def report(day: str) -> Response:
    wanted = req.parse_date(day, P_DAY.label)
    folder = ctx().reports_dir
    path = jobs_report.report_path(folder, wanted.isoformat()) if folder is not None else None
    if path is None:
        raise ApiError(404, "REPORT_NOT_FOUND", f"没有 {wanted} 的每日报告")
    response = Response(path.read_text(encoding="utf-8"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = REPORT_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
