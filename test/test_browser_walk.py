"""The issue-14 walk-through as a user does it, scripted end to end: real `python main.py` processes and
Debian's chromium. Demo market → buy → emergency stop while auto-trading is set on the command line → a
restart stays halted → resume → a restart of the same account on replayed real bars is refused → a new data
dir → a signal queued with auto-trading off → executed by hand 30 real seconds later at --replay-speed 20."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from daemon_support import DAILY, PROJECT, SHARED_DATA, daily_codes, free_port, start_ready, wait_until
from browser_support import CHROMIUM, LAUNCH_ARGS, TIMEOUT_MS, confirm, require_browser

REACTION_SECONDS = 30  # a person's reaction time, in real seconds, whatever the replay speed


@pytest.mark.slow
def test_the_operator_walk_through(tmp_path):
    require_browser()
    if not DAILY.is_dir():
        pytest.skip(f"real daily bars not found at {SHARED_DATA}")
    from playwright.sync_api import sync_playwright

    demo_root, replay_root = tmp_path / "demo", tmp_path / "replay"
    auto_on = {"ENABLE_AUTO_TRADING": True}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        page = browser.new_context(locale="zh-CN", bypass_csp=True).new_page()
        page.set_default_timeout(TIMEOUT_MS)

        # 1. demo market, auto-trading switched on from the command line: buy, then emergency stop
        daemon = start_ready(demo_root, [], auto_on, name="demo")
        try:
            page.goto(f"http://127.0.0.1:{daemon.port}/#trade")
            page.fill("#buy-form input[name=stock_code]", "600036")
            page.fill("#buy-form input[name=amount]", "20000")
            page.click("#buy-form button[type=submit]")
            confirm(page)
            page.wait_for_function("document.querySelector('#buy-msg').textContent.includes('买入委托已提交')")
            page.goto(f"http://127.0.0.1:{daemon.port}/#overview")
            page.wait_for_function("document.querySelector('#switch-ENABLE_AUTO_TRADING').disabled")
            page.click("#emergency-stop")
            confirm(page)
            page.wait_for_function("document.querySelector('#trading-state').textContent === '交易状态：紧急停止'")
            status = daemon.api("/api/status")
            assert status["switches"]["ENABLE_AUTO_TRADING"] is True  # the switch stays; the state is above it
            assert status["trading_state"]["state"] == "halted" and "ENABLE_AUTO_TRADING" in status["run_overrides"]
            assert page.is_checked("#switch-ENABLE_AUTO_TRADING")
        finally:
            assert daemon.terminate(10)[0] == 0

        # 2. a restart stays halted; resume needs its confirmation
        daemon = start_ready(demo_root, [], auto_on, name="demo-again")
        try:
            page.goto(f"http://127.0.0.1:{daemon.port}/")
            page.wait_for_function("document.querySelector('#trading-state').textContent === '交易状态：紧急停止'")
            page.click("#state-resume")
            confirm(page)
            page.wait_for_function("document.querySelector('#trading-state').textContent === '交易状态：运行中'")
            assert daemon.api("/api/trading-state")["history"][0]["source"] == "web"
        finally:
            assert daemon.terminate(10)[0] == 0

        # 3. the same account on replayed real bars is refused, naming both markets and the ways out
        refused = subprocess.run(
            [sys.executable, str(PROJECT / "main.py"), "--data-dir", str(demo_root / "data"), "--log-dir",
             str(demo_root / "logs"), "--port", str(free_port()), "--replay-data", str(DAILY), "--set",
             "ENABLE_AUTO_TRADING=true"], cwd=demo_root, capture_output=True, text=True, encoding="utf-8",
            timeout=60, stdin=subprocess.DEVNULL)
        assert refused.returncode == 4
        assert "演示行情" in refused.stderr and "回放行情" in refused.stderr and "--reset-sim-account" in refused.stderr

        # 4. a new data dir on the replay at 20 s per market day, auto-trading off: a signal waits for a person
        replay_root.mkdir()
        pool = replay_root / "pool.json"
        pool.write_text(json.dumps(daily_codes()), encoding="utf-8")
        daemon = start_ready(replay_root, ["--replay-data", str(DAILY), "--replay-speed", "20",
                                           "--stock-pool", str(pool)],
                             {"ENABLE_MACD_BUY": True, "ENABLE_MA_FILTER": False}, name="replay")
        try:
            signal = wait_until(lambda: next(iter(daemon.api("/api/signals/pending")), None), 90,
                                "a MACD entry queued with auto-trading off", daemon)
            queued_at = time.monotonic()
            page.goto(f"http://127.0.0.1:{daemon.port}/#signals")
            row = page.locator(f"tr[data-signal='{signal['id']}']")
            row.wait_for()
            assert "待执行" in row.inner_text()
            page.wait_for_timeout(max(0.0, REACTION_SECONDS - (time.monotonic() - queued_at)) * 1000)
            market_days = daemon.api("/api/status")["clock"]["time"]
            page.goto(f"http://127.0.0.1:{daemon.port}/#signals")
            row = page.locator(f"tr[data-signal='{signal['id']}']")
            row.wait_for()
            row.locator("button", has_text="执行").click()
            confirm(page)
            page.wait_for_function("document.querySelector('#signals-msg').textContent.includes('已执行')"
                                   " || document.querySelector('#signals-msg').className.includes('error')")
            assert "已执行" in page.inner_text("#signals-msg"), page.inner_text("#signals-msg")
            assert time.monotonic() - queued_at >= REACTION_SECONDS
            done = [s for s in daemon.api("/api/signals/history") if s["id"] == signal["id"]][0]
            assert done["status_label"] == "已执行" and done["order_id"]
            assert signal["created_at"][:10] < market_days[:10], "market days passed meanwhile"
            trades = daemon.api("/api/trade-records")
            assert trades[0]["stock_code"] == signal["stock_code"] and trades[0]["side"] == "buy"
        finally:
            daemon.stop_quietly()
        browser.close()
