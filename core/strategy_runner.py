"""The strategy thread: takes queued signals, validates each one again at the current price (DESIGN §8) and
executes it through the trading executor when auto-trading is on (or when a person asks for one); it also
queues the daily MACD entries and exits. Every outcome is written on the signal."""
from __future__ import annotations

import logging
import threading
from datetime import date
from typing import Callable, Optional

import market_rules
import strategy
from core.order_sources import is_protective
from core.models import Order, OrderStatus, Rule, Side, Signal, SignalStatus, TradingError
from qmt.broker_guard import broker_step_seconds
from core.position_monitor import broker_refusals, exit_retry_delay
from daemon.workers import Worker, wait_for_version

log = logging.getLogger(__name__)

SignalValidator = Callable[[Signal], Optional[str]]
REPLAY_WAKE_SECONDS = 0.1
GONE_CODES = {"CONDITION_GONE", "NO_POSITION", "ALREADY_HELD"}  # grid signals are voided by the grid itself
EXIT_GONE_CODES = {"CONDITION_GONE", "NO_POSITION", "NO_AVAILABLE"}  # an exit that no longer applies is rejected
# Refusals of a source's budget or halt: the signal waits as one queued row instead of a rejected row per quote
BLOCKED_CODES = {"MAX_ORDERS", "SOURCE_HALTED", "STOCK_HALTED"}


class SignalRejected(TradingError):
    """A signal that no longer holds; the reason is written on the signal."""


class StrategyRunner(Worker):
    name = "strategy"

    def __init__(self, signals, positions, executor, hub, settings, clock, indicators=None,
                 stock_pool: Callable[[], list[str]] = list, trading_state=None,
                 params_for: Optional[Callable[[str], strategy.RuleParams]] = None):
        self._params_for = params_for  # a stock's effective rule parameters (per-stock overrides, issue 17)
        self._signals = signals
        self._positions = positions
        self._executor = executor
        self._hub = hub
        self._settings = settings
        self._clock = clock
        self._indicators = indicators
        self._stock_pool = stock_pool
        self._state = trading_state  # a pause or halt keeps signals queued for a person
        self._version = 0
        self._lock = threading.Lock()  # one signal executes at a time, automatic or manual
        self._validators: dict[Rule, SignalValidator] = {}
        self._executed_listeners: list[Callable[[Signal, Order], None]] = []
        self._macd_checked: set[tuple[str, date]] = set()
        self._retry_in: Optional[float] = None  # seconds until a held-back exit may be tried again

    @property
    def max_step_seconds(self) -> float:  # type: ignore[override]
        return broker_step_seconds(self._settings)

    @property
    def next_retry_seconds(self) -> Optional[float]:
        """Seconds until a held-back exit may be tried again (the runner wakes by then), or None."""
        return self._retry_in

    # ---- extension points (grid trading)
    def register_validator(self, rule: Rule, validator: SignalValidator) -> None:
        """Validation for rules not evaluated by `strategy.evaluate` (grid signals)."""
        self._validators[rule] = validator

    def on_executed(self, listener: Callable[[Signal, Order], None]) -> None:
        self._executed_listeners.append(listener)

    # ---- loop
    def wait(self, stop: threading.Event, limit: float) -> None:
        timeout = min(limit, self._settings.get("MONITOR_INTERVAL"))
        if self._clock.is_replay:  # a replayed day may last less than MONITOR_INTERVAL: look at every day's open
            timeout = min(timeout, REPLAY_WAKE_SECONDS)
        if self._retry_in is not None:  # a refused exit is tried again as soon as its back-off ends
            timeout = min(timeout, max(self._retry_in, REPLAY_WAKE_SECONDS))
        self._version = wait_for_version(self._signals.wait, self._version, stop, timeout)

    def run_once(self) -> None:
        self.queue_macd_signals()
        auto = self._settings.get("ENABLE_AUTO_TRADING") and (self._state is None or self._state.allows_automatic())
        self._retry_in = None
        for signal in self._signals.pending():
            if self._is_expired(signal):
                self._expire(signal)
            elif not auto:
                self._expire_if_gone(signal)
            elif not self._held_back(signal):
                self._execute(signal)

    def _held_back(self, signal: Signal) -> bool:
        """A signal that must wait stays one queued row (DESIGN §8a): its source is halted or the stock locked
        (recorded on the row, not refused again at every quote), or it is an exit refused or failed less than
        EXIT_RETRY_SECONDS ago (tried again at the next quote after that, without any cooldown)."""
        blocked = self._state.automatic_block(signal.stock_code, signal.rule) if self._state is not None else None
        if blocked:
            self._signals.hold(signal.id, blocked)
            return True
        count, since = self._signals.holds(signal.id)
        backoff = self._exit_back_off(signal) if count else 0.0
        if count and since is not None and since < backoff:
            wait = backoff - since
            self._retry_in = wait if self._retry_in is None else min(self._retry_in, wait)
            return True
        return False

    def _exit_back_off(self, signal: Signal) -> float:
        """EXIT_RETRY_SECONDS after a refusal; doubled per BROKER refusal of the stock's sells since the signal
        was detected, up to EXIT_RETRY_MAX_SECONDS (issue 25: a sell refused for good is not re-sent every second
        forever; failures to reach the broker, e.g. a link drop, keep the short interval)."""
        base = float(self._settings.get("EXIT_RETRY_SECONDS"))
        if not is_protective(signal.rule):
            return base
        refused = broker_refusals(self._executor.journal.entries(day=self._clock.today()), signal.stock_code,
                                  signal.created_at)
        return max(base, exit_retry_delay(len(refused), base, float(self._settings.get("EXIT_RETRY_MAX_SECONDS"))))

    def recover(self) -> None:
        """After a crash: a signal caught mid-execution is never executed again. If its order reached the
        journal it is marked executed with that order; otherwise it is void (the monitor re-detects)."""
        for signal in self._signals.executing():
            order = self._executor.order_for_signal(signal.id)
            if order is not None and not _never_sent(order):
                self._apply_rule_state(signal)
                self._signals.mark(signal.id, SignalStatus.EXECUTED, "重启后核对：委托已存在", order.client_id)
            else:
                # The episode flag was set before sending; no order went out, so the rule may fire again.
                self._revert_rule_state(signal)
                self._signals.mark(signal.id, SignalStatus.REJECTED, "进程重启时该信号尚未下单，已作废",
                                   order.client_id if order else "")

    # ---- manual execution (web)
    def execute_signal(self, signal_id: int, source: str = "web") -> Signal:
        """A person executes a queued signal: it is validated again at the current price and placed as an order
        the operator confirmed (it passes a pause; when halted only a sell does)."""
        signal = self._signals.get(signal_id)
        if signal is None:
            raise TradingError("SIGNAL_NOT_FOUND", f"信号 #{signal_id} 不存在")
        if signal.status is not SignalStatus.PENDING:
            raise TradingError("SIGNAL_NOT_PENDING",
                               f"信号 #{signal_id} 当前状态为「{signal.status.label}」，不能执行")
        log.info("操作员（%s）手动执行信号 #%s：%s %s", source, signal.id, signal.stock_code, signal.rule.label)
        if self._is_expired(signal):
            self._expire(signal)
        else:
            self._execute(signal, operator_confirmed=True)
        return self._signals.get(signal_id)

    # ---- validation and execution
    def _execute(self, signal: Signal, operator_confirmed: bool = False) -> None:
        with self._lock:
            if not self._signals.claim(signal.id):
                return
            try:
                volume = self.validate(signal)
                self._apply_rule_state(signal)
                try:
                    order = self._place(signal, volume, operator_confirmed)
                except TradingError:
                    self._revert_rule_state(signal)
                    raise
            except TradingError as exc:
                self._refused(signal, exc)
                return
            self._signals.mark(signal.id, SignalStatus.EXECUTED, "", order.client_id)
            log.info("信号 #%s 已执行：%s %s %d 股，委托 %s", signal.id, signal.stock_code, signal.rule.label,
                     order.volume, order.client_id)
        for listener in self._executed_listeners:
            listener(signal, order)

    def _refused(self, signal: Signal, exc: TradingError) -> None:
        """A protective exit that was refused or failed (link down, broker refusal, no quote, an order still
        working) stays queued and is tried again at the next quote: no rejected row, so no cooldown starts.
        A signal held back by its source's budget or halt stays queued as one row too. Anything else, and an
        exit whose condition is gone, is rejected with the reason."""
        if is_protective(signal.rule) and exc.code not in EXIT_GONE_CODES:
            self._signals.hold(signal.id, f"未能卖出，将在下一个行情重试：{exc.message}")
            self._retry_in = self._exit_back_off(signal)  # wake by then even without a new quote
            log.warning("信号 #%s（%s %s）暂未执行，下一个行情重试：%s", signal.id, signal.stock_code,
                        signal.rule.label, exc.message)
            return
        if exc.code in BLOCKED_CODES:
            self._signals.hold(signal.id, exc.message)
            log.info("信号 #%s（%s %s）暂缓执行：%s", signal.id, signal.stock_code, signal.rule.label, exc.message)
            return
        self._signals.mark(signal.id, SignalStatus.REJECTED, exc.message)
        log.info("信号 #%s（%s %s）未执行：%s", signal.id, signal.stock_code, signal.rule.label, exc.message)

    def _blocking_orders(self, signal: Signal) -> list:
        """Open orders of the stock and side that stop this signal. A sell-all exit is stopped only by another
        exit: a resting manual, take-profit or grid sell (being withdrawn) does not hold back the free shares."""
        entries = self._executor.journal.open_entries(signal.stock_code, signal.side)
        if is_protective(signal.rule):
            return [entry for entry in entries if is_protective(entry.rule, entry.origin_rule)]
        return entries

    def validate(self, signal: Signal) -> int:
        """The volume to trade now, or SignalRejected with the reason (DESIGN §8)."""
        code = signal.stock_code
        if self._blocking_orders(signal):
            raise SignalRejected("OPEN_ORDER_EXISTS", f"{code} 已有未完成的{signal.side.label}委托")
        quote = self._hub.latest(code)
        if quote is None:
            raise SignalRejected("NO_QUOTE", f"{code} 没有有效的最新行情")
        custom = self._validators.get(signal.rule)
        if custom is not None:
            reason = custom(signal)
            if reason:
                raise SignalRejected("SIGNAL_INVALID", reason)
            return signal.volume
        position = self._positions.get(code)
        if signal.rule is Rule.MACD_BUY:
            if position is not None and position.volume > 0:
                raise SignalRejected("ALREADY_HELD", f"{code} 已有持仓，MACD 买入不再执行")
            if self._sold_today(code):  # DESIGN §7 decided cases: no re-entry on the day of an exit
                raise SignalRejected("EXITED_TODAY", f"{code} 今日已卖出清仓，当天不再 MACD 买入")
            volume = market_rules.buy_volume_for_amount(code, self._position_unit(code), quote.price)
            if volume <= 0:
                raise SignalRejected("AMOUNT_TOO_SMALL", f"{code} 买入金额不足一手")
            return volume
        if position is None or position.volume <= 0:
            raise SignalRejected("NO_POSITION", f"{code} 持仓已不存在")
        if signal.rule is Rule.MACD_SELL:
            if position.available <= 0:
                raise SignalRejected("NO_AVAILABLE", f"{code} 没有可卖数量")
            return position.available
        params = self._params_for(code) if self._params_for else strategy.RuleParams.from_settings(self._settings)
        for action in strategy.evaluate(position, quote.price, params):
            if action.rule is signal.rule and action.level_index == signal.level_index:
                return action.volume
        raise SignalRejected("CONDITION_GONE", f"{code} {signal.rule.label}条件在现价 {quote.price:.3f} 已不成立")

    def _sold_today(self, code: str) -> bool:
        today = self._clock.today()
        return any(record["side"] == Side.SELL.value for record in self._executor.trade_records(today, today, code))

    def _place(self, signal: Signal, volume: int, operator_confirmed: bool = False) -> Order:
        confirmed = {"operator_confirmed": True} if operator_confirmed else {}
        if signal.side is Side.SELL:
            return self._executor.sell_stock(signal.stock_code, volume, rule=signal.rule, signal_id=signal.id,
                                             **confirmed)
        if signal.amount > 0 and signal.rule is not Rule.GRID_BUY:
            return self._executor.buy_stock(signal.stock_code, amount=signal.amount, rule=signal.rule,
                                            signal_id=signal.id, **confirmed)
        return self._executor.buy_stock(signal.stock_code, volume=volume, rule=signal.rule, signal_id=signal.id,
                                        **confirmed)

    def _apply_rule_state(self, signal: Signal) -> None:
        """An add level is marked used before the order is sent, so a crash cannot fire it twice. The first
        take-profit is not marked here: `profit_triggered` is set by the fill of its sell (issue 25 item 9;
        PositionManager.book_fill); while its order works, the open sell keeps the rule from firing again."""
        if signal.rule is Rule.ADD_POSITION and signal.level_index is not None:
            self._positions.mark_add_level_used(signal.stock_code, signal.level_index, True)

    def _revert_rule_state(self, signal: Signal) -> None:
        """Undo the flags of a signal whose order never went out (a take-profit's flag only by a database
        of an earlier version, which set it before sending; harmless otherwise: it was not set)."""
        if signal.rule is Rule.TAKE_PROFIT:
            self._positions.mark_profit_triggered(signal.stock_code, False)
        elif signal.rule is Rule.ADD_POSITION and signal.level_index is not None:
            self._positions.mark_add_level_used(signal.stock_code, signal.level_index, False)

    def _position_unit(self, code: str) -> float:
        """POSITION_UNIT as the stock sees it (its own value when set per stock)."""
        return self._params_for(code).position_unit if self._params_for else self._settings.get("POSITION_UNIT")

    def _is_expired(self, signal: Signal) -> bool:
        """Age in real seconds since the last detection: a person's reaction time does not follow the replay."""
        return self._signals.age_seconds(signal) > self._max_age()

    def _expire(self, signal: Signal) -> None:
        self._signals.mark(signal.id, SignalStatus.EXPIRED, f"信号 {self._max_age():g} 秒（真实时间）内未执行也未再次"
                                                            "触发，已过期")

    def _expire_if_gone(self, signal: Signal) -> None:
        """A queued signal whose condition no longer holds at the current price is not left for a person to
        click: it expires with the reason. Transient refusals (no quote yet, an order working) leave it queued."""
        try:
            self.validate(signal)
        except SignalRejected as exc:
            if exc.code in GONE_CODES:
                self._signals.mark(signal.id, SignalStatus.EXPIRED, f"条件已不成立：{exc.message}")

    def _max_age(self) -> float:
        return self._settings.get("SIGNAL_MAX_AGE")

    # ---- MACD entries and exits, once per stock per day on completed bars
    def queue_macd_signals(self) -> int:
        if self._indicators is None or not self._clock.is_trading():
            return 0
        today = self._clock.today()
        added = 0
        buy_enabled = self._settings.get("ENABLE_MACD_BUY")
        sell_enabled = self._settings.get("ENABLE_MACD_SELL")
        held = {p.stock_code: p for p in self._positions.all() if p.volume > 0}
        candidates = set(self._stock_pool()) if buy_enabled else set()
        if sell_enabled:
            candidates |= set(held)
        for code in sorted(candidates):
            if (code, today) in self._macd_checked:
                continue
            quote = self._hub.latest(code)  # read once per decision: it may go stale between two reads
            if quote is None:
                continue
            self._macd_checked.add((code, today))
            added += self._queue_macd_for(code, today, quote, held.get(code), buy_enabled, sell_enabled)
        return added

    def _queue_macd_for(self, code: str, today: date, quote, position, buy_enabled: bool,
                        sell_enabled: bool) -> int:
        decision = self._indicators.macd_decision(code, today, self._settings.get("ENABLE_MA_FILTER"))
        if decision == "buy" and buy_enabled and position is None:
            rule = Rule.MACD_BUY
        elif decision == "sell" and sell_enabled and position is not None:
            rule = Rule.MACD_SELL
        else:
            return 0
        if self._signals.exists_on_day(code, rule, today):
            return 0
        amount = self._position_unit(code) if rule is Rule.MACD_BUY else 0.0
        volume = (market_rules.buy_volume_for_amount(code, amount, quote.price) if rule is Rule.MACD_BUY
                  else position.available)
        if volume <= 0:
            return 0
        stored = self._signals.add(Signal(stock_code=code, rule=rule, volume=volume, trigger_price=quote.price,
                                          observed_price=quote.price, created_at=self._clock.now(), amount=amount))
        return stored is not None


def _never_sent(order: Order) -> bool:
    """A journaled order that traded nothing and ended refused (by the broker, or because the process stopped
    before it reached the broker): for the episode it is as if it had never been placed."""
    return order.status is OrderStatus.REJECTED and order.filled_volume == 0
