"""GET /api/diagnostics: the doctor's checks (doctor.checks) as the running daemon sees them."""
from __future__ import annotations

from flask import Blueprint, Response

import doctor.checks as doctor
from webapi.openapi import document
from webapi.requests import ApiError
from webapi.common import ok, state

blueprint = Blueprint("diagnostics", __name__, url_prefix="/api")

DATA_SCHEMA = {"type": "object", "required": ["checks", "errors", "warnings"], "properties": {
    "checks": {"type": "array", "items": {"type": "object", "required": ["key", "name", "level", "detail", "hint"]}},
    "errors": {"type": "integer"}, "warnings": {"type": "integer"}}}


@blueprint.get("/diagnostics")
@document("系统诊断：运行环境、依赖、券商连接、磁盘、端口、时钟、配置、数据库、日志", data=DATA_SCHEMA, tag="系统诊断")
def diagnostics() -> Response:
    run = state().ctx.diagnostics
    if run is None:
        raise ApiError(404, "DIAGNOSTICS_UNAVAILABLE", "系统诊断未启用")
    checks = run()
    return ok({"checks": [c.to_dict() for c in checks], "errors": sum(c.level == doctor.ERROR for c in checks),
               "warnings": sum(c.level == doctor.WARNING for c in checks)})
