"""The daily jobs on a replayed market: over three replayed trading days each job runs once per day at or after
its market time, a day missed while the runner was down is caught up per its policy (pre-open skipped once
its session has closed, post-close and nightly run once for the latest missed day), and each daily report
file holds the figures of that day's trade records."""
from __future__ import annotations

import re
from datetime import datetime

from jobs.account_snapshots import AccountSnapshots
from jobs.daily import AlarmLog, DailyJobs, database_files
from jobs.runner import JobRunner
from jobs.schedule import parse_hhmm
from jobs.store import JobStore
from core.events import EventKind
from persistence.storage import Database
from web_test_support import build_system

OVERRIDES = {"JOB_PRE_OPEN_TIME": "09:00", "JOB_POST_CLOSE_TIME": "15:05", "JOB_NIGHTLY_TIME": "20:00",
             "BACKUP_RETENTION_DAYS": 2}


def make_runner(system, tmp_path, jobs_db):
    snapshots = AccountSnapshots(system.dbs[1], system.clock)
    store = JobStore(jobs_db)
    daily = DailyJobs(system.clock, system.settings, system.executor, system.positions, system.broker,
                      system.signals, snapshots, store, system.events, AlarmLog(system.events, store),
                      system.ctx.trigger_prices, tmp_path / "data", tmp_path / "logs",
                      lambda: database_files(tmp_path / "data"), lambda: system.data.source_label,
                      indicators=system.data.indicators, watchlist=system.watchlist)
    runner = JobRunner(daily.jobs(), store, system.clock, system.settings, system.events)
    runner.alive = True
    system.clock.on_new_day(lambda old, new: runner.on_replay_day_end(old, new) if runner.alive else None)
    return runner, store, snapshots, daily


def play_day(system, runner, closing_equity: dict) -> None:
    """Step the replay to the first tick of the next trading day, running the jobs after every step; notes
    the equity at the day's last tick."""
    today = system.clock.today()
    for _ in range(int(system.settings.get("REPLAY_TICKS_PER_DAY")) + 2):
        closing_equity[today] = system.executor.account().total_asset
        system.step()
        if runner is not None:
            runner.run_once()
        if system.clock.today() != today and system.clock.is_trading():
            return
    raise AssertionError("replay did not reach the next trading day")


def figure(html: str, element_id: str) -> str:
    return re.search(rf'id="{element_id}">([^<]+)<', html).group(1)


def test_three_replayed_days_then_a_missed_day_caught_up(tmp_path):
    system = build_system(tmp_path, OVERRIDES)
    reports = []
    subscription = system.events.subscribe([EventKind.DAILY_REPORT, EventKind.PRE_OPEN_READY])
    try:
        jobs_db = Database(tmp_path / "data" / "jobs.db")
        runner, store, snapshots, daily = make_runner(system, tmp_path, jobs_db)
        days = [system.clock.today()]
        runner.run_once()  # started on day 1 at its first tick: 09:00 had passed before the start
        # day 1: two buys; day 2: a sell of part of one (T+1 released); day 3: nothing
        system.executor.buy_stock("600036.SH", amount=20000)
        system.executor.buy_stock("000001.SZ", amount=15000)
        closing = {}
        for index in range(3):
            play_day(system, runner, closing)
            days.append(system.clock.today())
            if index == 0:
                system.executor.sell_stock("600036.SH", 100)
        # the runner goes down after day 4's first tick and comes back at the first tick of day 6
        runner.alive = False
        for _ in range(2):
            play_day(system, None, closing)
            days.append(system.clock.today())
        runner2, store, snapshots, daily = make_runner(system, tmp_path, jobs_db)
        runner2.run_once()
        runner2.run_once()  # nothing more: never twice for the same day

        d1, d2, d3, d4, d5, d6 = days
        runs = {(r["job_id"], r["day"]): (r["trigger"], r["status"]) for r in store.runs(limit=100)}
        first_start = sorted(day for (job, day), (trigger, _) in runs.items() if trigger == "skip")
        assert len(first_start) == 2 and first_start[0] < str(d1)  # post-close and nightly of the day before
        ran = {job: sorted((day, runs[(job, day)]) for j, day in runs if j == job and runs[(j, day)][0] != "skip")
               for job in ("pre_open", "post_close", "nightly")}
        assert ran["pre_open"] == [(str(d1), ("catch_up", "ok")), (str(d2), ("schedule", "ok")),
                                   (str(d3), ("schedule", "ok")), (str(d4), ("schedule", "ok")),
                                   (str(d6), ("catch_up", "ok"))]  # day 5 missed, its session long closed
        for job in ("post_close", "nightly"):  # day 4 missed and superseded; day 5 caught up once
            assert ran[job] == [(str(d1), ("schedule", "ok")), (str(d2), ("schedule", "ok")),
                                (str(d3), ("schedule", "ok")), (str(d5), ("catch_up", "ok"))]
        for run in store.runs(limit=100):  # each scheduled run started at or after its market time
            if run["trigger"] == "schedule":
                key = {"pre_open": "JOB_PRE_OPEN_TIME", "post_close": "JOB_POST_CLOSE_TIME",
                       "nightly": "JOB_NIGHTLY_TIME"}[run["job_id"]]
                moment = datetime.combine(datetime.fromisoformat(run["day"]), parse_hhmm(system.settings.get(key)))
                assert datetime.fromisoformat(run["started_at"]) >= moment

        # reports: figures equal the trade records of each day
        equity = {s.day: s for s in snapshots.history()}
        assert sorted(equity) == [d1, d2, d3, d5]
        for day in (d1, d2, d3, d5):
            html = (tmp_path / "data" / "reports" / f"daily_report_{day}.html").read_text(encoding="utf-8")
            assert "data:image/png;base64," in html and "<script" not in html
            trades = system.executor.trade_records(start=day, end=day)
            assert int(figure(html, "trade-count")) == len(trades)
            assert figure(html, "buy-amount") == f"{sum(t['amount'] for t in trades if t['side'] == 'buy'):.2f}"
            assert figure(html, "sell-amount") == f"{sum(t['amount'] for t in trades if t['side'] == 'sell'):.2f}"
            assert figure(html, "fees") == f"{sum(t['fees'] for t in trades):.2f}"
            assert figure(html, "total-asset") == f"{equity[day].total_asset:.2f}"
        assert [len(system.executor.trade_records(start=d, end=d)) for d in (d1, d2, d3)] == [2, 1, 0]
        for day in (d1, d2, d3):  # the day's own close, not the next morning's prices
            assert equity[day].total_asset == closing[day]
        assert equity[d1].day_pnl is None
        assert equity[d2].day_pnl == round(equity[d2].total_asset - equity[d1].total_asset, 2)
        assert equity[d5].day_pnl == round(equity[d5].total_asset - equity[d3].total_asset, 2)
        # backups: one folder per nightly run, pruned to the retention
        folders = sorted(p.name for p in (tmp_path / "data" / "backups").iterdir())
        assert folders == [str(d3), str(d5)]  # retention 2 days: d1 and d2 were pruned
        assert {p.name for p in (tmp_path / "data" / "backups" / str(d5)).iterdir()} >= {"sim_trading.db", "config.db"}
        drained = subscription.drain()
        ready = [e.message for e in drained if e.kind is EventKind.PRE_OPEN_READY]
        assert ready[0].startswith("盘前就绪：持仓 0 只，总资产 1000000.00 元，可用资金 1000000.00 元，券商已连接，"
                                   "行情来源 演示行情") and ready[0].endswith("已更新 5 只股票的指标")
        kinds = [e.kind for e in drained]
        assert kinds.count(EventKind.DAILY_REPORT) == 4 and kinds.count(EventKind.PRE_OPEN_READY) == 5
    finally:
        system.close()
