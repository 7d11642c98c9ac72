"""Wiring of issue 16 (notifications, daily jobs, daily report) for daemon/composition.py: its databases, the
notifier and jobs workers, the watch of observed events and the config-change events, in one place so the
shared composition root only gains a few lines."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from jobs.account_snapshots import AccountSnapshots
from daemon.daemon_workers import IntervalWorker
from core.events import Event, EventBus, EventKind
from jobs.daily import AlarmLog, DailyJobs, database_files
from jobs.runner import JobRunner
from jobs.store import JobStore
from notify.store import NotifyStore
from notify.watch import NotifyWatch
from notify.worker import Notifier
from persistence.storage import Database


@dataclass
class Notifications:
    notifier: Notifier
    jobs: JobRunner
    snapshots: AccountSnapshots
    reports_dir: Path
    workers: list = field(default_factory=list)
    closers: list[Callable[[], object]] = field(default_factory=list)


def build_notifications(settings, data_dir: Path, log_dir: Path, secret_filter, clock, events: EventBus, data,
                        executor, positions, broker, signals, trading_state, trading_db: Database,
                        trigger_prices: Callable, live: bool, extra_jobs: tuple = (),
                        chores_line: Callable | None = None) -> Notifications:
    """`extra_jobs` run on the same jobs thread (issue 28 §3: the chores); `chores_line(day)` is their report line."""
    notify_db = Database(data_dir / "notify.db")
    jobs_db = Database(data_dir / "jobs.db")
    for url in settings.get("NOTIFY_URLS"):
        secret_filter.add(url)
    notifier = Notifier(NotifyStore(notify_db), events, settings, secret_filter, names=data.stock_name,
                        facts=lambda event: sell_facts(executor, event))
    notifier.ensure_config_channels(settings.get("NOTIFY_URLS"))
    snapshots = AccountSnapshots(trading_db, clock)
    job_store = JobStore(jobs_db)
    daily = DailyJobs(clock, settings, executor, positions, broker, signals, snapshots, job_store, events,
                      AlarmLog(events, job_store), trigger_prices, data_dir, log_dir, lambda: database_files(data_dir),
                      lambda: data.source_label, live, data.indicators, data.watchlist, trading_state)
    if chores_line is not None:
        daily.chores_line = chores_line
    jobs = JobRunner(daily.jobs() + list(extra_jobs), job_store, clock, settings, events)
    if clock.is_replay:
        clock.on_new_day(jobs.on_replay_day_end)
    watch = NotifyWatch(events, clock, settings, data.hub, signals, data.watchlist,
                        lambda: trading_state.allows_automatic(), executor.list_orders)
    settings.subscribe(lambda changed: _publish_config_change(events, settings, changed))
    workers = [notifier, jobs, IntervalWorker("notify_watch", watch.check, settings, "MONITOR_INTERVAL")]
    return Notifications(notifier, jobs, snapshots, daily.reports_dir, workers, [notify_db.close, jobs_db.close])


def sell_facts(executor, event: Event) -> dict:
    """A sell fill's realised P&L and its episode's so far (from the first buy into a flat position), from
    the trade records; `episode_closed` when this sell made the position flat."""
    if event.kind is not EventKind.FILL or event.data.get("side") != "sell":
        return {}
    rows = sorted(executor.trade_records(code=event.stock_code), key=lambda r: r["id"])
    order_id = event.data.get("order_id")
    mine = [r for r in rows if order_id in (r["client_id"], r["order_id"]) and r["volume"] == event.data.get("volume")]
    if not mine:
        return {}
    held, episode = 0, 0.0
    for row in rows:
        if row["id"] > mine[-1]["id"]:
            break
        if row["side"] == "buy":
            episode = 0.0 if held == 0 else episode
            held += row["volume"]
        else:
            held = max(0, held - row["volume"])
            episode += row["realized_pnl"] or 0.0
    return {"realized_pnl": mine[-1]["realized_pnl"], "episode_realized_pnl": round(episode, 2),
            "episode_closed": held == 0}


def _publish_config_change(events: EventBus, settings, changed: dict) -> None:
    """Names only for secret keys: their values never leave the config store."""
    secret = {row["key"] for row in settings.describe() if row["secret"]}
    shown = [key if key in secret else f"{key}={value}" for key, value in changed.items()]
    events.emit(EventKind.CONFIG_CHANGED, f"参数已修改：{'，'.join(shown)}", keys=sorted(changed))
