"""Issue 13 in the browser (Debian chromium, real waitress server): the live broker's link state and its latest
anomaly on the overview's connection line, and a previous-day order marked 「需人工核对」 in the orders list."""
from dataclasses import replace
from datetime import datetime

import pytest

from core.models import BrokerUnavailable, OrderStatus, Rule
from browser_support import CHROMIUM, LAUNCH_ARGS, TIMEOUT_MS, require_browser
from test_easy_qmt_trader import counterpart, env, loopback_only  # noqa: F401 (fixtures)
from test_qmt_bad_day import live_stack, status
from web_server import WebServer
from web_test_support import build_system


def test_link_state_anomaly_and_orders_to_check_are_shown(env, counterpart, tmp_path):
    require_browser()
    counterpart.next_day()
    day1 = live_stack(env)
    sell = day1.executor.sell_stock("000001.SZ", 600, price=10.3, rule=Rule.TAKE_PROFIT)
    day1.relay.wait(lambda: status(day1, sell.client_id) is OrderStatus.OPEN)
    day1.trader.close()
    counterpart.fill(counterpart.order_by_remark(sell.client_id)[0].order_id, 400, 10.3)  # while the daemon is down
    counterpart.start_new_day()
    env.clock.set(datetime(2024, 1, 3, 9, 30))
    day2 = live_stack(env, session_start=700)
    counterpart.empty_position_answers = 1
    with pytest.raises(BrokerUnavailable):
        day2.trader.query_positions()

    system = build_system(tmp_path / "web")
    ctx = replace(system.ctx, broker=day2.trader, executor=day2.executor, positions=day2.positions, mode="live")
    server = WebServer(ctx, "127.0.0.1", 0)
    server.start()
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
            page = browser.new_context(locale="zh-CN", bypass_csp=True).new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.url + "/")
            page.wait_for_function("document.querySelector('#conn-info').textContent.includes('链路正常')")
            line = page.inner_text("#conn-info")
            assert "券商异常 1 次" in line and "miniQMT 返回空持仓" in line
            page.goto(server.url + "/#orders")
            row = page.locator(f"#orders-body tr[data-order='{sell.client_id}']")
            row.wait_for()
            assert "需人工核对" in row.inner_text() and "持仓变化表明成交 400 股" in row.inner_text()
            browser.close()
    finally:
        server.stop(2.0)
        system.close()
