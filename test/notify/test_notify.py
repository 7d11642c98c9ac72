"""The notifier on real parts: a real SQLite outbox, real apprise deliveries to a loopback webhook and a
loopback SMTP server, kill -9 of a process holding a created message, bursts, duplicates, retries and the
alarm of a failing channel."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from core.events import EventBus, EventKind
from logger import SecretFilter
from market.clock import ReplayClock
from notify.channels import Outcome
from notify.store import COALESCED, FAILED, PENDING, SENT, SUPPRESSED, NotifyStore
from notify.worker import Notifier
from persistence.storage import Database
from notify_support import HangingReceiver, SmtpReceiver, WebhookReceiver, subject, text_of
from trading_support import make_settings

ROOT = Path(__file__).resolve().parents[2]
NO_WAIT = {"NOTIFY_COALESCE_SECONDS": 0.0, "NOTIFY_COALESCE_MAX_SECONDS": 0.0}  # no burst window unless a test sets one


class FakeTime:
    def __init__(self, start: float = 1_000_000.0):
        self.value = start

    def __call__(self) -> float:
        return self.value


class Recorder:
    """A sender standing in for apprise where only counting matters; `fail` makes every attempt fail."""

    def __init__(self, fail: bool = False):
        self.sent: list[tuple[str, str, str]] = []
        self.fail = fail

    def __call__(self, url, title, body, timeout):
        if self.fail:
            return Outcome(False, "连接被拒绝")
        self.sent.append((url, title, body))
        return Outcome(True)


def make(tmp_path, sender=None, now=None, **overrides):
    clock = ReplayClock(datetime(2024, 3, 5, 10, 31, 5))
    bus = EventBus(clock)
    settings = make_settings(tmp_path, **{**NO_WAIT, **overrides})
    store = NotifyStore(Database(tmp_path / "notify.db"), now=now or FakeTime())
    names = {"600036.SH": "招商银行"}
    kwargs = {"sender": sender} if sender is not None else {}
    notifier = Notifier(store, bus, settings, names=lambda code: names.get(code, ""),
                        now=now or store._now, **kwargs)
    return bus, store, notifier


def drain(notifier: Notifier, limit: int = 1000) -> int:
    attempts = 0
    notifier.intake()
    while attempts < limit and notifier.deliver_one():
        attempts += 1
    return attempts


def test_fill_reaches_a_loopback_webhook_as_json_with_name_and_market_time(tmp_path):
    receiver = WebhookReceiver()
    try:
        bus, store, notifier = make(tmp_path, now=None)
        channel = notifier.add_channel("webhook", receiver.url, ["fill"])
        bus.emit(EventKind.FILL, "600036.SH 止损卖出 1000 股 @ 10.5", stock_code="600036.SH", realized_pnl=-812.5)
        bus.emit(EventKind.QUOTES_STALE, "行情停滞")  # not subscribed by this channel
        assert drain(notifier) == 1
        body = receiver.wait_for(1, 5)[0]
        assert body["title"] == "miniQMT【成交】600036.SH"
        assert body["message"] == ("600036.SH 止损卖出 1000 股 @ 10.5（招商银行）\n时间：2024-03-05 10:31:05\n"
                                   "本笔已实现盈亏：-812.50 元")
        rows = store.messages()
        assert [(r["status"], r["attempts"], r["channel_id"]) for r in rows] == [(SENT, 1, channel.id)]
    finally:
        receiver.close()


def test_email_reaches_a_loopback_smtp_server(tmp_path):
    smtp = SmtpReceiver()
    try:
        bus, store, notifier = make(tmp_path, now=None)
        notifier.add_channel("邮件", smtp.url(), ["stop_loss_executed"])
        bus.emit(EventKind.STOP_LOSS_EXECUTED, "600036.SH 止损成交 1000 股 @ 10.5", stock_code="600036.SH")
        assert drain(notifier) == 1
        mail_from, rcpt, message = smtp.wait_for(1, 10)[0]
        assert (mail_from, rcpt) == ("bot@example.com", ["owner@example.com"])
        assert subject(message) == "miniQMT【止损已执行】600036.SH"
        assert "600036.SH 止损成交 1000 股 @ 10.5（招商银行）" in text_of(message)
        assert store.messages()[0]["status"] == SENT
    finally:
        smtp.close()


def test_500_fill_burst_gives_at_most_rate_limit_messages_carrying_every_fill(tmp_path):
    sender, now = Recorder(), FakeTime()
    bus, store, notifier = make(tmp_path, sender, now, NOTIFY_RATE_LIMIT=5, NOTIFY_RATE_WINDOW_SECONDS=60.0,
                                NOTIFY_DIGEST_MAX_CHARS=100_000)
    notifier.add_channel("a", "json://127.0.0.1:1/a", [])
    notifier.add_channel("b", "json://127.0.0.1:1/b", ["fill"])
    for wave in range(10):  # 500 fills arriving in 10 waves over 50 s, delivery runs between waves
        for i in range(50):
            bus.emit(EventKind.FILL, f"600036.SH 卖出 {100 + wave * 50 + i} 股 @ 10", stock_code="600036.SH")
        drain(notifier)
        now.value += 5
    for url in ("json://127.0.0.1:1/a", "json://127.0.0.1:1/b"):
        assert len([s for s in sender.sent if s[0] == url]) <= 5
    now.value += 61  # the next window: the rest goes out as one digest per channel
    drain(notifier)
    for channel in store.channels():
        sent = [r for r in store.messages(2000, channel.id) if r["status"] == SENT]
        assert sum(r["item_count"] for r in sent) == 500
        assert len(sent) <= 6
        assert all(r["status"] in (SENT, COALESCED) for r in store.messages(2000, channel.id))
    for url in ("json://127.0.0.1:1/a", "json://127.0.0.1:1/b"):  # every fill's line reached each channel
        lines = [line for s in sender.sent if s[0] == url for line in s[2].splitlines()]
        assert sorted(int(line.split("卖出 ")[1].split(" 股")[0]) for line in lines) == list(range(100, 600))


def test_duplicate_alarm_is_suppressed_but_facts_are_not(tmp_path):
    sender = Recorder()
    bus, store, notifier = make(tmp_path, sender, NOTIFY_DIGEST_THRESHOLD=10)
    notifier.add_channel("a", "json://127.0.0.1:1/a", [])
    bus.emit(EventKind.QUOTES_STALE, "行情超过 30 秒未更新")
    bus.emit(EventKind.QUOTES_STALE, "行情超过 30 秒未更新")
    bus.emit(EventKind.FILL, "600036.SH 卖出 100 股 @ 10", stock_code="600036.SH")
    bus.emit(EventKind.FILL, "600036.SH 卖出 100 股 @ 10", stock_code="600036.SH")
    notifier.intake()
    statuses = [(r["kind"], r["status"]) for r in reversed(store.messages())]
    assert statuses == [("quotes_stale", PENDING), ("quotes_stale", SUPPRESSED), ("fill", PENDING), ("fill", PENDING)]


def test_failed_sends_back_off_then_fail_and_raise_one_alarm_on_the_other_channel(tmp_path):
    now = FakeTime()
    failing = Recorder(fail=True)
    good = Recorder()

    def sender(url, title, body, timeout):
        return (failing if "bad" in url else good)(url, title, body, timeout)

    bus, store, notifier = make(tmp_path, sender, now, NOTIFY_MAX_ATTEMPTS=3, NOTIFY_RETRY_BASE_SECONDS=5.0,
                                NOTIFY_CHANNEL_ALARM_FAILURES=2, NOTIFY_DIGEST_THRESHOLD=50)
    bad = notifier.add_channel("坏渠道", "json://127.0.0.1:1/bad", ["quotes_stale", "broker_disconnected"])
    notifier.add_channel("好渠道", "json://127.0.0.1:1/good", ["alarm"])
    bus.emit(EventKind.QUOTES_STALE, "行情停滞")
    bus.emit(EventKind.BROKER_DISCONNECTED, "券商断线")
    assert drain(notifier) == 1  # the first fails; the second waits behind it (delivery order is kept)
    rows = {r["kind"]: r for r in store.messages()}
    assert (rows["quotes_stale"]["attempts"], rows["quotes_stale"]["status"]) == (1, PENDING)
    assert rows["quotes_stale"]["last_error"] == "连接被拒绝"
    assert rows["broker_disconnected"]["attempts"] == 0
    now.value += 4.9
    assert drain(notifier) == 0  # still backing off
    now.value += 0.2
    assert drain(notifier) == 1  # second failure in a row: the channel's alarm is raised
    assert store.channel(bad.id).alarm.startswith("通知渠道「坏渠道」连续 2 次发送失败")
    assert drain(notifier) == 1  # the alarm, on the good channel, at once
    now.value += 10.0
    assert drain(notifier) == 2  # the first fails for good, then the second's first attempt
    now.value += 5.0
    assert drain(notifier) == 1
    now.value += 10.0
    assert drain(notifier) == 1  # no second alarm
    assert {r["kind"]: (r["status"], r["attempts"]) for r in store.messages(50, bad.id)} == {
        "quotes_stale": (FAILED, 3), "broker_disconnected": (FAILED, 3)}
    assert len(good.sent) == 1
    assert good.sent[0][2].startswith("通知渠道「坏渠道」连续 2 次发送失败：连接被拒绝")
    assert store.channel(bad.id).alarm.startswith("通知渠道「坏渠道」连续 2 次发送失败")


def test_test_message_and_delete_and_masked_view(tmp_path):
    sender = Recorder()
    secret = SecretFilter()
    bus = EventBus(ReplayClock(datetime(2024, 3, 5, 9, 0)))
    store = NotifyStore(Database(tmp_path / "notify.db"))
    notifier = Notifier(store, bus, make_settings(tmp_path), secret_filter=secret, sender=sender)
    channel = notifier.add_channel("钉钉", "dingtalk://abcdef0123456789token/", ["fill"])
    view = notifier.channels_view()[0]
    assert view["url"] == "dingtalk://******"
    record = logging.LogRecord("x", logging.INFO, "", 0, "sending to dingtalk://abcdef0123456789token/", (), None)
    secret.filter(record)
    assert "abcdef0123456789token" not in record.getMessage()
    message_id = notifier.send_test(channel.id)
    assert drain(notifier) == 1
    assert sender.sent[0][1] == "miniQMT【测试消息】"
    assert store.messages()[0]["id"] == message_id and store.messages()[0]["status"] == SENT
    notifier.delete_channel(channel.id)
    assert notifier.channels_view() == []


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from datetime import datetime
    from core.events import EventBus, EventKind
    from market.clock import ReplayClock
    from notify.store import NotifyStore
    from notify.worker import Notifier
    from persistence.storage import Database
    from persistence.config_store import ConfigStore
    bus = EventBus(ReplayClock(datetime(2024, 3, 5, 10, 0)))
    settings = ConfigStore(Database({settings!r}))
    notifier = Notifier(NotifyStore(Database({db!r})), bus, settings)
    bus.emit(EventKind.STOP_LOSS_EXECUTED, "600036.SH 止损成交 1000 股 @ 10.5", stock_code="600036.SH")
    notifier.intake()
    print("created", flush=True)
    time.sleep(600)  # killed here, before any delivery
""")


def test_message_created_before_kill_9_is_delivered_after_restart_exactly_once(tmp_path):
    receiver = WebhookReceiver()
    try:
        db_path, settings_path = tmp_path / "notify.db", tmp_path / "settings.db"
        first = NotifyStore(Database(db_path))
        first.add_channel("hook", receiver.url, [])
        child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), db=str(db_path),
                                                                     settings=str(settings_path))],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "created"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert [r["status"] for r in first.messages()] == [PENDING]
        assert receiver.bodies == []
        for _restart in range(2):  # two restarts: the second must not send it again
            bus = EventBus(ReplayClock(datetime(2024, 3, 5, 10, 5)))
            notifier = Notifier(NotifyStore(Database(db_path)), bus, make_settings(tmp_path, **NO_WAIT))
            drain(notifier)
        assert len(receiver.wait_for(1, 5)) == 1
        assert receiver.bodies[0]["title"] == "miniQMT【止损已执行】600036.SH"
        assert [r["status"] for r in first.messages()] == [SENT]
    finally:
        receiver.close()


def test_hanging_receiver_times_out_and_is_retried(tmp_path):
    hang = HangingReceiver()
    try:
        bus, store, notifier = make(tmp_path, now=None, NOTIFY_SEND_TIMEOUT=1.0)
        notifier.add_channel("hang", hang.url, [])
        bus.emit(EventKind.DAEMON_START, "守护进程已启动")
        assert drain(notifier) == 1
        row = store.messages()[0]
        assert (row["status"], row["attempts"]) == (PENDING, 1)
        assert row["last_error"] == "发送超时（1 秒）"
    finally:
        hang.close()


@pytest.mark.parametrize("url", ["nonsense", "http//x", "unknownscheme://x"])
def test_invalid_urls_are_refused(tmp_path, url):
    from core.models import TradingError

    _, _, notifier = make(tmp_path, Recorder())
    with pytest.raises(TradingError) as info:
        notifier.add_channel("x", url, [])
    assert info.value.code == "INVALID_CHANNEL_URL"


def test_a_hanging_receiver_never_delays_an_order(tmp_path):
    """The notifier thread is stuck in a 30 s send while 30 orders fill and publish their fills: each order
    still takes what an order takes (well under a second), and nothing was delivered meanwhile."""
    import time

    from trading_support import QuoteBoard, build_core
    from daemon.workers import Watchdog

    hang = HangingReceiver()
    clock = ReplayClock(datetime(2024, 3, 5, 10, 0))
    settings = make_settings(tmp_path, **NO_WAIT, NOTIFY_SEND_TIMEOUT=30.0, MAX_ORDERS_PER_DAY=1000)
    bus = EventBus(clock)
    store = NotifyStore(Database(tmp_path / "notify.db"))
    notifier = Notifier(store, bus, settings)
    notifier.add_channel("hang", hang.url, [])
    quotes = QuoteBoard(clock)
    quotes.set("600036.SH", 10.0, 10.0)
    core = build_core(tmp_path / "sim_trading.db", settings, clock, quotes)
    core.executor.add_fill_listener(lambda fill, rule: bus.emit(EventKind.FILL, f"{fill.stock_code} {fill.volume} 股",
                                                                stock_code=fill.stock_code))
    watchdog = Watchdog(settings)
    watchdog.add(notifier)
    watchdog.start()
    try:
        bus.emit(EventKind.DAEMON_START, "守护进程已启动")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not store.messages():  # the first message is in its hung send
            time.sleep(0.01)
        latencies = []
        for _ in range(30):
            start = time.perf_counter()
            core.executor.buy_stock("600036.SH", volume=100)
            latencies.append(time.perf_counter() - start)
            clock.advance(1)
        assert core.positions.get("600036.SH").volume == 3000
        assert max(latencies) < 1.0
        assert [(r["status"], r["attempts"]) for r in store.messages()] == [(PENDING, 0)]
    finally:
        watchdog.stop(0.5)
        hang.close()


def test_sell_fill_message_carries_its_realised_pnl_from_the_trade_records(tmp_path):
    from daemon.composition import _publish_fill
    from notify.composition import sell_facts
    from trading_support import QuoteBoard, build_core

    clock = ReplayClock(datetime(2024, 3, 4, 10, 0))
    settings = make_settings(tmp_path, **NO_WAIT)
    bus = EventBus(clock)
    quotes = QuoteBoard(clock)
    core = build_core(tmp_path / "sim_trading.db", settings, clock, quotes)
    core.executor.add_fill_listener(lambda fill, rule: _publish_fill(bus, fill, rule))
    sender = Recorder()
    store = NotifyStore(Database(tmp_path / "notify.db"))
    notifier = Notifier(store, bus, settings, sender=sender, facts=lambda e: sell_facts(core.executor, e))
    notifier.add_channel("a", "json://127.0.0.1:1/a", ["fill"])
    quotes.set("600036.SH", 10.0, 10.0)
    core.executor.buy_stock("600036.SH", volume=1000)
    clock.set(datetime(2024, 3, 5, 10, 0))
    core.executor.roll_day(clock.today())
    quotes.set("600036.SH", 11.0, 10.0)
    core.executor.sell_stock("600036.SH", 400)
    core.executor.sell_stock("600036.SH", 600)
    drain(notifier)
    records = core.executor.trade_records(start=clock.today(), end=clock.today())
    pnl = [r["realized_pnl"] for r in records]
    bodies = [s[2] for s in sender.sent]
    assert bodies == [  # one digest of the three fills, each with its date and its full text (the P&L lines)
        "2024-03-04 10:00:00 【成交】 600036.SH 手动买入 1000 股 @ 10\n"
        "2024-03-05 10:00:00 【成交】 600036.SH 手动卖出 400 股 @ 11\n"
        f"    本笔已实现盈亏：{pnl[0]:+.2f} 元（本轮持仓累计 {pnl[0]:+.2f} 元）\n"
        "2024-03-05 10:00:00 【成交】 600036.SH 手动卖出 600 股 @ 11\n"
        f"    本笔已实现盈亏：{pnl[1]:+.2f} 元（本轮持仓累计 {pnl[0] + pnl[1]:+.2f} 元，已清仓）"]
    sell_rows = [r for r in store.messages() if r["kind"] == "fill" and "卖出" in r["body"]]
    assert [r["body"].splitlines()[2] for r in reversed(sell_rows)] == [
        f"本笔已实现盈亏：{pnl[0]:+.2f} 元（本轮持仓累计 {pnl[0]:+.2f} 元）",
        f"本笔已实现盈亏：{pnl[1]:+.2f} 元（本轮持仓累计 {pnl[0] + pnl[1]:+.2f} 元，已清仓）"]
    assert pnl[0] > 0 and pnl[1] > 0


def test_finished_messages_older_than_the_log_retention_are_pruned(tmp_path):
    now = FakeTime()
    bus, store, notifier = make(tmp_path, Recorder(), now, LOG_RETENTION_DAYS=2, NOTIFY_DIGEST_THRESHOLD=10)
    channel = notifier.add_channel("a", "json://127.0.0.1:1/a", [])
    bus.emit(EventKind.DAEMON_START, "守护进程已启动")
    notifier.run_once()
    now.value += 86400
    store.enqueue(channel.id, "alarm", "t", "pending one")
    now.value += 2 * 86400
    assert store.prune(2 * 86400) == 1
    assert [r["status"] for r in store.messages()] == [PENDING]
