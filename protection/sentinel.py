"""The protection guarantee of DESIGN §8a as a component of its own: a pure verdict over the facts (positions,
latest quotes on the feed's own clock, the order journal, the broker link, the trading state, the clock) and the
sentinel thread that reads those facts, keeps the latest report for /api/health and publishes protection
failures. It never asks the monitor, the strategy runner or the executor whether they did their job."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import market_rules
import strategy
from core.events import EventKind
from core.models import OrderStatus, Position, Quote, Rule, Side
from core.order_journal import JournalEntry
from core.order_sources import PROTECTIVE_EXITS
from persistence.health import STORAGE_SOURCE
from daemon.workers import Worker, wait_for_version

log = logging.getLogger(__name__)

# A burst of quotes (a poll of every watched stock) wakes the sentinel once per this many seconds at most: the
# deadline is PROTECTION_DEADLINE seconds, a pass per quote would only burn CPU.
MIN_PASS_SECONDS = 0.2
# Broker order states in which an acknowledged order rests at the exchange and can still fill.
WORKING_STATUSES = (OrderStatus.SUBMITTED, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
ACCOUNT_WIDE = ""  # the stock code of a failure of the check itself (it concerns every position)
MAX_LISTED = 5  # stocks named in one alarm message; the rest are counted
# Market sessions without trading, as the owner reads them (the trading ones never appear in a block).
IDLE_SESSION_LABELS = {"pre_open": "盘前", "lunch_break": "午间休市", "closed": "休市"}
# A live sell's confirmation may miss one broker_sync pass without being doubted: its bound is at least this many
# BROKER_SYNC_INTERVALs, whatever PROTECTION_ORDER_CONFIRM_SECONDS says.
SYNC_PASSES_PER_CONFIRMATION = 2


class ProtectionState(str, Enum):
    PROTECTED = "protected"  # no sell-all exit condition holds (or it holds for less than the deadline)
    EXIT_WORKING = "exit_working"  # the exit holds and a sell is working at the broker
    EXPLAINED = "explained"  # the exit cannot be worked for a reason the market or the owner imposes
    FAILURE = "failure"  # none of the above for PROTECTION_DEADLINE seconds


class Cause(str, Enum):
    """Why a position is not protected; the values are stable identifiers (API, events)."""

    QUOTE_STALE = "quote_stale"
    NO_SELL = "no_working_sell"
    SELL_NOT_ACKNOWLEDGED = "sell_not_acknowledged"
    CANCEL_PENDING = "cancel_pending"
    ORDER_UNKNOWN = "order_unknown"
    ORDER_UNVERIFIED = "order_unverified"
    SELL_INCOMPLETE = "sell_incomplete"
    BROKER_DOWN = "broker_down"
    STORAGE = "storage"
    CHECK_FAILED = "check_failed"
    CHECK_STALLED = "check_stalled"

    @property
    def label(self) -> str:
        return CAUSE_LABELS[self]


CAUSE_LABELS = {
    Cause.QUOTE_STALE: "无法判断：行情过期",
    Cause.NO_SELL: "清仓条件成立但没有卖单",
    Cause.SELL_NOT_ACKNOWLEDGED: "卖单未获券商确认",
    Cause.CANCEL_PENDING: "卖单撤单未完成",
    Cause.ORDER_UNKNOWN: "委托结果未知",
    Cause.ORDER_UNVERIFIED: "卖单状态未能与券商核实",
    Cause.SELL_INCOMPLETE: "仍有可卖股份未挂卖单",
    Cause.BROKER_DOWN: "券商连接断开",
    Cause.STORAGE: "存储故障阻挡卖出",
    Cause.CHECK_FAILED: "保护检查无法读取数据",
    Cause.CHECK_STALLED: "保护检查已停止",
}


# ---- the facts ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LinkFacts:
    """The broker link as the sentinel sees it; `reason` (Chinese) when it is down."""

    up: bool = True
    reason: str = ""


@dataclass(frozen=True)
class StateFacts:
    """The trading state (core.trading_state.TradingState), the owner's locks and the auto-trading switch. Breakers
    halt order sources, never a protective exit (DESIGN §8a), so they are not among these facts."""

    state: str = "running"  # running | paused | halted
    source: str = ""  # who set it: "web" (the owner) or persistence.health.STORAGE_SOURCE (a storage fault)
    reason: str = ""
    locks: Mapping[str, str] = field(default_factory=dict)  # stock -> why the owner's lock refuses its exit
    auto_trading: bool = True  # ENABLE_AUTO_TRADING


@dataclass(frozen=True)
class Facts:
    """Everything one verdict reads, taken at one moment."""

    now: datetime  # market clock
    session: str  # market_rules.session_at(now)
    feed_now: Mapping[str, datetime]  # quote source -> `now` on that feed's own clock (quote ages); else `now`
    stale_seconds: float  # QUOTE_STALE_SECONDS
    positions: Sequence[Position]
    quotes: Mapping[str, Quote]  # the newest accepted quote per stock, even when old
    open_sells: Mapping[str, Sequence[JournalEntry]]  # open sell orders of the journal per stock
    params: Mapping[str, strategy.RuleParams]  # each held stock's effective rule parameters
    link: LinkFacts = LinkFacts()
    trading: StateFacts = StateFacts()
    macd_exits: frozenset[str] = frozenset()  # stocks whose daily MACD sell-all holds today (ENABLE_MACD_SELL)
    # a live broker's sell counts as working only if the broker named it (push or query) within this many seconds
    # (the counter may have cancelled or filled it while pushes were lost); None: the journal is the broker's word
    # (the simulated broker confirms synchronously)
    confirm_seconds: Optional[float] = None
    suspended: frozenset[str] = frozenset()  # held stocks the market data says are suspended (停牌) now
    # held stocks in an intraday temporary halt (盘中临时停牌, issue 28) now -> market_rules.halt_message
    halted: Mapping[str, str] = field(default_factory=dict)


# ---- the verdict (pure) -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Judgement:
    """A position's condition at one moment; `cause` is set when it is not protected (a failure once it has
    lasted PROTECTION_DEADLINE seconds)."""

    stock_code: str
    state: ProtectionState
    reason: str
    cause: Optional[Cause] = None


@dataclass(frozen=True)
class Pending:
    """Since when a stock has been not protected: market time for people, monotonic seconds for the deadline."""

    since: datetime
    since_t: float


@dataclass(frozen=True)
class StockVerdict:
    stock_code: str
    state: ProtectionState
    reason: str
    cause: Optional[Cause] = None
    since: Optional[datetime] = None

    def failure_view(self) -> dict[str, Any]:
        return {"stock_code": self.stock_code, "cause": self.cause.value if self.cause else "",
                "cause_label": self.cause.label if self.cause else "",
                "since": self.since.isoformat(timespec="seconds") if self.since else None, "reason": self.reason}


@dataclass(frozen=True)
class ProtectionReport:
    checked_at: Optional[datetime]  # market time of the pass
    verdicts: tuple[StockVerdict, ...] = ()

    @property
    def failures(self) -> list[StockVerdict]:
        return [v for v in self.verdicts if v.state is ProtectionState.FAILURE]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failures": [v.failure_view() for v in self.failures],
                "positions": [{"stock_code": v.stock_code, "state": v.state.value, "reason": v.reason}
                              for v in self.verdicts if v.stock_code != ACCOUNT_WIDE],
                "checked_at": self.checked_at.isoformat(timespec="seconds") if self.checked_at else None}


def verdict(facts: Facts, pending: Mapping[str, Pending], t: float,
            deadline: float) -> tuple[ProtectionReport, dict[str, Pending]]:
    """The per-stock states for `facts` and the not-protected stocks' start times to carry to the next pass
    (`t`: monotonic seconds; a stock becomes a failure `deadline` seconds after it stopped being protected)."""
    verdicts, carried = apply_deadline(judge(facts), pending, facts.now, t, deadline)
    return ProtectionReport(facts.now, verdicts), carried


def judge(facts: Facts) -> list[Judgement]:
    return [judge_position(p, facts) for p in facts.positions if p.volume > 0]


def judge_position(position: Position, facts: Facts) -> Judgement:
    """One held position: outside sessions and under the owner's blocks nothing is expected; otherwise a valid
    quote is needed to judge at all, and when a sell-all exit holds a sell must work or the block be explained."""
    code = position.stock_code
    if facts.session not in market_rules.TRADING_SESSIONS:
        label = IDLE_SESSION_LABELS.get(facts.session, facts.session)
        return _explained(code, f"非交易时段（{label}），不会委托")
    owner_block = _owner_block(code, facts.trading)
    if owner_block:
        return _explained(code, owner_block)
    untradable = market_rules.untradable_reason(code)
    if untradable:  # an instrument the rules leave alone (issue 28): no exit is expected of the daemon
        return _explained(code, untradable)
    quote = facts.quotes.get(code)
    feed_now = facts.feed_now.get(quote.source, facts.now) if quote is not None else facts.now
    problem = quote_problem(code, quote, feed_now, facts.stale_seconds)
    if problem and code in facts.suspended:  # a suspended stock's quotes stop: nothing can be sold until it resumes
        return _explained(code, f"停牌：{code} 停牌中，行情停止更新，无法卖出")
    if problem and code in facts.halted:  # no trade prints until the resume time: the quotes may stop meanwhile
        return _explained(code, f"{facts.halted[code]}（行情暂停更新，卖单复牌后才能成交）")
    if problem:
        return _failure(code, Cause.QUOTE_STALE, problem)
    params = facts.params.get(code)
    found = exit_condition(position, quote.price, params, code in facts.macd_exits) if params else None
    if found is None:
        if not facts.link.up and position.available > 0:
            return _failure(code, Cause.BROKER_DOWN, f"券商连接断开（{facts.link.reason}），跌到止损价也无法卖出")
        return Judgement(code, ProtectionState.PROTECTED, _calm_reason(position, quote.price, params))
    return _judge_exit(position, quote, found, facts)


def exit_condition(position: Position, price: float, params: strategy.RuleParams,
                   macd_exit: bool = False) -> Optional[tuple[Rule, float]]:
    """(rule, trigger price) of the sell-all exit holding at `price` by strategy's own rules and precedence, or
    None. Whether the shares can be sold now (T+1, selling switched off) is not part of the condition."""
    sellable = position.copy(available=max(position.available, position.volume),
                             highest_price=max(position.highest_price, price))
    actions = strategy.evaluate(sellable, price, dataclasses.replace(params, sell_allowed=True), macd_exit=macd_exit)
    if actions and actions[0].rule in PROTECTIVE_EXITS:
        return actions[0].rule, actions[0].trigger_price
    return None


def quote_problem(code: str, quote: Optional[Quote], feed_now: datetime, stale_seconds: float) -> str:
    """Chinese reason why no protection can be judged from `quote` in a trading session, or ''."""
    if quote is None:
        return f"无法判断：没有 {code} 的行情"
    age = (feed_now - quote.time).total_seconds()
    if age > stale_seconds:
        return (f"无法判断：行情过期，{code} 的最新行情时间 {quote.time:%H:%M:%S} 已超过 {stale_seconds:g} 秒"
                f"（{age:.0f} 秒）未更新")
    return ""


def is_working(entry: JournalEntry) -> bool:
    """A sell the broker acknowledged (it has the broker's order id) and that still rests at the exchange."""
    return bool(entry.order_id) and entry.status in WORKING_STATUSES


def is_confirmed(entry: JournalEntry, now: datetime, confirm_seconds: Optional[float]) -> bool:
    """The broker named the order recently enough for the journal's state to be its word (always, without a bound)."""
    if confirm_seconds is None:
        return True
    return entry.confirmed_at is not None and (now - entry.confirmed_at).total_seconds() <= confirm_seconds


def apply_deadline(judgements: Iterable[Judgement], pending: Mapping[str, Pending], now: datetime, t: float,
                   deadline: float) -> tuple[tuple[StockVerdict, ...], dict[str, Pending]]:
    """A not-protected judgement becomes a FAILURE once it has lasted `deadline` seconds (inclusive); before
    that the stock is still within the guarantee and shows as protected, with the reason and the time left."""
    verdicts, carried = [], {}
    for judgement in judgements:
        code = judgement.stock_code
        if judgement.cause is None:
            verdicts.append(StockVerdict(code, judgement.state, judgement.reason))
            continue
        started = pending.get(code) or Pending(now, t)
        carried[code] = started
        waited = t - started.since_t
        if waited >= deadline:
            verdicts.append(StockVerdict(code, ProtectionState.FAILURE, judgement.reason, judgement.cause,
                                         started.since))
        else:
            reason = f"{judgement.reason}（已 {waited:.0f} 秒，{deadline:g} 秒内未解决将报保护失效）"
            verdicts.append(StockVerdict(code, ProtectionState.PROTECTED, reason, judgement.cause, started.since))
    return tuple(verdicts), carried


# ---- verdict helpers ----------------------------------------------------------------------------------

def _judge_exit(position: Position, quote: Quote, found: tuple[Rule, float], facts: Facts) -> Judgement:
    code, price = position.stock_code, quote.price
    rule, trigger = found
    condition = (f"MACD 死叉清仓条件成立（现价 {price:g}）" if rule is Rule.MACD_SELL
                 else f"{rule.label}条件成立（现价 {price:g}，触发价 {trigger:g}）")
    sells = list(facts.open_sells.get(code, ()))
    working = [e for e in sells if is_working(e) and is_confirmed(e, facts.now, facts.confirm_seconds)]
    stuck = [e for e in sells if e not in working]  # they hold shares that no working order is known to sell
    unverified = [e for e in stuck if is_working(e)]
    if working and position.available <= 0 and not stuck:
        ids = "、".join(e.order_id for e in working)
        remaining = sum(e.remaining for e in working)
        halt = f"；{facts.halted[code]}" if code in facts.halted else ""
        return Judgement(code, ProtectionState.EXIT_WORKING,
                         f"{condition}，卖单 {ids} 已在券商处工作（未成交 {remaining} 股）{halt}")
    limit_down = _limit_down(quote, facts.now.date())
    if limit_down is not None and price <= limit_down:
        return _explained(code, f"{condition}，但已跌停（跌停价 {limit_down:g}），卖出无法成交")
    if position.available <= 0 and not stuck:
        return _explained(code, f"{condition}，但没有可卖数量（T+1：今日买入的股份下一交易日才能卖出）")
    params = facts.params[code]
    if not params.sell_allowed:
        return _explained(code, f"{condition}，但「允许卖出」已关闭")
    if not facts.trading.auto_trading:
        return _explained(code, f"{condition}，但自动交易已关闭：卖出信号排队等待人工执行")
    if unverified:
        return _failure(code, Cause.ORDER_UNVERIFIED, f"{condition}，但{_unverified_words(unverified[0], facts)}")
    if not facts.link.up:
        return _failure(code, Cause.BROKER_DOWN, f"{condition}，但券商连接断开（{facts.link.reason}）")
    if facts.trading.state == "halted":  # only the storage guard's halt gets here (the owner's is explained)
        return _failure(code, Cause.STORAGE, f"{condition}，但存储故障已停止交易（{facts.trading.reason}）")
    if stuck:
        cause, words = _stuck_cause(stuck[0])
        return _failure(code, cause, f"{condition}，但卖单 {stuck[0].order_id or stuck[0].client_id} {words}")
    if working:
        return _failure(code, Cause.SELL_INCOMPLETE, f"{condition}，卖单在工作，但仍有 {position.available} 股可卖未挂卖单")
    return _failure(code, Cause.NO_SELL, f"{condition}，但没有卖单在券商处工作")


def _owner_block(code: str, trading: StateFacts) -> str:
    """The owner's emergency stop, pause or lock of the stock (explained blocks); '' when none applies."""
    if trading.state == "halted" and trading.source != STORAGE_SOURCE:
        return f"已紧急停止（{trading.reason or '操作员紧急停止'}），不会自动卖出"
    if trading.state == "paused":
        return f"已暂停自动交易（{trading.reason or '操作员暂停'}），不会自动卖出"
    lock = trading.locks.get(code)
    if lock is not None:
        return f"该股已被锁定（{lock}）"
    return ""


def _stuck_cause(entry: JournalEntry) -> tuple[Cause, str]:
    if entry.status is OrderStatus.CANCEL_PENDING:
        return Cause.CANCEL_PENDING, "撤单未完成（仍占用可卖股份）"
    if entry.status is OrderStatus.UNKNOWN:
        return Cause.ORDER_UNKNOWN, "结果未知，需与券商核对"
    return Cause.SELL_NOT_ACKNOWLEDGED, "尚未获券商确认（没有券商委托号）"


def _unverified_words(entry: JournalEntry, facts: Facts) -> str:
    confirmed = entry.confirmed_at
    since = ("从未获券商核实" if confirmed is None else
             f"已 {(facts.now - confirmed).total_seconds():.0f} 秒未获券商核实（最近确认 {confirmed:%H:%M:%S}）")
    link = "" if facts.link.up else f"，券商连接断开（{facts.link.reason}）"
    return f"卖单 {entry.order_id} 的状态{since}，券商处可能已撤单或成交{link}"


def _limit_down(quote: Quote, day: date) -> Optional[float]:
    """The day's limit-down; None on a day without a limit (a new listing's first days, issue 28) or for a code
    outside the known kinds."""
    if quote.limit_down and not market_rules.listing_rule_applies(quote.code, day):
        return quote.limit_down
    try:
        band = market_rules.day_limits(quote.code, quote.prev_close, market_rules.is_st_name(quote.name), day)
    except ValueError:  # a code outside the known boards: no limit to compare with
        return None
    return band[0] if band is not None else None


def _calm_reason(position: Position, price: float, params: Optional[strategy.RuleParams]) -> str:
    if params is None:
        return f"未触发清仓条件（现价 {price:g}）"
    triggers = strategy.trigger_prices(position.copy(highest_price=max(position.highest_price, price)), params)
    stops = [f"{label} {value:g}" for label, value in (("止损价", triggers.stop_loss_price),
                                                       ("动态止盈价", triggers.dynamic_stop_price)) if value]
    return f"未触发清仓条件（现价 {price:g}{'，' + '，'.join(stops) if stops else ''}）"


def _explained(code: str, reason: str) -> Judgement:
    return Judgement(code, ProtectionState.EXPLAINED, reason)


def _failure(code: str, cause: Cause, reason: str) -> Judgement:
    return Judgement(code, ProtectionState.FAILURE, reason, cause)


# ---- reading the facts of the running daemon ----------------------------------------------------------

class DaemonFacts:
    """Reads the facts from the daemon's components, never from the monitor → strategy → executor path's
    own view of its work: positions, the quote hub, the order journal, the broker, the trading state."""

    def __init__(self, positions, hub, journal, broker, trading_state, settings, clock,
                 params_for: Callable[[str], strategy.RuleParams],
                 macd_decision: Optional[Callable[[str, date, bool], Optional[str]]] = None,
                 suspended: Optional[Callable[[str], bool]] = None):
        self._positions = positions
        self._hub = hub
        self._journal = journal
        self._broker = broker
        self._trading_state = trading_state
        self._settings = settings
        self._clock = clock
        self._params_for = params_for
        self._macd_decision = macd_decision
        self._suspended = suspended  # data_manager.DataManager.is_suspended: the market data's word
        self._halts = market_rules.HaltTracker()  # intraday halts from the newest quotes (issue 28)
        self._macd_day: Optional[date] = None
        self._macd_sells: dict[str, bool] = {}  # stock -> death cross on the day's last completed bar

    def read(self) -> Facts:
        now = self._clock.now()
        held = [p for p in self._positions.all() if p.volume > 0]
        codes = [p.stock_code for p in held]
        sells: dict[str, list[JournalEntry]] = {}
        for entry in self._journal.open_entries(side=Side.SELL):
            sells.setdefault(entry.stock_code, []).append(entry)
        quotes = {c: q for c in codes if (q := self._hub.newest_received(c)) is not None}  # arriving but refused: stale
        return Facts(now=now, session=market_rules.session_at(now, self._clock.calendar),
                     feed_now={source: self._hub.feed_now(source) for source in {q.source for q in quotes.values()}},
                     stale_seconds=float(self._settings.get("QUOTE_STALE_SECONDS")), positions=held, quotes=quotes,
                     open_sells=sells, params={c: self._params_for(c) for c in codes}, link=self._link(),
                     trading=self._trading(codes), macd_exits=self._macd_exits(codes, now.date()),
                     confirm_seconds=self._confirm_seconds(),
                     suspended=frozenset(c for c in codes if self._suspended is not None and self._suspended(c)),
                     halted=self._halted(quotes, now))

    def _halted(self, quotes: Mapping[str, Quote], now: datetime) -> dict[str, str]:
        """Held stocks in an intraday temporary halt at `now`, with the reason. Each pass advances the halt
        state by the newest quote at its own time: nothing trades during a halt, so the newest quote still
        shows the price that triggered it."""
        halted = {}
        for code, quote in quotes.items():
            if quote.time.date() != now.date():
                continue
            self._halts.observe(code, quote.price, quote.open, quote.prev_close, quote.time)
            message = self._halts.halted_message(code, now)
            if message:
                halted[code] = message
        return halted

    def wait_for_quotes(self, seen: int, timeout: float) -> int:
        return self._hub.wait_for_update(seen, timeout)

    def _link(self) -> LinkFacts:
        broker = self._broker
        if broker is None:
            return LinkFacts()
        hung = broker.hung_call() if callable(getattr(broker, "hung_call", None)) else None
        if hung is not None:
            return LinkFacts(False, f"券商接口 {hung[0]} 已 {hung[1]:.0f} 秒未返回")
        if not broker.is_connected():
            return LinkFacts(False, "券商未连接")
        health = getattr(broker, "health", None)
        snapshot = health.snapshot() if callable(getattr(health, "snapshot", None)) else None
        if snapshot and snapshot.get("link_state") not in (None, "connected"):
            return LinkFacts(False, f"链路{snapshot.get('link_label', snapshot['link_state'])}")
        return LinkFacts()

    def _confirm_seconds(self) -> Optional[float]:
        """The live broker's confirmation bound; None for a broker whose state the journal mirrors in-process."""
        if self._broker is None or getattr(self._broker, "mode", "") != "live":
            return None
        return max(float(self._settings.get("PROTECTION_ORDER_CONFIRM_SECONDS")),
                   SYNC_PASSES_PER_CONFIRMATION * float(self._settings.get("BROKER_SYNC_INTERVAL")))

    def _trading(self, codes: list[str]) -> StateFacts:
        auto = bool(self._settings.get("ENABLE_AUTO_TRADING"))
        if self._trading_state is None:
            return StateFacts(auto_trading=auto)
        snap = self._trading_state.snapshot()
        # what would refuse an automatic stop-loss of the stock besides the account state: the owner's lock
        locks = {c: reason for c in codes if (reason := self._trading_state.automatic_block(c, Rule.STOP_LOSS))}
        return StateFacts(snap["state"], snap["source"], snap["reason"], locks, auto)

    def _macd_exits(self, codes: list[str], today: date) -> frozenset[str]:
        """Held stocks whose daily MACD crossed down on the last completed bar (decided once per stock and day,
        like the strategy runner)."""
        if self._macd_decision is None or not self._settings.get("ENABLE_MACD_SELL"):
            return frozenset()
        if self._macd_day != today:
            self._macd_day, self._macd_sells = today, {}
        ma_filter = bool(self._settings.get("ENABLE_MA_FILTER"))
        for code in codes:
            if code not in self._macd_sells:
                self._macd_sells[code] = self._macd_decision(code, today, ma_filter) == "sell"
        return frozenset(code for code in codes if self._macd_sells[code])


# ---- the sentinel thread ------------------------------------------------------------------------------

class ProtectionSentinel(Worker):
    """Every PROTECTION_CHECK_INTERVAL and on new quotes: read the facts, judge, keep the report; publish
    PROTECTION_FAILURE on a new failure and every PROTECTION_REPEAT_MINUTES while one lasts, and
    PROTECTION_RESTORED when a failure clears. Its report turns into a failure itself when no pass has finished
    for PROTECTION_DEADLINE seconds, so a dead or stuck sentinel cannot leave health green."""

    name = "protection"

    def __init__(self, read_facts: Callable[[], Facts], events, settings, clock,
                 wait_for_quotes: Optional[Callable[[int, float], int]] = None,
                 now: Callable[[], float] = time.monotonic):
        self._read_facts = read_facts
        self._events = events
        self._settings = settings
        self._clock = clock
        self._wait_for_quotes = wait_for_quotes
        self._now = now
        self._lock = threading.Lock()
        self._pending: dict[str, Pending] = {}
        self._alarmed: dict[str, StockVerdict] = {}  # failures already published
        self._alarmed_at: Optional[float] = None  # monotonic time of the last PROTECTION_FAILURE
        self._report = ProtectionReport(None)
        self._last_pass_t = now()  # the grace before the first pass counts like any later gap
        self._seen_version = 0
        self._last_error = ""

    def wait(self, stop: threading.Event, limit: float) -> None:
        interval = min(limit, float(self._settings.get("PROTECTION_CHECK_INTERVAL")))
        rest = MIN_PASS_SECONDS - (self._now() - self._last_pass_t)
        if rest > 0:
            stop.wait(min(rest, interval))
            interval -= rest
        if interval <= 0:
            return
        if self._wait_for_quotes is None:
            stop.wait(interval)
        else:
            self._seen_version = wait_for_version(self._wait_for_quotes, self._seen_version, stop, interval)

    def run_once(self) -> ProtectionReport:
        t, now = self._now(), self._clock.now()
        deadline = float(self._settings.get("PROTECTION_DEADLINE"))
        try:
            facts = self._read_facts()
        except Exception as exc:  # a fault reading the facts is itself a failure; it must not end the check
            report, pending = self._unreadable(exc, now, t, deadline)
        else:
            self._last_error = ""
            report, pending = verdict(facts, self._pending, t, deadline)
        with self._lock:
            self._pending, self._report, self._last_pass_t = pending, report, t
        self._publish(report, t)
        return report

    def report(self) -> ProtectionReport:
        """The latest report; a failure of the check itself when no pass finished within the deadline."""
        deadline = float(self._settings.get("PROTECTION_DEADLINE"))
        with self._lock:
            report, last = self._report, self._last_pass_t
        silent = self._now() - last
        if silent < deadline:
            return report
        stalled = StockVerdict(ACCOUNT_WIDE, ProtectionState.FAILURE,
                               f"保护检查已 {silent:.0f} 秒没有完成（线程停止或卡住），无法确认持仓受到保护",
                               Cause.CHECK_STALLED, report.checked_at)
        return dataclasses.replace(report, verdicts=report.verdicts + (stalled,))

    def report_view(self) -> dict[str, Any]:
        """The `protection` object of /api/health."""
        return self.report().to_dict()

    def is_ok(self) -> bool:
        """Protection verified: a pass has finished, recently enough, and found no failure (the heartbeat's gate)."""
        report = self.report()
        return report.checked_at is not None and report.ok

    # ---- internals
    def _unreadable(self, exc: Exception, now: datetime, t: float,
                    deadline: float) -> tuple[ProtectionReport, dict[str, Pending]]:
        """The check itself fails (after the deadline like any failure); the stocks keep their last verdicts and
        clocks, so a failure already raised is not announced as restored only because the facts went missing."""
        text = str(exc) or type(exc).__name__
        if text != self._last_error:  # once per distinct problem, not once per second
            self._last_error = text
            log.exception("保护检查无法读取持仓、行情或委托：%s", text)
        judgement = _failure(ACCOUNT_WIDE, Cause.CHECK_FAILED, f"保护检查无法读取持仓、行情或委托（{text}）")
        verdicts, pending = apply_deadline([judgement], self._pending, now, t, deadline)
        kept = tuple(v for v in self._report.verdicts if v.stock_code != ACCOUNT_WIDE)
        stocks_pending = {code: p for code, p in self._pending.items() if code != ACCOUNT_WIDE}
        return ProtectionReport(now, kept + verdicts), {**stocks_pending, **pending}

    def _publish(self, report: ProtectionReport, t: float) -> None:
        failures = {v.stock_code: v for v in report.failures}
        new = [v for code, v in failures.items() if code not in self._alarmed]
        cleared = [code for code in self._alarmed if code not in failures]
        repeat_every = float(self._settings.get("PROTECTION_REPEAT_MINUTES")) * 60
        repeat = bool(failures) and not new and self._alarmed_at is not None and t - self._alarmed_at >= repeat_every
        if new or repeat:
            self._alarm(list(failures.values()), new, repeat)
            self._alarmed_at = t
        if cleared:
            self._restored(cleared, report)
        if not failures:
            self._alarmed_at = None
        self._alarmed = failures

    def _alarm(self, failures: list[StockVerdict], new: list[StockVerdict], repeat: bool) -> None:
        listed = new if not repeat else failures
        head = "保护失效仍在持续" if repeat else "保护失效"
        message = f"{head}：{_describe(listed)}"
        if not repeat and len(failures) > len(new):
            message += f"（共 {len(failures)} 只股票保护失效）"
        log.error(message)
        if self._events is not None:
            self._events.emit(EventKind.PROTECTION_FAILURE, message,
                              stock_code=listed[0].stock_code if len(listed) == 1 else "",
                              failures=[v.failure_view() for v in failures], repeat=repeat)

    def _restored(self, cleared: list[str], report: ProtectionReport) -> None:
        now_by_code = {v.stock_code: v for v in report.verdicts}
        parts = []
        for code in cleared[:MAX_LISTED]:
            current = now_by_code.get(code)
            if code == ACCOUNT_WIDE:
                parts.append("保护检查已恢复正常")
            else:
                parts.append(f"{code}（{current.reason if current else '已无持仓'}）")
        more = f" 等 {len(cleared)} 项" if len(cleared) > MAX_LISTED else ""
        message = f"保护恢复：{'；'.join(parts)}{more}"
        log.warning(message)
        if self._events is not None:
            self._events.emit(EventKind.PROTECTION_RESTORED, message,
                              stock_code=cleared[0] if len(cleared) == 1 else "", stocks=cleared,
                              all_clear=report.ok)


def _describe(failures: Sequence[StockVerdict]) -> str:
    """「600036.SH 清仓条件成立但没有卖单：止损条件成立（…），但…」 for up to MAX_LISTED stocks."""
    parts = [f"{v.stock_code or '全部持仓'} {v.cause.label if v.cause else ''}：{v.reason}"
             for v in failures[:MAX_LISTED]]
    more = f"；另有 {len(failures) - MAX_LISTED} 只" if len(failures) > MAX_LISTED else ""
    return "；".join(parts) + more
