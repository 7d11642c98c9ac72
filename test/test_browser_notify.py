"""The 「通知」 page in Debian's chromium against the real server: add a webhook channel through the form (its
URL shown masked), 「发送测试消息」 reaches the loopback receiver and the outcome appears in the message list,
「立即运行」 of the post-close job lists a report that opens in the page (under the page's real CSP)."""
from __future__ import annotations

from jobs.account_snapshots import AccountSnapshots
from jobs.daily import AlarmLog, DailyJobs, database_files
from jobs.runner import JobRunner
from jobs.store import JobStore
from notify.store import NotifyStore
from notify.worker import Notifier
from notify_support import WebhookReceiver
from persistence.storage import Database
from browser_support import CHROMIUM, LAUNCH_ARGS, require_browser
from web_test_support import build_system, start_server


def test_notify_page_channel_test_message_jobs_and_report(tmp_path):
    require_browser()
    from playwright.sync_api import sync_playwright

    receiver = WebhookReceiver()
    system = build_system(tmp_path)
    data_dir = tmp_path / "data"
    notify_db, jobs_db = Database(data_dir / "notify.db"), Database(data_dir / "jobs.db")
    system.dbs += [notify_db, jobs_db]
    notifier = Notifier(NotifyStore(notify_db), system.events, system.settings)
    store = JobStore(jobs_db)
    daily = DailyJobs(system.clock, system.settings, system.executor, system.positions, system.broker, system.signals,
                      AccountSnapshots(system.dbs[1], system.clock), store, system.events, AlarmLog(system.events, store),
                      system.ctx.trigger_prices, data_dir, tmp_path / "logs", lambda: database_files(data_dir))
    system.ctx.notifier = notifier
    system.ctx.jobs = JobRunner(daily.jobs(), store, system.clock, system.settings, system.events)
    system.ctx.reports_dir = daily.reports_dir
    system.watchdog.add(notifier)
    system.watchdog.start()
    server = start_server(system)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900}, locale="zh-CN")
            problems = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.goto(f"{server.url}/#notify")
            page.wait_for_selector("#notify-form")
            assert page.locator("#tab-notify").is_visible() and not page.locator("#tab-overview").is_visible()
            page.fill("#notify-form input[name=name]", "本机钩子")
            page.fill("#notify-form input[name=url]", receiver.url)
            page.click("#notify-form button[type=submit]")
            row = page.locator("#notify-channels tr[data-channel]")
            row.wait_for()
            assert "本机钩子" in row.inner_text() and "json://127.0.0.1/******" in row.inner_text()
            assert str(receiver.url.split(":")[2]) not in page.content()
            row.locator("button", has_text="发送测试消息").click()
            assert receiver.wait_for(1, 15)[0]["title"] == "miniQMT【测试消息】"
            page.locator('#notify-messages tr[data-status="sent"]').first.wait_for(timeout=15000)

            jobs = page.locator("#jobs-body tr[data-job]")
            jobs.first.wait_for()
            assert jobs.count() == 3
            page.locator('#jobs-body tr[data-job="post_close"] button').click()
            page.locator("#jobs-msg.ok").wait_for()
            link = page.locator("#reports-list a.report-link")
            link.first.wait_for()
            link.first.click()
            frame = page.frame_locator("#report-frame")
            frame.locator("h1").wait_for()
            assert frame.locator("h1").inner_text().startswith("每日报告")
            page.screenshot(path=str(tmp_path / "notify.png"), full_page=True)
            assert problems == []
            browser.close()
    finally:
        server.stop()
        system.close()
        receiver.close()
