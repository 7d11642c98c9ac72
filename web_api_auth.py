"""POST /api/auth/check: a cheap authenticated call, so the page tells at once whether a typed token is right
(the token check itself is web_server's, as for every changing request)."""
from __future__ import annotations

from flask import Blueprint, Response

from web_server import ok

blueprint = Blueprint("api_auth", __name__, url_prefix="/api")


@blueprint.post("/auth/check")
def auth_check() -> Response:
    return ok({"valid": True, "message": "令牌正确"})
