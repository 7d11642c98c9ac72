"""The chores' line in the daily report (issue 28 §3): the post-close job puts the day's subscriptions, allotments and
repo (chores.jobs.ChoreJobs.summary) into the notification's summary and the report file; a day without chores adds
nothing to the summary."""
from __future__ import annotations

from chores.composition import build_chores
from chores.store import ALLOTMENT, FOUND, REPO, SENT, SUBSCRIBE, ChoreRecord
from jobs.account_snapshots import AccountSnapshots
from jobs.daily import AlarmLog, DailyJobs, database_files
from jobs.store import JobStore
from persistence.storage import Database
from web_test_support import build_system


def test_the_post_close_report_carries_the_days_chores(tmp_path):
    system = build_system(tmp_path)
    jobs_db = Database(tmp_path / "data" / "jobs.db")
    system.dbs.append(jobs_db)
    try:
        chores = build_chores(system.settings, system.dbs[1], system.clock, system.executor, system.broker,
                              system.events, system.signals, system.watch_store, live=True)
        store = JobStore(jobs_db)
        daily = DailyJobs(system.clock, system.settings, system.executor, system.positions, system.broker,
                          system.signals, AccountSnapshots(system.dbs[1], system.clock), store, system.events,
                          AlarmLog(system.events, store), system.ctx.trigger_prices, tmp_path / "data",
                          tmp_path / "logs", lambda: database_files(tmp_path / "data"), chores_line=chores.summary)
        day = system.clock.today()
        assert "申购" not in daily.post_close(day) and "逆回购" not in daily.post_close(day)
        chores.store.record(ChoreRecord(SUBSCRIBE, day, "754810.SH", "某某转债", 10000, 100.0, 1000000.0, SENT))
        chores.store.record(ChoreRecord(ALLOTMENT, day, "732777.SH", "沪主板新股", 1000, 12.34, 12340.0, FOUND,
                                        due_day=day))
        chores.store.record(ChoreRecord(REPO, day, "204001.SH", "1天期逆回购", 900, 1.805, 90000.0, SENT))
        line = ("申购 1 只（某某转债）；中签 沪主板新股 1000，应缴款 12340.00 元（" + day.isoformat() + " 前）；"
                "逆回购 204001.SH 年化 1.805% 出借 90000 元")
        assert chores.summary(day) == line
        result = daily.post_close(day)
        assert result.startswith(daily.report_data(day, daily.snapshots.record(day, system.executor.account()))
                                 .summary())
        assert f"告警 0 条；{line}；报告文件" in result
        html = (tmp_path / "data" / "reports" / f"daily_report_{day}.html").read_text(encoding="utf-8")
        assert f'<h2>申购与逆回购</h2><p id="chores">{line}</p>' in html
    finally:
        system.close()
