"""Malformed requests against the real server: every one is answered 4xx with the JSON error shape and a
Chinese message, never a 5xx or a trace, and nothing in the system changes."""
import json
import re

import pytest

from web_test_support import TOKEN, Client, build_system, start_server

CHINESE = re.compile(r"[\u4e00-\u9fff]")

BODY_ENDPOINTS = ["/api/actions/execute_buy", "/api/actions/execute_sell", "/api/actions/execute_trading_signal",
                  "/api/actions/cancel_order", "/api/actions/emergency_stop", "/api/config/update",
                  "/api/config/rollback", "/api/config/reset", "/api/stock_pool"]

# (name, raw body, content type, expected status) sent to every endpoint above
GENERIC = [
    ("no content type", b'{"a": 1}', None, 415),
    ("text/plain", b'{"a": 1}', "text/plain", 415),
    ("form encoded", b"stock_code=600036", "application/x-www-form-urlencoded", 415),
    ("broken json", b'{"stock_code": ', "application/json", 400),
    ("json array", b"[]", "application/json", 400),
    ("json string", b'"600036"', "application/json", 400),
    ("NaN literal", b'{"x": NaN}', "application/json", 400),
    ("bad utf-8", b'{"x": "\xff\xfe"}', "application/json", 400),
    ("deep nesting", b"[" * 100000, "application/json", 400),
    ("too large", b'{"x": "' + b"a" * 300_000 + b'"}', "application/json", 413),
    ("unknown field", b'{"no_such_field": 1}', "application/json", 400),
]

# (path, JSON body) pairs that are well-formed JSON but invalid for the endpoint
SPECIFIC = [
    ("/api/actions/execute_buy", {}),
    ("/api/actions/execute_buy", {"stock_code": 600036, "amount": 20000}),
    ("/api/actions/execute_buy", {"stock_code": "60003", "amount": 20000}),
    ("/api/actions/execute_buy", {"stock_code": "600036.SZ", "amount": 20000}),
    ("/api/actions/execute_buy", {"stock_code": "900901", "amount": 20000}),
    ("/api/actions/execute_buy", {"stock_code": "", "amount": 20000}),
    ("/api/actions/execute_buy", {"stock_code": None, "amount": 20000}),
    ("/api/actions/execute_buy", {"stock_code": ["600036"], "amount": 20000}),
    ("/api/actions/execute_buy", {"stock_code": "<script>alert(1)</script>", "amount": 20000}),
    ("/api/actions/execute_buy", {"stock_code": "600036"}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "amount": 20000, "volume": 100}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "amount": "20000"}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "amount": -5}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "amount": 0}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "amount": True}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "amount": 1e300}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "amount": None}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "amount": 20000, "price": 50.0}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 150}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 100.5}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": "100"}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 0}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": -100}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 10 ** 12}),
    ("/api/actions/execute_buy", {"stock_code": "688981", "volume": 100}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 100, "price": 0}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 100, "price": -1}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 100, "price": "10"}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 100, "price": 10.001}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 100, "price": 1e9}),
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 100, "price": 1.0}),  # below limit-down
    ("/api/actions/execute_buy", {"stock_code": "600036", "volume": 100, "price": 999.0}),  # above limit-up
    ("/api/actions/execute_buy", {"from_pool": False, "count": 1}),
    ("/api/actions/execute_buy", {"from_pool": "true", "count": 1}),
    ("/api/actions/execute_buy", {"from_pool": True, "count": 0}),
    ("/api/actions/execute_buy", {"from_pool": True, "count": 21}),
    ("/api/actions/execute_buy", {"from_pool": True, "count": "2"}),
    ("/api/actions/execute_buy", {"from_pool": True, "count": 1.5}),
    ("/api/actions/execute_buy", {"from_pool": True}),
    ("/api/actions/execute_buy", {"from_pool": True, "count": 1, "amount": -1}),
    ("/api/actions/execute_buy", {"from_pool": True, "count": 1, "stock_code": "600036"}),
    ("/api/actions/execute_sell", {}),
    ("/api/actions/execute_sell", {"stock_code": "600036"}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "volume": 100, "ratio": 0.5}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "ratio": 0}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "ratio": 1.5}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "ratio": -0.5}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "ratio": "0.5"}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "ratio": 0.5, "price": 50.0}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "volume": 0}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "volume": "100"}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "volume": 100.5}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "volume": True}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "volume": 150}),  # not a lot, not everything
    ("/api/actions/execute_sell", {"stock_code": "600036", "volume": 10 ** 6}),  # more than available
    ("/api/actions/execute_sell", {"stock_code": "600036", "volume": 100, "price": 0.001}),
    ("/api/actions/execute_sell", {"stock_code": "000001", "volume": 100}),  # not held
    ("/api/actions/execute_sell", {"stock_code": "abc", "volume": 100}),
    ("/api/actions/execute_trading_signal", {}),
    ("/api/actions/execute_trading_signal", {"signal_id": "1"}),
    ("/api/actions/execute_trading_signal", {"signal_id": 0}),
    ("/api/actions/execute_trading_signal", {"signal_id": -1}),
    ("/api/actions/execute_trading_signal", {"signal_id": 1.5}),
    ("/api/actions/execute_trading_signal", {"signal_id": True}),
    ("/api/actions/execute_trading_signal", {"signal_id": 2 ** 70}),
    ("/api/actions/execute_trading_signal", {"signal_id": None}),
    ("/api/actions/execute_trading_signal", {"signal_id": [1]}),
    ("/api/actions/execute_trading_signal", {"signal_id": 424242}),  # no such signal
    ("/api/actions/cancel_order", {}),
    ("/api/actions/cancel_order", {"order_id": 123}),
    ("/api/actions/cancel_order", {"order_id": ""}),
    ("/api/actions/cancel_order", {"order_id": "a b"}),
    ("/api/actions/cancel_order", {"order_id": "x" * 65}),
    ("/api/actions/cancel_order", {"order_id": None}),
    ("/api/actions/cancel_order", {"order_id": "../../etc/passwd"}),
    ("/api/actions/cancel_order", {"order_id": "委托"}),
    ("/api/actions/cancel_order", {"order_id": "SIM20990101000000000001"}),  # no such order
    ("/api/actions/emergency_stop", {"confirm": True}),
    ("/api/config/update", {}),
    ("/api/config/update", {"changes": []}),
    ("/api/config/update", {"changes": {}}),
    ("/api/config/update", {"changes": "STOP_LOSS_RATIO=-0.08"}),
    ("/api/config/update", {"changes": {"stop_loss_ratio": -0.08}}),
    ("/api/config/update", {"changes": {"STOP_LOSS_RATIO": 0.5}}),
    ("/api/config/update", {"changes": {"STOP_LOSS_RATIO": "x"}}),
    ("/api/config/update", {"changes": {"STOP_LOSS_RATIO": None}}),
    ("/api/config/update", {"changes": {"ENABLE_AUTO_TRADING": "yes"}}),
    ("/api/config/update", {"changes": {"ENABLE_AUTO_TRADING": 1}}),
    ("/api/config/update", {"changes": {"DATA_SOURCE": "yahoo"}}),
    ("/api/config/update", {"changes": {"BUY_GRID_LEVELS": [0.8, 0.9]}}),
    ("/api/config/update", {"changes": {"BUY_GRID_LEVELS": []}}),
    ("/api/config/update", {"changes": {"DYNAMIC_TAKE_PROFIT": [[0.1]]}}),
    ("/api/config/update", {"changes": {"DYNAMIC_TAKE_PROFIT": [[0.1, 0.93], [0.05, 0.96]]}}),
    ("/api/config/update", {"changes": {"WEB_PORT": 70000}}),
    ("/api/config/update", {"changes": {"MAX_ORDERS_PER_DAY": 1.5}}),
    ("/api/config/update", {"changes": {"WEB_CORS_ORIGINS": "http://x"}}),
    ("/api/config/update", {"changes": {"WEB_CORS_ORIGINS": [1]}}),
    ("/api/config/update", {"changes": {"NO_SUCH_KEY": 1}}),
    ("/api/config/update", {"changes": {"POSITION_UNIT": 30000.0, "STOP_LOSS_RATIO": 1}}),  # all or nothing
    ("/api/config/update", {"changes": {"STOP_LOSS_RATIO": -0.08}, "source": "x"}),
    ("/api/config/rollback", {"history_id": "1"}),
    ("/api/config/rollback", {"history_id": 0}),
    ("/api/config/rollback", {"history_id": -1}),
    ("/api/config/rollback", {"history_id": True}),
    ("/api/config/rollback", {"history_id": 1.5}),
    ("/api/config/rollback", {"history_id": 999999}),
    ("/api/config/reset", {}),
    ("/api/config/reset", {"key": 1}),
    ("/api/config/reset", {"key": "stop_loss_ratio"}),
    ("/api/config/reset", {"key": "STOP_LOSS_RATIO"}),  # not overridden
    ("/api/config/reset", {"key": "NO_SUCH_KEY"}),
    ("/api/stock_pool", {}),
    ("/api/stock_pool", {"stocks": "600036"}),
    ("/api/stock_pool", {"stocks": {"600036": 1}}),
    ("/api/stock_pool", {"stocks": [600036]}),
    ("/api/stock_pool", {"stocks": ["600036", "bad"]}),
    ("/api/stock_pool", {"stocks": [None]}),
    ("/api/stock_pool", {"stocks": ["600036"] * 2001}),
    ("/api/grid/sessions", {"stock_code": "600036"}),
    ("/api/grid/sessions/abc/stop", {}),
]

BAD_QUERIES = [
    "/api/orders?status=bogus", "/api/orders?date=2024-1-1", "/api/orders?date=yesterday", "/api/orders?x=1",
    "/api/trade-records?start=x", "/api/trade-records?start=2024-03-02&end=2024-03-01",
    "/api/trade-records?stock_code=12", "/api/trade-records?format=pdf", "/api/signals/history?limit=0",
    "/api/signals/history?limit=abc", "/api/signals/history?limit=99999", "/api/config/history?limit=-1",
    "/api/data/history/xxx", "/api/data/history/600036?start=2024-02-30", "/api/positions/abc",
    "/api/signals/latest/1234567", "/api/data/realtime/%00", "/api/data/realtime/600036.SZ", "/api/no/such/route",
    "/api/positions/600036/extra",
]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    system = build_system(tmp_path_factory.mktemp("malformed"))
    system.executor.buy_stock("600036.SH", volume=200)
    system.next_day()  # 200 shares available to sell
    system.settings.update({"POSITION_UNIT": 25000.0})  # one change in the history
    server = start_server(system)
    client = Client(server.port)
    yield system, client
    client.close()
    server.stop()
    system.close()


def snapshot(system):
    return json.dumps({
        "positions": [p.__dict__ for p in system.positions.all()], "orders": system.executor.list_orders(),
        "trades": system.executor.trade_records(), "asset": system.executor.account().__dict__,
        "settings": system.settings.snapshot(), "overridden": system.settings.overridden(),
        "history": system.settings.history(), "pool": system.pool.codes(),
        "pool_file": system.pool.path.read_text(encoding="utf-8"),
        "signals": [s.__dict__ for s in system.signals.history(1000) + system.signals.pending()],
    }, default=str, sort_keys=True)


def check_refused(reply, expected_status=None):
    assert 400 <= reply.status < 500, reply.text
    if expected_status is not None:
        assert reply.status == expected_status, reply.text
    body = reply.json
    assert body["status"] == "error" and body["code"], body
    assert CHINESE.search(body["message"]), body
    assert "Traceback" not in reply.text and 'File "' not in reply.text


@pytest.mark.parametrize("path", BODY_ENDPOINTS)
@pytest.mark.parametrize("name, raw, content_type, status", GENERIC, ids=[g[0] for g in GENERIC])
def test_generic_malformed_bodies(live, path, name, raw, content_type, status):
    system, client = live
    before = snapshot(system)
    check_refused(client.post(path, raw=raw, content_type=content_type), status)
    assert snapshot(system) == before


@pytest.mark.parametrize("path, body", SPECIFIC, ids=[f"{p.rsplit('/', 1)[-1]}-{i}" for i, (p, _) in
                                                       enumerate(SPECIFIC)])
def test_invalid_bodies(live, path, body):
    system, client = live
    before = snapshot(system)
    check_refused(client.post(path, body))
    assert snapshot(system) == before


@pytest.mark.parametrize("path", BAD_QUERIES)
def test_invalid_queries_and_paths(live, path):
    system, client = live
    before = snapshot(system)
    check_refused(client.get(path))
    assert snapshot(system) == before


def test_header_abuse_is_refused(live):
    system, client = live
    before = snapshot(system)
    body = {"stock_code": "600036", "amount": 20000}
    check_refused(client.post("/api/actions/execute_buy", body, token=""), 401)
    check_refused(client.post("/api/actions/execute_buy", body, token="令牌".encode("utf-8")), 401)
    check_refused(client.post("/api/actions/execute_buy", body, token=TOKEN.upper()), 401)
    check_refused(client.post("/api/actions/execute_buy", body, host=""), 403)
    check_refused(client.post("/api/actions/execute_buy", body, host="127.0.0.1:99999"), 403)
    assert snapshot(system) == before


def test_the_counts_meet_the_issue():
    assert len(BODY_ENDPOINTS) * len(GENERIC) + len(SPECIFIC) + len(BAD_QUERIES) >= 200
