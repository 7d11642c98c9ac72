"""The daily report tells the truth (issue 26 item 7): rules and signal states in Chinese, the day's alarms
survive a restart of the daemon (they are committed when raised), and in replay the report's message carries
the reported day's close, not the next morning the clock has already jumped to."""
from __future__ import annotations

from datetime import datetime, time

from jobs.account_snapshots import AccountSnapshots
from core.events import EventBus, EventKind
from jobs.daily import AlarmLog, DailyJobs, database_files
from jobs.runner import JobRunner
from jobs.store import JobStore
from core.models import Rule, Signal, SignalStatus
from persistence.storage import Database
from web_test_support import build_system

OVERRIDES = {"JOB_PRE_OPEN_TIME": "09:00", "JOB_POST_CLOSE_TIME": "15:05", "JOB_NIGHTLY_TIME": "20:00"}


def daily_jobs(system, tmp_path, bus: EventBus, jobs_db: Database) -> tuple[DailyJobs, JobStore]:
    store = JobStore(jobs_db)
    daily = DailyJobs(system.clock, system.settings, system.executor, system.positions, system.broker,
                      system.signals, AccountSnapshots(system.dbs[1], system.clock), store, bus,
                      AlarmLog(bus, store), system.ctx.trigger_prices, tmp_path / "data", tmp_path / "logs",
                      lambda: database_files(tmp_path / "data"))
    return daily, store


def test_report_in_chinese_with_alarms_kept_over_a_restart_and_stamped_with_its_own_day(tmp_path):
    system = build_system(tmp_path, OVERRIDES)
    try:
        day = system.clock.today()
        first_db = Database(tmp_path / "data" / "jobs.db")
        daily_jobs(system, tmp_path, system.events, first_db)
        system.executor.buy_stock("600036.SH", amount=20000)
        signal = system.signals.add(Signal("000001.SZ", Rule.STOP_LOSS, 100, 10.0, 9.9, system.clock.now()))
        system.signals.mark(signal.id, SignalStatus.EXECUTED)
        system.events.emit(EventKind.ORDER_REJECTED, "买入 000001.SZ 被拒绝：资金不足", "000001.SZ")
        system.events.emit(EventKind.FILL, "not an alarm")
        first_db.close()  # the process dies: nothing held in memory survives

        bus = EventBus(system.clock)  # the restarted daemon: a new bus, a new store on the same file
        jobs_db = Database(tmp_path / "data" / "jobs.db")
        system.dbs.append(jobs_db)
        daily, store = daily_jobs(system, tmp_path, bus, jobs_db)
        runner = JobRunner(daily.jobs(), store, system.clock, system.settings, bus)
        system.clock.on_new_day(runner.on_replay_day_end)
        reports = bus.subscribe([EventKind.DAILY_REPORT])
        while system.clock.today() == day:
            system.step()

        report = reports.get(timeout=5)
        assert report is not None and report.data["day"] == day.isoformat()
        assert report.time == datetime.combine(day, time(15, 0))  # not the next morning of the replay clock
        assert report.message.endswith("持仓 1 只；告警 1 条")
        html = (tmp_path / "data" / "reports" / f"daily_report_{day}.html").read_text(encoding="utf-8")
        assert "【委托被拒】买入 000001.SZ 被拒绝：资金不足</td>" in html
        assert "<td>手动</td>" in html and "manual" not in html
        assert f"<td>{signal.id}</td><td>000001.SZ</td><td>止损</td><td>已执行</td>" in html
        assert "executed" not in html and "stop_loss" not in html
        assert len(store.alarms_on(day)) == 1
    finally:
        system.close()
