"""Routes of the order-file intake: upload a CSV (queued for execution and answered at once, or with dry_run
only validated, in memory, and answered with every line's result) and list the processed files with their
per-line results. The work is orderfiles.intake's."""
from __future__ import annotations

from flask import Blueprint, Response, request

import webapi.requests as req
from webapi.openapi import LIST, OBJ, document
from webapi.requests import ApiError
from webapi.common import ok, state

blueprint = Blueprint("order_files", __name__, url_prefix="/api")
MAX_LISTED = 1000  # files one list answer may hold
Q_LIMIT = req.Field("limit", "integer", "最多返回文件数（默认 100）", low=1, high=MAX_LISTED)


def _intake():
    intake = state().ctx.order_files
    if intake is None:
        raise ApiError(404, "ORDER_FILES_UNAVAILABLE", "委托文件功能未启用")
    return intake


@blueprint.get("/order-files")
@document("已处理的委托文件及逐行结果（最新在前）", query=(Q_LIMIT,), data=LIST, tag="委托文件")
def order_files_list() -> Response:
    unknown = sorted(set(request.args) - {Q_LIMIT.name})
    if unknown:
        raise req.bad_request(f"未知查询参数：{', '.join(unknown)}", "UNKNOWN_FIELD")
    return ok(_intake().recent(req.parse_limit(request.args.get("limit"), 100, maximum=MAX_LISTED)))


@blueprint.post("/order-files")
@document("上传委托文件：排队逐行下单并立即应答（结果见列表），或 dry_run=true 只校验并返回逐行结果", upload=req.ORDER_FILE_UPLOAD.schema(),
          data=OBJ, tag="委托文件")
def order_files_upload() -> Response:
    if (request.mimetype or "") != "multipart/form-data":
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "请以 multipart/form-data 上传文件（字段 file）")
    intake = _intake()
    if not state().ctx.settings.get("ENABLE_ORDER_FILES"):
        raise ApiError(409, "ORDER_FILES_DISABLED", "委托文件功能已关闭（参数 ENABLE_ORDER_FILES）")
    name, raw, dry_run = req.parse_order_file_upload(request.files, request.form)
    record = intake.upload(name, raw, dry_run)
    return ok({**record.to_dict(), "results": intake.results(record.id)})
