"""API of the 「回测对比」 page (issue 20): the latest `backtest.py compare` result of this daemon's data dir.
No result yet is a normal state, not an error (issue 26 item 13): `available` false with the command to run."""
from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, Response

from webapi.openapi import document
from webapi.requests import ApiError
from webapi.common import ok, state

COMPARE_FILE = Path("backtest_compare") / "compare.json"  # written by backtesting.compare.write_comparison
NO_RESULT = ("还没有回测对比结果：在命令行运行 python backtest.py compare --account <守护进程数据目录> "
             "--data <日线目录>，完成后刷新本页")

blueprint = Blueprint("api_backtest", __name__, url_prefix="/api/backtest")


@blueprint.get("/compare")
@document("最近一次回测对比结果：各原因的笔数与金额、逐笔对比（由 backtest.py compare 生成）；还没有结果时 "
          "available 为 false，message 说明如何生成", tag="回测",
          data={"type": "object", "required": ["available", "start", "end", "causes", "rows"],
                               "properties": {"available": {"type": "boolean", "description": "是否已有对比结果"},
                                              "message": {"type": "string"},
                                              "start": {"type": ["string", "null"]},
                                              "end": {"type": ["string", "null"]},
                                              "starting": {"type": "object"},  # the account's state at the start
                                              "causes": {"type": "object"}, "labels": {"type": "object"},
                                              "rows": {"type": "array", "items": {"type": "object"}}}})
def compare_result() -> Response:
    data_dir = getattr(state().ctx, "data_dir", None)
    path = Path(data_dir) / COMPARE_FILE if data_dir else None
    if path is None or not path.exists():
        return ok({"available": False, "message": NO_RESULT, "start": None, "end": None, "causes": {}, "rows": []})
    try:
        return ok({**json.loads(path.read_text(encoding="utf-8")), "available": True})
    except (OSError, ValueError):
        raise ApiError(500, "COMPARE_UNREADABLE", f"回测对比结果文件无法读取：{path.name}") from None
