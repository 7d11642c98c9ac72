"""Issue 17 over the real waitress server: the watch-task routes, alerts on the SSE stream, per-stock parameters
(validated, journaled, shown in the trigger prices), lock and blacklist, and a position's rule state by hand."""
from __future__ import annotations

import jsonschema
import pytest

import strategy
import watch.requests as watch_requests
import webapi.openapi as web_openapi
import webapi.requests as req
from core.models import Rule, SignalStatus
from core.position_review import STATE_FIELDS
from core.stock_params import STOCK_KEYS
from watch.rules import ConditionType
from web_test_support import SseClient, data_of as ok, error_message as error  # this file's short names

SH = "600036.SH"


def price(system, code=SH):
    return system.data.get_latest_data(code).price


def test_task_routes(system, client):
    level = round(price(system) * 1.5, 2)
    body = {"stock_code": SH, "conditions": [{"type": "price_above", "value": level}], "sessions_only": False}
    task = ok(client.post("/api/watch/tasks", body), 201)
    assert (task["status"], task["fired_count"], task["conditions"]) == ("active", 0, body["conditions"])
    assert task["description"] == f"价格≥ {level:g}"
    assert [t["id"] for t in ok(client.get("/api/watch/tasks"))["tasks"]] == [task["id"]]
    assert ok(client.get("/api/watch/tasks?stock_code=000001"))["tasks"] == []
    stopped = ok(client.post(f"/api/watch/tasks/{task['id']}/stop"))
    assert stopped["status"] == "stopped"
    error(client.post(f"/api/watch/tasks/{task['id']}/stop"), 409, "WATCH_TASK_NOT_ACTIVE")
    assert ok(client.post(f"/api/watch/tasks/{task['id']}/start"))["status"] == "active"
    edited = ok(client.request("PUT", f"/api/watch/tasks/{task['id']}",
                               {**body, "conditions": [{"type": "price_above", "value": level + 1}]}))
    assert edited["conditions"][0]["value"] == level + 1
    error(client.get("/api/watch/tasks/999"), 404, "WATCH_TASK_NOT_FOUND")
    error(client.request("DELETE", "/api/watch/tasks/999"), 404, "WATCH_TASK_NOT_FOUND")
    ok(client.request("DELETE", f"/api/watch/tasks/{task['id']}"))
    assert ok(client.get("/api/watch/tasks"))["count"] == 0
    assert client.request("DELETE", "/api/watch/tasks/1", token=None).status == 401


@pytest.mark.parametrize("body, fragment", [
    ({"stock_code": "999999", "conditions": [{"type": "price_above", "value": 1}]}, "999999"),
    ({"stock_code": SH, "conditions": [{"type": "in_zone", "low": 2, "high": 1}]}, "大于上限"),
    ({"stock_code": SH, "conditions": [{"type": "price_above", "value": 1}],
      "action": {"type": "sell", "ratio": 0}}, "卖出比例"),
    ({"stock_code": SH, "conditions": [{"type": "in_zone", "low": 1000, "high": 1001}]}, "超出今日涨跌停范围"),
])
def test_invalid_tasks_change_nothing(system, client, body, fragment):
    message = error(client.post("/api/watch/tasks", body), 400, "INVALID_WATCH_TASK")
    assert fragment in message
    assert ok(client.get("/api/watch/tasks"))["count"] == 0


def test_alert_reaches_the_stream_and_history(system, server, client):
    stream = SseClient(server.port)
    try:
        stream.wait_for(lambda event, data: event == "positions")
        level = round(price(system) * 0.5, 2)
        task = ok(client.post("/api/watch/tasks", {"stock_code": SH, "sessions_only": False,
                                                   "conditions": [{"type": "price_above", "value": level}]}), 201)
        system.step()
        _, alert = stream.wait_for(lambda event, data: event == "bus" and data["kind"] == "watch_alert")
        assert alert["data"]["task_id"] == task["id"] and alert["stock_code"] == SH
        assert alert["message"].startswith(f"盯盘提醒：{SH} 价格≥ {level:g}：现价")
    finally:
        stream.close()
    [row] = ok(client.get(f"/api/watch/alerts?stock_code={SH}"))["alerts"]
    assert row["task_id"] == task["id"] and row["price"] == alert["data"]["price"]
    day = row["time"][:10]
    assert len(ok(client.get(f"/api/watch/alerts?date={day}"))["alerts"]) == 1
    assert ok(client.get("/api/watch/alerts?date=2001-01-01"))["alerts"] == []
    assert ok(client.get(f"/api/watch/tasks/{task['id']}"))["status"] == "done"


def test_buy_task_signal_is_executed_by_a_person_over_the_api(system, client):
    task = ok(client.post("/api/watch/tasks", {
        "stock_code": SH, "sessions_only": False, "conditions": [{"type": "price_above", "value": 0.01}],
        "action": {"type": "buy", "amount": 30000}}), 201)
    system.step()
    [signal] = system.signals.pending()
    assert signal.rule is Rule.WATCH_BUY and signal.reason == f"盯盘任务 #{task['id']}"
    system.runner.run_once()  # auto-trading is off: nothing happens
    assert system.signals.get(signal.id).status is SignalStatus.PENDING
    ok(client.post("/api/actions/execute_trading_signal", {"signal_id": signal.id}))
    assert system.signals.get(signal.id).status is SignalStatus.EXECUTED


def _hold(system, client, code=SH):
    ok(client.post("/api/actions/execute_buy", {"stock_code": code, "amount": 30000}))
    for _ in range(3):
        if system.positions.get(code) is not None:
            break
        system.step()
    return system.positions.get(code)


def test_stock_params_routes(system, client):
    position = _hold(system, client)
    view = ok(client.request("PUT", f"/api/stock-params/{SH}", {"params": {"STOP_LOSS_RATIO": -0.05}}))
    assert view["overrides"] == {"STOP_LOSS_RATIO": -0.05}
    assert view["effective"]["STOP_LOSS_RATIO"]["value"] == -0.05
    expected = strategy.stop_loss_price(position.cost_price, system.stock_params.params_for(SH))
    assert ok(client.get(f"/api/positions/{SH}"))["trigger_prices_exact"]["stop_loss_price"] == pytest.approx(expected)
    assert ok(client.get("/api/positions"))["positions"][0]["trigger_prices_exact"]["stop_loss_price"] == \
        pytest.approx(expected)
    message = error(client.request("PUT", f"/api/stock-params/{SH}", {"params": {"STOP_LOSS_RATIO": 0.1},
                                                                      "locked": True}), 400, "CONFIG_INVALID")
    assert "STOP_LOSS_RATIO" in message
    assert ok(client.get(f"/api/stock-params/{SH}"))["locked"] is False  # nothing changed
    locked = ok(client.request("PUT", f"/api/stock-params/{SH}", {"locked": True, "blacklisted": True}))
    assert locked["locked"] and locked["blacklisted"]
    assert SH in ok(client.get("/api/trading-state"))["halted_stocks"]
    assert ok(client.get("/api/stock-params"))["blacklist"] == [SH]
    keys = [h["key"] for h in ok(client.get("/api/config/history"))]
    assert f"{SH}:STOP_LOSS_RATIO" in keys and f"{SH}:BLACKLIST" in keys
    ok(client.request("DELETE", f"/api/stock-params/{SH}"))
    error(client.request("DELETE", f"/api/stock-params/{SH}"), 404, "NO_STOCK_PARAMS")
    assert ok(client.get(f"/api/stock-params/{SH}"))["overrides"] == {}


def test_position_state_by_hand(system, client):
    position = _hold(system, client)
    state = ok(client.get(f"/api/positions/{SH}/state"))
    assert state["highest_price"] == position.highest_price and state["review"] is None
    low = round(position.cost_price * 0.5, 2)
    assert "低于成本价" in error(client.request("PUT", f"/api/positions/{SH}/state", {"highest_price": low}), 400,
                                 "INVALID_POSITION_STATE")
    assert "补仓档位序号 7 不存在" in error(client.request("PUT", f"/api/positions/{SH}/state",
                                                        {"used_add_levels": [7]}), 400, "INVALID_POSITION_STATE")
    high = round(position.cost_price * 1.2, 2)
    edited = ok(client.request("PUT", f"/api/positions/{SH}/state",
                               {"highest_price": high, "profit_triggered": True, "used_add_levels": [1]}))
    assert (edited["highest_price"], edited["profit_triggered"], edited["used_add_levels"]) == (high, True, [1])
    after = system.positions.get(SH)
    assert (after.highest_price, after.profit_triggered, after.used_add_levels) == (high, True, (1,))
    history = {h["key"]: (h["old_value"], h["new_value"]) for h in ok(client.get("/api/config/history"))}
    assert history[f"{SH}:position.highest_price"] == (position.highest_price, high)
    assert history[f"{SH}:position.profit_triggered"] == (False, True)


def test_position_found_at_broker_waits_for_confirmation(system, client):
    _hold(system, client)
    system.ctx.position_reviews.found(SH, "cost_or_price")
    review = ok(client.get(f"/api/positions/{SH}/state"))["review"]
    assert (review["pending"], review["label"]) == (True, "待确认")
    assert review["highest_source_label"] == "成本价与现价的较高者（券商未提供开仓日）"
    assert ok(client.get("/api/stock-params"))["pending_reviews"] == [SH]
    done = ok(client.request("PUT", f"/api/positions/{SH}/state", {"confirm": True}))
    assert done["review"]["label"] == "已确认"
    assert ok(client.get("/api/stock-params"))["pending_reviews"] == []


def test_open_date_sets_highest_from_daily_bars(system, client):
    position = _hold(system, client)
    today = system.clock.today()
    bars = system.data.bar_store.bars(SH, end=today)
    start = bars[-10].day
    expected = max(max(b.high for b in bars[-10:] if b.day < today), position.current_price)
    edited = ok(client.request("PUT", f"/api/positions/{SH}/state", {"open_date": start.isoformat()}))
    assert edited["open_date"] == start.isoformat() and edited["highest_price"] == round(expected, 3)
    assert edited["highest_source_label"] == "开仓日以来日线最高价"
    future = error(client.request("PUT", f"/api/positions/{SH}/state", {"open_date": "2999-01-01"}), 400,
                   "INVALID_POSITION_STATE")
    assert "晚于今天" in future


def test_blacklisted_pool_stocks_are_not_bought(system, client):
    system.pool.replace([SH])
    ok(client.request("PUT", f"/api/stock-params/{SH}", {"blacklisted": True}))
    error(client.post("/api/actions/execute_buy", {"from_pool": True, "count": 1}), 409, "POOL_EMPTY")
    assert system.stock_params.buyable([SH, "000001.SZ"]) == ["000001.SZ"]


def _json_body(operation):
    return operation["requestBody"]["content"]["application/json"]["schema"]


def test_task_body_contract_is_the_parsers_declaration(system, server, client):
    paths = web_openapi.build(server.app)["paths"]
    create = paths["/api/watch/tasks"]["post"]
    schema = _json_body(create)
    assert schema == {**watch_requests.task_schema(req.F_STOCK_CODE.schema()), "description": schema["description"]}
    assert "201" in create["responses"] and "200" not in create["responses"]
    assert _json_body(paths["/api/watch/tasks/{task_id}"]["put"]) == schema
    # each condition type sits in exactly one variant, with exactly the parameters the parser reads
    variants = schema["properties"]["conditions"]["items"]["oneOf"]
    by_type = {t: v for v in variants for t in v["properties"]["type"]["enum"]}
    assert sorted(by_type) == sorted(t.value for t in ConditionType)
    assert by_type["in_zone"]["required"] == ["type", "low", "high"]
    assert by_type["macd_dead"]["required"] == ["type"]
    assert by_type["change_below"]["properties"]["value"] == {
        "type": "number", "description": "涨跌幅 value（%，相对昨收）", "minimum": -30, "maximum": 30}
    assert by_type["new_low"]["properties"]["days"]["type"] == "integer"
    [ratio] = [v["properties"]["ratio"] for v in schema["properties"]["action"]["oneOf"] if "ratio" in v["properties"]]
    assert (ratio["exclusiveMinimum"], ratio["maximum"]) == (0, 1)
    # what the schema accepts the route stores, and its answer is again a valid body
    validator = jsonschema.Draft202012Validator(schema)
    level = round(price(system) * 1.05, 2)
    body = {"stock_code": SH, "conditions": [{"type": "price_above", "value": level}, {"type": "new_high", "days": 20},
                                             {"type": "change_above", "value": 30}],
            "sessions_only": False, "repeat_cooldown": 600, "expires": None,
            "action": {"type": "buy", "amount": 20000}, "exits": {"stop_loss_ratio": -0.05,
                                                                 "dynamic_take_profit": [[0.05, 0.97]]}}
    validator.validate(body)
    created = ok(client.post("/api/watch/tasks", body), 201)
    validator.validate({k: created[k] for k in body})
    # what the schema refuses the route refuses, in Chinese, naming the declared bound
    for change, fragment in [
            ({"conditions": [{"type": "change_above", "value": 30.5}]}, "超出范围 [-30, 30]：30.5"),
            ({"action": {"type": "sell", "ratio": 0}, "exits": None}, "卖出比例 ratio 超出范围 (0, 1]：0"),
            ({"conditions": [{"type": "price_above", "value": level, "days": 5}]}, "包含未知字段：days"),
            ({"exits": {"stop_loss_ratio": 0}}, "止损比例 stop_loss_ratio 超出范围 [-0.5, 0)：0"),
            ({"repeat_cooldown": -1}, "重复提醒冷却秒数"),
            ({"conditions": [{"type": "new_high", "days": 2.5}]}, "必须是整数")]:
        bad = {**body, **change}
        assert not validator.is_valid(bad), change
        assert fragment in error(client.post("/api/watch/tasks", bad), 400, "INVALID_WATCH_TASK"), change
    assert ok(client.get("/api/watch/tasks"))["count"] == 1


def test_watch_paths_and_queries_are_declared_and_enforced(server, client):
    paths = web_openapi.build(server.app)["paths"]
    [task_id] = paths["/api/watch/tasks/{task_id}"]["get"]["parameters"]
    assert task_id["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    alerts = {p["name"]: p["schema"] for p in paths["/api/watch/alerts"]["get"]["parameters"]}
    assert list(alerts) == ["stock_code", "date", "task_id", "limit"] and alerts["limit"]["maximum"] == 500
    statuses = [p for p in paths["/api/watch/tasks"]["get"]["parameters"] if p["name"] == "status"]
    assert statuses[0]["schema"]["enum"] == ["active", "stopped", "done", "expired"]
    error(client.get(f"/api/watch/tasks/{2**63}"), 404, "WATCH_TASK_NOT_FOUND")  # not a SQLite overflow
    error(client.get("/api/watch/alerts?limit=501"), 400, "INVALID_QUERY")
    error(client.get("/api/watch/alerts?limit=%C2%B2"), 400, "INVALID_QUERY")  # a Unicode digit
    error(client.get("/api/watch/alerts?task_id=" + "9" * 5000), 400, "INVALID_QUERY")  # beyond int()'s digit limit
    error(client.get("/api/watch/tasks?colour=red"), 400, "UNKNOWN_FIELD")
    error(client.get("/api/watch/tasks?status=gone"), 400, "INVALID_STATUS")
    assert ok(client.get("/api/watch/tasks?status=active")) == {"tasks": [], "count": 0}


def test_stock_bodies_are_declared_from_the_parameter_table(server, client):
    paths = web_openapi.build(server.app)["paths"]
    change = _json_body(paths["/api/stock-params/{code}"]["put"])
    params = change["properties"]["params"]["properties"]
    assert sorted(params) == sorted(STOCK_KEYS)
    assert params["STOP_LOSS_RATIO"]["anyOf"] == [{"type": "number", "minimum": -0.5, "maximum": -0.001},
                                                  {"type": "null"}]
    assert params["GRID_MAX_HOLD_DAYS"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 365}
    validator = jsonschema.Draft202012Validator(change)
    assert not validator.is_valid({"reason": "只有原因"})
    message = error(client.request("PUT", f"/api/stock-params/{SH}", {"reason": "只有原因"}), 400, "EMPTY_CHANGE")
    assert "至少一项" in message
    assert not validator.is_valid({"params": {"BUY_GRID_LEVELS": [0.1]}})
    assert "小于最小值 0.3" in error(client.request("PUT", f"/api/stock-params/{SH}",
                                                {"params": {"BUY_GRID_LEVELS": [0.1]}}), 400, "CONFIG_INVALID")
    state = _json_body(paths["/api/positions/{code}/state"]["put"])
    assert set(state["properties"]) == {*STATE_FIELDS, "confirm"} and "required" not in state


def test_integers_beyond_any_float_are_refused_not_crashed(system, client):
    """JSON integers have no size limit; 10**400 overflows every float conversion the parsers make."""
    _hold(system, client)
    huge = 10**400
    message = error(client.post("/api/watch/tasks", {"stock_code": SH, "conditions": [
        {"type": "price_above", "value": huge}]}), 400, "INVALID_WATCH_TASK")
    assert "超出范围 [0.001, 100000]" in message
    assert "必须是整数" not in error(client.post("/api/watch/tasks", {"stock_code": SH, "conditions": [
        {"type": "new_high", "days": huge}]}), 400, "INVALID_WATCH_TASK")
    assert "数值过大" in error(client.request("PUT", f"/api/stock-params/{SH}", {"params": {"STOP_LOSS_RATIO": huge}}),
                               400, "CONFIG_INVALID")
    assert "必须是大于 0 的数字" in error(client.request("PUT", f"/api/positions/{SH}/state", {"highest_price": huge}),
                                        400, "INVALID_POSITION_STATE")
    assert ok(client.get("/api/watch/tasks"))["count"] == 0
    assert ok(client.get(f"/api/stock-params/{SH}"))["overrides"] == {}
