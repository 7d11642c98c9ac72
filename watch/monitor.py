"""The watch loop (智能盯盘): woken by new quotes like the position monitor, it checks every active watch task
with the pure conditions of `watch.rules`, records each fire with its alert, publishes a WATCH_ALERT event and
turns buy/sell actions into signals on the existing queue, so that the auto-trading switch, the trading
state, validation and every A-share check apply unchanged. Detection only: it never places an order."""
from __future__ import annotations

import logging
import threading
import time
from datetime import date, timedelta
from typing import Callable, Optional

import market_rules
import watch.rules as rules
from core.events import EventKind
from core.models import Quote, Rule, Signal
from watch.rules import ActionType, DailyContext, TaskStatus, WatchTask
from daemon.workers import Worker, quote_wait_seconds, wait_for_version

log = logging.getLogger(__name__)

WATCH_RULES = (Rule.WATCH_BUY, Rule.WATCH_SELL)
LOOKBACK_SLACK_DAYS = 30


class DailyContextCache:
    """The completed-bar facts per (stock, day): loaded once a day per stock, not on every quote, from the
    last few months of bars only (the whole history only when those hold too few bars)."""

    def __init__(self, bar_store, indicators=None, days: int = rules.MAX_DAYS):
        self._bars = bar_store
        self._indicators = indicators
        self._days = days
        # calendar days that hold `days` trading days with room for the longest holidays
        self._window = timedelta(days=days * 7 // 5 + LOOKBACK_SLACK_DAYS)
        self._cache: dict[str, tuple[date, DailyContext]] = {}

    def get(self, code: str, today: date) -> DailyContext:
        cached = self._cache.get(code)
        if cached is not None and cached[0] == today:
            return cached[1]
        end = today - timedelta(days=1)
        bars = self._bars.bars(code, start=today - self._window, end=end)
        if len(bars) < self._days:  # a long suspension or a short history: what there is, exactly
            bars = self._bars.bars(code, end=end)
        bars = bars[-self._days:]
        cross = self._indicators.macd_cross(code, today) if self._indicators is not None else None
        context = DailyContext(tuple(b.high for b in bars), tuple(b.low for b in bars), tuple(b.volume for b in bars),
                               cross)
        self._cache[code] = (today, context)
        return context


class WatchMonitor(Worker):
    name = "watch"

    def __init__(self, store, hub, signals, positions, events, settings, clock,
                 daily: Optional[Callable[[str, date], DailyContext]] = None,
                 apply_exits: Optional[Callable[[str, dict, str], object]] = None,
                 timer: Callable[[], float] = time.perf_counter):
        """`daily(code, today)` gives the completed-bar facts (needed by N-day high/low, MACD, 量比), asked once
        per stock and day; `apply_exits(code, params, source)` makes an entry task's exits that stock's own rule
        parameters; `timer` (seconds) measures a pass's time for loading daily facts (WATCH_DAILY_LOAD_MS)."""
        self._store = store
        self._hub = hub
        self._signals = signals
        self._positions = positions
        self._events = events
        self._settings = settings
        self._clock = clock
        self._daily = daily
        self._apply_exits = apply_exits
        self._timer = timer
        self._seen_version = 0
        self._loaded_version = -1
        self._by_code: dict[str, list[tuple]] = {}  # code -> [(task, compiled checks, needs daily)]
        self._contexts: dict[str, DailyContext] = {}  # today's daily facts per stock, loaded so far
        self._contexts_day: Optional[date] = None
        self.daily_pending = False  # the last pass left stocks without today's daily facts (loaded next pass)
        self._loaded_in_pass = 0
        self.processed_version = 0  # quote version the last finished pass had seen (tests wait on it)
        self.passes = 0

    def wait(self, stop: threading.Event, limit: float) -> None:
        if self.daily_pending:  # go on loading the day's facts at once rather than on the next quote
            stop.wait(0)
            return
        timeout = quote_wait_seconds(self._settings, self._clock, limit)
        self._seen_version = wait_for_version(self._hub.wait_for_update, self._seen_version, stop, timeout)

    def run_once(self) -> list[dict]:
        """One pass over every active task; returns the alerts of the tasks that fired."""
        seen = self._hub.version
        self._reload_if_changed()
        now = self._clock.now()
        in_session = self._clock.is_trading()
        today = now.date()
        alerts = []
        if self._contexts_day != today:
            self._contexts, self._contexts_day = {}, today
        load_until = self._timer() + self._settings.get("WATCH_DAILY_LOAD_MS") / 1000
        self._loaded_in_pass = 0
        pending = False
        quotes = self._hub.latest_many(self._by_code)  # stale, zero or missing quotes never reach a condition
        for code, armed in self._by_code.items():
            quote = quotes.get(code)
            if quote is None:
                continue
            daily = None
            for task, checks, needs_daily in list(armed):  # a fire replaces the task in `armed`
                # Loaded tasks are active; only these three options can make one not due (task_due decides).
                if task.last_fired_at is not None or task.expires is not None or (task.sessions_only and
                                                                                   not in_session):
                    if not rules.task_due(task, now, in_session):
                        if rules.is_expired(task, now):
                            self._store.set_status(task.id, TaskStatus.EXPIRED)
                        continue
                if needs_daily and daily is None:
                    daily = self._daily_context(code, today, load_until)
                    if daily is None:  # this pass's loading time is spent: the next pass checks it
                        pending = True
                        continue
                for check in checks:
                    if not check(quote, daily):
                        break
                else:
                    alerts.append(self._fire(task, quote))
        self.daily_pending = pending
        self.processed_version = seen
        self.passes += 1
        return alerts

    def codes(self) -> list[str]:
        """The stocks that need quotes for watch tasks: those with an active task, and those whose task queued
        a signal that is not finished yet (a fire-once or paused task is no longer active, but its queued buy
        still needs the stock's latest quote to be executed)."""
        queued = {s.stock_code for s in self._signals.pending() + self._signals.executing() if s.rule in WATCH_RULES}
        return sorted(set(self._store.codes()) | queued)

    # ---- internals
    def _daily_context(self, code: str, today: date, load_until: float) -> Optional[DailyContext]:
        """Today's daily facts of `code`, or None when loading them would pass this pass's loading time. After a
        day switch every watched stock needs new facts (bars and MACD from the database): loaded over a few
        passes, so that price alerts are never held up behind them."""
        context = self._contexts.get(code)
        if context is None:
            if self._daily is None:
                return rules.NO_DAILY
            if self._loaded_in_pass and self._timer() > load_until:  # at least one a pass: always progress
                return None
            context = self._contexts[code] = self._daily(code, today)
            self._loaded_in_pass += 1
        return context

    def _reload_if_changed(self) -> None:
        version = self._store.version
        if version == self._loaded_version:
            return
        by_code: dict[str, list[tuple]] = {}
        for task in self._store.active():
            by_code.setdefault(task.stock_code, []).append(_arm(task))
        self._by_code = by_code
        self._loaded_version = version

    def _fire(self, task: WatchTask, quote: Quote) -> dict:
        now = self._clock.now()
        signal_id, outcome = self._act(task, quote)
        message = f"{quote.code} {task.describe()}：现价 {quote.price:g}"
        if outcome:
            message += f"，{outcome}"
        before = self._store.version
        updated, alert = self._store.record_fire(task, now, quote.price, message, signal_id, outcome)
        armed = self._by_code.get(task.stock_code, [])
        armed[:] = [(_arm(updated) if entry[0].id == task.id else entry) for entry in armed
                    if entry[0].id != task.id or updated.status is TaskStatus.ACTIVE]
        if self._loaded_version == before and self._store.version == before + 1:
            self._loaded_version = before + 1  # only our own write: the tasks in memory are current, no reload
        log.info("盯盘任务 #%s 触发：%s", task.id, message)
        if self._events is not None:
            self._events.emit(EventKind.WATCH_ALERT, f"盯盘提醒：{message}", stock_code=quote.code, task_id=task.id,
                              alert_id=alert["id"], price=quote.price, action=task.action.type.value,
                              signal_id=signal_id, description=task.describe())
        return alert

    def _act(self, task: WatchTask, quote: Quote) -> tuple[Optional[int], str]:
        """Queue the task's signal; (signal id or None, Chinese outcome for the alert)."""
        action = task.action
        if action.type is ActionType.NOTIFY:
            return None, ""
        code = quote.code
        if action.type is ActionType.BUY:
            volume = market_rules.buy_volume_for_amount(code, action.amount, quote.price)
            if volume <= 0:
                return None, f"买入金额 {action.amount:g} 元不足一手，未生成信号"
            rule, amount = Rule.WATCH_BUY, action.amount
        else:
            position = self._positions.get(code)
            available = position.available if position is not None else 0
            if available <= 0:
                return None, "没有可卖持仓，未生成卖出信号"
            volume = (min(action.volume, available) if action.volume is not None
                      else market_rules.sell_volume_for_ratio(code, available, action.ratio))
            rule, amount = Rule.WATCH_SELL, 0.0
        stored = self._signals.add(Signal(stock_code=code, rule=rule, volume=volume, trigger_price=quote.price,
                                          observed_price=quote.price, created_at=self._clock.now(), amount=amount,
                                          reason=f"盯盘任务 #{task.id}"))
        if stored is None:
            return None, f"已有相同的{rule.label}信号在排队，未重复生成"
        if task.exits is not None and self._apply_exits is not None:
            self._apply_exits(code, task.exits.as_params(), f"盯盘任务 #{task.id}")
        return stored.id, f"已生成{rule.label}信号 #{stored.id}（{volume} 股）"


def _arm(task: WatchTask) -> tuple:
    """(task, compiled conditions, whether it needs the daily context): compiled once per load."""
    return task, tuple(rules.compile_condition(c) for c in task.conditions), task.needs_daily


def validate_watch_signal(positions) -> Callable[[Signal], Optional[str]]:
    """Strategy-runner validator for WATCH_BUY / WATCH_SELL: a sell needs the shares still available; a buy
    goes on to the executor's checks (cash, lots, limits, portfolio cap, trading state)."""
    def validate(signal: Signal) -> Optional[str]:
        if signal.rule is Rule.WATCH_SELL:
            position = positions.get(signal.stock_code)
            available = position.available if position is not None else 0
            if available < signal.volume:
                return f"{signal.stock_code} 可卖数量 {available} 股不足盯盘卖出的 {signal.volume} 股"
        return None
    return validate
