"""The web UI in Debian's chromium (playwright, sync API) against the real server and the real daemon threads
on a fast synthetic replay: live positions, a buy through the form, a config change (invalid, valid,
rolled back) and the emergency stop. Screenshots go to test-artifacts/ (git-ignored)."""
import re
from pathlib import Path

import pytest

from browser_support import (TIMEOUT_MS, attach_grid, chromium, confirm, modal_text, open_tab, real_problems,
                             require_browser, serve, shot, start_workers)
from web_test_support import build_system


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """The real components with their real worker threads under the watchdog: the replay moves every 0.25 s."""
    require_browser()
    system = build_system(tmp_path_factory.mktemp("browser"), overrides={
        "REPLAY_TICKS_PER_DAY": 240, "REPLAY_SECONDS_PER_DAY": 60.0, "SSE_HEARTBEAT_SECONDS": 2.0})
    system.executor.buy_stock("600036.SH", amount=30000)
    attach_grid(system)
    start_workers(system)
    yield from serve(system)


@pytest.fixture(scope="module")
def browser(daemon):
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def page(browser):
    context, tab = open_tab(browser, accept_downloads=True)
    yield tab
    context.close()


def test_overview_shows_demo_data_mode_account_and_live_state(daemon, page):
    system, server = daemon
    page.goto(server.url + "/")
    page.wait_for_function("document.querySelector('#live-state').textContent.includes('实时')")
    assert page.locator("#demo-banner").is_visible()
    assert "演示行情" in page.inner_text("#source-badge")
    assert page.inner_text("#mode-badge") == "模拟交易"
    page.wait_for_function("document.querySelector('#acc-total').textContent !== '--'")
    total = float(page.inner_text("#acc-total").replace(",", ""))
    assert total == pytest.approx(system.executor.account().total_asset, abs=50)  # prices move meanwhile
    assert page.locator("#switch-ENABLE_AUTO_TRADING").is_checked() is False
    page.wait_for_function("document.querySelectorAll('#health-body tr').length >= 4")
    assert "运行中" in page.inner_text("#health-body")
    shot(page, "01_overview")
    assert real_problems(page) == []


def test_positions_update_live_from_the_replay(daemon, page):
    system, server = daemon
    page.goto(server.url + "/#positions")
    row = page.locator("tr[data-code='600036.SH']")
    row.wait_for()
    cells = row.locator("td")
    assert cells.nth(2).inner_text() == f"{system.positions.get('600036.SH').volume:,}"
    stamp = page.inner_text("#pos-version")
    assert stamp.startswith("更新于")
    page.wait_for_function(f"document.querySelector('#pos-version').textContent !== {stamp!r}")
    page.wait_for_function(
        "(() => { const c = document.querySelector(\"tr[data-code='600036.SH'] td:nth-child(6)\").textContent;"
        " window.__seen = window.__seen || new Set(); window.__seen.add(c); return window.__seen.size >= 3; })()",
        polling=100)
    assert cells.nth(10).inner_text() != "--"  # stop-loss trigger price
    row.locator("button", has_text="图表").click()
    page.locator("#chart canvas").first.wait_for()
    page.wait_for_function("window.QmtChart.current && QmtChart.current.lastBar() !== null"
                           " && QmtChart.current.levelPrices().cost > 0")
    assert page.evaluate("QmtChart.current.levelPrices().cost") == system.positions.get("600036.SH").cost_price
    shot(page, "02_positions_chart")
    assert real_problems(page) == []


def test_buy_through_the_form_shows_position_and_trade(daemon, page):
    system, server = daemon
    page.goto(server.url + "/#trade")
    form = page.locator("#buy-form")
    form.locator("input[name=stock_code]").fill("000001")
    form.locator("input[name=amount]").fill("abc")
    form.locator("button[type=submit]").click()
    page.wait_for_function("document.querySelector('#buy-msg').textContent.includes('买入金额')")
    assert "error" in page.get_attribute("#buy-msg", "class")
    assert not page.locator("#modal").is_visible()  # checked before any confirmation (issue 26 item 12)
    form.locator("input[name=amount]").fill("20000")
    form.locator("button[type=submit]").click()
    confirm(page)
    page.wait_for_function("document.querySelector('#buy-msg').textContent.includes('买入委托已提交')")
    held = system.positions.get("000001.SZ")
    assert held is not None and held.volume > 0
    shot(page, "03_buy_form")

    page.click("#tabs a[data-tab=positions]")
    page.locator("tr[data-code='000001.SZ']").wait_for()
    assert page.locator("tr[data-code='000001.SZ'] td").nth(2).inner_text() == f"{held.volume:,}"
    page.click("#tabs a[data-tab=trades]")
    page.locator("#trades-body tr", has_text="000001.SZ").wait_for()
    assert "买入" in page.locator("#trades-body tr", has_text="000001.SZ").inner_text()
    shot(page, "04_trades")
    with page.expect_download() as download:
        page.click("#trades-csv")
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert text.startswith("成交时间,股票代码") and "000001.SZ" in text
    assert real_problems(page) == []


def test_config_invalid_then_valid_then_rolled_back(daemon, page):
    system, server = daemon
    page.goto(server.url + "/#config")
    row = page.locator("#cfg-STOP_LOSS_RATIO")
    row.wait_for()
    # issue 26 item 13: a ratio reads as a percentage (the stored fraction stays what the input edits)
    assert "止损比例" in row.inner_text() and "范围：-50% ~ -0.1%；默认：-9.5%" in row.inner_text()
    assert row.locator(".pct-hint").inner_text() == "＝ -9.5%"
    field = row.locator("input.cfg-input")
    field.fill("0.5")
    assert row.locator(".pct-hint").inner_text() == "＝ 50%"
    row.locator("button", has_text="保存").click()
    assert "止损比例（STOP_LOSS_RATIO）：-9.5%（-0.095） → 50%（0.5）" in modal_text(page)  # old → new before saving
    confirm(page)
    row.locator(".field-error").wait_for(state="visible")
    assert "超出范围" in row.locator(".field-error").inner_text()
    assert system.settings.get("STOP_LOSS_RATIO") == -0.095
    shot(page, "05_config_invalid")

    field.fill("-0.08")
    row.locator("button", has_text="保存").click()
    confirm(page)
    page.wait_for_function("document.querySelector('#config-msg').textContent.includes('止损比例')"
                           " && document.querySelector('#config-msg').textContent.includes('已保存')")
    assert system.settings.get("STOP_LOSS_RATIO") == -0.08
    page.locator("#cfg-STOP_LOSS_RATIO .tag.overridden").wait_for()
    latest = page.locator("#config-history-body tr").first
    latest.wait_for()
    assert "STOP_LOSS_RATIO" in latest.inner_text() and "-9.5%\t-8%" in latest.inner_text()
    shot(page, "06_config_saved")

    latest.locator("button", has_text="回滚").click()
    confirm(page)
    page.wait_for_function("document.querySelector('#history-msg').textContent.includes('已回滚')")
    assert system.settings.get("STOP_LOSS_RATIO") == -0.095
    page.wait_for_function("document.querySelector('#cfg-STOP_LOSS_RATIO input').value === '-0.095'")
    shot(page, "07_config_rolled_back")
    switch = page.locator("#cfg-ENABLE_MA_FILTER")
    switch.locator("input.cfg-input").click()
    switch.locator("button", has_text="保存").click()
    assert re.search(r"（ENABLE_MA_FILTER）：(开 → 关|关 → 开)。", modal_text(page))  # no false → true
    page.click("#modal-cancel")
    assert real_problems(page) == []


def test_emergency_stop_halts_trading_and_cancels_orders(daemon, page):
    system, server = daemon
    page.goto(server.url + "/#overview")
    switch = page.locator("#switch-ENABLE_AUTO_TRADING")
    switch.wait_for()
    switch.click()
    confirm(page)
    page.wait_for_function("document.querySelector('#switch-msg').textContent.includes('自动交易已开启')")
    assert system.settings.get("ENABLE_AUTO_TRADING") is True
    quote = system.data.get_latest_data("600519.SH")
    resting = system.executor.buy_stock("600519.SH", volume=100, price=quote.limit_down)
    # auto-trading is on and the rules run on the replay: they may have orders of their own open too
    assert resting.client_id in {order.client_id for order in system.executor.open_orders()}

    page.click("#emergency-stop")
    confirm(page)
    page.wait_for_function("document.querySelector('#global-msg').textContent.includes('紧急停止已执行')")
    cancelled = re.search(r"撤销 (\d+) 笔", page.inner_text("#global-msg"))
    assert cancelled is not None and int(cancelled.group(1)) >= 1
    assert system.trading_state.state.value == "halted"
    assert system.executor.open_orders() == []
    shot(page, "08_emergency_stop")
    page.click("#tabs a[data-tab=orders]")
    page.locator("#orders-body tr", has_text="已撤").wait_for()
    shot(page, "09_orders")
    assert real_problems(page) == []


def test_other_pages_render_without_errors(daemon, page):
    system, server = daemon
    for tab, ready in (("signals", "#signals-pending-body tr"), ("orders", "#orders-body tr")):
        page.goto(f"{server.url}/#{tab}")
        page.locator(ready).first.wait_for()
        shot(page, f"10_{tab}")
    page.goto(server.url + "/#pool")
    page.wait_for_function("document.querySelector('#pool-text').value.includes('600036.SH')")
    page.fill("#pool-text", "600036\nbad\n000001")
    page.click("#pool-save")
    page.wait_for_function("document.querySelector('#pool-msg').textContent.includes('无效代码')")
    assert system.pool.codes() == ["600036.SH", "000001.SZ", "600519.SH", "300750.SZ", "688981.SH"]
    page.fill("#pool-text", "600036\nsz000001")
    page.click("#pool-save")
    page.wait_for_function("document.querySelector('#pool-msg').textContent.includes('股票池已保存')")
    assert system.pool.codes() == ["600036.SH", "000001.SZ"]
    assert real_problems(page) == []


def test_grid_session_started_and_stopped_from_the_page(daemon, page):
    system, server = daemon
    page.goto(server.url + "/#grid")
    page.locator("#grid-body td", has_text="没有网格会话").wait_for()
    page.wait_for_function("document.querySelector('#grid-switch-state').textContent.includes('网格交易开关：已关闭')")
    page.fill("#grid-form input[name=stock_code]", "600036")
    page.fill("#grid-form input[name=GRID_STEP_RATIO]", "0.03")
    page.fill("#grid-form input[name=GRID_BUY_AMOUNT]", "8000")
    page.click("#grid-form button[type=submit]")
    # the switch is off: the page says a session would not trade and offers to switch it on
    page.locator("#modal").wait_for(state="visible")
    assert "网格交易开关（ENABLE_GRID_TRADING）已关闭" in modal_text(page)
    page.click("#modal-cancel")
    page.wait_for_function("document.querySelector('#grid-msg').textContent.includes('已关闭')")
    assert system.ctx.grid.sessions() == [] and system.settings.get("ENABLE_GRID_TRADING") is False
    page.click("#grid-form button[type=submit]")
    confirm(page)  # switch on and start
    page.wait_for_function("document.querySelector('#grid-msg').textContent.includes('已启动网格会话')")
    assert system.settings.get("ENABLE_GRID_TRADING") is True
    system.ctx.grid.stop_session(system.ctx.grid.sessions()[0].id)
    page.fill("#grid-form input[name=GRID_STEP_RATIO]", "0.9")
    page.click("#grid-form button[type=submit]")
    page.wait_for_function("document.querySelector('#grid-msg').textContent.includes('GRID_STEP_RATIO')")
    assert "error" in page.get_attribute("#grid-msg", "class")
    page.fill("#grid-form input[name=GRID_STEP_RATIO]", "0.03")
    page.fill("#grid-form input[name=GRID_BUY_AMOUNT]", "8000")
    page.click("#grid-form button[type=submit]")
    page.wait_for_function("document.querySelector('#grid-msg').textContent.includes('已启动网格会话')"
                           " || document.querySelector('#grid-msg').className.includes('error')"
                           " && !document.querySelector('#grid-msg').textContent.includes('GRID_STEP_RATIO')")
    assert "已启动网格会话" in page.inner_text("#grid-msg")
    session = system.ctx.grid.sessions()[0]
    assert (session.stock_code, session.status, session.step_ratio, session.buy_amount) == (
        "600036.SH", "active", 0.03, 8000.0)
    assert page.locator("#grid-switch-state").inner_text().startswith("网格交易开关：已开启")
    row = page.locator(f"tr[data-grid='{session.id}']")
    row.wait_for()
    assert "运行中" in row.inner_text()
    shot(page, "11_grid")
    row.locator("button", has_text="停止").click()
    confirm(page)
    page.wait_for_function("document.querySelector('#grid-msg').textContent.includes('已停止')")
    assert system.ctx.grid.sessions()[0].status == "stopped"
    page.locator(f"tr[data-grid='{session.id}']", has_text="手动停止").wait_for()
    system.settings.update({"ENABLE_GRID_TRADING": False})
    assert real_problems(page) == []


def test_page_obeys_its_content_security_policy(daemon, browser):
    """Under its own CSP (no inline script or style, no eval) the page loads, streams and draws the chart."""
    system, server = daemon
    context = browser.new_context()
    try:
        tab = context.new_page()
        problems = []
        tab.on("pageerror", lambda exc: problems.append(str(exc)))
        tab.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        tab.goto(server.url + "/#positions")
        tab.locator("#live-state.on").wait_for(timeout=TIMEOUT_MS)
        tab.locator("tr[data-code='600036.SH'] button", has_text="图表").click(timeout=TIMEOUT_MS)
        tab.locator("#chart canvas").first.wait_for(timeout=TIMEOUT_MS)
        tab.goto(server.url + "/#config")
        tab.locator("#cfg-STOP_LOSS_RATIO").wait_for(timeout=TIMEOUT_MS)
    finally:
        context.close()
    assert problems == []
