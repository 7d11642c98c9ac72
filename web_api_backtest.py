"""API of the 「回测对比」 page (issue 20): the latest `backtest.py compare` result of this daemon's data dir."""
from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, Response

from web_openapi import document
from web_requests import ApiError
from web_server import ok, state

COMPARE_FILE = Path("backtest_compare") / "compare.json"  # written by backtest_compare.write_comparison

blueprint = Blueprint("api_backtest", __name__, url_prefix="/api/backtest")


@blueprint.get("/compare")
@document("最近一次回测对比结果：各原因的笔数与金额、逐笔对比（由 backtest.py compare 生成）", tag="回测",
          errors=(404,), data={"type": "object", "required": ["start", "end", "causes", "rows"],
                               "properties": {"start": {"type": "string"}, "end": {"type": "string"},
                                              "starting": {"type": "object"},  # the account's state at the start
                                              "causes": {"type": "object"}, "labels": {"type": "object"},
                                              "rows": {"type": "array", "items": {"type": "object"}}}})
def compare_result() -> Response:
    data_dir = getattr(state().ctx, "data_dir", None)
    path = Path(data_dir) / COMPARE_FILE if data_dir else None
    if path is None or not path.exists():
        raise ApiError(404, "COMPARE_NOT_FOUND", "还没有回测对比结果：请先运行 python backtest.py compare "
                                                 "--account <守护进程数据目录> --data <日线目录>")
    try:
        return ok(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        raise ApiError(500, "COMPARE_UNREADABLE", f"回测对比结果文件无法读取：{path.name}") from None
