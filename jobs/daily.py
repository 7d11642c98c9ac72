"""The daemon's three daily jobs and what they do: pre-open (broker check, position/cash sync, indicators,
「盘前就绪」),
post-close (account snapshot, daily report file + notification) and nightly maintenance (backup of every
database, integrity check, log cleanup). The day roll-over itself (T+1 release, daily counters) stays with
the Housekeeper, which follows the clock's date change; the jobs own everything that has a time of day."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Iterable

import jobs.maintenance as jobs_maintenance
import jobs.report as jobs_report
from core.events import Event, EventBus, EventKind
from jobs.runner import Job
from jobs.schedule import CatchUp
from jobs.store import JobStore
from market_rules import MARKET_CLOSE
from logger import delete_old_logs
from core.models import Rule

log = logging.getLogger(__name__)

ALARM_KINDS = frozenset({EventKind.THREAD_RESTARTED, EventKind.THREAD_ALARM, EventKind.BROKER_DISCONNECTED,
                         EventKind.LINK_UNHEALTHY, EventKind.QUOTES_STALE, EventKind.DAILY_LOSS_LIMIT,
                         EventKind.CIRCUIT_BREAKER, EventKind.STORAGE_FAILURE, EventKind.ALARM,
                         EventKind.ORDER_FAILED, EventKind.ORDER_UNKNOWN, EventKind.ORDER_REJECTED,
                         EventKind.TRADING_STATE})
TRIGGER_LABELS = (("stop_loss_price", "止损"), ("take_profit_price", "首次止盈"), ("dynamic_stop_price", "动态止盈"),
                  ("next_add_price", "补仓"))


class AlarmLog:
    """The day's alarms for the report, committed to the job store as they are raised (a restart, even a kill,
    keeps them). A synchronous bus listener on purpose: an alarm queued in memory is exactly what a crash loses;
    alarms are rare and jobs.db is its own file, so the insert never waits behind the trading database."""

    def __init__(self, bus: EventBus, store: JobStore):
        self._store = store
        bus.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.kind in ALARM_KINDS:
            self._store.record_alarm(event.time, event.kind.value, event.message)

    def on_day(self, day: date) -> list[str]:
        return [f"{moment} 【{_event_label(kind)}】{message}" for moment, kind, message in self._store.alarms_on(day)]


def _event_label(kind: str) -> str:
    try:
        return EventKind(kind).label
    except ValueError:  # a kind a later version removed: its identifier is still better than nothing
        return kind


@dataclass
class DailyJobs:
    clock: object
    settings: object
    executor: object  # account(), trade_records()
    positions: object  # all()
    broker: object  # query_asset(), query_positions(), is_connected()
    signals: object  # history()
    snapshots: object  # jobs.account_snapshots.AccountSnapshots
    job_store: object  # jobs.store.JobStore (the backups of the day for the report)
    bus: EventBus
    alarms: AlarmLog
    trigger_prices: Callable[[object], object]
    data_dir: Path
    log_dir: Path
    databases: Callable[[], Iterable[Path]]
    source_label: Callable[[], str] = lambda: ""
    live: bool = False
    indicators: object = None  # IndicatorCalculator (update(code)), None without one
    watchlist: Callable[[], list[str]] = lambda: []
    trading_state: object = None  # core.trading_state.TradingState: its 「交易状态」 line in 盘前就绪 and the report
    chores_line: Callable[[date], str] = lambda day: ""  # issue 28 §3: chores.jobs.ChoreJobs.summary

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    def jobs(self) -> list[Job]:
        return [
            Job("pre_open", "盘前准备", "JOB_PRE_OPEN_TIME", CatchUp.SAME_SESSION, self.pre_open),
            Job("post_close", "盘后快照与每日报告", "JOB_POST_CLOSE_TIME", CatchUp.LATEST_DAY, self.post_close),
            Job("nightly", "夜间维护（备份、检查、日志清理）", "JOB_NIGHTLY_TIME", CatchUp.LATEST_DAY, self.nightly),
        ]

    # ---- the jobs
    def pre_open(self, day: date) -> str:
        asset = self.executor.account()  # raises when the broker cannot answer: the job fails and alarms
        if self.live:
            self.positions.refresh_from_broker(self.broker.query_positions())
        held = [p for p in self.positions.all() if p.volume > 0]
        codes = self.watchlist() if self.indicators is not None else []
        for code in codes:  # indicators up to the bars the data thread stored after the last close
            self.indicators.update(code)
        connected = getattr(self.broker, "is_connected", lambda: True)()
        message = (f"盘前就绪：{_prefix(self._status_line())}持仓 {len(held)} 只，总资产 {asset.total_asset:.2f} 元，可用资金 {asset.cash:.2f} 元，"
                   f"券商{'已连接' if connected else '未连接'}，行情来源 {self.source_label()}，"
                   f"已更新 {len(codes)} 只股票的指标")
        self.bus.emit(EventKind.PRE_OPEN_READY, message, day=day.isoformat())
        return message

    def _status_line(self) -> str:
        """「交易状态：…」; empty only where no trading state is wired (the jobs' own tests)."""
        return self.trading_state.status_line() if self.trading_state is not None else ""

    def post_close(self, day: date) -> str:
        snapshot = self.snapshots.record(day, self.executor.account())
        data = self.report_data(day, snapshot)
        path = jobs_report.write_report(self.reports_dir, data)
        summary = data.summary()
        public = self.settings.get("NOTIFY_PUBLIC_URL")
        link = f"\n报告：{public.rstrip('/')}/api/reports/{day.isoformat()}" if public else ""
        self.bus.publish(Event(EventKind.DAILY_REPORT, summary + link, self._report_time(day), "",
                               {"day": day.isoformat(), "file": path.name}))
        return f"{summary}；报告文件 {path.name}"

    def _report_time(self, day: date) -> datetime:
        """The report's message carries its own trading day: in replay the job runs when the clock has already
        jumped to the next morning, and a caught-up report belongs to the day it reports on."""
        now = self.clock.now()
        return now if now.date() == day else datetime.combine(day, MARKET_CLOSE)

    def nightly(self, day: date) -> str:
        paths = [Path(p) for p in self.databases()]
        backup_root = self.data_dir / "backups"
        copies = jobs_maintenance.backup_databases(paths, backup_root, day)
        removed = jobs_maintenance.prune_backups(backup_root, day, self.settings.get("BACKUP_RETENTION_DAYS"))
        checks = {p.name: jobs_maintenance.integrity(p) for p in paths}
        bad = {name: result for name, result in checks.items() if result != "ok"}
        logs = delete_old_logs(self.log_dir, self.settings.get("LOG_RETENTION_DAYS"))
        self.job_store.prune_alarms(day - timedelta(days=self.settings.get("LOG_RETENTION_DAYS")))
        if bad:
            message = "；".join(f"{name}：{result}" for name, result in bad.items())
            self.bus.emit(EventKind.STORAGE_FAILURE, f"数据库完整性检查失败：{message}")
            raise RuntimeError(f"数据库完整性检查失败：{message}")
        return (f"已备份 {len(copies)} 个数据库到 backups/{day.isoformat()}（{'、'.join(c.name for c in copies)}），"
                f"删除过期备份 {len(removed)} 份，完整性检查全部正常，清理日志 {len(logs)} 个")

    # ---- the report's figures
    def report_data(self, day: date, snapshot) -> jobs_report.ReportData:
        trades = [{**t, "strategy": rule_label(t["strategy"])}
                  for t in self.executor.trade_records(start=day, end=day)]
        signals = [{"id": s.id, "stock_code": s.stock_code, "rule_label": s.rule.label, "status": s.status.label,
                    "reason": s.reason} for s in self.signals.history(2000) if s.created_at.date() == day]
        positions = []
        for p in self.positions.all():
            if p.volume <= 0:
                continue
            triggers = self.trigger_prices(p)
            shown = {label: (getattr(triggers, attr), jobs_report.distance(p.current_price, getattr(triggers, attr)))
                     for attr, label in TRIGGER_LABELS if getattr(triggers, attr)}
            positions.append({"stock_code": p.stock_code, "stock_name": p.stock_name, "volume": p.volume,
                              "price": p.current_price, "cost_price": p.cost_price, "triggers": shown})
        backups = [f"{r['day']} {r['status_label']}：{r['result']}" for r in self.job_store.runs("nightly", limit=3)]
        equity = [(s.day, s.total_asset) for s in self.snapshots.history(end=day)]
        return jobs_report.ReportData(day, snapshot.total_asset, snapshot.cash, snapshot.market_value,
                                      snapshot.day_pnl, trades, signals, positions, self.alarms.on_day(day),
                                      backups, equity, self._status_line(), self.chores_line(day))


def rule_label(value: str) -> str:
    """A trade record's rule in Chinese; a value no rule knows is shown as stored."""
    try:
        return Rule(value).label
    except ValueError:
        return value


def _prefix(line: str) -> str:
    return f"{line}；" if line else ""


def database_files(data_dir: Path) -> list[Path]:
    """Every SQLite database of the daemon in the data dir (not the backups)."""
    return sorted(p for p in Path(data_dir).glob("*.db") if p.is_file())

