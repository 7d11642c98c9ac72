"""Issue 34 (and issue 26 item 6): alarms are never buried under a burst of fills, bursts are coalesced, digests
keep every message whole and in market-time order, a stop-loss is one message per channel, emails keep their
line breaks, and delivery order survives an outage. Planner rules as tables; the burst end to end on the real
notifier thread, a real SQLite outbox and loopback webhooks."""
from __future__ import annotations

import time
from datetime import datetime

import pytest

import notify.rules as notify_rules
from core.events import EventBus, EventKind
from market.clock import ReplayClock
from core.models import Fill, Rule, Side
from notify.rules import Coalescing, DigestItem, Pending, Plan, plan_alarms, plan_routine
from notify.store import COALESCED, SENT, NotifyStore
from notify_support import SmtpReceiver, WebhookReceiver, text_of
from notify.worker import Notifier
from persistence.storage import Database
from test_notify import NO_WAIT, FakeTime, Recorder, drain, make
from trading_support import make_settings
from daemon.workers import Watchdog

RULES = Coalescing(quiet_seconds=3.0, max_hold_seconds=15.0, digest_threshold=2, digest_max_chars=1000)


def rows(*specs) -> list[Pending]:
    """(id, created_at[, next_attempt_at, attempts, kind, size])"""
    out = []
    for spec in specs:
        row_id, created, *rest = spec
        due, attempts, kind, size = (rest + [created, 0, "fill", 100][len(rest):])[:4]
        out.append(Pending(row_id, kind, created, due, attempts, size))
    return out


@pytest.mark.parametrize("pending, now, allowance, expected", [
    ([], 0.0, 10, Plan()),
    (rows((1, 100.0), (2, 101.0)), 102.0, 10, Plan(ready_at=104.0)),  # the burst may go on: wait for quiet
    (rows((1, 100.0), (2, 101.0)), 104.0, 10, Plan((1, 2))),  # quiet for 3 s: one digest
    (rows((1, 100.0)), 103.0, 10, Plan((1,))),  # a lone message goes as itself
    (rows(*[(i, 100.0 + i) for i in range(1, 20)]), 116.0, 10, Plan(tuple(range(1, 9)))),  # max hold; 8 × 116 fit 1000
    (rows((1, 100.0), (2, 101.0)), 104.0, 0, Plan(ready_at=104.0)),  # no routine budget left
    (rows((1, 100.0, 130.0, 2), (2, 101.0)), 110.0, 10, Plan(ready_at=130.0)),  # order kept behind a retry
    (rows((1, 100.0, 110.0, 2), (2, 109.5)), 110.0, 10, Plan((1, 2))),  # a retry does not wait for quiet
    (rows((5, 100.0, 100.0, 1, "digest"), (3, 101.0)), 110.0, 10, Plan((5,))),  # a failed digest first, alone
    (rows((1, 100.0), (9, 100.5, 100.5, 0, "digest"), (3, 101.0)), 110.0, 10, Plan((1,))),
])
def test_routine_plan(pending, now, allowance, expected):
    assert plan_routine(pending, now, allowance, RULES) == expected


@pytest.mark.parametrize("pending, now, allowance, expected", [
    (rows((1, 100.0, 100.0, 0, "thread_alarm"), (2, 100.1, 100.1, 0, "quotes_stale")), 100.2, 30, Plan((1,))),
    (rows((1, 100.0, 105.0, 1, "thread_alarm"), (2, 100.1, 100.1, 0, "quotes_stale")), 100.2, 30,
     Plan(ready_at=105.0)),
    (rows((1, 100.0, 100.0, 0, "thread_alarm"), (2, 100.1, 100.1, 0, "quotes_stale")), 100.2, 1, Plan((1, 2))),
    (rows((1, 100.0, 100.0, 0, "thread_alarm")), 100.2, 0, Plan(ready_at=100.2)),
])
def test_alarm_plan_is_immediate_and_only_an_alarm_storm_is_folded(pending, now, allowance, expected):
    assert plan_alarms(pending, now, allowance, 1000) == expected


def test_alarm_classes_by_name_and_protection_reaches_every_channel():
    assert notify_rules.ALARM_KINDS == {
        "thread_alarm", "thread_restarted", "broker_disconnected", "link_unhealthy", "quotes_stale",
        "storage_failure", "circuit_breaker", "daily_loss_limit", "trading_state", "daemon_stop",
        "protection_failure", "protection_restored", "alarm"}
    assert notify_rules.EVERY_CHANNEL_KINDS == {"protection_failure", "protection_restored"}
    assert not notify_rules.is_alarm("fill") and not notify_rules.is_alarm("daemon_start")


def test_digest_is_in_market_time_order_with_dates_full_text_and_names_the_alarm_it_holds():
    items = [DigestItem("fill", "miniQMT【成交】600036.SH", "600036.SH 卖出 100 股 @ 10（招商银行）\n时间：2024-03-05 10:00:02\n"
                        "本笔已实现盈亏：+12.00 元", "2024-03-05 10:00:02"),
             DigestItem("thread_alarm", "miniQMT【线程告警】", "线程 data 无响应\n时间：2024-03-05 10:00:01",
                        "2024-03-05 10:00:01"),
             DigestItem("fill", "miniQMT【成交】000001.SZ", "000001.SZ 买入 200 股 @ 9\n时间：2024-03-04 14:59:59", "")]
    title, body = notify_rules.digest_text(items)
    assert title == "miniQMT【汇总·含告警】3 条通知（含告警：线程告警）"
    assert body == ("2024-03-04 14:59:59 【成交】 000001.SZ 买入 200 股 @ 9\n"
                    "2024-03-05 10:00:01 【线程告警】 线程 data 无响应\n"
                    "2024-03-05 10:00:02 【成交】 600036.SH 卖出 100 股 @ 10（招商银行）\n"
                    "    本笔已实现盈亏：+12.00 元")
    assert notify_rules.digest_text(items[:1])[0] == "miniQMT【汇总】1 条通知"


def test_alarm_storm_beyond_its_budget_is_one_digest_titled_with_the_alarms(tmp_path):
    sender, now = Recorder(), FakeTime()
    bus, store, notifier = make(tmp_path, sender, now, NOTIFY_ALARM_RATE_LIMIT=2, NOTIFY_RATE_LIMIT=1)
    notifier.add_channel("a", "json://127.0.0.1:1/a", [])
    bus.emit(EventKind.THREAD_ALARM, "线程 data 无响应")
    assert drain(notifier) == 1  # on its own, at once
    bus.emit(EventKind.BROKER_DISCONNECTED, "券商断线")
    bus.emit(EventKind.QUOTES_STALE, "行情停滞")
    assert drain(notifier) == 1  # two alarms, one slot left in the alarm budget → one digest naming them
    assert [s[1] for s in sender.sent] == ["miniQMT【线程告警】", "miniQMT【汇总·含告警】2 条通知（含告警：券商断线、行情停滞）"]
    bus.emit(EventKind.FILL, "600036.SH 卖出 100 股 @ 10", stock_code="600036.SH")
    assert drain(notifier) == 1  # the routine budget is its own: the spent alarm budget does not hold a fill
    bus.emit(EventKind.DAEMON_STOP, "守护进程停止")
    assert drain(notifier) == 0  # both budgets spent for this window
    now.value += 61
    assert drain(notifier) == 1 and sender.sent[-1][1] == "miniQMT【守护进程停止】"


def test_stop_loss_is_one_message_per_channel_and_fill_text_says_the_action_once(tmp_path):
    from daemon.composition import _publish_fill

    sender = Recorder()
    bus, store, notifier = make(tmp_path, sender, NOTIFY_DIGEST_THRESHOLD=50)
    for name, events in (("fills", ["fill"]), ("stops", ["stop_loss_executed"]), ("all", []), ("none", ["alarm"])):
        notifier.add_channel(name, f"json://127.0.0.1:1/{name}", events)
    fill = Fill("F1", "O1", "C1", "600036.SH", Side.SELL, 10.5, 1000, datetime(2024, 3, 5, 10, 31, 5))
    _publish_fill(bus, fill, Rule.STOP_LOSS)
    drain(notifier)
    assert sorted(s[0].rsplit("/", 1)[1] for s in sender.sent) == ["all", "fills", "stops"]
    assert {s[1] for s in sender.sent} == {"miniQMT【止损已执行】600036.SH"}
    assert {s[2] for s in sender.sent} == {"600036.SH 止损卖出 1000 股 @ 10.5（招商银行）\n时间：2024-03-05 10:31:05"}
    sender.sent.clear()
    _publish_fill(bus, Fill("F2", "O2", "C2", "600036.SH", Side.BUY, 10.0, 200, fill.time), Rule.WATCH_BUY)
    bus.emit(EventKind.STOP_LOSS_EXECUTED, "600036.SH 止损成交 300 股 @ 9.9", stock_code="600036.SH", volume=300,
             price=9.9)  # published on its own (no stop-loss fill before it): still sent
    drain(notifier)
    assert sorted((s[0].rsplit("/", 1)[1], s[2].splitlines()[0]) for s in sender.sent) == [
        ("all", "600036.SH 止损成交 300 股 @ 9.9（招商银行）"), ("all", "600036.SH 盯盘买入 200 股 @ 10（招商银行）"),
        ("fills", "600036.SH 盯盘买入 200 股 @ 10（招商银行）"), ("stops", "600036.SH 止损成交 300 股 @ 9.9（招商银行）")]


def test_delivery_order_is_kept_after_an_outage(tmp_path):
    now = FakeTime()
    sender = Recorder(fail=True)
    bus, store, notifier = make(tmp_path, sender, now, NOTIFY_RETRY_BASE_SECONDS=5.0, NOTIFY_MAX_ATTEMPTS=20,
                                NOTIFY_DIGEST_THRESHOLD=50, NOTIFY_CHANNEL_ALARM_FAILURES=100)
    notifier.add_channel("a", "json://127.0.0.1:1/a", [])
    for index in range(4):  # each arrives while the channel is down; each later one has had fewer attempts
        bus.emit(EventKind.FILL, f"600036.SH 买入 {100 * (index + 1)} 股 @ 10", stock_code="600036.SH")
        drain(notifier)
        now.value += 20
    sender.fail = False
    for _second in range(200):  # back-offs end at different moments: the later messages' first
        now.value += 1
        drain(notifier)
    assert [s[2].splitlines()[0] for s in sender.sent] == [f"600036.SH 买入 {100 * (i + 1)} 股 @ 10（招商银行）"
                                                          for i in range(4)]


def test_a_long_digest_is_split_in_order_and_loses_nothing(tmp_path):
    sender, now = Recorder(), FakeTime()
    bus, store, notifier = make(tmp_path, sender, now, NOTIFY_DIGEST_MAX_CHARS=2000)
    notifier.add_channel("a", "json://127.0.0.1:1/a", [])
    for index in range(100):
        bus.emit(EventKind.FILL, f"600036.SH 买入 {100 + index} 股 @ 10", stock_code="600036.SH")
    drain(notifier)
    assert [s[1] for s in sender.sent] == [f"miniQMT【汇总】{n} 条通知" for n in (29, 29, 29, 13)]
    assert max(len(s[2]) for s in sender.sent) <= 2000
    volumes = [int(line.split("买入 ")[1].split(" 股")[0]) for s in sender.sent for line in s[2].splitlines()]
    assert volumes == list(range(100, 200))


def test_email_keeps_its_line_breaks(tmp_path):
    smtp = SmtpReceiver()
    try:
        bus, store, notifier = make(tmp_path, now=None)
        notifier.add_channel("邮件", smtp.url(), [])
        bus.emit(EventKind.FILL, "600036.SH 手动卖出 100 股 @ 10", stock_code="600036.SH", realized_pnl=12.0)
        assert drain(notifier) == 1
        text = text_of(smtp.wait_for(1, 10)[0][2]).replace("\r\n", "\n")
        assert text.strip() == ("600036.SH 手动卖出 100 股 @ 10（招商银行）\n时间：2024-03-05 10:31:05\n"
                                "本笔已实现盈亏：+12.00 元")
    finally:
        smtp.close()


FILLS = 400


def test_alarm_in_a_400_fill_burst_arrives_alone_within_a_second_and_fills_arrive_coalesced(tmp_path):
    """Two channels (one for fills only, one for everything), the notifier thread under the watchdog, a
    1-per-minute routine limit: the thread alarm published mid-burst reaches the 'everything' channel as its own
    message well within a second, before any fill; the protection failure reaches BOTH channels at once; each
    channel then gets every fill in one digest; the daemon's stop still goes out at shutdown."""
    fills_only, everything = WebhookReceiver(), WebhookReceiver()
    settings = make_settings(tmp_path, NOTIFY_COALESCE_SECONDS=1.0, NOTIFY_COALESCE_MAX_SECONDS=10.0,
                             NOTIFY_RATE_LIMIT=1, NOTIFY_RATE_WINDOW_SECONDS=60.0, NOTIFY_DIGEST_MAX_CHARS=100_000)
    bus = EventBus(ReplayClock(datetime(2024, 3, 5, 10, 0)))
    notifier = Notifier(NotifyStore(Database(tmp_path / "notify.db")), bus, settings,
                        names=lambda code: {"600036.SH": "招商银行"}.get(code, ""))
    notifier.add_channel("成交", fills_only.url, ["fill"])
    notifier.add_channel("全部", everything.url, [])
    watchdog = Watchdog(settings)
    watchdog.add(notifier)
    watchdog.start()
    try:
        alarm_at = None
        for index in range(FILLS):
            bus.emit(EventKind.FILL, f"600036.SH 网格卖出 {100 + index} 股 @ 10", stock_code="600036.SH")
            if index == FILLS // 2:
                alarm_at = time.perf_counter()
                bus.emit(EventKind.THREAD_ALARM, "线程「行情」120 秒无心跳")
                bus.emit(EventKind.PROTECTION_FAILURE, "600036.SH 保护失效：行情过期", stock_code="600036.SH")
        alarms = everything.wait_for(2, 5)
        assert [b["title"] for b in alarms[:2]] == ["miniQMT【线程告警】", "miniQMT【保护失效】600036.SH"]
        assert alarms[0]["message"] == "线程「行情」120 秒无心跳\n时间：2024-03-05 10:00:00"
        assert everything.arrivals[0] - alarm_at < 1.0
        assert fills_only.wait_for(1, 5)[0]["title"] == "miniQMT【保护失效】600036.SH"  # despite its filter
        for receiver in (fills_only, everything):
            bodies = receiver.wait_for(2 if receiver is fills_only else 3, 15)
            digests = [b for b in bodies if "【汇总" in b["title"]]
            assert [b["title"] for b in digests] == [f"miniQMT【汇总】{FILLS} 条通知"]
            lines = digests[0]["message"].splitlines()
            assert lines[0] == "2024-03-05 10:00:00 【成交】 600036.SH 网格卖出 100 股 @ 10（招商银行）"
            assert [int(line.split("卖出 ")[1].split(" 股")[0]) for line in lines] == list(range(100, 100 + FILLS))
        bus.emit(EventKind.DAEMON_STOP, "守护进程停止")  # the routine budget is spent: it is an alarm
    finally:
        watchdog.stop(5)
    assert everything.wait_for(4, 5)[-1]["title"] == "miniQMT【守护进程停止】"
    outbox = notifier.messages(2000)
    assert sum(1 for m in outbox if m["kind"] == "fill" and m["status"] == COALESCED) == 2 * FILLS
    assert {m["status"] for m in outbox if m["kind"] != "fill"} == {SENT}
    fills_only.close()
    everything.close()


def test_an_outbox_from_before_priorities_is_migrated_with_its_pending_alarms_first(tmp_path):
    import notify.store as notify_store
    from persistence.storage import migrate

    db = Database(tmp_path / "notify.db")
    migrate(db, "notify_store", notify_store.MIGRATIONS[:1])  # the schema of issue 16
    with db.transaction() as conn:
        conn.execute("INSERT INTO notify_channels(name, url, events, created_at) VALUES('a', 'json://127.0.0.1:1/a',"
                     " '[]', '2024-03-05 10:00:00')")
        for kind in ("fill", "thread_alarm"):
            conn.execute("INSERT INTO notify_outbox(channel_id, kind, title, body, created_at, status, "
                         "next_attempt_at) VALUES(1, ?, ?, 'x', 1.0, 'pending', 1.0)", (kind, f"miniQMT【{kind}】"))
    db.close()
    sender = Recorder()
    store = NotifyStore(Database(tmp_path / "notify.db"), now=FakeTime())
    notifier = Notifier(store, EventBus(ReplayClock(datetime(2024, 3, 5, 10, 0))),
                        make_settings(tmp_path, **NO_WAIT, NOTIFY_DIGEST_THRESHOLD=50), sender=sender)
    assert drain(notifier) == 2
    assert [s[1] for s in sender.sent] == ["miniQMT【thread_alarm】", "miniQMT【fill】"]
