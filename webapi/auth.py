"""POST /api/auth/check: a cheap authenticated call, so the page tells at once whether a typed token is right
(the token check itself is webapi.common's, as for every changing request)."""
from __future__ import annotations

from flask import Blueprint, Response, request

import webapi.requests as req
from webapi.openapi import OBJ, document
from webapi.common import ok

blueprint = Blueprint("api_auth", __name__, url_prefix="/api")


@blueprint.post("/auth/check")
@document("检查 API 令牌（令牌错误时 401）", body=req.EMPTY, data=OBJ, tag="概览")
def auth_check() -> Response:
    if request.get_data(cache=True):
        req.ensure_only(req.parse_json_body(request.get_data(cache=True), request.headers.get("Content-Type", "")),
                        set())
    return ok({"valid": True, "message": "令牌正确"})
