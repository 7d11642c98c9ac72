"""Shared set-up for the browser tests: Debian's chromium driven by playwright (sync API), pages that record
script and console errors, screenshots under test-artifacts/ (git-ignored), and the real daemon threads
(monitor, strategy runner, data and sync workers, optional grid) started the way the daemon starts them."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from daemon.daemon_workers import DataWorker, IntervalWorker
from grid_trading import GridManager
from core.models import Quote
from web_test_support import System, start_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-sync"]
TIMEOUT_MS = 10_000


def require_browser():
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} 不存在：浏览器测试需要 Debian chromium（apt-get install chromium fonts-wqy-microhei）"
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(reason + "；REQUIRE_BROWSER=1 时不允许跳过")
    pytest.skip(reason)


@contextmanager
def chromium():
    """Headless Debian chromium (never a downloaded one) for a with-block; test-artifacts/ exists for screenshots."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def plain_page(browser, **options):
    """A 1400×900 zh-CN page under the real CSP, with the suite's default timeout."""
    page = browser.new_page(viewport={"width": 1400, "height": 900}, locale="zh-CN", **options)
    page.set_default_timeout(TIMEOUT_MS)
    return page


def open_tab(browser, width=1400, height=900, **options):
    """(context, tab): a zh-CN tab whose script errors and console errors are kept in `tab.problems`. The page's
    CSP forbids eval, which playwright's wait_for_function needs: the driving context bypasses it (a separate
    test checks each page under its real CSP)."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN", bypass_csp=True,
                                  **options)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.problems = []
    tab.on("pageerror", lambda exc: tab.problems.append(f"页面脚本错误：{exc}"))
    tab.on("console", lambda msg: tab.problems.append(f"控制台 {msg.type}：{msg.text}") if msg.type == "error" else None)
    return context, tab


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def real_problems(page):
    """Script errors and console errors (CSP violations included); the browser's own note about an API
    answer with status 4xx is expected where a test provokes one."""
    return [p for p in page.problems if "Failed to load resource" not in p]


def modal_text(page) -> str:
    """The confirmation dialog's text, once the dialog is shown (its text is written before it opens)."""
    page.locator("#modal").wait_for(state="visible")
    return page.inner_text("#modal-text")


def confirm(page):
    page.locator("#modal").wait_for(state="visible")
    page.click("#modal-ok")
    page.locator("#modal").wait_for(state="hidden")


def attach_grid(system: System) -> GridManager:
    """A grid manager on the system's components, hooked into the monitor and the runner as daemon/composition.py
    does."""
    grid = GridManager(system.dbs[1], system.settings, system.clock, system.positions, system.data.hub,
                       system.signals, system.executor)
    grid.attach(system.monitor, system.runner)
    system.ctx.grid = grid
    return grid


def start_workers(system: System) -> None:
    """The daemon's worker threads (data, monitor, runner, position sync) under the system's watchdog."""
    for worker in (DataWorker(system.data, system.watchlist), system.monitor, system.runner,
                   IntervalWorker("sync", system.positions.sync, system.settings, "POSITION_SYNC_INTERVAL")):
        system.watchdog.add(worker)
    system.watchdog.start()


def serve(system: System):
    """For a fixture's `yield from`: the system served by the real waitress server, yielded as (system, server);
    afterwards the server stops and the system closes."""
    server = start_server(system)
    yield system, server
    server.stop()
    system.close()


def publish_tick(system: System, code: str, price: float) -> None:
    """One replayed quote of `code` at `price`, a minute after the last one, on the system's quote hub."""
    system.clock.advance(60)
    last = system.data.hub.last_seen(code)
    system.data.hub.publish(Quote(code=code, price=price, prev_close=last.prev_close, time=system.clock.now(),
                                  source="replay"))
