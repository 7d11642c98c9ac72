"""What a 400 answer says (issue 26 item 5): every integer parameter given ±10**400 through POST
/api/config/update answers 400 with a Chinese message (it was a 500: OverflowError in config._fmt), and no
answer repeats a lone surrogate from the request (half of a UTF-16 pair, which the client's JSON parser turns
back into an unencodable string)."""
from __future__ import annotations

import json
import re

import pytest

import config
from web_server import create_app
from web_test_support import TOKEN, build_system

CHINESE = re.compile(r"[\u4e00-\u9fff]")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
INT_KEYS = [p.key for p in config.PARAMS if p.kind == "int"]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    system = build_system(tmp_path_factory.mktemp("answers"))
    app = create_app(system.ctx, "127.0.0.1", 5000)
    yield app.test_client(), system
    system.close()


def post(client, path: str, raw: bytes):
    return client.post(path, data=raw, headers={"Content-Type": "application/json", "X-API-Token": TOKEN,
                                                "Host": "127.0.0.1:5000"})


def test_there_are_integer_parameters_to_try():
    assert len(INT_KEYS) >= 20 and "WEB_PORT" in INT_KEYS and "CALENDAR_WARN_DAYS" in INT_KEYS


@pytest.mark.parametrize("sign", [1, -1])
def test_an_integer_parameter_beyond_float_range_is_a_400_in_chinese(client, sign):
    app_client, system = client
    before = system.settings.snapshot()
    checked = 0
    for key in INT_KEYS:
        reply = post(app_client, "/api/config/update", json.dumps({"changes": {key: sign * 10**400}}).encode())
        body = reply.get_json()
        if reply.status_code == 409 and body["code"] == "RUN_OVERRIDE":
            continue  # set on this test system's command line: refused before any value is looked at
        assert reply.status_code == 400, (key, reply.get_data(as_text=True)[:300])
        assert body["status"] == "error" and f"{key} 数值过大" in body["message"], (key, body)
        checked += 1
    assert checked >= 20
    assert system.settings.snapshot() == before


def test_the_message_of_a_huge_integer_stays_short():
    param = config.PARAMS_BY_KEY["MAX_ORDERS_PER_DAY"]
    with pytest.raises(ValueError) as refused:
        config.coerce_value(param, 10**400)
    assert str(refused.value) == "MAX_ORDERS_PER_DAY 数值过大"
    assert config._fmt(10**20) == "100,000,000,000,000,000,000"  # an int is shown exactly, never via float


@pytest.mark.parametrize("path, body", [
    ("/api/actions/execute_buy", '{"stock_code": "60\\ud800036", "amount": 20000}'),
    ("/api/actions/execute_sell", '{"stock_code": "\\udc00", "volume": 100}'),
    ("/api/config/update", '{"changes": {"NO_SUCH_\\ud800KEY": 1}}'),
    ("/api/config/update", '{"changes": {"LOG_LEVEL": "\\ud83dX"}}'),
    ("/api/stock_pool", '{"stocks": ["\\ud800"]}'),
])
def test_a_400_never_quotes_a_lone_surrogate_back(client, path, body):
    reply = post(client[0], path, body.encode("ascii"))
    assert reply.status_code == 400, reply.get_data(as_text=True)[:300]
    text = reply.get_data().decode("utf-8")  # strict: the bytes are UTF-8
    parsed = json.loads(text)
    assert not LONE_SURROGATE.search(json.dumps(parsed, ensure_ascii=False)), parsed
    assert CHINESE.search(parsed["message"])
    assert "\\ud8" not in text.lower() and "\\udc" not in text.lower()
