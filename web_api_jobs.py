"""Routes of the scheduled jobs and the daily reports (issue 16): the jobs with schedule, last and next run,
a manual trigger, the list of report files and one report (self-contained HTML, its own strict policy)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

import jobs_report
from web_api import ctx
from web_requests import ApiError
from web_server import ok

blueprint = Blueprint("api_jobs", __name__, url_prefix="/api")

# The report is a file we wrote: inline style and a data: PNG, never a script; framed only by our page.
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


def _jobs() -> Any:
    jobs = ctx().jobs
    if jobs is None:
        raise ApiError(404, "JOBS_UNAVAILABLE", "定时任务模块未启用")
    return jobs


@blueprint.get("/jobs")
def jobs() -> Response:
    return ok({"jobs": _jobs().view()})


@blueprint.post("/jobs/<job_id>/trigger")
def trigger(job_id: str) -> Response:
    run = _jobs().trigger(job_id)
    return ok({"run": run, "message": f"任务已运行：{run['status_label']}，{run['result']}"})


@blueprint.get("/reports")
def reports() -> Response:
    folder = ctx().reports_dir
    return ok({"reports": jobs_report.list_reports(folder) if folder is not None else []})


@blueprint.get("/reports/<day>")
def report(day: str) -> Response:
    folder = ctx().reports_dir
    path = jobs_report.report_path(folder, day) if folder is not None else None
    if path is None:
        raise ApiError(404, "REPORT_NOT_FOUND", f"没有 {day[:20]} 的每日报告")
    response = Response(path.read_text(encoding="utf-8"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = REPORT_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response
