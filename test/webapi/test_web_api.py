"""Every endpoint of DESIGN §11 against the real waitress server on a free loopback port, with the real
components (synthetic replay market, SimTrader, TradingExecutor, PositionManager, SignalStore, StrategyRunner,
ConfigStore, StockPool) on temp SQLite files. Money figures are checked against the A-share fee rules."""
import csv
import io
import re
import threading
from datetime import datetime

import pytest

import market_rules
import strategy
from core.models import OrderStatus, Rule, Signal, SignalStatus
from web_test_support import CHINESE, POOL, TOKEN, Client, SseClient, build_system, error, ok, start_server

def expected_buy(system, code, amount):
    """(fill price, volume, fees, cash spent) of a marketable buy for `amount` at the current quote."""
    quote = system.data.get_latest_data(code)
    order_price = min(market_rules.round_price(code, quote.price * (1 + system.settings.get("ORDER_PRICE_SLIPPAGE"))),
                      quote.limit_up)
    volume = market_rules.buy_volume_for_amount(code, amount, order_price)
    fees = market_rules.fees(code, "buy", quote.price, volume, system.settings)["total"]
    return quote.price, volume, fees, round(round(quote.price * volume, 2) + fees, 2)


# ---- reading ----------------------------------------------------------------------------------------

def test_status_has_mode_switches_account_source_and_clock(system, client):
    data = ok(client.get("/api/status"))
    assert data["mode"] == "simulation" and data["mode_label"] == "模拟"
    assert data["switches"]["ENABLE_AUTO_TRADING"] is False and data["switches"]["ENABLE_ALLOW_BUY"] is True
    assert data["account"] == {"available": True, "cash": 1_000_000.0, "frozen_cash": 0.0, "market_value": 0.0,
                               "total_asset": 1_000_000.0, "today_pnl": 0.0}
    assert data["data_source"]["synthetic"] is True and "演示行情" in data["data_source"]["label"]
    now = system.clock.now()
    assert data["clock"]["time"] == now.isoformat(timespec="seconds")
    assert (data["clock"]["session"], data["clock"]["session_label"]) == ("continuous", "连续竞价")
    assert data["clock"]["is_replay"] is True
    assert data["clock"]["calendar_warning"] == ""  # within exchange_calendars' table: no weekday fallback
    assert data["positions_count"] == 0 and data["pending_signals"] == 0 and data["grid_available"] is False


def test_health_reports_the_watchdog_threads(system, client):
    assert ok(client.get("/api/health"))["threads"][0]["alive"] is False  # not started yet
    system.watchdog.start()
    data = ok(client.get("/api/health"))
    assert [t["name"] for t in data["threads"]] == ["probe"]
    probe = data["threads"][0]
    assert probe["alive"] is True and probe["restarts"] == 0 and probe["alarm"] == ""
    assert 0 <= probe["seconds_since_beat"] < 60
    assert data["all_alive"] is True


def test_connection_status_of_broker_and_data(system, client):
    data = ok(client.get("/api/connection/status"))
    assert data["broker"] == {"mode": "simulation", "mode_label": "模拟", "connected": True, "error": ""}
    assert data["data"]["connected"] is True and data["data"]["source"] == "synthetic"
    system.broker.close()
    data = ok(client.get("/api/connection/status"))
    assert data["broker"] == {"mode": "simulation", "mode_label": "模拟", "connected": False,
                              "error": "模拟券商已关闭"}


def test_realtime_quote_and_history_with_indicators(system, client):
    quote = system.data.get_latest_data("600036.SH")
    data = ok(client.get("/api/data/realtime/600036"))
    assert (data["code"], data["price"], data["prev_close"]) == ("600036.SH", quote.price, quote.prev_close)
    assert data["time"] == quote.time.isoformat(timespec="seconds")
    on_demand = ok(client.get("/api/data/realtime/601988"))  # valid code, not watched: subscribed on demand
    assert (on_demand["code"], on_demand["time"]) == ("601988.SH", system.clock.now().isoformat(timespec="seconds"))
    assert "601988.SH" in system.data.watchlist()
    error(client.get("/api/data/realtime/12345"), 400, "INVALID_STOCK_CODE")

    frame = system.data.get_history("600036.SH", with_indicators=True)
    data = ok(client.get("/api/data/history/600036.SH"))
    bars = data["bars"]
    assert data["stock_code"] == "600036.SH" and len(bars) == len(frame) + 1  # + today's unfinished bar
    last = frame.iloc[-1]
    assert (bars[-2]["date"], bars[-2]["close"]) == (last["date"].isoformat(), float(last["close"]))
    assert bars[-2]["ma10"] == pytest.approx(float(frame["close"].tail(10).mean()), abs=1e-6)
    assert bars[0]["ma10"] is None
    assert bars[-1] == {"date": system.clock.today().isoformat(), "open": quote.open, "high": quote.high,
                        "low": quote.low, "close": quote.price, "volume": quote.volume, "partial": True}
    ranged = ok(client.get(f"/api/data/history/600036?start={bars[-6]['date']}&end={bars[-3]['date']}"))
    assert [b["date"] for b in ranged["bars"]] == [b["date"] for b in bars[-6:-2]]
    error(client.get("/api/data/history/600036?start=2024-13-01"), 400, "INVALID_DATE")
    error(client.get("/api/data/history/600036?start=2024-03-02&end=2024-03-01"), 400, "INVALID_DATE")


# ---- buying, positions, orders, trades ----------------------------------------------------------------

def test_buy_by_amount_fills_and_shows_everywhere(system, client):
    price, volume, fees, spent = expected_buy(system, "600036.SH", 20000)
    order = ok(client.post("/api/actions/execute_buy", {"stock_code": "600036", "amount": 20000}))
    assert (order["stock_code"], order["side"], order["volume"], order["status"]) == ("600036.SH", "buy", volume,
                                                                                      "filled")
    assert (order["side_label"], order["status_label"]) == ("买入", "已成")

    positions = ok(client.get("/api/positions"))
    assert positions["count"] == 1 and positions["data_version"] == system.positions.data_version
    row = positions["positions"][0]
    assert (row["stock_code"], row["volume"], row["available"]) == ("600036.SH", volume, 0)  # T+1
    held = system.positions.get("600036.SH")
    assert row["cost_price"] == held.cost_price and row["highest_price"] == held.highest_price
    triggers = strategy.trigger_prices(held, strategy.RuleParams.from_settings(system.settings))
    assert row["trigger_prices"]["stop_loss_price"] == market_rules.round_price_down("600036.SH",
                                                                                     triggers.stop_loss_price)
    assert row["trigger_prices"]["take_profit_price"] == market_rules.round_price_up("600036.SH",
                                                                                     triggers.take_profit_price)
    assert row["trigger_prices_exact"]["stop_loss_price"] == triggers.stop_loss_price
    assert ok(client.get("/api/positions/600036.SH"))["volume"] == volume
    error(client.get("/api/positions/000001"), 404, "NO_POSITION")

    trades = ok(client.get("/api/trade-records"))
    assert len(trades) == 1
    trade = trades[0]
    assert (trade["price"], trade["volume"], trade["fees"], trade["rule_label"]) == (price, volume, fees, "手动")
    assert trade["amount"] == round(price * volume, 2)
    account = ok(client.get("/api/status"))["account"]
    assert account["cash"] == round(1_000_000 - spent, 2)
    assert account["total_asset"] == round(account["cash"] + account["market_value"], 2)
    assert account["today_pnl"] == round(account["market_value"] - spent, 2)
    orders = ok(client.get("/api/orders"))
    assert [(o["client_id"], o["status"], o["rule_label"]) for o in orders] == [(order["client_id"], "filled", "手动")]


def test_buy_by_volume_with_limit_rests_until_cancelled(system, client):
    quote = system.data.get_latest_data("000001.SZ")
    limit = quote.limit_down
    order = ok(client.post("/api/actions/execute_buy", {"stock_code": "sz000001", "volume": 500, "price": limit}))
    assert (order["volume"], order["price"]) == (500, limit)
    assert order["status"] in ("submitted", "open")
    active = ok(client.get("/api/orders?status=active"))
    assert [o["client_id"] for o in active] == [order["client_id"]]
    frozen = ok(client.get("/api/status"))["account"]["frozen_cash"]
    assert frozen == market_rules.fees("000001.SZ", "buy", limit, 500, system.settings)["total"] + round(limit * 500, 2)

    reply = ok(client.post("/api/actions/cancel_order", {"order_id": order["client_id"]}))
    assert reply["order_id"] == order["client_id"] and CHINESE.search(reply["message"])
    assert ok(client.get("/api/orders?status=active")) == []
    cancelled = ok(client.get("/api/orders?status=cancelled"))
    assert [o["status_label"] for o in cancelled] == ["已撤"]
    assert ok(client.get("/api/status"))["account"] == {**ok(client.get("/api/status"))["account"],
                                                         "cash": 1_000_000.0, "frozen_cash": 0.0}
    error(client.post("/api/actions/cancel_order", {"order_id": order["client_id"]}), 409, "ORDER_NOT_OPEN")
    error(client.post("/api/actions/cancel_order", {"order_id": "NOPE123"}), 404, "ORDER_NOT_FOUND")
    today = system.clock.today().isoformat()
    assert len(ok(client.get(f"/api/orders?date={today}"))) == 1
    assert ok(client.get("/api/orders?date=2001-01-01")) == []


def test_refused_buys_change_nothing(system, client):
    error(client.post("/api/actions/execute_buy", {"stock_code": "600036", "amount": 50}), 400, "AMOUNT_TOO_SMALL")
    error(client.post("/api/actions/execute_buy", {"stock_code": "600036", "amount": 5_000_000}), 400)
    error(client.post("/api/actions/execute_buy", {"stock_code": "601988", "volume": 150}), 400, "INVALID_LOT")
    system.settings.update({"ENABLE_ALLOW_BUY": False})
    error(client.post("/api/actions/execute_buy", {"stock_code": "600036", "amount": 20000}), 400, "BUY_DISABLED")
    assert ok(client.get("/api/positions"))["count"] == 0
    assert ok(client.get("/api/trade-records")) == []
    assert ok(client.get("/api/status"))["account"]["cash"] == 1_000_000.0


def test_sell_by_ratio_and_volume_after_t_plus_one(system, client):
    code = "600519.SH"
    bought = ok(client.post("/api/actions/execute_buy", {"stock_code": code, "volume": 300}))
    assert bought["status"] == "filled"
    error(client.post("/api/actions/execute_sell", {"stock_code": code, "volume": 100}), 400, "T1_UNAVAILABLE")
    error(client.post("/api/actions/execute_sell", {"stock_code": code, "ratio": 0.5}), 409, "NO_AVAILABLE")
    system.next_day()
    assert ok(client.get(f"/api/positions/{code}"))["available"] == 300

    half = ok(client.post("/api/actions/execute_sell", {"stock_code": code, "ratio": 0.5}))
    assert (half["side"], half["volume"], half["status"]) == ("sell", 100, "filled")  # 150 rounds down to a lot
    quote = system.data.get_latest_data(code)
    rest = ok(client.post("/api/actions/execute_sell", {"stock_code": code, "volume": 200}))
    assert rest["volume"] == 200
    assert ok(client.get("/api/positions"))["count"] == 0
    sells = [t for t in ok(client.get(f"/api/trade-records?stock_code={code}")) if t["side"] == "sell"]
    assert [t["volume"] for t in sells] == [200, 100]  # newest first
    fees = market_rules.fees(code, "sell", quote.price, 200, system.settings)
    assert (sells[0]["price"], sells[0]["stamp_duty"], sells[0]["fees"]) == (quote.price, fees["stamp_duty"],
                                                                             fees["total"])
    error(client.post("/api/actions/execute_sell", {"stock_code": code, "volume": 100}), 400, "NO_POSITION")
    error(client.post("/api/actions/execute_sell", {"stock_code": code, "ratio": 1}), 409, "NO_POSITION")


def order_price_of(system, code, side):
    quote = system.data.get_latest_data(code)
    slippage = system.settings.get("ORDER_PRICE_SLIPPAGE")
    if side == "buy":
        return min(market_rules.round_price(code, quote.price * (1 + slippage)), quote.limit_up)
    return max(market_rules.round_price(code, quote.price * (1 - slippage)), quote.limit_down)


def test_check_order_answers_what_a_buy_would_place_without_placing_it(system, client):
    code = "600036.SH"
    price = order_price_of(system, code, "buy")
    capacity = ok(client.post("/api/actions/check_order", {"side": "buy", "stock_code": "600036"}))
    most = market_rules.buy_volume_for_amount(code, system.settings.get("MAX_ORDER_VALUE"), price)
    assert (capacity["ok"], capacity["stock_code"], capacity["max_volume"], capacity["price"]) == (True, code, most,
                                                                                                 price)
    assert capacity["volume"] is None and capacity["lot"] == 100
    at_most = ok(client.post("/api/actions/check_order", {"side": "buy", "stock_code": code, "volume": most}))
    assert (at_most["ok"], at_most["volume"], at_most["price"]) == (True, most, price)
    over = ok(client.post("/api/actions/check_order", {"side": "buy", "stock_code": code, "volume": most + 100}))
    assert (over["ok"], over["code"]) == (False, "MAX_ORDER_VALUE")
    real_over = error(client.post("/api/actions/execute_buy", {"stock_code": code, "volume": most + 100}), 400)
    assert real_over["code"] == over["code"] and real_over["message"] == over["message"]
    for asked, refusal in (({"volume": 150}, "INVALID_LOT"), ({"amount": 50}, "AMOUNT_TOO_SMALL"),
                           ({"volume": 100, "price": 0.001}, "INVALID_PRICE"),
                           ({"volume": 0}, None)):
        answer = client.post("/api/actions/check_order", {"side": "buy", "stock_code": code, **asked})
        if refusal is None:  # outside the declared bounds: refused as a malformed request, like the real route
            error(answer, 400)
            continue
        body = ok(answer)
        assert (body["ok"], body["code"]) == (False, refusal), body
        assert CHINESE.search(body["message"]) and body["max_volume"] == (None if "price" in asked else most)
    planned = ok(client.post("/api/actions/check_order", {"side": "buy", "stock_code": code, "amount": 20000}))
    assert ok(client.get("/api/orders")) == [] and ok(client.get("/api/trade-records")) == []
    assert ok(client.get("/api/status"))["account"]["cash"] == 1_000_000.0
    placed = ok(client.post("/api/actions/execute_buy", {"stock_code": code, "amount": 20000}))
    assert (planned["ok"], planned["volume"], planned["price"]) == (True, placed["volume"], placed["price"])
    error(client.post("/api/actions/check_order", {"side": "buy", "stock_code": code}, token=None), 401)
    error(client.post("/api/actions/check_order", {"side": "hold", "stock_code": code}), 400)


def test_check_order_of_sells_follows_t_plus_one_ratio_and_the_emergency_stop(system, client):
    code = "600519.SH"
    ok(client.post("/api/actions/execute_buy", {"stock_code": code, "volume": 300}))
    today = ok(client.post("/api/actions/check_order", {"side": "sell", "stock_code": code, "volume": 100}))
    assert (today["ok"], today["code"], today["max_volume"]) == (False, "T1_UNAVAILABLE", 0)
    system.next_day()
    price = order_price_of(system, code, "sell")
    half = ok(client.post("/api/actions/check_order", {"side": "sell", "stock_code": code, "ratio": 0.5}))
    assert (half["ok"], half["volume"], half["price"], half["max_volume"]) == (True, 100, price, 300)
    odd = ok(client.post("/api/actions/check_order", {"side": "sell", "stock_code": code, "volume": 150}))
    assert (odd["ok"], odd["code"]) == (False, "INVALID_VOLUME")
    ok(client.post("/api/actions/emergency_stop"))
    halted = ok(client.post("/api/actions/check_order", {"side": "sell", "stock_code": code, "volume": 300}))
    assert (halted["ok"], halted["code"]) == (False, "TRADING_HALTED")
    confirmed = ok(client.post("/api/actions/check_order",
                               {"side": "sell", "stock_code": code, "volume": 300, "confirm": True}))
    assert (confirmed["ok"], confirmed["volume"]) == (True, 300)
    buy = ok(client.post("/api/actions/check_order", {"side": "buy", "stock_code": "600036", "volume": 100}))
    assert (buy["ok"], buy["code"]) == (False, "TRADING_HALTED")
    assert [o["volume"] for o in ok(client.get("/api/orders"))] == [300]  # only the buy: nothing else journaled
    assert ok(client.get(f"/api/positions/{code}"))["available"] == 300  # nothing reserved


def test_random_buy_from_the_pool_skips_held_stocks(system, client):
    ok(client.post("/api/actions/execute_buy", {"stock_code": "600036", "amount": 20000}))
    data = ok(client.post("/api/actions/execute_buy", {"from_pool": True, "count": 3, "amount": 15000}))
    chosen = [r["stock_code"] for r in data["results"]]
    assert data["requested"] == 3 and data["placed"] == 3 and len(set(chosen)) == 3
    assert set(chosen) <= set(POOL) - {"600036.SH"}
    for result in data["results"]:
        assert result["ok"] and result["order"]["volume"] == expected_buy_volume(system, result["stock_code"], 15000)
    data = ok(client.post("/api/actions/execute_buy", {"from_pool": True, "count": 5}))
    assert data["placed"] == 1 and data["requested"] == 5  # only one pool stock is left unheld
    error(client.post("/api/actions/execute_buy", {"from_pool": True, "count": 1}), 409, "POOL_EMPTY")


def expected_buy_volume(system, code, amount):
    quote = system.data.get_latest_data(code)
    price = market_rules.round_price(code, quote.price * (1 + system.settings.get("ORDER_PRICE_SLIPPAGE")))
    return market_rules.buy_volume_for_amount(code, amount, price)


def test_random_buy_reports_every_failure(system, client):
    system.settings.update({"ENABLE_ALLOW_BUY": False})
    body = error(client.post("/api/actions/execute_buy", {"from_pool": True, "count": 2}), 409, "POOL_BUY_FAILED")
    assert len(body["results"]) == 2 and all(r["code"] == "BUY_DISABLED" for r in body["results"])


def test_trade_records_filters_and_csv_export(system, client):
    ok(client.post("/api/actions/execute_buy", {"stock_code": "600036", "amount": 20000}))
    ok(client.post("/api/actions/execute_buy", {"stock_code": "000001", "amount": 20000}))
    today = system.clock.today().isoformat()
    assert len(ok(client.get(f"/api/trade-records?start={today}&end={today}"))) == 2
    assert [t["stock_code"] for t in ok(client.get("/api/trade-records?stock_code=sz000001"))] == ["000001.SZ"]
    assert ok(client.get("/api/trade-records?end=2001-01-01")) == []
    reply = client.get(f"/api/trade-records?start={today}&format=csv")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/csv")
    assert "attachment" in reply.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(reply.text.lstrip("\ufeff"))))
    assert rows[0][:4] == ["成交时间", "股票代码", "股票名称", "方向"]
    assert [r[1] for r in rows[1:]] == ["000001.SZ", "600036.SH"] and {r[3] for r in rows[1:]} == {"买入"}
    assert "模拟" in rows[1]
    error(client.get("/api/trade-records?format=xml"), 400)
    error(client.get("/api/trade-records?stock_code=abc"), 400, "INVALID_STOCK_CODE")
    error(client.get("/api/trade-records?colour=red"), 400, "UNKNOWN_FIELD")


# ---- signals ------------------------------------------------------------------------------------------

def queue_add_signal(system):
    """Hold 600036 and step the replay until the monitor queues an add-position signal (level 0.999)."""
    system.settings.update({"BUY_GRID_LEVELS": [1.0, 0.999]})
    system.executor.buy_stock("600036.SH", amount=20000)
    for _ in range(200):
        system.step()
        pending = system.signals.pending()
        if pending:
            return pending[0]
    raise AssertionError("no signal within 200 replay steps")


def test_manual_execution_of_a_queued_signal(system, client):
    signal = queue_add_signal(system)
    assert signal.rule is Rule.ADD_POSITION
    pending = ok(client.get("/api/signals/pending"))
    assert [(s["id"], s["rule_label"], s["side_label"], s["status_label"]) for s in pending] == [
        (signal.id, "补仓", "买入", "待执行")]
    assert ok(client.get("/api/signals/latest/600036"))["id"] == signal.id
    assert ok(client.get("/api/signals/latest/000001")) is None

    done = ok(client.post("/api/actions/execute_trading_signal", {"signal_id": signal.id}))
    assert done["status"] == "executed" and done["order_id"]
    assert ok(client.get("/api/signals/pending")) == []
    history = ok(client.get("/api/signals/history?limit=10"))
    assert [(s["id"], s["status_label"]) for s in history] == [(signal.id, "已执行")]
    trades = ok(client.get("/api/trade-records"))
    assert [t["rule_label"] for t in trades] == ["补仓", "手动"]  # newest first
    error(client.post("/api/actions/execute_trading_signal", {"signal_id": signal.id}), 409, "SIGNAL_NOT_PENDING")
    error(client.post("/api/actions/execute_trading_signal", {"signal_id": 99999}), 404, "SIGNAL_NOT_FOUND")


def test_signal_whose_condition_is_gone_is_rejected_with_its_reason(system, client):
    system.executor.buy_stock("600036.SH", amount=20000)
    quote = system.data.get_latest_data("600036.SH")
    stale = system.signals.add(Signal("600036.SH", Rule.STOP_LOSS, 100, quote.price * 0.5, quote.price * 0.5,
                                      system.clock.now()))
    body = error(client.post("/api/actions/execute_trading_signal", {"signal_id": stale.id}), 409, "SIGNAL_REJECTED")
    assert body["signal"]["status"] == "rejected" and body["signal"]["reason"] in body["message"]
    assert system.signals.get(stale.id).status is SignalStatus.REJECTED
    assert len(system.executor.trade_records()) == 1  # nothing sold


# ---- configuration ------------------------------------------------------------------------------------

def test_config_lists_params_grouped_with_metadata(client):
    data = ok(client.get("/api/config"))
    assert data["groups"][0] == "开关" and "止盈止损" in data["groups"]
    stop = next(p for p in data["params"] if p["key"] == "STOP_LOSS_RATIO")
    assert (stop["value"], stop["default"], stop["type"], stop["group"], stop["overridden"]) == (
        -0.095, -0.095, "float", "止盈止损", False)
    assert stop["range"] == "-0.5 ~ -0.001" and CHINESE.search(stop["meaning"])
    token_row = next(p for p in data["params"] if p["key"] == "WEB_API_TOKEN")
    assert token_row["secret"] is True and TOKEN not in str(data)


def test_config_update_history_rollback_and_reset(system, client):
    body = error(client.post("/api/config/update", {"changes": {"STOP_LOSS_RATIO": 0.05}}), 400, "CONFIG_INVALID")
    assert "超出范围" in body["errors"]["STOP_LOSS_RATIO"]
    body = error(client.post("/api/config/update", {"changes": {"STOP_LOSS_RATIO": "abc", "NO_SUCH": 1}}), 400)
    assert set(body["errors"]) == {"STOP_LOSS_RATIO", "NO_SUCH"}
    assert system.settings.get("STOP_LOSS_RATIO") == -0.095 and ok(client.get("/api/config/history")) == []

    data = ok(client.post("/api/config/update", {"changes": {"STOP_LOSS_RATIO": -0.08, "WEB_PORT": 5001}}))
    assert data["changed"] == {"STOP_LOSS_RATIO": -0.08, "WEB_PORT": 5001}
    assert data["restart_required"] == ["WEB_PORT"]
    assert system.settings.get("STOP_LOSS_RATIO") == -0.08
    stop = next(p for p in ok(client.get("/api/config"))["params"] if p["key"] == "STOP_LOSS_RATIO")
    assert stop["overridden"] is True and stop["value"] == -0.08
    warned = ok(client.post("/api/config/update", {"changes": {"MAX_POSITION_VALUE": 40000.0}}))
    assert warned["warnings"] and all(CHINESE.search(w) for w in warned["warnings"])  # an add level is unreachable
    history = ok(client.get("/api/config/history"))
    assert [(h["key"], h["old_value"], h["new_value"], h["source"]) for h in history][:2] == [
        ("MAX_POSITION_VALUE", 50000.0, 40000.0, "web"), ("WEB_PORT", 5000, 5001, "web")]
    assert len(ok(client.get("/api/config/history?limit=1"))) == 1

    assert ok(client.post("/api/config/rollback", {}))["restored"] == {"MAX_POSITION_VALUE": 50000.0}
    stop_change = next(h for h in history if h["key"] == "STOP_LOSS_RATIO")
    assert ok(client.post("/api/config/rollback", {"history_id": stop_change["id"]}))["restored"] == {
        "STOP_LOSS_RATIO": -0.095}
    assert system.settings.get("STOP_LOSS_RATIO") == -0.095
    error(client.post("/api/config/rollback", {"history_id": 9999}), 400, "CONFIG_INVALID")

    assert ok(client.post("/api/config/reset", {"key": "WEB_PORT"}))["restored"] == {"WEB_PORT": 5000}
    assert system.settings.overridden() == {}
    error(client.post("/api/config/reset", {"key": "WEB_PORT"}), 400, "CONFIG_INVALID")
    error(client.post("/api/config/reset", {"key": "NO_SUCH_KEY"}), 400, "CONFIG_INVALID")


# ---- emergency stop ---------------------------------------------------------------------------------

def test_emergency_stop_halts_trading_and_cancels_open_orders(system, client):
    system.settings.update({"ENABLE_AUTO_TRADING": True})
    quote = system.data.get_latest_data("000001.SZ")
    resting = system.executor.buy_stock("000001.SZ", volume=100, price=quote.limit_down)
    assert resting.status.is_open
    data = ok(client.post("/api/actions/emergency_stop"))
    assert data["trading_state"]["state"] == "halted" and data["trading_state"]["label"] == "紧急停止"
    assert data["cancelled_orders"] == 1 and "撤销 1 笔" in data["message"]
    assert system.executor.open_orders() == []
    assert OrderStatus(system.executor.list_orders()[0]["status"]) is OrderStatus.CANCELLED
    assert ok(client.get("/api/status"))["trading_state"]["state"] == "halted"
    again = ok(client.post("/api/actions/emergency_stop", raw=b"{}"))
    assert again["cancelled_orders"] == 0 and again["trading_state"]["reason"] == "操作员紧急停止"
    error(client.post("/api/actions/execute_buy", {"stock_code": "000001.SZ", "volume": 100}), 409, "TRADING_HALTED")
    error(client.post("/api/actions/resume", {}), 400, "CONFIRMATION_REQUIRED")
    error(client.post("/api/actions/resume", {"confirm": "yes"}), 400, "CONFIRMATION_REQUIRED")
    assert ok(client.post("/api/actions/resume", {"confirm": True}))["trading_state"]["state"] == "running"
    history = ok(client.get("/api/trading-state"))["history"]
    assert [(h["old_state"], h["new_state"], h["source"]) for h in history] == [
        ("halted", "running", "web"), ("running", "halted", "web")]


# ---- stock pool and grid ------------------------------------------------------------------------------

def test_stock_pool_read_and_replace(system, client, tmp_path):
    assert ok(client.get("/api/stock_pool")) == {"stocks": POOL, "count": len(POOL)}
    data = ok(client.post("/api/stock_pool", {"stocks": ["sh600036", "000651", "600036.SH"]}))
    assert data == {"stocks": ["600036.SH", "000651.SZ"], "count": 2}
    assert (tmp_path / "stock_pool.json").read_text(encoding="utf-8").count(".S") == 2
    body = error(client.post("/api/stock_pool", {"stocks": ["600036", "123", "abcdef"]}), 400, "INVALID_STOCK_POOL")
    assert len(body["errors"]) == 2
    assert system.pool.codes() == ["600036.SH", "000651.SZ"]


def test_grid_routes_say_the_module_is_not_enabled(client):
    for reply in (client.get("/api/grid/sessions"), client.post("/api/grid/sessions", {"stock_code": "600036"}),
                  client.post("/api/grid/sessions/1/stop")):
        body = error(reply, 404, "GRID_UNAVAILABLE")
        assert body["message"] == "网格交易模块未启用"


def test_grid_sessions_with_the_real_grid_manager(system):
    from grid_trading import GridManager

    grid = GridManager(system.dbs[1], system.settings, system.clock, system.positions, system.data.hub,
                       system.signals, system.executor)
    grid.attach(system.monitor, system.runner)
    system.ctx.grid = grid
    web = start_server(system)
    client = Client(web.port)
    try:
        assert ok(client.get("/api/grid/sessions")) == []
        off = error(client.post("/api/grid/sessions", {"stock_code": "600036"}), 409, "GRID_TRADING_OFF")
        assert "网格交易开关（ENABLE_GRID_TRADING）已关闭" in off["message"]
        system.settings.update({"ENABLE_GRID_TRADING": True})
        error(client.post("/api/grid/sessions", {"stock_code": "600036"}), 409, "NO_POSITION")
        system.executor.buy_stock("600036.SH", amount=30000)
        error(client.post("/api/grid/sessions", {"stock_code": "600036", "GRID_STEP_RATIO": 5}), 400,
              "INVALID_GRID_PARAMS")
        error(client.post("/api/grid/sessions", {"stock_code": "600036", "GRID_STEP": 0.02}), 400, "UNKNOWN_FIELD")
        quote = system.data.get_latest_data("600036.SH")
        started = ok(client.post("/api/grid/sessions", {"stock_code": "600036", "GRID_STEP_RATIO": 0.03,
                                                        "GRID_BUY_AMOUNT": 6000}))
        assert (started["stock_code"], started["status"], started["status_label"]) == ("600036.SH", "active", "运行中")
        assert (started["center_price"], started["step_ratio"], started["buy_amount"]) == (quote.price, 0.03, 6000.0)
        assert started["next_buy_price"] < quote.price < started["next_sell_price"]
        error(client.post("/api/grid/sessions", {"stock_code": "600036"}), 409, "GRID_ALREADY_ACTIVE")
        assert [s["id"] for s in ok(client.get("/api/grid/sessions"))] == [started["id"]]
        assert ok(client.get(f"/api/grid/sessions/{started['id']}/trades")) == []
        stopped = ok(client.post(f"/api/grid/sessions/{started['id']}/stop"))
        assert (stopped["status"], stopped["end_reason"], stopped["end_reason_label"]) == ("stopped", "manual", "手动停止")
        error(client.post(f"/api/grid/sessions/{started['id']}/stop"), 409, "GRID_NOT_ACTIVE")
        error(client.post("/api/grid/sessions/999/stop"), 404, "GRID_NOT_FOUND")
        error(client.post("/api/grid/sessions/abc/stop"), 400)
        assert ok(client.get("/api/status"))["grid_available"] is True
    finally:
        client.close()
        web.stop()


# ---- live stream ------------------------------------------------------------------------------------

def test_stream_sends_snapshot_then_a_new_one_after_a_fill(system, server):
    stream = SseClient(server.port)
    try:
        assert stream.status == 200 and "text/event-stream" in stream.headers
        event, first = stream.next_event()
        assert event == "positions" and first["count"] == 0 and first["account"]["cash"] == 1_000_000.0
        assert first["clock"]["session_label"] == "连续竞价"
        order = system.executor.buy_stock("600036.SH", amount=20000)
        _, snapshot = stream.wait_for(lambda e, d: e == "positions" and d["count"] == 1, timeout=1.0)
        assert snapshot["positions"][0]["volume"] == order.volume
        assert snapshot["data_version"] >= system.positions.data_version - 1
        system.step()  # a new price: another snapshot
        _, moved = stream.wait_for(lambda e, d: e == "positions" and d["data_version"] > snapshot["data_version"],
                                   timeout=1.0)
        assert moved["positions"][0]["current_price"] == system.data.get_latest_data("600036.SH").price
    finally:
        stream.close()


def test_stream_heartbeat(system, server):
    system.settings.update({"SSE_HEARTBEAT_SECONDS": 1.0})
    stream = SseClient(server.port)
    try:
        stream.next_event()
        event, beat = stream.wait_for(lambda e, d: e == "heartbeat", timeout=3.0)
        assert beat["time"] == system.clock.now().isoformat(timespec="seconds")
    finally:
        stream.close()


def test_stream_count_is_bounded_and_slots_come_back(system):
    web = start_server(system, threads=6)  # leaves 2 stream slots
    streams = [SseClient(web.port), SseClient(web.port)]
    try:
        for s in streams:
            assert s.status == 200 and s.next_event()[0] == "positions"
        client = Client(web.port)
        error(client.get("/api/positions/stream"), 429, "TOO_MANY_STREAMS")
        assert ok(client.get("/api/status"))["mode"] == "simulation"  # the API still answers
        streams.pop().close()
        retry = threading.Event()
        for _ in range(50):  # the server notices the closed client within its check interval (0.5 s)
            third = SseClient(web.port)
            if third.status == 200:
                streams.append(third)
                break
            third.close()
            retry.wait(0.1)  # bounded: at most 5 s in all
        assert len(streams) == 2
    finally:
        for s in streams:
            s.close()
        web.stop()


# ---- security ---------------------------------------------------------------------------------------

MUTATIONS = [
    ("/api/actions/execute_buy", {"stock_code": "600036", "amount": 20000}),
    ("/api/actions/execute_sell", {"stock_code": "600036", "volume": 100}),
    ("/api/actions/execute_trading_signal", {"signal_id": 1}),
    ("/api/actions/cancel_order", {"order_id": "X1"}),
    ("/api/actions/emergency_stop", {}),
    ("/api/config/update", {"changes": {"ENABLE_AUTO_TRADING": True}}),
    ("/api/config/rollback", {}),
    ("/api/config/reset", {"key": "STOP_LOSS_RATIO"}),
    ("/api/stock_pool", {"stocks": ["600000"]}),
    ("/api/grid/sessions", {"stock_code": "600036"}),
    ("/api/grid/sessions/1/stop", {}),
]


def state_of(system):
    return (system.positions.all(), system.executor.list_orders(), system.executor.trade_records(),
            system.settings.snapshot(), system.settings.history(), system.pool.codes(), system.signals.pending())


@pytest.mark.parametrize("token, code", [(None, "AUTH_REQUIRED"), ("wrong-token-0123456789", "AUTH_INVALID"),
                                         (TOKEN[:-1], "AUTH_INVALID"), (TOKEN + "x", "AUTH_INVALID")])
def test_every_change_needs_the_token_and_nothing_changes_without_it(system, client, token, code):
    system.settings.update({"ENABLE_AUTO_TRADING": True})
    before = state_of(system)
    for path, body in MUTATIONS:
        error(client.post(path, body, token=token), 401, code)
    assert state_of(system) == before
    assert ok(client.get("/api/status", token=None))["mode"] == "simulation"  # reads on loopback need none


def test_requests_for_another_host_are_refused(system, server):
    client = Client(server.port, host_header="evil.example.com")
    before = state_of(system)
    for reply in (client.get("/api/status"), client.get("/"), client.post(*MUTATIONS[0]),
                  client.get("/api/status", host=f"evil.example.com:{server.port}"),
                  client.get("/api/status", host=f"127.0.0.1:{server.port + 1}")):
        error(reply, 403, "HOST_NOT_ALLOWED")
    assert state_of(system) == before
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", f"[::1]:{server.port}"):
        assert ok(client.get("/api/status", host=host))["mode"] == "simulation"


@pytest.mark.parametrize("public_host", ["192.0.2.10", "0.0.0.0"])
def test_reads_need_the_token_when_not_bound_to_loopback(system, public_host):
    """The app is told it listens on a LAN address (or all addresses); the test server itself still only
    listens on loopback, so no other machine can reach it."""
    from web_server import WebServer, create_app

    web = WebServer(system.ctx, "127.0.0.1", 0, app=create_app(system.ctx, host=public_host, port=0))
    web.start()
    try:
        host = f"192.0.2.10:{web.port}"
        client = Client(web.port, host_header=host)
        error(client.get("/api/status", token=None), 401, "AUTH_REQUIRED")
        error(client.get("/api/positions", token="wrong-token-0123456789"), 401, "AUTH_INVALID")
        error(client.get("/api/positions/stream", token=None), 401, "AUTH_REQUIRED")
        assert ok(client.get("/api/status"))["mode"] == "simulation"
        assert client.get("/static/app.js", token=None).status == 200  # the page loads and asks for the token
        if public_host == "192.0.2.10":
            error(client.get("/api/status", host=f"localhost:{web.port}"), 403, "HOST_NOT_ALLOWED")
    finally:
        web.stop()


def test_page_carries_the_token_only_for_a_loopback_browser(system):
    from web_server import create_app

    app = create_app(system.ctx, host="0.0.0.0", port=5000)
    test_client = app.test_client()
    local = test_client.get("/", headers={"Host": "x:5000"}, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    remote = test_client.get("/", headers={"Host": "x:5000"}, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert f'content="{TOKEN}"' in local.get_data(as_text=True)
    assert TOKEN not in remote.get_data(as_text=True) and 'name="api-token" content=""' in remote.get_data(as_text=True)
    assert local.headers["Cache-Control"] == "no-store"


def test_page_static_files_and_security_headers(client):
    page = client.get("/", token=None)
    assert page.status == 200 and f'content="{TOKEN}"' in page.text and "交易守护" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    for name in ("app.js", "common.js", "chart.js", "config_page.js", "style.css", "favicon.svg"):
        assert client.get(f"/static/{name}", token=None).status == 200
    error(client.get("/static/../web_server.py", token=None), 404)
    error(client.get("/static/nothing.js", token=None), 404)


def test_cors_only_for_configured_origins(client):
    allowed = client.get("/api/status", headers={"Origin": "http://localhost:5000"})
    assert allowed.headers.get("access-control-allow-origin") == "http://localhost:5000"
    denied = client.get("/api/status", headers={"Origin": "http://evil.example.com"})
    assert "access-control-allow-origin" not in denied.headers
    preflight = client.request("OPTIONS", "/api/actions/execute_buy", token=None, headers={
        "Origin": "http://localhost:5000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-token"})
    assert preflight.status == 200
    assert "x-api-token" in preflight.headers["access-control-allow-headers"].lower()
    evil = client.request("OPTIONS", "/api/actions/execute_buy", token=None, headers={
        "Origin": "http://evil.example.com", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in evil.headers


# ---- errors -----------------------------------------------------------------------------------------

def test_unknown_routes_and_methods_answer_json(client):
    error(client.get("/api/nothing"), 404, "HTTP_404")
    body = error(client.request("DELETE", "/api/positions"), 405, "HTTP_405")
    assert "DELETE" in body["message"]
    error(client.get("/api/actions/execute_buy"), 405, "HTTP_405")
    error(client.post("/api/status"), 405, "HTTP_405")


def test_an_internal_failure_is_a_json_500_without_trace(system, client, tmp_path):
    (tmp_path / "stock_pool.json").unlink()
    (tmp_path / "stock_pool.json").mkdir()  # the next atomic rename fails inside the server
    body = error(client.post("/api/stock_pool", {"stocks": ["600036"]}), 500, "INTERNAL_ERROR")
    assert body["message"] == "服务器内部错误，已记录日志"
    assert system.pool.codes() == POOL
    assert ok(client.get("/api/status"))["mode"] == "simulation"  # the server carries on


def test_server_stops_promptly_with_an_open_stream(system):
    web = start_server(system)
    stream = SseClient(web.port)
    stream.next_event()
    started = datetime.now()
    web.stop()
    assert (datetime.now() - started).total_seconds() < 3
    assert not web.is_alive()
    stream.close()
