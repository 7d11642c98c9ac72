"""Builds the daemon: every component with its collaborators passed in, the named workers under the
watchdog, and the order in which they are closed. `main.py` parses the command line and calls `build_daemon`."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Callable

import storage_health
import strategy
from accounts_identity import account_guard
from broker_guard import BrokerGuard, broker_step_seconds
from config_store import ConfigStore
from models import BrokerUnavailable, Rule, TradingError
from daemon_workers import DataWorker, Housekeeper, IntervalWorker
from accounts_lifeline import Lifeline
from events import EventBus, EventKind
from doctor_cli import daemon_diagnostics
from orders_file_intake import OrderFileIntake, default_inbox
from orders_file_store import OrderFileStore
from orders_file_worker import OrderFileWorker
from notify_composition import build_notifications
from position_monitor import PositionMonitor
from position_review import PositionReviews
from risk_breakers import CircuitBreakers
from signal_store import SignalStore
from stock_params import StockParams
from storage import Database
from strategy_runner import StrategyRunner
from trading_state import ACCOUNT_SCOPE, State, StateChange, TradingState
from watch_monitor import WATCH_RULES, DailyContextCache, WatchMonitor, validate_watch_signal
from watch_store import WatchStore
from workers import Watchdog

log = logging.getLogger("main")

SHUTDOWN_SECONDS = 6.0  # threads: stop and final sync; with the web server's 2 s the exit stays within 10 s
WEB_STOP_SECONDS = 2.0
RESET_HINTS = {
    "simulation": "若确要新建模拟账户，请使用 --reset-sim-account（先归档现有数据）",
    "live": "实盘的委托日志不能重建，请务必从备份恢复",
}
BROKER_STOP_GRACE_SECONDS = 0.5  # calls in flight at shutdown may answer this long; then they are left unknown


@dataclass
class Daemon:
    """Everything that was built, and the order to stop it in."""

    settings: ConfigStore
    watchdog: Watchdog
    components: dict = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)
    closers: list[Callable[[], object]] = field(default_factory=list)

    def run(self) -> int:
        self.watchdog.start()
        self._emit(EventKind.DAEMON_START, "守护进程已启动")
        lifeline = Lifeline(self.settings.get("SUPERVISOR_PID"))
        while not self.stop_event.wait(self.settings.get("THREAD_CHECK_INTERVAL")):
            self.watchdog.run_once()
            if lifeline.gone():
                log.error("多账户监管进程（进程号 %s）已不在运行，本账户安全退出（不做无人监管的交易）", lifeline.supervisor_pid)
                break
        return self.shutdown()

    def shutdown(self) -> int:
        log.info("正在退出：停止执行信号，等待在途委托记账，最后一次同步持仓……")
        self._emit(EventKind.DAEMON_STOP, "守护进程正在退出")
        broker = self.components.get("broker")
        if isinstance(broker, BrokerGuard):
            broker.stop(BROKER_STOP_GRACE_SECONDS)  # from here no thread (worker or request) waits on the broker
        web = self.components.get("web")
        if web is not None:
            web.stop(WEB_STOP_SECONDS)  # no new manual orders; running requests finish
        stopped = self.watchdog.stop(SHUTDOWN_SECONDS)
        for close in self.closers:
            try:
                close()
            except Exception:  # keep closing the rest; the error is logged for the operator
                log.exception("关闭组件时出错")
        log.info("已安全退出" if stopped else "部分线程未能按时停止，已强制退出")
        return 0

    def _emit(self, kind: EventKind, message: str) -> None:
        events = self.components.get("events")
        if events is not None:
            events.emit(kind, message)


def build_daemon(settings: ConfigStore, data_dir: Path, log_dir: Path, secret_filter,
                 stock_pool_file: Path = Path("stock_pool.json"),
                 stop_event: threading.Event | None = None) -> Daemon:
    """Build everything; `stop_event` (set by the signal handlers, possibly already during the build) ends
    `Daemon.run`. Live mode checks the broker first: on a machine without miniQMT that is the reason to give."""
    from data_manager import build_data_manager
    from grid_trading import GridManager
    from position_manager import PositionManager
    from stock_pool import StockPool
    from trading_executor import TradingExecutor
    from web_server import WebContext, WebServer, load_or_create_token

    simulation = settings.get("ENABLE_SIMULATION_MODE")
    mode = "simulation" if simulation else "live"
    trading_db = storage_health.open_checked(
        data_dir / ("sim_trading.db" if simulation else "trading.db"), data_dir,
        "模拟账户数据库" if simulation else "交易数据库（委托日志）", RESET_HINTS[mode])
    live_broker = None if simulation else _connect_live_broker(settings, data_dir, trading_db)
    if live_broker is not None:
        secret_filter.add(live_broker.account.account_id)  # the full account id never reaches a log line
    guard = account_guard(trading_db, settings, data_dir) if simulation else None
    try:
        data, clock = build_data_manager(settings, data_dir, account_guard=guard)
        if guard is not None and not clock.is_replay:  # a real-time source: the guard had no replay to run in
            try:
                guard(data.source_name)
            except TradingError:
                _close_quietly(data.close, data.bar_store.db.close)
                raise
    except BaseException:
        _close_quietly(*([live_broker.close] if live_broker else []), trading_db.close)
        raise
    if live_broker is not None and clock.is_replay:
        _close_quietly(live_broker.close, data.close, data.bar_store.db.close, trading_db.close)
        raise TradingError("LIVE_NEEDS_REAL_DATA", f"实盘模式需要真实实时行情（xtquant 或 mootdx），当前行情来源是"
                                                   f"「{data.source_label}」，拒绝启动")
    problem = storage_health.quick_check(data.bar_store.db)
    if problem:
        _close_quietly(*([live_broker.close] if live_broker else []), data.close, data.bar_store.db.close,
                       trading_db.close)
        raise storage_health.StorageRefused("DB_CORRUPT", f"拒绝启动：行情数据库 {data.bar_store.db.path} 已损坏"
                                                          f"（{problem}）。{storage_health.restore_hint(data_dir)}")
    hub = data.hub
    events = EventBus(clock)
    if live_broker is not None:
        _publish_broker_anomalies(events, live_broker.health)
    trading_state = TradingState(trading_db, clock)
    storage = storage_health.StorageGuard(
        trading_state, events, lambda: (trading_db, data.bar_store.db), data_dir,
        lambda: settings.get("STORAGE_MIN_FREE_MB") * 1e6)
    storage.watch(trading_db)  # a failed write of a fill or a journal entry halts automatic trading at once
    trading_state.subscribe(lambda change: _publish_state_change(events, change))
    broker = _guarded(live_broker or _sim_broker(settings, trading_db, clock, hub), settings, events)
    positions = PositionManager(trading_db, settings, clock, mode)
    breakers = CircuitBreakers(settings, clock, trading_state, events,
                               lambda day: executor.journal.automatic_counts(day))
    executor = TradingExecutor(trading_db, broker, positions, hub.latest, settings, clock, trading_state, breakers)
    executor.add_fill_listener(lambda fill, rule: _publish_fill(events, fill, rule))
    broker.set_listener(executor)
    executor.recover()
    signals = SignalStore(trading_db, clock)
    pool = StockPool(stock_pool_file)
    indicators = data.indicators
    stock_params = StockParams(trading_db, settings, clock, settings.journal)  # cached per stock and change
    runner = StrategyRunner(signals, positions, executor, hub, settings, clock, indicators,
                            lambda: stock_params.buyable(pool.codes()), trading_state,  # no MACD entry when blacklisted
                            params_for=stock_params.params_for)
    runner.recover()
    monitor = PositionMonitor(positions, hub, signals, executor, settings, clock, params_for=stock_params.params_for)
    grid = GridManager(trading_db, settings, clock, positions, hub, signals, executor,
                       settings_for=stock_params.settings_for)
    grid.attach(monitor, runner)
    grid.recover()
    reviews = PositionReviews(trading_db, clock)
    watch_store = WatchStore(trading_db, clock)
    watch = WatchMonitor(watch_store, hub, signals, positions, events, settings, clock,
                         daily=DailyContextCache(data.bar_store, indicators).get,
                         apply_exits=lambda code, params, source: stock_params.update(code, params, source))
    for rule in WATCH_RULES:
        runner.register_validator(rule, validate_watch_signal(positions))
    try:
        token = load_or_create_token(data_dir, settings)
    except ValueError as exc:  # a configured token that is too short
        raise TradingError("INVALID_API_TOKEN", str(exc)) from exc
    secret_filter.add(token)
    watchdog = Watchdog(settings, events=events)
    stop_event = stop_event or threading.Event()
    order_files = _order_file_intake(settings, data_dir, trading_db, clock, executor, positions, stop_event, hub)
    intraday, log_tail = page_sources(hub, secret_filter)
    web_ctx = WebContext(settings=settings, positions=positions, executor=executor, data=data,
                         indicators=indicators, signals=signals, runner=runner, health=watchdog.health,
                         stock_pool=pool, clock=clock, mode=mode, token=token, grid=grid, broker=broker,
                         trigger_prices=lambda p: strategy.trigger_prices(p, stock_params.params_for(p.stock_code)),
                         trading_state=trading_state, events=events, order_files=order_files,
                         diagnostics=daemon_diagnostics(settings, data_dir, log_dir, broker, hub, clock),
                         watch=watch_store, stock_params=stock_params, position_reviews=reviews,
                         intraday=intraday, log_tail=log_tail, data_dir=data_dir)
    notifications = build_notifications(settings, data_dir, log_dir, secret_filter, clock, events, data, executor,
                                        positions, broker, signals, trading_state, trading_db, web_ctx.trigger_prices,
                                        live=not simulation)
    web_ctx.notifier, web_ctx.jobs, web_ctx.reports_dir = (notifications.notifier, notifications.jobs,
                                                           notifications.reports_dir)
    web_ctx.snapshots = notifications.snapshots  # the post-close job records them; the 收益 page reads them
    web = WebServer(web_ctx, settings.get("WEB_HOST"), settings.get("WEB_PORT"))

    def watchlist() -> list[str]:
        return sorted({p.stock_code for p in positions.all()} | set(pool.codes()) | set(order_files.watch_codes())
                      | set(watch_store.codes()))

    data.set_watchlist(watchlist())
    roll_day: list[Callable[[date], object]] = [storage.nightly_check, positions.roll_day, executor.roll_day]
    if hasattr(broker, "roll_day"):
        roll_day.insert(0, broker.roll_day)

    for worker in (
        DataWorker(data, watchlist),
        monitor,
        watch,
        runner,
        IntervalWorker("sync", positions.sync, settings, "POSITION_SYNC_INTERVAL", final=positions.sync),
        IntervalWorker("orders", executor.check_open_orders, settings, "ORDER_CHECK_INTERVAL", clock,
                       only_in_session=not clock.is_replay, max_step=lambda: broker_step_seconds(settings)),
        Housekeeper(clock, settings, roll_day, lambda day: _day_report(executor, day)),
        IntervalWorker("storage", storage.check, settings, "STORAGE_CHECK_INTERVAL"),
        OrderFileWorker(order_files, settings),
        *notifications.workers,
    ):
        watchdog.add(worker)
    if not simulation:  # the broker's volume, available and cost are authoritative in live mode
        watchdog.add(IntervalWorker("broker_sync", lambda: _sync_from_broker(positions, broker, reviews),
                                    settings, "BROKER_SYNC_INTERVAL", clock, only_in_session=True,
                                    max_step=lambda: broker_step_seconds(settings)))
    try:
        web.start()
    except OSError as exc:
        _close_quietly(broker.close, data.close, trading_db.close, data.bar_store.db.close, *notifications.closers)
        raise TradingError("WEB_START_FAILED", f"网页服务无法在 {web.host}:{web.port} 启动（{exc.strerror or exc}），"
                                               f"请检查端口是否已被占用，或用 --port 换一个端口") from exc
    _log_startup(settings, mode, data, web, data_dir)
    daemon = Daemon(settings, watchdog, components=dict(
        positions=positions, executor=executor, signals=signals, data=data, broker=broker, web=web,
        monitor=monitor, runner=runner, grid=grid, stock_pool=pool, trading_state=trading_state, events=events,
        watch=watch, watch_store=watch_store, stock_params=stock_params, storage=storage))
    storage_health.mark_used(data_dir)  # from now on a missing or empty database here is refused
    daemon.stop_event = stop_event
    # the final sync first, then the broker and data source, then every database (checkpointed, closed)
    daemon.closers += [positions.sync, broker.close, data.close, trading_db.close, data.bar_store.db.close,
                       *notifications.closers, lambda: logging.getLogger().removeHandler(log_tail)]
    return daemon


def page_sources(hub, secret_filter):
    """What the web page's 分时 view and 日志 page read: today's intraday line per stock (fed by the quote hub)
    and the log tail (masked by the same secret filter as the log files)."""
    from web_intraday import IntradayBuffer
    from web_log_tail import LogTail

    intraday = IntradayBuffer()
    hub.subscribe(intraday.on_quote)
    log_tail = LogTail()
    log_tail.addFilter(secret_filter)
    logging.getLogger().addHandler(log_tail)
    return intraday, log_tail


def _order_file_intake(settings: ConfigStore, data_dir: Path, trading_db: Database, clock, executor, positions,
                       stop: threading.Event, hub) -> OrderFileIntake:
    """Order files (issue 19): ORDER_FILE_DIR, or <data dir>/orders/inbox; journaled in the trading db."""
    inbox = Path(settings.get("ORDER_FILE_DIR") or default_inbox(data_dir))
    inbox.mkdir(parents=True, exist_ok=True)  # there for the operator (and other systems) from the start
    return OrderFileIntake(OrderFileStore(trading_db, clock), executor, positions, settings, inbox, stop=stop,
                           hub=hub)


def _publish_broker_anomalies(events: EventBus, health) -> None:
    """issue 13: every anomaly of the live broker's link (qmt_link.LinkHealth) is also an event, so the
    notifier and the page's event stream get it, not only the log and /api/health."""
    health.subscribe(lambda anomaly: events.emit(EventKind(anomaly.event_kind), anomaly.message, code=anomaly.code))


def _sync_from_broker(positions, broker, reviews: PositionReviews) -> None:
    """The broker's positions; one the daemon did not open is 「待确认」 until the operator confirms its state
    (the broker gives no open date here, so its highest price starts from max(cost, price)). A failed or
    untrustworthy answer (timeout, empty while the asset shows market value; issue 13) is skipped until the
    next interval: it must not end the thread (the watchdog restarts a thread only a few times an hour).
    The broker has already logged and alarmed it."""
    before = {p.stock_code for p in positions.all()}
    try:
        answer = broker.query_positions()
    except BrokerUnavailable as exc:
        log.warning("本次券商持仓同步跳过：%s", exc.message)
        return
    positions.refresh_from_broker(answer)
    for position in positions.all():
        if position.stock_code not in before:
            reviews.found(position.stock_code, "cost_or_price")


def _close_quietly(*closers: Callable[[], object]) -> None:
    """Close what a failed start had opened; a failing closer does not hide the start's own error."""
    for close in closers:
        try:
            close()
        except Exception:
            log.exception("关闭组件时出错")


def _publish_state_change(events: EventBus, change: StateChange) -> None:
    scope = "账户" if change.scope == ACCOUNT_SCOPE else change.scope
    old, new = State(change.old).label, State(change.new).label
    events.emit(EventKind.TRADING_STATE, f"{scope}交易状态：{old} → {new}，{change.reason}（来源：{change.source}）",
                stock_code="" if change.scope == ACCOUNT_SCOPE else change.scope, scope=change.scope, old=change.old,
                new=change.new, reason=change.reason, source=change.source)


def _publish_fill(events: EventBus, fill, rule) -> None:
    events.emit(EventKind.FILL, f"{fill.stock_code} {rule.label}{fill.side.label} {fill.volume} 股 @ {fill.price:g}",
                stock_code=fill.stock_code, rule=rule.value, side=fill.side.value, volume=fill.volume,
                price=fill.price, order_id=fill.client_id or fill.order_id)
    if rule is Rule.STOP_LOSS:
        events.emit(EventKind.STOP_LOSS_EXECUTED, f"{fill.stock_code} 止损成交 {fill.volume} 股 @ {fill.price:g}",
                    stock_code=fill.stock_code, volume=fill.volume, price=fill.price)


def _day_report(executor, day: date) -> str:
    records = executor.trade_records(start=day, end=day)
    buys = sum(1 for r in records if r["side"] == "buy")
    fees = sum(r["fees"] for r in records)
    asset = executor.account()
    return (f"当日成交 {len(records)} 笔（买 {buys}，卖 {len(records) - buys}），费用 {fees:.2f} 元；"
            f"总资产 {asset.total_asset:.2f} 元，可用资金 {asset.cash:.2f} 元")


def _guarded(broker, settings, events: EventBus) -> BrokerGuard:
    def hung(name: str, seconds: float) -> None:
        events.emit(EventKind.BROKER_DISCONNECTED, f"券商接口 {name} 超过 {seconds:g} 秒未返回，暂停向券商发送请求",
                    call=name, seconds=seconds)

    def recovered(name: str, seconds: float) -> None:
        events.emit(EventKind.BROKER_RECONNECTED, f"券商接口 {name} 在 {seconds:.1f} 秒后返回，恢复发送请求",
                    call=name, seconds=round(seconds, 3))

    return BrokerGuard(broker, lambda: settings.get("BROKER_CALL_TIMEOUT"), on_hung=hung, on_recovered=recovered)


def _sim_broker(settings, trading_db: Database, clock, hub):
    from sim_trader import SimTrader

    broker = SimTrader(trading_db, settings, clock, hub.latest)
    hub.subscribe(broker.on_quote)
    return broker


def _connect_live_broker(settings, data_dir: Path, trading_db: Database):
    """Raises BrokerUnavailable (a TradingError with a Chinese reason) when miniQMT cannot be used here."""
    from easy_qmt_trader import connect_live_broker

    try:
        configured = str(settings.get("ACCOUNT_CONFIG_FILE") or "")
        return connect_live_broker(settings, data_dir, trading_db,
                                   account_config_path=Path(configured) if configured else None)
    except BaseException:
        trading_db.close()
        raise


def _log_startup(settings: ConfigStore, mode: str, data, web, data_dir: Path) -> None:
    lines = [
        f"运行模式：{'模拟交易' if mode == 'simulation' else '实盘交易'}",
        f"行情来源：{data.source_label}",
        f"网页地址：{web.url}",
        f"API 令牌文件：{(data_dir / 'api_token').resolve()}（令牌内容不会写入日志）",
        f"自动交易：{'开启' if settings.get('ENABLE_AUTO_TRADING') else '关闭（信号只排队，需人工执行）'}",
    ]
    for line in lines + settings.startup_report() + settings.warnings:
        log.info(line)
