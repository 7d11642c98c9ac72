"""Issue 25 §2 item 15: after an emergency stop and a restart with `--set ENABLE_AUTO_TRADING=true`, the
start-up summary, the 盘前就绪 message and the daily report each say 交易状态：紧急停止 (暂停, 运行), and the
start-up summary never says 「自动交易：开启」 while the stop holds."""
from __future__ import annotations

import logging
from datetime import date
from types import SimpleNamespace

import strategy
from jobs.account_snapshots import AccountSnapshots
from daemon.composition import _log_startup
from core.events import EventBus, EventKind
from jobs.daily import AlarmLog, DailyJobs
from jobs.store import JobStore
from core.order_sources import OrderSource
from core.signal_store import SignalStore
from persistence.storage import Database
from core.trading_state import TradingState
from trading_support import QuoteBoard, build_core, make_settings, replay_clock

CODE = "600036.SH"
DAY = date(2024, 3, 4)


def startup_lines(tmp_path, settings, state, caplog) -> list[str]:
    data = SimpleNamespace(source_label="模拟行情")
    web = SimpleNamespace(url="http://127.0.0.1:8080")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="main"):
        _log_startup(settings, "simulation", data, web, tmp_path, state)
    return [r.getMessage() for r in caplog.records]


def daily_jobs(tmp_path, core, settings, clock, state) -> tuple[DailyJobs, object]:
    bus = EventBus(clock)
    seen = bus.subscribe({EventKind.PRE_OPEN_READY, EventKind.DAILY_REPORT})
    params = strategy.RuleParams.from_settings(settings)
    job_store = JobStore(Database(tmp_path / "jobs.db"))
    jobs = DailyJobs(clock, settings, core.executor, core.positions, core.sim, SignalStore(core.db, clock),
                     AccountSnapshots(core.db, clock), job_store, bus, AlarmLog(bus, job_store),
                     lambda p: strategy.trigger_prices(p, params), tmp_path / "data", tmp_path / "logs", lambda: [],
                     trading_state=state)
    return jobs, seen


def test_an_emergency_stop_is_named_at_start_up_in_the_pre_open_message_and_the_daily_report(tmp_path, caplog):
    settings = make_settings(tmp_path, ENABLE_AUTO_TRADING=True)  # as `--set ENABLE_AUTO_TRADING=true`
    clock = replay_clock("2024-03-04T10:00:00")
    quotes = QuoteBoard(clock)
    quotes.set(CODE, 10.0, 10.0)
    core = build_core(tmp_path / "sim_trading.db", settings, clock, quotes)
    core.state.halt("操作员紧急停止", "web")
    core.db.close()
    core = build_core(tmp_path / "sim_trading.db", settings, clock, quotes)  # the restart
    state = core.state
    lines = startup_lines(tmp_path, settings, state, caplog)
    assert "交易状态：紧急停止（操作员紧急停止；只有明确恢复交易才会解除）" in lines
    assert "自动交易：开启" not in lines
    assert any(line.startswith("自动交易：不执行（紧急停止中") for line in lines)

    jobs, seen = daily_jobs(tmp_path, core, settings, clock, state)
    message = jobs.pre_open(DAY)
    assert message.startswith("盘前就绪：交易状态：紧急停止（操作员紧急停止；只有明确恢复交易才会解除）；持仓 0 只")
    clock.set(clock.now().replace(hour=15, minute=10))
    summary = jobs.post_close(DAY)
    assert summary.startswith("2024-03-04 日报：交易状态：紧急停止（操作员紧急停止；")
    html = (tmp_path / "data" / "reports" / "daily_report_2024-03-04.html").read_text(encoding="utf-8")
    assert '<p id="trading-state"><b>交易状态：紧急停止（操作员紧急停止；只有明确恢复交易才会解除）</b></p>' in html
    assert [e.kind for e in seen.drain()] == [EventKind.PRE_OPEN_READY, EventKind.DAILY_REPORT]


def test_pause_and_running_are_named_too(tmp_path, caplog):
    settings = make_settings(tmp_path, ENABLE_AUTO_TRADING=True)
    clock = replay_clock("2024-03-04T10:00:00")
    state = TradingState(Database(tmp_path / "t.db"), clock)
    lines = startup_lines(tmp_path, settings, state, caplog)
    assert [line for line in lines if line.startswith(("交易状态", "自动交易"))] == ["交易状态：运行", "自动交易：开启"]
    state.pause("熔断前的旧暂停", "web")
    assert state.status_line() == "交易状态：暂停（熔断前的旧暂停；只有明确恢复交易才会解除）"
    assert state.auto_trading_line(True) == "自动交易：不执行（已暂停；需在网页或接口恢复交易）"
    state.resume("已检查", "web")
    state.halt_source(CODE, OrderSource.GRID, "熔断：测试", "circuit_breaker")
    assert state.status_line() == "交易状态：运行；熔断停止的委托来源 1 项（止损等保护性卖出不受影响）"
    assert state.auto_trading_line(False) == "自动交易：关闭（信号只排队，需人工执行）"
