"""Operator safety on the page (issue 14), in Debian's chromium against the real server and worker threads:
the trading state in the header with pause / confirmed resume, a switch fixed on the command line shown as
such, queued signals executed or dismissed by hand with their real-seconds age, filtered history, a halted
account letting through only a confirmed sell whose dialog says exactly what will be sold, and a buy
confirmation that only comes after the code was checked."""
from __future__ import annotations

import re

import pytest

from browser_support import (attach_grid, chromium, confirm, modal_text, open_tab, real_problems, require_browser,
                             serve, shot, start_workers)
from core.models import Rule, Signal
from web_test_support import build_system


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """Auto-trading switched on from the command line (the issue's repro), a held stock whose shares are
    available (bought the day before), the worker threads running."""
    require_browser()
    system = build_system(tmp_path_factory.mktemp("operator"), overrides={
        "REPLAY_TICKS_PER_DAY": 240, "REPLAY_SECONDS_PER_DAY": 60.0, "ENABLE_AUTO_TRADING": True,
        "ENABLE_MACD_BUY": False, "SIGNAL_MAX_AGE": 600})
    system.executor.buy_stock("600036.SH", volume=300)
    system.next_day()
    attach_grid(system)
    start_workers(system)
    yield from serve(system)


@pytest.fixture(scope="module")
def page(daemon):
    with chromium() as browser:
        _, tab = open_tab(browser)
        yield tab


def badge_is(page, text):
    page.wait_for_function(f"document.querySelector('#trading-state').textContent === '交易状态：{text}'")


def test_header_shows_the_state_and_a_command_line_switch_is_marked(daemon, page):
    system, server = daemon
    page.goto(server.url + "/")
    badge_is(page, "运行中")
    assert page.locator("#state-pause").is_visible() and not page.locator("#state-resume").is_visible()
    switch = page.locator("#switch-ENABLE_AUTO_TRADING")
    page.wait_for_function("document.querySelector('#switch-ENABLE_AUTO_TRADING').disabled")
    assert switch.is_checked()
    assert "本次运行由命令行指定" in page.get_attribute("label.switch.fixed", "title")
    page.goto(server.url + "/#config")
    row = page.locator("#cfg-ENABLE_AUTO_TRADING")
    row.locator(".tag.cmdline", has_text="本次运行由命令行指定").wait_for()
    assert row.locator("input.cfg-input").is_disabled()
    badge_is(page, "运行中")  # the header is on every page
    assert real_problems(page) == []


def test_paused_signals_wait_and_are_executed_or_dismissed_by_hand(daemon, page):
    system, server = daemon
    page.goto(server.url + "/#signals")
    page.click("#state-pause")
    assert "暂停后不再自动下单" in modal_text(page)
    confirm(page)
    badge_is(page, "已暂停自动交易")
    assert page.locator("#state-resume").is_visible() and not page.locator("#state-pause").is_visible()
    assert system.trading_state.state.value == "paused"

    queued = []
    for code in ("000001.SZ", "600519.SH"):
        quote = system.data.get_latest_data(code)
        queued.append(system.signals.add(Signal(code, Rule.MACD_BUY, 100, quote.price, quote.price,
                                                system.clock.now(), amount=20000.0)))
    page.goto(server.url + "/#signals")
    first = page.locator(f"tr[data-signal='{queued[0].id}']")
    first.wait_for()
    assert "待执行" in first.inner_text() and re.search(r"\d+ 秒 / 600 秒", first.inner_text())
    assert system.signals.get(queued[0].id).status.value == "pending", "paused: nothing executes by itself"

    first.locator("button", has_text="执行").click()
    assert "将按现价重新检查条件" in modal_text(page)
    confirm(page)
    page.wait_for_function("document.querySelector('#signals-msg').textContent.includes('已执行')")
    assert system.signals.get(queued[0].id).status.value == "executed"
    assert system.positions.get("000001.SZ").volume > 0

    page.locator(f"tr[data-signal='{queued[1].id}'] button[data-dismiss='snooze']").click()
    page.wait_for_function("document.querySelector('#signals-msg').textContent.includes('本轮持仓内不再提示')")
    page.select_option("#signals-filter select[name=status]", "dismissed")
    page.click("#signals-filter button[type=submit]")
    page.wait_for_function("document.querySelector('#signals-history-body').textContent.includes('已忽略')"
                           " && !document.querySelector('#signals-history-body').textContent.includes('已执行')")
    assert "600519.SH" in page.inner_text("#signals-history-body")
    shot(page, "20_signals_by_hand")
    assert real_problems(page) == []


def test_halted_only_a_confirmed_sell_goes_through_and_the_dialog_says_how_many(daemon, page):
    system, server = daemon
    page.goto(server.url + "/#positions")
    page.click("#emergency-stop")
    confirm(page)
    badge_is(page, "紧急停止")
    assert system.trading_state.state.value == "halted"
    row = page.locator("tr[data-code='600036.SH']")
    row.wait_for()
    row.locator("button[data-action='sell-half']").click()
    text = modal_text(page)
    assert "卖出 100 股（可用 300 股的一半）" in text and "紧急停止状态" in text
    confirm(page)
    page.wait_for_function("document.querySelector('#pos-msg').textContent.includes('卖出委托已提交')")
    assert system.positions.get("600036.SH").volume == 200

    page.goto(server.url + "/#trade")
    page.fill("#buy-form input[name=stock_code]", "600036")
    page.fill("#buy-form input[name=amount]", "20000")
    page.click("#buy-form button[type=submit]")
    page.wait_for_function("document.querySelector('#buy-msg').textContent.includes('已紧急停止')")
    assert not page.locator("#modal").is_visible(), "a refused buy is told before any confirmation"
    shot(page, "21_halted")

    page.click("#state-resume")
    assert "解除「紧急停止」" in modal_text(page)
    confirm(page)
    badge_is(page, "运行中")
    history = system.trading_state.history(3)
    assert [(h["new_state"], h["source"]) for h in history] == [
        ("running", "web"), ("halted", "web"), ("paused", "web")]
    assert real_problems(page) == []


def test_buy_confirmation_comes_after_the_code_is_checked(daemon, page):
    system, server = daemon
    page.goto(server.url + "/#trade")
    page.fill("#buy-form input[name=stock_code]", "999999")
    page.fill("#buy-form input[name=amount]", "20000")
    page.click("#buy-form button[type=submit]")
    page.wait_for_function("document.querySelector('#buy-msg').className.includes('error')")
    assert not page.locator("#modal").is_visible(), "no confirmation for a code that is not valid"
    quote = system.data.get_latest_data("000002.SZ") or system.data.get_latest_data("000001.SZ")
    page.fill("#buy-form input[name=stock_code]", quote.code)
    page.click("#buy-form button[type=submit]")
    page.locator("#modal").wait_for(state="visible")
    assert re.search(rf"买入 {re.escape(quote.code)}：[1-9][\d,]*00 股，委托价 [\d.]+ 元，约 [\d,.]+ 元（可买 [\d,]+ 股",
                     modal_text(page))
    held = system.positions.get(quote.code)
    before = held.volume if held else 0
    page.click("#modal-cancel")
    page.locator("#modal").wait_for(state="hidden")
    held = system.positions.get(quote.code)
    assert (held.volume if held else 0) == before
    assert real_problems(page) == []


def test_manual_orders_are_checked_before_the_dialog_and_show_what_can_be_traded(daemon, page):
    """Issue 26 item 12: 「买入 600036.SH：0 股」 was confirmed first and refused after; now the server's dry
    check (the real order's checks) runs first and the forms show 可买 / 可卖 when the code is entered."""
    system, server = daemon
    page.goto(server.url + "/#trade")
    page.fill("#buy-form input[name=stock_code]", "600036")
    page.dispatch_event("#buy-form input[name=stock_code]", "change")
    page.wait_for_function("/^可买 [\\d,]+ 股/.test(document.querySelector('#buy-capacity').textContent)")
    page.check("#buy-form input[name=buy_by][value=volume]")
    for volume, refusal in (("0", "委托数量必须在 1 到"), ("150", "100 股的整数倍")):
        page.fill("#buy-form input[name=volume]", volume)
        page.click("#buy-form button[type=submit]")
        page.wait_for_function(f"document.querySelector('#buy-msg').className.includes('error')"
                               f" && document.querySelector('#buy-msg').textContent.includes('{refusal}')")
        assert not page.locator("#modal").is_visible(), f"no confirmation for {volume} shares"
        assert "volume" not in page.inner_text("#buy-msg")  # the field's label only, not its API name
    available = system.positions.get("600036.SH").available
    page.fill("#sell-form input[name=stock_code]", "600036.SH")
    page.dispatch_event("#sell-form input[name=stock_code]", "change")
    page.wait_for_function(f"document.querySelector('#sell-capacity').textContent === '可卖 {available:,} 股'")
    page.fill("#sell-form input[name=volume]", str(available + 100))
    page.click("#sell-form button[type=submit]")
    page.wait_for_function("document.querySelector('#sell-msg').textContent.includes('可卖数量不足')")
    assert not page.locator("#modal").is_visible()
    shot(page, "22_checked_before_confirm")
    assert system.executor.open_orders() == []
    assert real_problems(page) == []


def test_grid_form_proposes_the_smallest_amount_and_shows_the_switch(daemon, page):
    system, server = daemon
    system.settings.update({"GRID_BUY_AMOUNT": 500})  # buys no lot of 600036 (as 5,000 元 for a 51 元 stock)
    page.goto(server.url + "/#grid")
    page.wait_for_function("document.querySelector('#grid-switch-state').textContent.includes('已关闭')")
    page.fill("#grid-form input[name=stock_code]", "600036")
    page.dispatch_event("#grid-form input[name=stock_code]", "change")
    page.wait_for_function("document.querySelector('#grid-proposal').textContent.includes('已建议每格')")
    proposed = float(page.input_value("#grid-form input[name=GRID_BUY_AMOUNT]"))
    price = float(re.search(r"中心价 ([\d.]+)", page.inner_text("#grid-proposal")).group(1))
    assert proposed == float(-(-round(price * 100, 2) // 1))
    # issue 26 item 13: another code drops the previous code's proposed amount and hint
    before = page.inner_text("#grid-proposal")
    page.fill("#grid-form input[name=stock_code]", "000001")
    page.dispatch_event("#grid-form input[name=stock_code]", "change")
    page.wait_for_function("(t) => { const p = document.querySelector('#grid-proposal');"
                           " return !p.hidden && p.textContent && p.textContent !== t; }", arg=before)
    price = float(re.search(r"中心价 ([\d.]+)", page.inner_text("#grid-proposal")).group(1))
    assert page.input_value("#grid-form input[name=GRID_BUY_AMOUNT]") == f"{-(-round(price * 100, 2) // 1):g}"
    page.fill("#grid-form input[name=stock_code]", "")
    page.dispatch_event("#grid-form input[name=stock_code]", "change")
    page.wait_for_function("document.querySelector('#grid-proposal').hidden")
    assert real_problems(page) == []
