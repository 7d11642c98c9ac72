"""Hostile inputs (issue 21 item 6): every POST body parser answers any JSON value in any field with 200 or
4xx, never 5xx (a hypothesis property over every POST route of the app); the 20 inputs that used to answer 500
(integers beyond float range, a lone surrogate, > 4,300-digit ids and limits, `²` as an id) answer 400 with a
Chinese message; JSON syntax errors are explained in Chinese; a too-short WEB_API_TOKEN is refused on update."""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from grid.rules import PARAM_KEYS as GRID_PARAM_KEYS
from grid_trading import GridManager
from web_server import create_app
from web_test_support import TOKEN, build_system

CHINESE = re.compile(r"[\u4e00-\u9fff]")
HUGE = "1" + "0" * 5000  # more digits than Python converts to int by default
BEYOND_FLOAT = 10**400
FIELDS = sorted({"stock_code", "amount", "volume", "price", "ratio", "from_pool", "count", "signal_id", "order_id",
                 "changes", "history_id", "key", "stocks", "center_price", "reason", "confirm",
                 *GRID_PARAM_KEYS.values()})
CONFIG_KEYS = ["STOP_LOSS_RATIO", "MAX_ORDER_VALUE", "MAX_ORDERS_PER_DAY", "ENABLE_AUTO_TRADING", "WEB_API_TOKEN",
               "DYNAMIC_TAKE_PROFIT", "WEB_CORS_ORIGINS", "LOG_LEVEL", "GRID_STEP_RATIO"]


class Huge:
    """Placeholder for an integer literal json.dumps refuses to write (> 4,300 digits)."""


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([BEYOND_FLOAT, -BEYOND_FLOAT, 2**63, 0, -1, 1e308, 5e-324, Huge()]),
    st.text(max_size=12), st.sampled_from(["\ud800", "²", "٣", "600036", "600036.SH", "000001.SZ", "Q1", "", " "]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)
config_changes = st.dictionaries(st.sampled_from(CONFIG_KEYS) | st.text(max_size=8), values, min_size=1, max_size=2)
bodies = st.dictionaries(st.sampled_from(FIELDS), values | config_changes, max_size=4)


def encode(body) -> bytes:
    text = json.dumps(body, default=lambda value: "__HUGE__" if isinstance(value, Huge) else None)
    return text.replace('"__HUGE__"', HUGE).encode("utf-8")


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    system = build_system(tmp_path_factory.mktemp("hostile"))
    system.ctx.grid = GridManager(system.dbs[1], system.settings, system.clock, system.positions, system.data.hub,
                                  system.signals, system.executor)

    app = create_app(system.ctx, "127.0.0.1", 5000)
    yield app.test_client(), app
    system.close()


def post(client, path: str, raw: bytes):
    return client.post(path, data=raw, headers={"Content-Type": "application/json", "X-API-Token": TOKEN,
                                                "Host": "127.0.0.1:5000"})


def post_paths(app) -> list[str]:
    paths = []
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods:
            paths.append(re.sub(r"<[^>]+>", "1", rule.rule))
    return sorted(paths)


def test_every_post_route_is_covered(app_client):
    paths = post_paths(app_client[1])
    assert "/api/actions/execute_buy" in paths and "/api/config/update" in paths and len(paths) >= 14


@hyp_settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_json_value_in_any_field_gives_200_or_4xx(app_client, data):
    client, app = app_client
    path = data.draw(st.sampled_from(post_paths(app)))
    body = data.draw(bodies)
    reply = post(client, path, encode(body))
    assert reply.status_code < 500, (path, body, reply.get_data(as_text=True))
    if reply.status_code >= 400:
        payload = reply.get_json()
        assert payload["status"] == "error" and CHINESE.search(payload["message"]), payload


FORMER_500S = [
    ("/api/actions/execute_buy", {"stock_code": "600036", "amount": BEYOND_FLOAT}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "amount": -BEYOND_FLOAT}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 100, "price": BEYOND_FLOAT}),
    ("/api/actions/execute_buy", {"from_pool": True, "count": 1, "amount": BEYOND_FLOAT}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "ratio": BEYOND_FLOAT}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "volume": 100, "price": BEYOND_FLOAT}),
    ("/api/grid/sessions", {"stock_code": "600036", "center_price": BEYOND_FLOAT}),
    ("/api/grid/sessions", {"stock_code": "600036", "GRID_STEP_RATIO": BEYOND_FLOAT}),
    ("/api/config/update", {"changes": {"STOP_LOSS_RATIO": BEYOND_FLOAT}}),
    ("/api/config/update", {"changes": {"MAX_ORDER_VALUE": -BEYOND_FLOAT}}),
    ("/api/config/update", {"changes": {"DYNAMIC_TAKE_PROFIT": [[BEYOND_FLOAT, 1]]}}),
    ("/api/actions/execute_buy", {"stock_code": "\ud800", "amount": 20000}),
    ("/api/actions/execute_sell", {"stock_code": "\ud800", "volume": 100}),
    ("/api/grid/sessions", {"stock_code": "\ud800"}),
    ("/api/actions/execute_trading_signal", {"signal_id": Huge()}),
    ("/api/config/rollback", {"history_id": Huge()}),
]
FORMER_500_QUERIES = ["/api/signals/history?limit=" + HUGE, "/api/config/history?limit=" + HUGE,
                      "/api/grid/sessions/" + HUGE + "/trades", "/api/grid/sessions/²/trades",
                      "/api/signals/history?limit=²"]


@pytest.mark.parametrize("path,body", FORMER_500S, ids=range(len(FORMER_500S)))
def test_former_500_bodies_answer_400_in_chinese(app_client, path, body):
    reply = post(app_client[0], path, encode(body))
    assert 400 <= reply.status_code < 500, reply.get_data(as_text=True)
    assert CHINESE.search(reply.get_json()["message"])


@pytest.mark.parametrize("path", FORMER_500_QUERIES + ["/api/grid/sessions/²/stop"],
                         ids=lambda path: path[:40])
def test_former_500_paths_and_queries_answer_4xx(app_client, path):
    client = app_client[0]
    if path.endswith("/stop"):
        reply = post(client, path, b"{}")
    else:
        reply = client.get(path, headers={"Host": "127.0.0.1:5000"})
    assert 400 <= reply.status_code < 500, reply.get_data(as_text=True)[:300]


@pytest.mark.parametrize("raw,expected", ids=range(7), argvalues=[
    (b'{"a" 1}', "应为冒号"),
    (b"{'a': 1}", "应为双引号括起的字段名"),
    (b'{"a": }', "应为一个值"),
    (b'{"a": 1 "b": 2}', "应为逗号"),
    (b'{"a": "x', "字符串没有结束"),
    (b'{"a": 1} x', "多余内容"),
    (b'{"a": 1' + b"0" * 5000 + b"}", "位数过多"),
])
def test_json_syntax_errors_are_explained_in_chinese(app_client, raw, expected):
    reply = post(app_client[0], "/api/actions/execute_buy", raw)
    message = reply.get_json()["message"]
    assert reply.status_code == 400 and expected in message, message
    assert not re.search(r"[A-Za-z]{4,}", message.replace("JSON", "")), message  # no English parser text


def test_a_too_short_api_token_is_refused_on_update(app_client):
    reply = post(app_client[0], "/api/config/update", encode({"changes": {"WEB_API_TOKEN": "short"}}))
    assert reply.status_code == 400
    payload = reply.get_json()
    assert "至少需要 16 个字符" in payload["errors"]["WEB_API_TOKEN"]
    fine = post(app_client[0], "/api/config/update", encode({"changes": {"WEB_API_TOKEN": "x" * 16}}))
    assert fine.status_code == 200, fine.get_data(as_text=True)
