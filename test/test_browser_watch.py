"""Issue 17 in the browser: a watch task created in the 「盯盘」 page fires when a replayed price crosses its level;
the alert arrives over the live stream as a toast (and a browser notification, permission granted), not one
tick before; the task table then shows it done with its alert."""
import pytest

from browser_support import chromium, plain_page, publish_tick, require_browser, serve, shot
from web_test_support import build_system

CODE = "600036.SH"

# Stands in for the browser's Notification API with the permission granted, and records what was shown.
FAKE_NOTIFICATIONS = """
window.__notes = [];
window.Notification = function (title, options) { window.__notes.push(title + "|" + (options && options.body)); };
window.Notification.permission = "granted";
window.Notification.requestPermission = function () { return Promise.resolve("granted"); };
"""


@pytest.fixture
def system(tmp_path):
    require_browser()
    system = build_system(tmp_path, overrides={"ENABLE_MACD_BUY": False}, pool=[CODE])
    yield from serve(system)


def publish(system, price: float) -> None:
    """One replayed tick of the stock at `price`, then one watch pass."""
    publish_tick(system, CODE, price)
    system.watch.run_once()


def test_watch_page_task_toast_when_the_price_crosses(system):
    system, server = system
    last = system.data.hub.last_seen(CODE)
    level = round(last.price * 1.03, 2)
    with chromium() as browser:
        page = plain_page(browser)
        page.add_init_script(FAKE_NOTIFICATIONS)
        page.goto(server.url + "/#watch")
        page.locator("#live-state.on").wait_for()  # the stream is connected before the price moves
        form = page.locator("#watch-form")
        form.locator("input[name=stock_code]").fill("600036")
        form.locator("select[name=type]").select_option("price_above")
        form.locator("input[name=value]").fill(f"{level:.2f}")
        form.locator("input[name=sessions_only]").uncheck()
        form.locator("#watch-submit").click()
        page.locator("#watch-msg.ok").wait_for()
        [task] = system.watch_store.all()
        row = page.locator(f"tr[data-task='{task.id}']")
        row.wait_for()
        assert "运行中" in row.inner_text() and f"价格≥ {level:g}" in row.inner_text()

        publish(system, round(level - 0.01, 2))  # one tick before: nothing
        page.wait_for_timeout(700)  # longer than one stream slice (0.5 s): an alert would have arrived
        assert page.locator(".toast").count() == 0
        publish(system, level)
        toast = page.locator(".toast")
        toast.wait_for()
        assert toast.inner_text().startswith(f"盯盘提醒：{CODE} 价格≥ {level:g}：现价 {level:g}")
        assert page.evaluate("window.__notes") == [f"盯盘提醒|{toast.inner_text()}"]
        page.locator(f"tr[data-task='{task.id}'] td.status-done").wait_for()
        assert page.locator("#watch-alerts-body tr").count() == 1
        shot(page, "17_watch_toast")


def test_a_positions_row_opens_that_stocks_parameters_and_rule_state(system):
    system, server = system
    system.executor.buy_stock(CODE, volume=100)
    with chromium() as browser:
        page = plain_page(browser)
        page.goto(server.url + "/#positions")
        page.locator(f"tr[data-code='{CODE}'] button[data-action=stock-params]").click()
        page.wait_for_function("location.hash === '#watch'")
        page.locator("#stock-detail table").wait_for()
        assert page.input_value("#stock-form input[name=code]") == CODE
        assert "止损" in page.inner_text("#stock-detail")
