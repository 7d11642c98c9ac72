"""Issue 26 items 11–13 on the page, in Debian's chromium against the real server (one shared daemon, no worker
threads: nothing here needs the market to move): every worker thread has a Chinese name on the 概览 page, the
positions table shows 全部卖出 whole at 1280 px, and the 分时 chart's price range includes the limit lines."""
from __future__ import annotations

import pytest

from browser_support import chromium, open_tab, real_problems, require_browser, serve, shot
from web_test_support import build_system

# Every worker thread name the daemon starts (Worker.name and IntervalWorker names across the modules).
THREAD_NAMES = ("data", "monitor", "strategy", "sync", "orders", "housekeeping", "web", "watchdog", "broker_sync",
                "watch", "storage", "order_files", "notifier", "jobs", "notify_watch", "protection", "heartbeat")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    require_browser()
    system = build_system(tmp_path_factory.mktemp("issue26"), overrides={"REPLAY_TICKS_PER_DAY": 240})
    system.executor.buy_stock("600036.SH", volume=300)
    system.next_day()
    yield from serve(system)


@pytest.fixture(scope="module")
def page(daemon):
    with chromium() as browser:
        _, tab = open_tab(browser, width=1280, height=800)
        yield tab


def test_every_worker_thread_has_a_chinese_name(daemon, page):
    system, server = daemon
    page.goto(server.url + "/")
    page.wait_for_function("!!(window.Qmt && window.Qmt.threadLabel)")
    labels = page.evaluate("names => names.map(n => window.Qmt.threadLabel(n))", list(THREAD_NAMES))
    english = [(name, label) for name, label in zip(THREAD_NAMES, labels) if label.isascii()]
    assert english == []
    assert dict(zip(THREAD_NAMES, labels))["protection"] == "持仓保护"


def test_sell_all_is_whole_at_1280_px(daemon, page):
    system, server = daemon
    page.goto(server.url + "/#positions")
    button = page.locator("tr[data-code='600036.SH'] button[data-action='sell-all']")
    button.wait_for()
    box = button.bounding_box()
    wrap = page.evaluate("() => document.querySelector('#positions-table').closest('.table-wrap, .panel')"
                         ".getBoundingClientRect().right")
    assert box["x"] + box["width"] <= min(wrap, 1280), (box, wrap)
    shot(page, "issue26_positions_1280")
    assert real_problems(page) == []
