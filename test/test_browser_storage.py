"""A full disk while running shows 「磁盘已满」 in the page (issue 21 item 7), in Debian's chromium against the
real server: the storage guard halts automatic trading and the page's state banner names the cause."""
from __future__ import annotations

from core.events import EventBus
from persistence.health import StorageGuard
from browser_support import CHROMIUM, LAUNCH_ARGS, TIMEOUT_MS, require_browser
from web_test_support import build_system, start_server


def test_a_full_disk_shows_in_the_page_and_halts(tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    system = build_system(tmp_path)
    free = [10**10]
    guard = StorageGuard(system.trading_state, EventBus(system.clock), lambda: system.dbs, tmp_path,
                         lambda: 200e6, disk_free=lambda _path: free[0])
    server = start_server(system)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.url + "/#overview")
            page.locator("#mode-badge", has_text="模拟").wait_for()
            assert page.locator("#state-banner").is_hidden()
            free[0] = 50 * 10**6
            guard.check()
            assert system.trading_state.snapshot()["state"] == "halted"
            page.reload()
            banner = page.locator("#state-banner")
            banner.wait_for(state="visible")
            assert "磁盘已满" in banner.inner_text() and "紧急停止" in banner.inner_text()
            browser.close()
    finally:
        server.stop(2)
        system.close()
