"""The positions fast path (issue 21 item 4): it answers exactly what Flask answers for the same request, and
hands every request it must not answer (a refused Host or token, an Origin, a query string, another method)
to Flask, which then answers or refuses it with its own checks."""
from __future__ import annotations

import io
import sys

import pytest

from webapi.fastpath import SnapshotFastPath
from web_server import create_app
from web_test_support import TOKEN, build_system

PORT = 5000


def environ(**extra: str) -> dict:
    base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/positions", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(PORT), "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": f"127.0.0.1:{PORT}",
            "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr}
    return {**base, **extra}


def call(wsgi, env: dict) -> tuple[int, dict, bytes]:
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), {k.lower(): v for k, v in headers}
    body = b"".join(wsgi(env, start_response))
    return seen["status"], seen["headers"], body


class Counting:
    """The Flask app behind the fast path, counting the requests that reach it."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, env, start_response):
        self.calls += 1
        return self.inner(env, start_response)


@pytest.fixture
def paths(tmp_path):
    system = build_system(tmp_path)
    system.executor.buy_stock("600036.SH", amount=30000)
    app = create_app(system.ctx, "127.0.0.1", PORT)
    assert isinstance(app.wsgi_app, SnapshotFastPath)
    flask_only = Counting(app.wsgi_app.inner)
    fast = SnapshotFastPath(flask_only, app.extensions["qmt"])
    yield fast, flask_only, app, system
    system.close()


def comparable(reply: tuple[int, dict, bytes]) -> tuple[int, dict, bytes]:
    """A reply without the CORS headers: Flask-CORS names the one configured origin on every answer, also to a
    request without an Origin, where a browser ignores it; a request with an Origin never takes the fast path."""
    status, headers, body = reply
    return status, {k: v for k, v in headers.items() if not k.startswith("access-control-")}, body


def test_the_fast_path_answers_200_and_304_byte_for_byte_like_flask(paths):
    fast, flask_only, _, system = paths
    reply = call(fast, environ())
    assert flask_only.calls == 0
    assert comparable(reply) == comparable(call(flask_only, environ()))
    status, headers, body = reply
    assert status == 200 and headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-cache" and headers["x-frame-options"] == "DENY"
    assert headers["content-length"] == str(len(body)) and b'"600036.SH"' in body

    etag = headers["etag"]
    fast_304 = call(fast, environ(HTTP_IF_NONE_MATCH=etag))
    assert flask_only.calls == 1
    assert comparable(fast_304) == comparable(call(flask_only, environ(HTTP_IF_NONE_MATCH=etag)))
    assert fast_304[0] == 304 and fast_304[2] == b"" and fast_304[1]["etag"] == etag

    system.step()  # a new quote: a new data_version, so the old ETag no longer matches
    status, headers, _ = call(fast, environ(HTTP_IF_NONE_MATCH=etag))
    assert status == 200 and headers["etag"] != etag


@pytest.mark.parametrize("extra, expected_status", [
    ({"HTTP_HOST": "evil.example.com:5000"}, 403),  # DNS rebinding: refused by Flask, which logs it
    ({"HTTP_HOST": f"127.0.0.1:{PORT + 1}"}, 403),
    ({"HTTP_ORIGIN": "http://localhost:5000"}, 200),  # CORS stays Flask's
    ({"QUERY_STRING": "x=1"}, 200),
    ({"REQUEST_METHOD": "HEAD"}, 200),
    ({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "0"}, 401),  # a change without the token
    ({"PATH_INFO": "/api/positions/600036.SH"}, 200),
])
def test_requests_the_fast_path_must_not_answer_go_to_flask(paths, extra, expected_status):
    fast, flask_only, _, _ = paths
    status, headers, _ = call(fast, environ(**extra))
    assert flask_only.calls == 1 and status == expected_status
    if "HTTP_ORIGIN" in extra:
        assert headers["access-control-allow-origin"] == "http://localhost:5000"


def test_when_reads_need_the_token_a_read_without_it_is_refused_by_flask(paths):
    fast, flask_only, app, _ = paths
    app.extensions["qmt"].reads_need_token = True
    status, _, body = call(fast, environ())
    assert (status, flask_only.calls) == (401, 1) and "缺少 API 令牌".encode() in body
    status, _, body = call(fast, environ(HTTP_X_API_TOKEN="wrong-token-0123456789"))
    assert (status, flask_only.calls) == (401, 2) and "API 令牌错误".encode() in body
    status, _, _ = call(fast, environ(HTTP_X_API_TOKEN=TOKEN))
    assert (status, flask_only.calls) == (200, 2)  # with the token the fast path answers
