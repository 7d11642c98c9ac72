"""Operator safety over the real waitress server (issue 14): a halt lets through only sells the operator
confirmed, a signal executed by hand is re-validated and passes a pause, a command-line key is refused from
the web with its reason, signals age in real seconds, can be dismissed (and snoozed) and filtered."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from core.models import Rule, Signal, SignalStatus
from test_web_api import queue_add_signal
from web_test_support import Client, build_system, error, ok, start_server


class Wall:
    def __init__(self):
        self.now = datetime(2026, 11, 28, 22, 0, 0)

    def __call__(self) -> datetime:
        return self.now


def test_halted_only_a_confirmed_manual_sell_goes_through(system, client):
    code = "600519.SH"
    ok(client.post("/api/actions/execute_buy", {"stock_code": code, "volume": 300}))
    system.next_day()
    ok(client.post("/api/actions/emergency_stop"))
    body = error(client.post("/api/actions/execute_sell", {"stock_code": code, "ratio": 0.5}), 409, "TRADING_HALTED")
    assert "只允许经确认的手动卖出" in body["message"]
    error(client.post("/api/actions/execute_sell", {"stock_code": code, "volume": 100, "confirm": "yes"}), 400)
    sold = ok(client.post("/api/actions/execute_sell", {"stock_code": code, "ratio": 0.5, "confirm": True}))
    assert (sold["side"], sold["volume"], sold["status"]) == ("sell", 100, "filled")
    error(client.post("/api/actions/execute_buy", {"stock_code": code, "volume": 100}), 409, "TRADING_HALTED")
    assert system.positions.get(code).volume == 200


def test_a_signal_executed_by_hand_passes_a_pause_but_a_buy_never_passes_a_halt(system, client):
    signal = queue_add_signal(system)
    ok(client.post("/api/actions/emergency_stop"))
    body = error(client.post("/api/actions/execute_trading_signal", {"signal_id": signal.id}), 409,
                 "SIGNAL_REJECTED")
    assert "已紧急停止" in body["message"] and body["signal"]["status_label"] == "已拒绝"
    assert signal.level_index not in system.positions.get("600036.SH").used_add_levels, "the level is given back"

    ok(client.post("/api/actions/resume", {"confirm": True}))
    ok(client.post("/api/actions/pause"))
    for _ in range(200):
        system.step()
        pending = system.signals.pending()
        if pending:
            break
    else:
        raise AssertionError("the add level was not detected again")
    done = ok(client.post("/api/actions/execute_trading_signal", {"signal_id": pending[0].id}))
    assert done["status"] == "executed" and done["status_label"] == "已执行"
    assert ok(client.get("/api/trading-state"))["state"] == "paused", "executing by hand does not resume"


def test_a_key_set_on_the_command_line_is_marked_and_a_web_change_to_it_is_refused(system, client):
    params = {p["key"]: p for p in ok(client.get("/api/config"))["params"]}
    assert params["DATA_SOURCE"]["run_override"] is True
    assert params["DATA_SOURCE"]["run_override_note"] == "本次运行由命令行指定"
    assert params["ENABLE_AUTO_TRADING"]["run_override"] is False
    body = error(client.post("/api/config/update", {"changes": {"REPLAY_TICKS_PER_DAY": 20}}), 409, "RUN_OVERRIDE")
    assert "REPLAY_TICKS_PER_DAY 本次运行由命令行指定（8）" in body["message"]
    assert system.settings.get("REPLAY_TICKS_PER_DAY") == 8 and system.settings.history() == []


def test_signals_age_in_real_seconds_and_a_gone_condition_expires_them(system, client, monkeypatch):
    wall = Wall()
    monkeypatch.setattr(system.signals, "_wall_clock", wall)
    signal = queue_add_signal(system)  # seen at wall.now
    system.settings.update({"SIGNAL_MAX_AGE": 60})
    market_before = system.clock.now()
    system.runner.run_once()
    assert system.signals.get(signal.id).status is SignalStatus.PENDING
    wall.now += timedelta(seconds=59)
    system.runner.run_once()
    assert system.signals.get(signal.id).status is SignalStatus.PENDING
    wall.now += timedelta(seconds=2)
    system.runner.run_once()
    expired = system.signals.get(signal.id)
    assert expired.status is SignalStatus.EXPIRED and "60 秒（真实时间）" in expired.reason
    assert system.clock.now() == market_before

    quote = system.data.get_latest_data("600036.SH")
    gone = system.signals.add(Signal("600036.SH", Rule.STOP_LOSS, 100, quote.price * 0.5, quote.price,
                                     system.clock.now(), episode="x"))
    system.runner.run_once()  # auto-trading off: not executed, but no longer actionable
    assert system.signals.get(gone.id).status is SignalStatus.EXPIRED
    assert system.signals.get(gone.id).reason.startswith("条件已不成立：600036.SH 止损条件在现价")
    body = error(client.post("/api/actions/execute_trading_signal", {"signal_id": gone.id}), 409,
                 "SIGNAL_NOT_PENDING")
    assert body["message"] == f"信号 #{gone.id} 当前状态为「已过期」，不能执行"


def test_dismiss_snooze_and_history_filters_over_the_api(system, client):
    signal = queue_add_signal(system)
    dismissed = ok(client.post("/api/actions/dismiss_signal", {"signal_id": signal.id, "snooze": True}))
    assert (dismissed["status"], dismissed["status_label"]) == ("dismissed", "已忽略")
    assert dismissed["reason"] == "人工忽略（网页），本轮持仓内不再提示"
    for _ in range(20):
        system.step()
    assert system.signals.pending() == [], "snoozed for the episode"
    error(client.post("/api/actions/dismiss_signal", {"signal_id": signal.id}), 409, "SIGNAL_NOT_PENDING")
    error(client.post("/api/actions/dismiss_signal", {"signal_id": 99999}), 404, "SIGNAL_NOT_FOUND")
    error(client.post("/api/actions/dismiss_signal", {"signal_id": signal.id, "snooze": 1}), 400)
    assert [s["id"] for s in ok(client.get("/api/signals/history?status=dismissed"))] == [signal.id]
    assert ok(client.get("/api/signals/history?status=executed")) == []
    assert [s["id"] for s in ok(client.get("/api/signals/history?rule=add_position&stock_code=600036"))] == [
        signal.id]
    assert ok(client.get("/api/signals/history?stock_code=000001.SZ")) == []
    error(client.get("/api/signals/history?status=gone"), 400)


def test_random_buy_skips_stocks_whose_lot_costs_more_than_the_amount(system, client):
    import market_rules

    slip = 1 + system.settings.get("ORDER_PRICE_SLIPPAGE")
    prices = {code: market_rules.round_price(code, system.data.get_latest_data(code).price * slip)
              for code in system.pool.codes()}
    lots = {code: price * (200 if code.startswith("688") else 100) for code, price in prices.items()}
    amount = sorted(lots.values())[1] + 1  # exactly two pool stocks have a lot within the amount
    cheap = sorted(code for code, cost in lots.items() if cost <= amount)
    data = ok(client.post("/api/actions/execute_buy", {"from_pool": True, "count": 5, "amount": amount}))
    assert sorted(r["stock_code"] for r in data["results"]) == cheap and data["placed"] == 2
    assert sorted(s["stock_code"] for s in data["skipped"]) == sorted(set(prices) - set(cheap))
    assert all("超过每只金额" in s["message"] for s in data["skipped"])
    body = error(client.post("/api/actions/execute_buy", {"from_pool": True, "count": 1, "amount": 1}), 409,
                 "POOL_NOTHING_AFFORDABLE")
    assert "1 元能买到一手" in body["message"]


def test_health_is_green_only_after_the_first_quotes(tmp_path):
    from web_test_support import build_system as build

    system = build(tmp_path / "fresh")
    try:
        web = start_server(system)
        client = Client(web.port)
        try:
            system.watchdog.start()  # the probe thread beats
            assert ok(client.get("/api/health"))["ready"] is True  # build_system stepped the replay once
            system.data.first_quote_at = None  # as before the source's first quotes
            waiting = ok(client.get("/api/health"))
            assert (waiting["ready"], waiting["all_alive"], waiting["threads_alive"]) == (False, False, True)
            assert waiting["data"]["message"] == "行情来源尚未送来第一笔行情"
            system.step()
            ready = ok(client.get("/api/health"))
            assert (ready["ready"], ready["all_alive"]) == (True, True)
            assert ready["data"]["first_quote_time"] == system.clock.now().isoformat(timespec="seconds")
        finally:
            client.close()
            web.stop()
    finally:
        system.close()


def test_a_code_outside_the_pool_is_quoted_and_bought_on_demand_in_replay(tmp_path):
    from daemon_support import DAILY

    if not DAILY.is_dir():
        pytest.skip(f"real daily bars not found at {DAILY}")
    outside = "600900.SH"
    assert (DAILY / f"{outside}.csv").exists()
    system = build_system(tmp_path, overrides={"REPLAY_DATA_DIR": str(DAILY)}, pool=["600036.SH"])
    web = start_server(system)
    client = Client(web.port)
    try:
        assert outside not in system.data.watchlist()
        quote = ok(client.get(f"/api/data/realtime/{outside}"))
        assert quote["source"] == "replay" and quote["time"] == system.clock.now().isoformat(timespec="seconds")
        order = ok(client.post("/api/actions/execute_buy", {"stock_code": outside, "amount": 20000}))
        assert (order["stock_code"], order["status"]) == (outside, "filled")
        missing = error(client.get("/api/data/realtime/601988"), 404, "NO_QUOTE")
        assert missing["message"] == f"回放行情（daily）中没有 601988.SH 的日线数据，无法提供它的行情"
        refused = error(client.post("/api/actions/execute_buy", {"stock_code": "601988", "amount": 20000}), 404,
                        "NO_QUOTE")
        assert "没有 601988.SH 的日线数据" in refused["message"]
    finally:
        client.close()
        web.stop()
        system.close()


def test_grid_form_proposal_and_the_switch_state(system, client):
    from grid_trading import GridManager

    grid = GridManager(system.dbs[1], system.settings, system.clock, system.positions, system.data.hub,
                       system.signals, system.executor)
    grid.attach(system.monitor, system.runner)
    system.ctx.grid = grid
    code = "600519.SH"
    quote = system.data.get_latest_data(code)
    system.settings.update({"GRID_BUY_AMOUNT": 500})  # below one lot of this stock, as 5,000 is for a 51 元 one
    assert quote.price * 100 > 500
    proposal = ok(client.get(f"/api/grid/proposal/{code}"))
    minimum = float(-(-round(quote.price * 100, 2) // 1))
    assert (proposal["configured_amount"], proposal["min_amount"], proposal["proposed_amount"],
            proposal["enough"], proposal["grid_enabled"]) == (500.0, minimum, minimum, False, False)
    assert proposal["message"] == (f"默认每格金额 500 元在中心价 {quote.price:g} 买不到一手（100 股），"
                                   f"已建议每格 {minimum:g} 元")
    system.executor.buy_stock(code, volume=100)
    system.settings.update({"ENABLE_GRID_TRADING": True})
    refused = error(client.post("/api/grid/sessions", {"stock_code": code}), 409, "GRID_AMOUNT_TOO_SMALL")
    assert refused["message"].endswith(f"买不到一手（100 股），每格至少需要 {minimum:.0f} 元")
    started = ok(client.post("/api/grid/sessions", {"stock_code": code, "GRID_BUY_AMOUNT": minimum}))
    assert started["round_trip_pnl"] == 0.0 and started["pnl_explain"]["total"] == "网格盈亏 = 来回收益 + 浮动盈亏 − 费用"
