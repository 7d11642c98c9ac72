"""The monitor loop: woken by new quotes, it refreshes every position's price-derived fields, runs the rules
of `strategy` and queues the resulting signals. Detection only: it never places an order."""
from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import datetime
from typing import Callable, Optional, Sequence

import market_rules
import strategy
from qmt.broker_guard import broker_step_seconds
from core.models import OrderStatus, Position, Quote, Rule, Side, Signal, TradingError
from core.order_journal import JournalEntry
from core.order_sources import PROTECTIVE_EXITS, is_protective
from daemon.workers import Worker, quote_wait_seconds, wait_for_version

log = logging.getLogger(__name__)

# Every reason of an order judged never to have reached the broker contains this (trading_executor.UNDELIVERED,
# qmt.reconcile.SELL_NOT_DELIVERED, trading_executor.UNKNOWN_SETTLED); a broker's refusal does not.
NOT_DELIVERED_MARK = "未送达"
SELL_ALL_EXITS = tuple(sorted(PROTECTIVE_EXITS, key=lambda rule: rule.value))


def broker_refusals(entries: Sequence[JournalEntry], code: str, calm_since: Optional[datetime]) -> list[JournalEntry]:
    """The run of `code`'s newest sells the BROKER refused (an order that never reached it, 「未送达」, is not a
    refusal), newest first, since `calm_since`; a sell that was not refused ends the run."""
    run = []
    for entry in entries:  # newest first
        if entry.stock_code != code or entry.side is not Side.SELL:
            continue
        if calm_since is not None and entry.created_at < calm_since:
            break
        if entry.status is not OrderStatus.REJECTED:
            break
        if NOT_DELIVERED_MARK in entry.reason:
            continue  # a link drop or lost request: the short retry interval stays (item 7)
        run.append(entry)
    return run


def exit_retry_delay(refusals: int, base: float, cap: float) -> float:
    """Seconds to wait before sending an exit again after `refusals` broker refusals in a row: none before the
    first, then base, 2 × base, 4 × base … up to cap."""
    if refusals <= 0:
        return 0.0
    return min(base * 2 ** (refusals - 1), cap)


def _rule_inputs(p: Position) -> tuple:
    """The position fields the rules read (price-derived fields excluded)."""
    return (p.volume, p.available, p.cost_price, p.base_cost_price, p.profit_triggered, p.highest_price,
            p.used_add_levels)


class PositionMonitor(Worker):
    name = "monitor"

    def __init__(self, positions, hub, signals, executor, settings, clock,
                 params_for: Optional[Callable[[str], "strategy.RuleParams"]] = None):
        """`params_for(code)`: a stock's effective rule parameters (per-stock overrides, issue 17); the
        global parameters when not given."""
        self._params_for = params_for
        self._positions = positions
        self._hub = hub
        self._signals = signals
        self._executor = executor
        self._settings = settings
        self._clock = clock
        self._seen_version = 0
        self.processed_version = 0  # the quote version the last finished pass had seen (tests wait on it)
        self._extra_checks: list[Callable[[Position, Quote], None]] = []
        self._evaluated: dict[str, tuple] = {}  # code -> (quote, params, rule inputs) of the last evaluation
        self._calm_since: dict[str, datetime] = {}  # code -> when no sell-all exit held at the last pass
        self._backing_off: dict[str, int] = {}  # code -> refusals counted when its back-off was last logged

    @property
    def max_step_seconds(self) -> float:  # type: ignore[override]
        return broker_step_seconds(self._settings)  # it cancels working orders through the broker

    def add_check(self, check: Callable[[Position, Quote], None]) -> None:
        """Further per-position detection run after the rules (the grid uses it)."""
        self._extra_checks.append(check)

    def wait(self, stop: threading.Event, limit: float) -> None:
        timeout = quote_wait_seconds(self._settings, self._clock, limit)
        self._seen_version = wait_for_version(self._hub.wait_for_update, self._seen_version, stop, timeout)

    def run_once(self) -> list[Signal]:
        seen = self._hub.version
        global_params = strategy.RuleParams.from_settings(self._settings)
        added = []
        for position in self._positions.all():
            if position.volume <= 0 or market_rules.untradable_reason(position.stock_code):
                continue  # an instrument the rules leave alone (issue 28) is shown with its reason, never acted on
            params = self._params_for(position.stock_code) if self._params_for else global_params
            quote = self._hub.latest(position.stock_code)
            if quote is None:
                continue  # no usable price: stale, zero or missing quotes never reach the rules
            state = (quote, params, _rule_inputs(position))
            if self._evaluated.get(position.stock_code) == state and not self._extra_checks:
                continue  # same quote, same position, same parameters: the rules would say the same
            self._evaluated[position.stock_code] = state
            signal = self.check_position(position, quote, params)
            if signal is not None:
                added.append(signal)
            for check in self._extra_checks:
                check(self._positions.get(position.stock_code) or position, quote)
        self.processed_version = seen
        return added

    def check_position(self, position: Position, quote: Quote, params) -> Optional[Signal]:
        updated = self._positions.update_price(position.stock_code, quote.price, quote.time) or position
        triggers = strategy.trigger_prices(updated, params)
        if triggers.stop_loss_price is not None and triggers.stop_loss_price != updated.stop_loss_price:
            self._positions.set_stop_loss_price(updated.stock_code, triggers.stop_loss_price)
        actions = strategy.evaluate(updated, quote.price, params, triggers=triggers)
        if not actions:
            self._calm_since[updated.stock_code] = self._clock.now()
            return None
        action = actions[0]  # evaluate() returns them in precedence order
        if action.rule not in SELL_ALL_EXITS:
            self._calm_since[updated.stock_code] = self._clock.now()  # no sell-all exit holds: refusals forgotten
        working = self._executor.journal.open_entries(updated.stock_code, action.rule.side)
        if working:
            if action.rule not in SELL_ALL_EXITS:
                return None  # an order for this side is working; the orders thread handles it
            self._withdraw_for_exit(working, action.rule)
            if any(is_protective(entry.rule, entry.origin_rule) for entry in working):
                return None  # the exit itself is working
            # the free shares go now (those a finished cancel gave back too): a resting sell whose cancel is
            # pending or refused must not hold them back
            current = self._positions.get(updated.stock_code) or updated
            if current.available <= 0:
                return None
            action = dataclasses.replace(action, volume=current.available)
        if action.rule in SELL_ALL_EXITS and self._refusal_back_off(updated.stock_code):
            self._evaluated.pop(updated.stock_code, None)  # evaluated again at the next pass, same quote or not
            return None
        signal = Signal(stock_code=updated.stock_code, rule=action.rule, volume=action.volume,
                        trigger_price=action.trigger_price, observed_price=quote.price, created_at=self._clock.now(),
                        amount=action.amount, level_index=action.level_index,
                        episode=updated.open_date.isoformat() if updated.open_date else "")
        stored = self._signals.add(signal, cooldown_seconds=self._cooldown(action.rule))
        if stored is not None:
            log.info("检测到信号 #%s：%s %s %d 股，触发价 %.3f，现价 %.3f", stored.id, stored.stock_code,
                     stored.rule.label, stored.volume, stored.trigger_price, stored.observed_price)
        return stored

    def _refusal_back_off(self, code: str) -> bool:
        """issue 25: an exit the broker keeps refusing (every sell rejected) is sent again after a growing wait,
        EXIT_RETRY_SECONDS doubled per refusal up to EXIT_RETRY_MAX_SECONDS, not at every quote forever. The run of
        refusals ends when a sell of the stock worked or the exit condition cleared; the sentinel's protection
        failure stands meanwhile."""
        refused = broker_refusals(self._executor.journal.entries(day=self._clock.today()), code,
                                  self._calm_since.get(code))
        if not refused:
            return False
        delay = exit_retry_delay(len(refused), float(self._settings.get("EXIT_RETRY_SECONDS")),
                                 float(self._settings.get("EXIT_RETRY_MAX_SECONDS")))
        waited = (self._clock.now() - refused[0].updated_at).total_seconds()
        if waited >= delay:
            return False
        if self._backing_off.get(code) != len(refused):
            self._backing_off[code] = len(refused)
            log.warning("%s 的卖单已连续 %d 次被券商拒绝（%s），%.0f 秒后再试", code, len(refused), refused[0].reason, delay)
        return True

    def _cooldown(self, rule: Rule) -> float:
        """A protective exit starts and waits for no cooldown (DESIGN §8a): a refused one stays queued as one
        row and is tried again at the next quote; one whose condition came back is queued at once."""
        return 0.0 if is_protective(rule) else self._settings.get("SIGNAL_COOLDOWN_SECONDS")

    def _withdraw_for_exit(self, working, exit_rule: Rule) -> None:
        """A resting take-profit, grid or manual sell must not hold back a stop: cancel it; the exit is
        queued on the next pass, once the cancel has released the shares."""
        for entry in working:
            if entry.origin_rule in SELL_ALL_EXITS or entry.status is OrderStatus.CANCEL_PENDING:
                continue
            log.warning("%s 触发%s，撤销未成交的%s卖单 %s", entry.stock_code, exit_rule.label, entry.origin_rule.label,
                        entry.client_id)
            try:
                self._executor.cancel_order(entry.client_id)
            except TradingError as exc:
                log.warning("撤单 %s 未成功：%s", entry.client_id, exc.message)
