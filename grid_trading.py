"""Grid sessions on held stocks: the GridManager the web calls (start / stop / list / fills), detection of
grid orders from the monitor (queued as GRID_BUY / GRID_SELL signals that go through the strategy runner
and the executor like every other rule), fill bookkeeping and the end conditions. Rules: grid/rules.py."""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Optional

import grid.rules as rules
import market_rules
import strategy
from grid.rules import GridBook, GridEndReason, GridParamError, GridParams, GridState, GridStatus, GridWatch
from grid.store import GridStore, GridTrade, SessionRow
from core.models import (DataUnavailable, Fill, Order, OrderStatus, Position, Quote, Rule, Side, Signal, SignalStatus,
                    TradingError)
from core.order_journal import REPRICE_REQUESTED, JournalEntry
from core.order_sources import PROTECTIVE_EXITS

log = logging.getLogger(__name__)

GRID_RULES = (Rule.GRID_BUY, Rule.GRID_SELL)
RULE_FOR_SIDE = {Side.BUY: Rule.GRID_BUY, Side.SELL: Rule.GRID_SELL}
# Executed exits of the position that end its grid (sell-all rules; the first take-profit does not).
POSITION_EXITS = PROTECTIVE_EXITS

__all__ = ["GridManager", "GridSession", "GridTrade", "GridStatus", "GridEndReason"]


@dataclass(frozen=True)
class GridSession:
    """A session as the web shows it: parameters, state, the grid's own P&L at `current_price`."""

    id: int
    stock_code: str
    status: str  # active | stopped | finished
    status_label: str
    end_reason: Optional[str]  # a GridEndReason value
    end_reason_label: str
    end_message: str
    origin: str  # manual | take_profit
    created_at: datetime
    start_date: date
    ended_at: Optional[datetime]
    trading_days_held: int
    center_price: float
    step_ratio: float
    buy_amount: float
    callback_ratio: float
    max_investment: float
    take_profit_ratio: float
    stop_loss_ratio: float
    max_hold_days: int
    max_deviation: float
    reference_price: float  # the last grid fill (the centre before the first fill)
    next_buy_price: float  # the grid level one step below
    next_sell_price: float
    buy_trigger_price: Optional[float]  # with callback: the rebound price once the buy level was reached
    sell_trigger_price: Optional[float]
    watch_low: Optional[float]
    watch_high: Optional[float]
    last_fill_time: Optional[datetime]
    current_price: float
    net_volume: int  # shares bought minus sold by the grid (negative: base shares sold)
    average_price: float
    invested: float
    realized_pnl: float  # net of all fees
    unrealized_pnl: float
    total_pnl: float
    target_profit: float  # total_pnl at which the session ends with a profit
    stop_loss_amount: float  # total_pnl at which it ends with a loss (negative)
    fees: float
    buy_count: int
    sell_count: int
    bought_volume: int
    sold_volume: int
    pending_signal_id: Optional[int]
    open_order_id: str
    # issue 14: the P&L in the three parts a person can check, each with a one-line explanation
    round_trip_pnl: float = 0.0  # price gains of closed grid round trips, before fees
    pnl_explain: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            out[name] = value.isoformat() if isinstance(value, (datetime, date)) else value
        return out


class GridManager:
    """Owns the grid sessions. Thread-safe; lock order: strategy runner → this → executor / positions /
    signals / db. Broker fills arrive through a queue so the broker's thread never waits for this lock."""

    def __init__(self, db, settings, clock, positions, hub, signals, executor, settings_for=None):
        """`settings_for(code)`: the settings as seen by one stock (per-stock parameters, issue 17)."""
        self._store = GridStore(db)
        self._settings = settings
        self._settings_for = settings_for or (lambda _code: settings)
        self._clock = clock
        self._positions = positions
        self._hub = hub
        self._signals = signals
        self._executor = executor
        self._lock = threading.RLock()
        self._fills: "queue.SimpleQueue[tuple[Fill, Rule]]" = queue.SimpleQueue()
        self._rows: dict[int, SessionRow] = {row.id: row for row in self._store.load()}
        self._failures: dict[int, tuple[int, datetime]] = {}  # session -> (consecutive failed sends, last one)

    def attach(self, monitor, runner) -> None:
        """Hook into the engine: fills from the executor, detection from the monitor, validation and
        executed signals from the strategy runner."""
        self._executor.add_fill_listener(self.on_fill)
        monitor.add_check(self.check)
        for rule in GRID_RULES:
            runner.register_validator(rule, self.validate)
        runner.on_executed(self.on_signal_executed)

    # ---- API for the web -------------------------------------------------------------------------------
    def start_session(self, code: str, **overrides: Any) -> GridSession:
        """Start a grid on a held stock. `overrides`: GRID_* keys of this session's parameters and
        `center_price` (default: the current price). Raises TradingError with a Chinese message."""
        return self._start(code, overrides, origin="manual")

    def stop_session(self, session_id: int, reason: str = GridEndReason.MANUAL.value) -> GridSession:
        """End an active session (default reason: manual); its queued signal is voided, its open order
        cancelled. Raises TradingError when the session does not exist or has already ended."""
        with self._lock:
            self._refresh()
            row = self._row(session_id)
            if row.status is not GridStatus.ACTIVE:
                raise TradingError("GRID_NOT_ACTIVE", f"网格 #{session_id} {row.status.label}，无需停止")
            try:
                end = GridEndReason(reason)
            except ValueError:
                raise TradingError("INVALID_GRID_REASON", f"未知的网格结束原因：{reason}") from None
            self._end(row, end, "用户手动停止" if end is GridEndReason.MANUAL else end.label)
            return self._view(row)

    def sessions(self, active_only: bool = False) -> list[GridSession]:
        """All sessions, newest first."""
        with self._lock:
            self._refresh()
            rows = sorted(self._rows.values(), key=lambda r: r.id, reverse=True)
            return [self._view(r) for r in rows if not active_only or r.status is GridStatus.ACTIVE]

    def session(self, session_id: int) -> GridSession:
        """One session; raises TradingError GRID_NOT_FOUND."""
        with self._lock:
            self._refresh()
            return self._view(self._row(session_id))

    def trades(self, session_id: int) -> list[GridTrade]:
        """The session's fills, oldest first."""
        with self._lock:
            self._refresh()
            self._row(session_id)
            return self._store.trades(session_id)

    @property
    def data_version(self) -> int:
        """Grows whenever a session or fill is written (for the web's server-sent events)."""
        return self._store.version

    def apply_ex_rights(self, action, factor: float) -> list[dict]:
        """issue 28: before an ex-date's open, the stock's active sessions take the event (GridStore)."""
        with self._lock:
            rows = [row for row in self._rows.values()
                    if row.stock_code == action.code and row.status is GridStatus.ACTIVE]
            return [detail for row in rows if (detail := self._store.apply_ex_rights(row, action, factor))]

    def active_session_for(self, code: str) -> Optional[GridSession]:
        with self._lock:
            row = self._active_row(code)
            return self._view(row) if row else None

    # ---- start-up --------------------------------------------------------------------------------------
    def recover(self) -> None:
        """After a restart (call after executor.recover() and runner.recover()): a grid signal still queued is
        void, an order still open from before is cancelled, fills the grid did not record are booked from the
        executor's trade records; each session then continues from its last recorded fill."""
        with self._lock:
            self._drain()
            for row in [r for r in self._rows.values() if r.status is GridStatus.ACTIVE]:
                self._void_queued_signal(row, "进程重启，网格信号作废")
                entry = self._latest_entry(row)
                if _cancellable(entry):
                    log.warning("网格 #%s（%s）重启前的委托 %s 仍未完成，撤单后从最后一次网格成交继续",
                                row.id, row.stock_code, entry.client_id)
                    self._cancel(row, entry.client_id)
                self._settle_order(row)
                self._store.save(row)

    # ---- hooks -----------------------------------------------------------------------------------------
    def on_fill(self, fill: Fill, rule: Rule) -> None:
        """Executor fill listener (the broker's event thread, possibly while an order is being placed). It
        never waits for this manager's lock: the fill is queued and booked now only if the lock is free."""
        self._fills.put((fill, rule))
        if self._lock.acquire(blocking=False):
            try:
                self._refresh()
            finally:
                self._lock.release()

    def check(self, position: Position, quote: Quote) -> Optional[Signal]:
        """Monitor check for one held position: record fills, end finished sessions, queue a grid signal."""
        with self._lock:
            self._refresh()
            row = self._active_row(position.stock_code)
            if row is None:
                return None
            return self._check_row(row, position, quote)

    def validate(self, signal: Signal) -> Optional[str]:
        """Strategy-runner validator for GRID_BUY / GRID_SELL: None when the signal may execute now."""
        with self._lock:
            self._drain()
            row = self._rows.get(signal.grid_session_id or -1)
            if row is None:
                return f"网格会话 #{signal.grid_session_id} 不存在"
            if row.status is not GridStatus.ACTIVE:
                return f"网格 #{row.id} {row.status.label}（{row.end_reason.label if row.end_reason else ''}）"
            if not self._settings.get("ENABLE_GRID_TRADING"):
                return "网格交易已关闭（ENABLE_GRID_TRADING）"
            if row.pending_signal_id != signal.id:
                return f"网格 #{row.id} 的信号 #{signal.id} 已被取代"
            quote = self._hub.latest(row.stock_code)
            position = self._positions.get(row.stock_code)
            if quote is None or position is None or position.volume <= 0:
                return f"{row.stock_code} 持仓或行情已不存在"
            if rules.in_cooldown(row.state, self._clock.now(), self._settings.get("GRID_COOLDOWN_SECONDS")):
                return f"网格 #{row.id} 仍在成交冷却期内"
            exit_rule = self._exit_condition(position, quote.price)
            if exit_rule is not None:
                return f"{row.stock_code} 持仓{exit_rule.label}条件成立（现价 {quote.price:.3f}），网格暂停下单"
            return rules.still_valid(row.stock_code, row.state, signal.side, signal.volume, quote.price,
                                     position.available, row.params) or None

    def on_signal_executed(self, signal: Signal, order: Order) -> None:
        """Strategy-runner listener: end the grid when an exit of the position was executed; optionally
        start a grid after the first take-profit."""
        with self._lock:
            row = self._rows.get(signal.grid_session_id or -1)
            if row is not None and row.pending_signal_id == signal.id:
                row.open_order_id = order.client_id
                self._store.save(row)
            if signal.rule in POSITION_EXITS:
                active = self._active_row(signal.stock_code)
                if active is not None:
                    self._end(active, GridEndReason.POSITION_EXIT, f"持仓{signal.rule.label}已执行（信号 #{signal.id}）")
            elif signal.rule is Rule.TAKE_PROFIT and self._settings.get("GRID_AUTO_START_AFTER_TAKE_PROFIT"):
                self._auto_start(signal.stock_code)

    # ---- internals: sessions ---------------------------------------------------------------------------
    def _start(self, code: str, overrides: dict, origin: str) -> GridSession:
        try:
            code = market_rules.normalize_code(code)
        except ValueError as exc:
            raise TradingError("INVALID_STOCK_CODE", str(exc)) from None
        overrides = dict(overrides)
        center = overrides.pop("center_price", None)
        try:
            params = GridParams.from_settings(self._settings_for(code), overrides)
        except GridParamError as exc:
            raise TradingError("INVALID_GRID_PARAMS", str(exc)) from None
        with self._lock:
            self._refresh()
            existing = self._active_row(code)
            if existing is not None:
                raise TradingError("GRID_ALREADY_ACTIVE", f"{code} 已有运行中的网格 #{existing.id}")
            position = self._positions.get(code)
            if position is None or position.volume <= 0:
                raise TradingError("NO_POSITION", f"{code} 没有持仓，不能启动网格")
            center = self._center_price(code, center)
            if rules.grid_volume(code, center, params) <= 0:
                lot = market_rules.min_buy_volume(code)
                raise TradingError("GRID_AMOUNT_TOO_SMALL",
                                   f"每格金额 {params.buy_amount:.2f} 元在中心价 {center:.3f} 买不到一手（{lot} 股），"
                                   f"每格至少需要 {rules.min_grid_amount(code, center):.0f} 元")
            now = self._clock.now()
            row = self._store.create(SessionRow(
                stock_code=code, params=params, center_price=center, origin=origin, last_price=center,
                state=GridState(center, GridWatch(), GridBook()), created_at=now, start_date=now.date()))
            self._rows[row.id] = row
            grid = rules.levels(code, center, params)
            log.info("启动网格 #%s：%s 中心价 %.3f，间距 %.2f%%，每格 %.0f 元，买入价 %.3f，卖出价 %.3f（%s）",
                     row.id, code, center, params.step_ratio * 100, params.buy_amount, grid.buy_price,
                     grid.sell_price, "首次止盈后自动启动" if origin == "take_profit" else "手动启动")
            return self._view(row)

    def _center_price(self, code: str, given: Any) -> float:
        if given is None:
            quote = self._hub.latest(code)
            if quote is None:
                raise DataUnavailable("NO_QUOTE", f"{code} 没有有效的最新行情，无法确定网格中心价")
            return quote.price
        if isinstance(given, bool) or not isinstance(given, (int, float)) or not given > 0:
            raise TradingError("INVALID_GRID_PARAMS", f"网格中心价必须是正数，收到：{given}")
        return market_rules.round_price(code, float(given))

    def _auto_start(self, code: str) -> None:
        if self._active_row(code) is not None:
            return
        try:
            self._start(code, {}, origin="take_profit")
        except TradingError as exc:
            log.warning("首次止盈后自动启动 %s 网格失败：%s", code, exc.message)

    def _check_row(self, row: SessionRow, position: Position, quote: Quote) -> Optional[Signal]:
        code, price, now = row.stock_code, quote.price, self._clock.now()
        before = (row.state, row.pending_signal_id, row.open_order_id)
        self._settle_order(row)
        grid = rules.levels(code, row.state.reference_price, row.params)
        watch = rules.track(row.state.watch, grid, price)
        row.state = GridState(row.state.reference_price, watch, row.state.book, row.state.last_fill_time)
        row.last_price = price  # persisted with the next change (a write per quote is not worth it)
        days = self._clock.calendar.trading_days_between(row.start_date, now.date())
        reason = rules.end_reason(row.state.book, row.params, row.center_price, price, days, position.volume)
        if reason is not None:
            self._end(row, reason, self._end_detail(row, reason, price, days))
            return None
        signal = None
        exit_rule = self._exit_condition(position, price)
        if exit_rule is not None:
            self._give_way(row, exit_rule, price)
        elif (self._settings.get("ENABLE_GRID_TRADING") and row.pending_signal_id is None
              and self._retry_wait(row, now) is None):
            signal = self._queue_signal(row, position, quote, now)
        if (row.state, row.pending_signal_id, row.open_order_id) != before:
            self._store.save(row)
        return signal

    def _exit_condition(self, position: Position, price: float) -> Optional[Rule]:
        """The position's sell-all exit (stop-loss / dynamic stop) whose condition holds at `price`, if any."""
        triggers = strategy.trigger_prices(position,
                                           strategy.RuleParams.from_settings(self._settings_for(position.stock_code)))
        if triggers.stop_loss_price is not None and price <= triggers.stop_loss_price:
            return Rule.STOP_LOSS
        if triggers.dynamic_stop_price is not None and price <= triggers.dynamic_stop_price:
            return Rule.DYNAMIC_STOP
        return None

    def _give_way(self, row: SessionRow, exit_rule: Rule, price: float) -> None:
        """While the position's exit holds, the grid queues nothing and withdraws its working order: the
        monitor raises no exit signal while an order of the same side works, and no grid buy should
        average into a position that is being stopped out. The session ends when the exit executes."""
        self._void_queued_signal(row, f"持仓{exit_rule.label}条件成立（现价 {price:.3f}），网格信号作废")
        entry = self._latest_entry(row)
        if _cancellable(entry):
            log.info("网格 #%s：%s 持仓%s条件成立（现价 %.3f），撤销网格委托 %s", row.id, row.stock_code,
                     exit_rule.label, price, entry.client_id)
            self._cancel(row, entry.client_id)

    def _queue_signal(self, row: SessionRow, position: Position, quote: Quote, now: datetime) -> Optional[Signal]:
        order = rules.decide(row.stock_code, row.state, quote.price, position.available, row.params, now,
                             self._settings.get("GRID_COOLDOWN_SECONDS"))
        if order is None or not self._side_allowed(order.side):
            return None
        if self._executor.open_orders(row.stock_code, order.side):
            return None  # another order of this side is working; the runner would refuse the signal anyway
        signal = Signal(stock_code=row.stock_code, rule=RULE_FOR_SIDE[order.side], volume=order.volume,
                        trigger_price=order.trigger_price, observed_price=quote.price, created_at=now,
                        episode=position.open_date.isoformat() if position.open_date else "",
                        grid_session_id=row.id)
        stored = self._signals.add(signal, cooldown_seconds=self._settings.get("SIGNAL_COOLDOWN_SECONDS"))
        if stored is None:
            return None
        row.pending_signal_id = stored.id
        log.info("网格 #%s 信号 #%s：%s %s %d 股，触发价 %.3f，现价 %.3f", row.id, stored.id, row.stock_code,
                 stored.rule.label, stored.volume, stored.trigger_price, quote.price)
        return stored

    def _side_allowed(self, side: Side) -> bool:
        return self._settings.get("ENABLE_ALLOW_BUY" if side is Side.BUY else "ENABLE_ALLOW_SELL")

    def _end_detail(self, row: SessionRow, reason: GridEndReason, price: float, days: int) -> str:
        result = rules.pnl(row.state.book, price)
        if reason is GridEndReason.DEVIATION:
            return f"现价 {price:.3f} 偏离中心价 {row.center_price:.3f} 超过 {row.params.max_deviation:.0%}"
        if reason is GridEndReason.EXPIRED:
            return f"已运行 {days} 个交易日（上限 {row.params.max_hold_days}）"
        if reason is GridEndReason.POSITION_GONE:
            return f"{row.stock_code} 已无持仓"
        return f"网格收益 {result.total:.2f} 元（已实现 {result.realized:.2f}，浮动 {result.unrealized:.2f}）"

    def _end(self, row: SessionRow, reason: GridEndReason, message: str) -> None:
        self._void_queued_signal(row, f"网格{reason.status.label}：{reason.label}")
        entry = self._latest_entry(row)
        if _cancellable(entry):
            self._cancel(row, entry.client_id)  # a fill that still comes is booked to this session
        row.status, row.end_reason, row.end_message = reason.status, reason, message
        row.ended_at = self._clock.now()
        row.pending_signal_id = None
        self._store.save(row)
        log.info("网格 #%s（%s）%s：%s。%s", row.id, row.stock_code, reason.status.label, reason.label, message)

    def _refresh(self) -> None:
        """Book queued fills; end sessions whose position is gone (the monitor only checks held stocks)."""
        self._drain()
        self._end_sessions_without_position()

    def _end_sessions_without_position(self) -> None:
        for row in [r for r in self._rows.values() if r.status is GridStatus.ACTIVE]:
            position = self._positions.get(row.stock_code)
            if position is None or position.volume <= 0:
                self._end(row, GridEndReason.POSITION_GONE, f"{row.stock_code} 已无持仓")

    def _active_row(self, code: str) -> Optional[SessionRow]:
        for row in self._rows.values():
            if row.stock_code == code and row.status is GridStatus.ACTIVE:
                return row
        return None

    def _row(self, session_id: int) -> SessionRow:
        row = self._rows.get(session_id)
        if row is None:
            raise TradingError("GRID_NOT_FOUND", f"网格会话 #{session_id} 不存在")
        return row

    # ---- internals: orders and fills -------------------------------------------------------------------
    # A session has at most one grid signal in flight (`pending_signal_id`): queued, executing, or with its
    # order chain still working (a timed-out sell re-placed by the executor keeps the signal id). The order
    # journal links every order and fill back to its signal, and the signal to its session.
    def _settle_order(self, row: SessionRow) -> None:
        """Follow the in-flight signal to its orders; when they are all done, book their fills (from the
        executor's records, whether or not the fill listener has run yet) and clear it."""
        signal_id = row.pending_signal_id
        if signal_id is None:
            return
        signal = self._signals.get(signal_id)
        entry = self._latest_entry(row)
        if signal is None or signal.status in (SignalStatus.REJECTED, SignalStatus.EXPIRED):
            if entry is not None and _send_failed(entry):
                self._note_send_result(row, entry)
            row.pending_signal_id = None
            return
        if entry is None:
            return  # queued, or executing and not yet journaled
        row.open_order_id = entry.client_id
        if entry.status.is_open or entry.reprice_state == REPRICE_REQUESTED:
            return
        self._book_recorded_fills(row, entry)
        self._note_send_result(row, entry)
        row.pending_signal_id = None

    def _note_send_result(self, row: SessionRow, entry: JournalEntry) -> None:
        """Count consecutive grid orders that failed (refused, undelivered) or got no answer (unknown); an
        order that traded resets the count. Past GRID_SEND_RETRY_LIMIT the session stops (issue 25 item 13:
        one undeliverable order was re-sent 20 times in a broker hang)."""
        if not _send_failed(entry):
            self._failures.pop(row.id, None)
            return
        count = self._failures.get(row.id, (0, None))[0] + 1
        self._failures[row.id] = (count, self._clock.now())
        log.warning("网格 #%s（%s）委托 %s 未成功（%s），连续第 %d 次", row.id, row.stock_code, entry.client_id,
                    entry.reason or entry.status.value, count)

    def _retry_wait(self, row: SessionRow, now: datetime) -> Optional[str]:
        """Why the session may not send now after failed sends (back-off), or None. Ends the session once
        its failures exceed GRID_SEND_RETRY_LIMIT."""
        count, last = self._failures.get(row.id, (0, None))
        if not count:
            return None
        limit = int(self._settings.get("GRID_SEND_RETRY_LIMIT"))
        if count > limit:
            self._end(row, GridEndReason.SEND_FAILED, f"连续 {count} 笔网格委托失败或结果未知（重发上限 {limit} 次），"
                                                      "已停止该网格，请检查券商连接后重新启动")
            self._failures.pop(row.id, None)
            return "网格已因委托多次失败停止"
        delay = rules.retry_delay_seconds(count, float(self._settings.get("GRID_RETRY_BACKOFF_SECONDS")))
        if (now - last).total_seconds() < delay:
            return f"网格委托失败后等待 {delay:g} 秒再重发"
        return None

    def _latest_entry(self, row: SessionRow) -> Optional[JournalEntry]:
        if row.pending_signal_id is None:
            return None
        return self._executor.journal.latest_for_signal(row.pending_signal_id)

    def _book_recorded_fills(self, row: SessionRow, latest: JournalEntry) -> None:
        chain, entry = {latest.client_id}, latest
        while entry is not None and entry.parent_client_id:
            chain.add(entry.parent_client_id)
            entry = self._executor.journal.get(entry.parent_client_id)
        records = self._executor.trade_records(start=latest.trading_day, end=latest.trading_day,
                                               code=row.stock_code)
        for record in records:
            if record["client_id"] in chain:
                self._book(row, _fill_from_record(record), Rule(record["strategy"]))

    def _cancel(self, row: SessionRow, client_id: str) -> None:
        try:
            self._executor.cancel_order(client_id)
        except TradingError as exc:
            log.warning("撤销网格 #%s 的委托 %s 失败：%s", row.id, client_id, exc.message)

    def _void_queued_signal(self, row: SessionRow, reason: str) -> None:
        """Take a still-queued signal off the queue atomically (claim); one already executing is left to the
        runner (the validator refuses it, or its order is followed like any other)."""
        if row.pending_signal_id is None:
            return
        signal = self._signals.get(row.pending_signal_id)
        if signal is not None and signal.status is SignalStatus.PENDING and self._signals.claim(signal.id):
            self._signals.mark(signal.id, SignalStatus.REJECTED, reason)
            row.pending_signal_id = None

    def _drain(self) -> None:
        while True:
            try:
                fill, rule = self._fills.get_nowait()
            except queue.Empty:
                return
            if rule not in GRID_RULES:
                continue
            row = self._row_for_fill(fill)
            if row is None:
                log.warning("网格成交 %s（委托 %s）找不到所属网格，未计入网格收益", fill.fill_id, fill.client_id)
            else:
                self._book(row, fill, rule)

    def _row_for_fill(self, fill: Fill) -> Optional[SessionRow]:
        entry = self._executor.journal.find(fill.client_id or fill.order_id)
        if entry is None or entry.signal_id is None:
            return None
        signal = self._signals.get(entry.signal_id)
        if signal is None or signal.grid_session_id is None:
            return None
        return self._rows.get(signal.grid_session_id)

    def _book(self, row: SessionRow, fill: Fill, rule: Rule) -> None:
        if self._store.has_trade(fill.fill_id):
            return
        book = rules.apply_fill(row.state.book, fill.side, fill.price, fill.volume, fill.fees)
        row.state = GridState(fill.price, GridWatch(), book, fill.time)  # the next grid is around this fill
        trade = GridTrade(id=0, session_id=row.id, fill_id=fill.fill_id, order_id=fill.client_id,
                          stock_code=fill.stock_code, side=fill.side, rule=rule, price=fill.price, volume=fill.volume,
                          amount=fill.amount, fees=fill.fees, time=fill.time, net_volume_after=book.net_volume,
                          realized_pnl_after=rules.cents(book.realized_pnl))
        self._store.add_trade(row, trade)
        result = rules.pnl(book, fill.price)
        log.info("网格 #%s 成交：%s %s %d 股 @ %.3f，网格净持股 %d，网格收益 %.2f 元", row.id, row.stock_code,
                 fill.side.label, fill.volume, fill.price, book.net_volume, result.total)

    # ---- internals: views ------------------------------------------------------------------------------
    def _view(self, row: SessionRow) -> GridSession:
        code, state, params = row.stock_code, row.state, row.params
        price = row.last_price
        if row.status is GridStatus.ACTIVE:
            quote = self._hub.latest(code)
            price = quote.price if quote is not None else row.last_price
        grid = rules.levels(code, state.reference_price, params)
        result = rules.pnl(state.book, price)
        end_day = row.ended_at.date() if row.ended_at else self._clock.today()
        callback = params.callback_ratio > 0
        return GridSession(
            id=row.id, stock_code=code, status=row.status.value, status_label=row.status.label,
            end_reason=row.end_reason.value if row.end_reason else None,
            end_reason_label=row.end_reason.label if row.end_reason else "", end_message=row.end_message,
            origin=row.origin, created_at=row.created_at, start_date=row.start_date, ended_at=row.ended_at,
            trading_days_held=self._clock.calendar.trading_days_between(row.start_date, end_day),
            center_price=row.center_price, step_ratio=params.step_ratio, buy_amount=params.buy_amount,
            callback_ratio=params.callback_ratio, max_investment=params.max_investment,
            take_profit_ratio=params.take_profit_ratio, stop_loss_ratio=params.stop_loss_ratio,
            max_hold_days=params.max_hold_days, max_deviation=params.max_deviation,
            reference_price=state.reference_price, next_buy_price=grid.buy_price, next_sell_price=grid.sell_price,
            buy_trigger_price=rules.rebound_price(code, state.watch, params) if callback else grid.buy_price,
            sell_trigger_price=rules.pullback_price(code, state.watch, params) if callback else grid.sell_price,
            watch_low=state.watch.low, watch_high=state.watch.high, last_fill_time=state.last_fill_time,
            current_price=price, net_volume=state.book.net_volume, average_price=round(state.book.average_price, 3),
            invested=rules.cents(state.book.invested), realized_pnl=result.realized,
            unrealized_pnl=result.unrealized, total_pnl=result.total,
            target_profit=rules.cents(params.max_investment * params.take_profit_ratio),
            stop_loss_amount=rules.cents(params.max_investment * params.stop_loss_ratio),
            fees=rules.cents(state.book.fees), buy_count=state.book.buy_count, sell_count=state.book.sell_count,
            bought_volume=state.book.bought_volume, sold_volume=state.book.sold_volume,
            pending_signal_id=row.pending_signal_id, open_order_id=row.open_order_id,
            round_trip_pnl=rules.cents(state.book.realized_pnl + state.book.fees),
            pnl_explain=pnl_explanations(state.book, price))


def pnl_explanations(book: rules.GridBook, price: float) -> dict[str, str]:
    """One Chinese line per part of the grid P&L: total = round trips + unrealised − fees."""
    net = book.net_volume
    if net > 0:
        unrealized = f"网格净买入的 {net} 股（均价 {book.average_price:.3f}）按现价 {price:g} 计算的浮动盈亏"
    elif net < 0:
        unrealized = (f"网格多卖出的 {-net} 股底仓（均价 {book.average_price:.3f}）按现价 {price:g} 买回的浮动盈亏："
                      "卖出后价格上涨时为负")
    else:
        unrealized = "网格没有未平的股数，浮动盈亏为 0"
    return {"round_trip": "已平仓的网格买卖来回的价差收益（未扣费用）",
            "unrealized": unrealized,
            "fees": f"网格全部 {book.buy_count + book.sell_count} 笔成交的佣金、印花税和过户费",
            "total": "网格盈亏 = 来回收益 + 浮动盈亏 − 费用"}


def _send_failed(entry: JournalEntry) -> bool:
    """An order that never traded and was refused or undelivered, or whose outcome is unknown."""
    if entry.filled_volume > 0:
        return False
    return entry.status in (OrderStatus.REJECTED, OrderStatus.UNKNOWN)


def _cancellable(entry: Optional[JournalEntry]) -> bool:
    return entry is not None and entry.status.is_open and entry.status is not OrderStatus.CANCEL_PENDING


def _fill_from_record(record: dict) -> Fill:
    """A fill as the executor's trade_records row stores it."""
    return Fill(fill_id=record["fill_id"], order_id=record["order_id"], client_id=record["client_id"],
                stock_code=record["stock_code"], side=Side(record["side"]), price=record["price"],
                volume=record["volume"], time=record["trade_time"], commission=record["commission"],
                stamp_duty=record["stamp_duty"], transfer_fee=record["transfer_fee"])
