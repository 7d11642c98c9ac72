"""Serves the API contract: the OpenAPI document built from the running app (webapi.openapi) and an offline
documentation page (Swagger UI vendored under web/vendor, no CDN)."""
from __future__ import annotations

from flask import Blueprint, Response, current_app

import webapi.openapi as web_openapi
from webapi.openapi import document
from webapi.common import WEB_DIR, _json_response

blueprint = Blueprint("api_docs", __name__, url_prefix="/api")


@blueprint.get("/openapi.json")
@document("本 API 的 OpenAPI 3.1 文档（由请求校验定义生成）", tag="文档", raw=True)
def openapi_json() -> Response:
    spec = current_app.extensions.get("qmt_openapi")
    if spec is None:  # the routes do not change after start: build once
        spec = current_app.extensions["qmt_openapi"] = web_openapi.build(current_app)
    return _json_response(spec, 200)


@blueprint.get("/docs")
@document("API 文档页面（离线 Swagger UI）", tag="文档", content=("text/html",), raw=True)
def docs_page() -> Response:
    return Response((WEB_DIR / "api_docs.html").read_text(encoding="utf-8"), mimetype="text/html")
