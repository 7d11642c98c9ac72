"""Builds the daemon: every component with its collaborators passed in, the named workers under the
watchdog, and the order in which they are closed. `main.py` parses the command line and calls `build_daemon`."""
from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable

import market_rules
import persistence.health as storage_health
import strategy
from accounts.identity import account_guard
from qmt.broker_guard import BrokerGuard, broker_step_seconds
from persistence.config_store import ConfigStore
from core.models import BrokerUnavailable, Rule, TradingError
from daemon.daemon_workers import DataWorker, Housekeeper, IntervalWorker
from accounts.lifeline import Lifeline
from brokers.select import is_simulation
from core.events import EventBus, EventKind
from doctor.cli import daemon_diagnostics
from orderfiles.intake import OrderFileIntake, default_inbox
from orderfiles.store import OrderFileStore
from orderfiles.worker import OrderFileWorker
from notify.composition import build_notifications
from chores.composition import build_chores
from core.position_monitor import PositionMonitor
from protection.sentinel import DaemonFacts, ProtectionSentinel
from protection.heartbeat import HeartbeatSender
from core.position_review import PositionReviews
from core.risk_breakers import CircuitBreakers
from core.signal_store import SignalStore
from core.stock_params import StockParams
from persistence.storage import Database
from core.strategy_runner import StrategyRunner
from core.trading_state import ACCOUNT_SCOPE, State, StateChange, TradingState
from watch.monitor import WATCH_RULES, DailyContextCache, WatchMonitor, validate_watch_signal
from watch.store import WatchStore
from daemon.workers import Watchdog

log = logging.getLogger("main")

SHUTDOWN_SECONDS = 6.0  # threads: stop and final sync; with the web server's 2 s the exit stays within 10 s
WEB_STOP_SECONDS = 2.0
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


@dataclass
class _Stores:
    """The databases and the sources a daemon starts from, each checked before anything trades on them."""

    mode: str  # 'simulation' | 'live'
    trading_db: Database
    live_broker: Any  # easy_qmt_trader's broker in live mode, else None
    data: Any  # data_manager.DataManager
    clock: Any  # market.clock.Clock


@dataclass
class _Trading:
    """The trading core: the order path from a decision to the broker and back."""

    events: EventBus
    trading_state: TradingState
    storage: storage_health.StorageGuard
    broker: BrokerGuard
    positions: Any  # position_manager.PositionManager
    executor: Any  # trading_executor.TradingExecutor
    signals: SignalStore


@dataclass
class _Rules:
    """What decides: the strategy runner, the position monitor, grid sessions and watch tasks."""

    pool: Any  # core.stock_pool.StockPool
    stock_params: StockParams
    runner: StrategyRunner
    monitor: PositionMonitor
    grid: Any  # grid_trading.GridManager
    reviews: PositionReviews
    watch_store: WatchStore
    watch: WatchMonitor


def build_daemon(settings: ConfigStore, data_dir: Path, log_dir: Path, secret_filter,
                 stock_pool_file: Path = Path("stock_pool.json"),
                 stop_event: threading.Event | None = None) -> Daemon:
    """Build everything; `stop_event` (set by the signal handlers, possibly already during the build) ends
    `Daemon.run`. Live mode checks the broker first: on a machine without miniQMT that is the reason to give.
    A start that fails closes what it had opened."""
    from webapi.server import WebServer

    stop_event = stop_event or threading.Event()
    market_rules.use_st_rule(market_rules.StLimitRule.from_config(settings))  # one ST band for every part
    try:  # one T+0 list and one set of listing dates for every part (issue 28)
        market_rules.use_instrument_data(market_rules.instrument_data_from_config(settings))
    except ValueError as exc:
        raise TradingError("CONFIG_INVALID", str(exc)) from None
    with contextlib.ExitStack() as opened:
        stores = _open_stores(settings, data_dir, secret_filter, opened)
        trading = _trading_core(settings, data_dir, stores)
        rules = _rules(settings, stores, trading, stock_pool_file)
        ex_rights_keeper = _ex_rights_keeper(settings, stores, trading, rules, data_dir)  # issue 28
        watchdog = Watchdog(settings, events=trading.events)
        order_files = _order_file_intake(settings, data_dir, stores.trading_db, stores.clock, trading.executor,
                                         trading.positions, stop_event, stores.data.hub)
        web_ctx = _web_context(settings, data_dir, log_dir, secret_filter, stores, trading, rules, watchdog,
                               order_files, opened)
        sentinel = _protection_sentinel(settings, stores, trading, rules)
        web_ctx.protection = sentinel.report_view  # /api/health turns red on a protection failure
        web_ctx.ex_rights = ex_rights_keeper  # GET /api/ex_rights (issue 28)
        secret_filter.add(str(settings.get("HEARTBEAT_URL") or ""))  # the outside monitor's push URL is a secret
        chores = build_chores(settings, stores.trading_db, stores.clock, trading.executor, trading.broker,
                              trading.events, trading.signals, rules.watch_store, live=stores.live_broker is not None)
        web_ctx.chores = chores  # issue 28 §3: 申购与逆回购 (GET /api/chores)
        notifications = build_notifications(
            settings, data_dir, log_dir, secret_filter, stores.clock, trading.events, stores.data, trading.executor,
            trading.positions, trading.broker, trading.signals, trading.trading_state, stores.trading_db,
            web_ctx.trigger_prices, live=stores.live_broker is not None, extra_jobs=tuple(chores.jobs()),
            chores_line=chores.summary)
        opened.callback(_close_quietly, *notifications.closers)
        web_ctx.notifier, web_ctx.jobs, web_ctx.reports_dir = (notifications.notifier, notifications.jobs,
                                                               notifications.reports_dir)
        web_ctx.snapshots = notifications.snapshots  # the post-close job records them; the 收益 page reads them
        watchlist = _watchlist(trading.positions, rules, order_files)
        stores.data.set_watchlist(watchlist())
        web = WebServer(web_ctx, settings.get("WEB_HOST"), settings.get("WEB_PORT"))
        for worker in _workers(settings, stores, trading, rules, order_files, watchlist, notifications.workers, web):
            watchdog.add(worker)
        watchdog.add(sentinel)  # outside the monitor → strategy → executor path it judges (DESIGN §8a)
        watchdog.add(HeartbeatSender(settings, sentinel.is_ok))
        try:
            web.start()
        except OSError as exc:
            raise TradingError("WEB_START_FAILED", f"网页服务无法在 {web.host}:{web.port} 启动（{exc.strerror or exc}），"
                                                   f"请检查端口是否已被占用，或用 --port 换一个端口") from exc
        opened.pop_all()  # started: from here the daemon closes them, in its own order
    _log_startup(settings, stores.mode, stores.data, web, data_dir, trading.trading_state)
    daemon = Daemon(settings, watchdog, stop_event=stop_event, components=dict(
        positions=trading.positions, executor=trading.executor, signals=trading.signals, data=stores.data,
        broker=trading.broker, web=web, monitor=rules.monitor, runner=rules.runner, grid=rules.grid,
        stock_pool=rules.pool, trading_state=trading.trading_state, events=trading.events, watch=rules.watch,
        watch_store=rules.watch_store, stock_params=rules.stock_params, storage=trading.storage,
        protection=sentinel))
    storage_health.mark_used(data_dir)  # from now on a missing or empty database here is refused
    # the final sync first, then the broker and data source, then every database (checkpointed, closed)
    daemon.closers += [trading.positions.sync, trading.broker.close, stores.data.close, stores.trading_db.close,
                       stores.data.bar_store.db.close, *notifications.closers,
                       lambda: logging.getLogger().removeHandler(web_ctx.log_tail)]
    return daemon


def _open_stores(settings: ConfigStore, data_dir: Path, secret_filter, opened: contextlib.ExitStack) -> _Stores:
    """The trading database, the live broker (live mode), the market data and its bar database, each checked;
    each is registered on `opened` as soon as it is open."""
    from data_manager import build_data_manager

    simulation = is_simulation(settings)
    mode = "simulation" if simulation else "live"
    trading_db = storage_health.open_checked(
        data_dir / ("sim_trading.db" if simulation else "trading.db"), data_dir,
        "模拟账户数据库" if simulation else "交易数据库（委托日志）", storage_health.RESET_HINTS[mode])
    opened.callback(_close_quietly, trading_db.close)
    live_broker = None if simulation else _connect_live_broker(settings, data_dir, trading_db)
    if live_broker is not None:
        opened.callback(_close_quietly, live_broker.close)
        secret_filter.add(live_broker.account.account_id)  # the full account id never reaches a log line
    guard = account_guard(trading_db, settings, data_dir) if simulation else None
    data, clock = build_data_manager(settings, data_dir, account_guard=guard)
    opened.callback(_close_quietly, data.close, data.bar_store.db.close)
    if guard is not None and not clock.is_replay:  # a real-time source: the guard had no replay to run in
        guard(data.source_name)
    if live_broker is not None and clock.is_replay:
        raise TradingError("LIVE_NEEDS_REAL_DATA", f"实盘模式需要真实实时行情（xtquant 或 mootdx），当前行情来源是"
                                                   f"「{data.source_label}」，拒绝启动")
    problem = storage_health.quick_check(data.bar_store.db)
    if problem:
        raise storage_health.corrupt_refusal(data.bar_store.db.path, data_dir, "行情数据库")
    return _Stores(mode, trading_db, live_broker, data, clock)


def _trading_core(settings: ConfigStore, data_dir: Path, stores: _Stores) -> _Trading:
    """Events, the trading state, the storage guard, the (guarded) broker, positions and the executor,
    recovered from the journal before anything else runs."""
    from position_manager import PositionManager
    from trading_executor import TradingExecutor

    db, clock = stores.trading_db, stores.clock
    events = EventBus(clock)
    stores.data.hub.on_clock_skew_alarm(lambda message, **data: events.emit(EventKind.ALARM, message, **data))
    if stores.live_broker is not None:
        _publish_broker_anomalies(events, stores.live_broker.health)
    trading_state = TradingState(db, clock)
    storage = storage_health.StorageGuard(
        trading_state, events, lambda: (db, stores.data.bar_store.db), data_dir,
        lambda: settings.get("STORAGE_MIN_FREE_MB") * 1e6)
    storage.watch(db)  # a failed write of a fill or a journal entry halts automatic trading at once
    trading_state.subscribe(lambda change: _publish_state_change(events, change))
    broker = _guarded(stores.live_broker or _sim_broker(settings, db, clock, stores.data.hub), settings, events)
    positions = PositionManager(db, settings, clock, stores.mode)
    breakers = CircuitBreakers(settings, clock, trading_state, events,
                               lambda day: executor.journal.counts_by_origin(day))
    executor = TradingExecutor(db, broker, positions, stores.data.hub.latest, settings, clock, trading_state, breakers)
    executor.add_fill_listener(lambda fill, rule: _publish_fill(events, fill, rule))
    broker.set_listener(executor)
    executor.recover()
    return _Trading(events, trading_state, storage, broker, positions, executor, SignalStore(db, clock))


def _rules(settings: ConfigStore, stores: _Stores, trading: _Trading, stock_pool_file: Path) -> _Rules:
    """The deciding components on the trading core, with per-stock parameters; recovered (runner, grid)."""
    from grid_trading import GridManager
    from core.stock_pool import StockPool

    db, clock, hub, indicators = stores.trading_db, stores.clock, stores.data.hub, stores.data.indicators
    positions, signals, executor = trading.positions, trading.signals, trading.executor
    pool = StockPool(stock_pool_file)
    stock_params = StockParams(db, settings, clock, settings.journal)  # cached per stock and change
    runner = StrategyRunner(signals, positions, executor, hub, settings, clock, indicators,
                            lambda: stock_params.buyable(pool.codes()), trading.trading_state,  # blacklist: no entry
                            params_for=stock_params.params_for)
    runner.recover()
    monitor = PositionMonitor(positions, hub, signals, executor, settings, clock, params_for=stock_params.params_for)
    grid = GridManager(db, settings, clock, positions, hub, signals, executor, settings_for=stock_params.settings_for)
    grid.attach(monitor, runner)
    grid.recover()
    watch_store = WatchStore(db, clock)
    watch = WatchMonitor(watch_store, hub, signals, positions, trading.events, settings, clock,
                         daily=DailyContextCache(stores.data.bar_store, indicators).get,
                         apply_exits=lambda code, params, source: stock_params.update(code, params, source))
    for rule in WATCH_RULES:
        runner.register_validator(rule, validate_watch_signal(positions))
    return _Rules(pool, stock_params, runner, monitor, grid, PositionReviews(db, clock), watch_store, watch)


def _ex_rights_keeper(settings: ConfigStore, stores: _Stores, trading: _Trading, rules: _Rules, data_dir: Path):
    """issue 28 §2: ex-rights events from the events file (replay) or live xtdata; None when neither is
    configured. The position table takes them at its own day roll, the rest (sim account, grid, watch tasks,
    journal, event) at the first quote of the day; the first quote of a held stock is checked for a gap."""
    from jobs.ex_rights import ExRightsKeeper, build_source

    xtdata = None
    if stores.live_broker is not None and stores.data.source_name == "xtquant":
        import importlib

        xtdata = lambda: importlib.import_module("xtquant.xtdata")  # noqa: E731 - loaded only when asked
    mootdx = None
    if stores.data.source_name == "mootdx" and settings.get("MOOTDX_SERVER"):
        from market.mootdx_source import open_quotes, parse_server

        mootdx = lambda: open_quotes(parse_server(str(settings.get("MOOTDX_SERVER"))),  # noqa: E731
                                     float(settings.get("MOOTDX_TIMEOUT")), data_dir)
    try:
        source = build_source(settings, xtdata, mootdx)
    except ValueError as exc:  # a bad events file: refuse to start, naming the line
        raise TradingError("EX_RIGHTS_FILE_BAD", str(exc)) from None
    if source is None:
        return None
    hub = stores.data.hub
    keeper = ExRightsKeeper(stores.trading_db, stores.clock, trading.events, source, trading.positions,
                            last_quote=hub.last_seen,
                            sim=getattr(trading.broker, "inner", trading.broker) if stores.live_broker is None else None,
                            grid=rules.grid, watch_store=rules.watch_store, settings=settings)
    trading.positions.set_ex_rights_source(keeper.source_for_positions)
    hub.subscribe(keeper.on_quote, first=True)  # the day's levels adjusted before any rule sees its quote
    return keeper


def _web_context(settings: ConfigStore, data_dir: Path, log_dir: Path, secret_filter, stores: _Stores,
                 trading: _Trading, rules: _Rules, watchdog: Watchdog, order_files: OrderFileIntake,
                 opened: contextlib.ExitStack):
    """What the web layer talks to (the notification parts are added once built)."""
    from webapi.common import WebContext, load_or_create_token

    try:
        token = load_or_create_token(data_dir, settings)
    except ValueError as exc:  # a configured token that is too short
        raise TradingError("INVALID_API_TOKEN", str(exc)) from exc
    secret_filter.add(token)
    intraday, log_tail = page_sources(stores.data.hub, secret_filter)
    opened.callback(logging.getLogger().removeHandler, log_tail)
    params_for = rules.stock_params.params_for
    return WebContext(
        settings=settings, positions=trading.positions, executor=trading.executor, data=stores.data,
        indicators=stores.data.indicators, signals=trading.signals, runner=rules.runner, health=watchdog.health,
        stock_pool=rules.pool, clock=stores.clock, mode=stores.mode, token=token, grid=rules.grid,
        broker=trading.broker, trigger_prices=lambda p: strategy.trigger_prices(p, params_for(p.stock_code)),
        trading_state=trading.trading_state, events=trading.events, order_files=order_files,
        diagnostics=daemon_diagnostics(settings, data_dir, log_dir, trading.broker, stores.data.hub, stores.clock),
        watch=rules.watch_store, stock_params=rules.stock_params, position_reviews=rules.reviews,
        intraday=intraday, log_tail=log_tail, data_dir=data_dir)


def _protection_sentinel(settings: ConfigStore, stores: _Stores, trading: _Trading,
                         rules: _Rules) -> ProtectionSentinel:
    """The protection guarantee (issue 25): it reads the facts (positions, the quote hub, the order journal, the
    broker link, the trading state) and wakes on every new quote as well as every PROTECTION_CHECK_INTERVAL."""
    indicators = stores.data.indicators
    facts = DaemonFacts(trading.positions, stores.data.hub, trading.executor.journal, trading.broker,
                        trading.trading_state, settings, stores.clock, rules.stock_params.params_for,
                        macd_decision=indicators.macd_decision if indicators is not None else None,
                        suspended=getattr(stores.data, "is_suspended", None))
    return ProtectionSentinel(facts.read, trading.events, settings, stores.clock, wait_for_quotes=facts.wait_for_quotes)


def _watchlist(positions, rules: _Rules, order_files: OrderFileIntake) -> Callable[[], list[str]]:
    """The stocks that need quotes: held, in the pool, named by an order file or a watch task."""
    def watchlist() -> list[str]:
        return sorted({p.stock_code for p in positions.all()} | set(rules.pool.codes())
                      | set(order_files.watch_codes()) | set(rules.watch.codes()))
    return watchlist


def _workers(settings: ConfigStore, stores: _Stores, trading: _Trading, rules: _Rules,
             order_files: OrderFileIntake, watchlist: Callable[[], list[str]], notification_workers, web) -> list:
    """Every named thread the watchdog keeps alive; "web" starts the web server again if its thread ended."""
    clock, broker, positions, executor = stores.clock, trading.broker, trading.positions, trading.executor
    roll_day: list[Callable[[date], object]] = [trading.storage.nightly_check, positions.roll_day, executor.roll_day]
    if hasattr(broker, "roll_day"):
        roll_day.insert(0, broker.roll_day)
    workers = [
        DataWorker(stores.data, watchlist),
        rules.monitor,
        rules.watch,
        rules.runner,
        IntervalWorker("sync", positions.sync, settings, "POSITION_SYNC_INTERVAL", final=positions.sync),
        IntervalWorker("orders", executor.check_open_orders, settings, "ORDER_CHECK_INTERVAL", clock,
                       only_in_session=not clock.is_replay, max_step=lambda: broker_step_seconds(settings)),
        Housekeeper(clock, settings, roll_day, lambda day: _day_report(executor, day)),
        IntervalWorker("storage", trading.storage.check, settings, "STORAGE_CHECK_INTERVAL"),
        OrderFileWorker(order_files, settings),
        IntervalWorker("web", web.keep_serving, settings, "THREAD_CHECK_INTERVAL"),
        *notification_workers,
    ]
    if stores.live_broker is not None:  # the broker's volume, available and cost are authoritative in live mode
        workers.append(IntervalWorker("broker_sync", lambda: _sync_from_broker(positions, broker, rules.reviews, executor),
                                      settings, "BROKER_SYNC_INTERVAL", clock, only_in_session=True,
                                      max_step=lambda: broker_step_seconds(settings)))
    return workers


def page_sources(hub, secret_filter):
    """What the web page's 分时 view and 日志 page read: today's intraday line per stock (fed by the quote hub)
    and the log tail (masked by the same secret filter as the log files)."""
    from webapi.intraday import IntradayBuffer
    from webapi.log_tail import LogTail

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
    """issue 13: every anomaly of the live broker's link (qmt.link.LinkHealth) is also an event, so the
    notifier and the page's event stream get it, not only the log and /api/health."""
    health.subscribe(lambda anomaly: events.emit(EventKind(anomaly.event_kind), anomaly.message, code=anomaly.code))


def _sync_from_broker(positions, broker, reviews: PositionReviews, executor=None) -> None:
    """The broker's positions; one the daemon did not open is 「待确认」 until the operator confirms its state
    (the broker gives no open date here, so its highest price starts from max(cost, price)). A failed or
    untrustworthy answer (timeout, empty while the asset shows market value; issue 13) is skipped until the
    next interval: it must not end the thread (the watchdog restarts a thread only a few times an hour).
    The broker has already logged and alarmed it. issue 25: first the fills and order states by query (fills
    whose push was lost are booked once, before the positions take the broker's volumes); any broker error,
    a call past its deadline (BrokerCallTimeout) included, skips this pass and never ends the thread."""
    before = {p.stock_code for p in positions.all()}
    try:
        if executor is not None:
            executor.reconcile_by_query()
        answer = broker.query_positions()
    except TradingError as exc:  # BrokerUnavailable, BrokerCallTimeout, an untrustworthy answer
        log.warning("本次券商同步跳过：%s", exc.message)
        return
    except Exception:  # a bug must not stop the next passes either; the log has the details
        log.exception("券商同步出错，本次跳过")
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
    action = rule.label.removesuffix(fill.side.label) + fill.side.label  # 盯盘买入, never 盯盘买入买入
    events.emit(EventKind.FILL, f"{fill.stock_code} {action} {fill.volume} 股 @ {fill.price:g}",
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
    """Raises BrokerUnavailable (a TradingError with a Chinese reason) when the live back-end cannot be used here."""
    from brokers.select import connect_live_broker

    configured = str(settings.get("ACCOUNT_CONFIG_FILE") or "")
    return connect_live_broker(settings, data_dir, trading_db,
                               account_config_path=Path(configured) if configured else None)


def _log_startup(settings: ConfigStore, mode: str, data, web, data_dir: Path, trading_state) -> None:
    lines = [
        f"运行模式：{'模拟交易' if mode == 'simulation' else '实盘交易'}",
        f"行情来源：{data.source_label}",
        f"网页地址：{web.url}",
        f"API 令牌文件：{(data_dir / 'api_token').resolve()}（令牌内容不会写入日志）",
        trading_state.status_line(),  # issue 25: a stop or pause is shown, never hidden behind 「自动交易：开启」
        trading_state.auto_trading_line(settings.get("ENABLE_AUTO_TRADING")),
    ]
    for line in lines + settings.startup_report() + settings.warnings:
        log.info(line)
