"""The order pipeline: pre-trade checks, journal-before-send, broker dispatch, broker events into the journal,
positions and trade records (each fill exactly once), start-up reconciliation and open-order timeouts.
The SQL of the journal is in core/order_journal.py, the shared order rules in core/order_checks.py."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Optional

import market_rules
import core.order_checks as checks
import qmt.carryover as carryover
from qmt.broker_guard import OutcomeUnknown
from core.models import (Asset, Broker, BrokerUnavailable, Fill, Order, OrderRejected, OrderRequest, OrderStatus, Quote,
                    Rule, Side, TradingError)
from core.order_sources import is_protective
from core.order_journal import REPRICE_DONE, REPRICE_EXHAUSTED, REPRICE_REQUESTED, JournalEntry, OrderJournal
from position_manager import PositionManager
from persistence.storage import Database

log = logging.getLogger(__name__)

UNDELIVERED = "未送达券商"  # the reason of an order the broker could not take (not refused by it): a failed order
UNKNOWN_SETTLED = "结果未知的委托经核对券商始终查不到（按备注），判定未送达，未重发"

FillListener = Callable[[Fill, Rule], None]
CAPACITY_STEPS = 50  # buy capacity: at most this many one-step reductions below the cash/cap estimate
# issue 28 §3: no timeout, no re-price; their fills are recorded but never booked as positions (a subscription "fill"
# is not shares yet — an allotment lists later and arrives by the broker sync; a repo is a loan, not a sale)
CHORE_RULES = frozenset({Rule.IPO_SUBSCRIBE, Rule.REPO_LEND})


@dataclass(frozen=True)
class OrderCheck:
    """What buy_stock / sell_stock would place, every pre-trade check passed, nothing journaled or sent."""

    stock_code: str
    side: Side
    volume: int
    price: float


def _cancel_in_flight(entry: JournalEntry, order: Order) -> bool:
    """Our cancel is on its way and the broker still lists the order working: its answer will come as an event
    (a query must not make it look refused)."""
    return entry.status is OrderStatus.CANCEL_PENDING and not order.status.is_terminal


class TradingExecutor:
    """Implements core.models.BrokerListener; `buy_stock`/`sell_stock` raise OrderRejected with Chinese reasons.

    Lock order (never taken the other way round): `_submit_lock` → `_event_lock` → PositionManager's lock →
    db lock. `_submit_lock` covers the checks and the journal entry of one order; the order is sent after it
    is released (`_send`), so a broker call that hangs holds no executor lock (the broker is wrapped in a
    qmt.broker_guard.BrokerGuard with a deadline in the daemon). Cancels take no executor lock. Event handlers
    hold only `_event_lock`, never call the broker, and run fill listeners after releasing it, so a broker may
    deliver events from any thread, including the one that is placing an order. (A live broker must still not
    deliver xtquant callbacks on xtquant's own push thread if a listener places orders: a sync xttrader call
    inside a callback deadlocks.)
    """

    def __init__(self, db: Database, broker: Broker, positions: PositionManager,
                 quotes: Callable[[str], Optional[Quote]], settings, clock, trading_state=None, breakers=None):
        self._broker = broker
        self._positions = positions
        self._quotes = quotes
        self._settings = settings
        self._clock = clock
        self._state = trading_state  # core.trading_state.TradingState; None only in unit tests of the pipeline
        self._breakers = breakers  # core.risk_breakers.CircuitBreakers or None
        self.mode: str = broker.mode
        self.journal = OrderJournal(db, clock, self.mode)
        self._submit_lock = threading.RLock()
        self._event_lock = threading.RLock()
        self._fill_listeners: list[FillListener] = []
        self._day: Optional[date] = None
        self._sending_cost: dict[str, float] = {}  # client id -> cash a buy being sent will take
        self._carryover_due = False  # previous-day orders still to settle (issue 25)

    # ---- placing orders
    def buy_stock(self, code: str, amount: Optional[float] = None, volume: Optional[int] = None,
                  price: Optional[float] = None, rule: Rule = Rule.MANUAL, signal_id: Optional[int] = None,
                  idempotency_key: str = "", operator_confirmed: bool = False) -> Order:
        """Buy `volume` shares, or as many whole lots as `amount` CNY buys at the order price. `price=None`
        places a marketable limit (latest × (1 + ORDER_PRICE_SLIPPAGE), capped at limit-up). An order already
        journaled under `idempotency_key` is returned instead of sending another. `operator_confirmed`: a person
        asked for it (a signal executed by hand passes a pause)."""
        with self._submit_lock:
            existing = self.journal.by_idempotency_key(idempotency_key)
            if existing is not None:
                return existing.to_order()
            self._ensure_day()
            code, volume, order_price = self._checked_buy(code, amount, volume, price, rule)
            request = self._prepare(code, Side.BUY, volume, order_price, rule, signal_id, key=idempotency_key,
                                    operator_confirmed=operator_confirmed)
            self._sending_cost[request.client_id] = checks.buy_cost(code, order_price, volume, self._settings)
        return self._send(request)

    def check_buy(self, code: str, amount: Optional[float] = None, volume: Optional[int] = None,
                  price: Optional[float] = None, rule: Rule = Rule.MANUAL,
                  operator_confirmed: bool = False) -> OrderCheck:
        """A dry run of buy_stock (issue 26 item 12): every pre-trade check it runs, in the same order and with
        the same refusals (OrderRejected), and the volume and price it would place; nothing is journaled,
        reserved or sent."""
        with self._submit_lock:
            self._ensure_day()
            code, volume, order_price = self._checked_buy(code, amount, volume, price, rule)
            self._check_gates(code, Side.BUY, volume, rule, operator_confirmed)
        return OrderCheck(code, Side.BUY, volume, order_price)

    def check_sell(self, code: str, volume: int, price: Optional[float] = None, rule: Rule = Rule.MANUAL,
                   operator_confirmed: bool = False) -> OrderCheck:
        """A dry run of sell_stock: its checks and the order it would place, nothing journaled or sent."""
        if self._carryover_due:
            self.settle_previous_day_orders()
        with self._submit_lock:
            self._ensure_day()
            code = checks.normalized_code(code)
            self._check_order_count(rule)
            volume, order_price = self._checked_sell(code, volume, price)
            self._check_gates(code, Side.SELL, volume, rule, operator_confirmed)
        return OrderCheck(code, Side.SELL, volume, order_price)

    def buy_capacity(self, code: str, price: Optional[float] = None) -> tuple[int, float]:
        """可买: the largest manual buy of `code` at `price` (None: the marketable price) that cash (fees and
        buys being sent included), MAX_ORDER_VALUE and MAX_TOTAL_POSITION_RATIO allow, with that price."""
        code = checks.normalized_code(code)
        quote = self._quote(code)
        order_price = self._order_price(code, Side.BUY, price, quote)
        checks.check_price(code, Side.BUY, order_price, quote)
        asset = self._broker.query_asset()
        held = self._value_at_previous_close(asset)
        total = asset.total_asset - asset.market_value + held
        budget = min(asset.cash - sum(self._sending_cost.values()), self._settings.get("MAX_ORDER_VALUE"),
                     total * self._settings.get("MAX_TOTAL_POSITION_RATIO") - held)
        volume = market_rules.buy_volume_for_amount(code, budget, order_price)
        step = market_rules.lot_rule(code).step
        for _ in range(CAPACITY_STEPS):  # the estimate leaves out fees: step down until the real checks pass
            if not market_rules.is_valid_buy_volume(code, volume):
                return 0, order_price
            try:
                self._check_buy_limits(code, volume, order_price, Rule.MANUAL)
                return volume, order_price
            except OrderRejected:
                volume -= step
        return 0, order_price

    def sell_capacity(self, code: str) -> int:
        """可卖: the shares of `code` a sell may take now (T+1 and open sells already deducted)."""
        position = self._positions.get(checks.normalized_code(code))
        return max(0, position.available) if position is not None else 0

    def sell_stock(self, code: str, volume: int, price: Optional[float] = None, rule: Rule = Rule.MANUAL,
                   signal_id: Optional[int] = None, operator_confirmed: bool = False,
                   idempotency_key: str = "") -> Order:
        """Sell `volume` shares; `price=None` = latest × (1 − ORDER_PRICE_SLIPPAGE), floored at limit-down.
        `operator_confirmed`: a person confirmed this manual sell (the only order an emergency stop lets through)."""
        if self._carryover_due:  # yesterday's open sells still hold shares: settle them first (issue 25)
            self.settle_previous_day_orders()
        with self._submit_lock:
            existing = self.journal.by_idempotency_key(idempotency_key)
            if existing is not None:
                return existing.to_order()
            self._ensure_day()
            code = checks.normalized_code(code)
            self._check_order_count(rule)
            request = self._sell(code, volume, price, rule, signal_id, operator_confirmed=operator_confirmed,
                                 key=idempotency_key)
        return self._send(request)

    def place_chore(self, code: str, side: Side, volume: int, price: float, rule: Rule,
                    idempotency_key: str = "") -> Order:
        """issue 28 §3 (chores/): a new share/bond subscription or a reverse repo, journaled before it is sent like
        every order and behind the same gates (trading state, the CHORES source's budget and breakers); the stock
        checks (quote, lots, limits, a position to sell) and the 允许买入/卖出 switches do not apply to them: the
        chores have their own switches and check their own rules."""
        with self._submit_lock:
            existing = self.journal.by_idempotency_key(idempotency_key)
            if existing is not None:
                return existing.to_order()
            self._ensure_day()
            request = self._prepare(code, side, int(volume), float(price), rule, None, key=idempotency_key)
        return self._send(request)

    def cancel_order(self, order_id: str) -> None:
        """Cancel by our client id or by the broker's order id."""
        entry = self.journal.find(order_id)
        if entry is None:
            raise OrderRejected("ORDER_NOT_FOUND", f"找不到委托 {order_id}")
        self._cancel(entry)

    def cancel_all(self) -> int:
        """Cancel every open order; return how many cancel requests the broker accepted."""
        count = 0
        for entry in self.journal.open_entries():
            try:
                self._cancel(entry)
                count += 1
            except TradingError as exc:
                log.warning("撤单 %s 未成功：%s", entry.client_id, exc.message)
        return count

    # ---- reading
    def open_orders(self, code: Optional[str] = None, side: Optional[Side] = None) -> list[Order]:
        return [e.to_order() for e in self.journal.open_entries(code, side)]

    def list_orders(self, status: Any = None, day: Optional[date] = None) -> list[dict]:
        value = getattr(status, "value", status)
        return [e.to_dict() for e in self.journal.entries(value, day)]

    def trade_records(self, start: Optional[date] = None, end: Optional[date] = None,
                      code: Optional[str] = None) -> list[dict]:
        return self.journal.trade_records(start, end, code)

    def order_for_signal(self, signal_id: int) -> Optional[Order]:
        """The latest order sent for this signal (a re-priced sell counts), or None: lets the strategy runner
        skip a signal that was executed before a crash."""
        entry = self.journal.latest_for_signal(signal_id)
        return entry.to_order() if entry else None

    def order_for_idempotency_key(self, key: str) -> Optional[Order]:
        """The order journaled under a requester's key, or None: lets a requester resume without resending."""
        entry = self.journal.by_idempotency_key(key)
        return entry.to_order() if entry else None

    def account(self) -> Asset:
        return self._broker.query_asset()

    def add_fill_listener(self, listener: FillListener) -> None:
        """`listener(fill, rule)` after a new fill is booked, in the broker's event thread, outside any
        executor lock; `rule` is the rule of the original order."""
        self._fill_listeners.append(listener)

    # ---- BrokerListener
    def on_order_update(self, order: Order) -> None:
        if order.status is OrderStatus.UNKNOWN:
            self._mark_unknown(order)
            return
        with self._event_lock:
            late = self._is_late_report(order)  # issue 13
            change = self.journal.apply_update(order, force=late)
            if change is None:
                if not self.journal.find(order.client_id or order.order_id):
                    log.info("券商报告了非本程序下的委托 %s（%s），不做处理", order.order_id, order.stock_code)
                return
            if late:
                self._apply_late_report(*change)
            self._after_status_change(*change)

    def on_fill(self, fill: Fill) -> None:
        rule = self._book_fill(fill)
        if rule is not None:
            self._notify_fill(fill, rule)

    # ---- loops and day
    def check_open_orders(self) -> None:
        """Orders thread `run_once`: sells open longer than SELL_ORDER_TIMEOUT are cancelled and their
        remainder re-placed lower (≤ MAX_REORDER_TIMES per original order, never below limit-down; after
        that the last order keeps working); buys open longer than BUY_ORDER_TIMEOUT are cancelled. Orders whose
        state is unknown (a send that overran its deadline) are reconciled with the broker, never re-sent."""
        with self._submit_lock:
            self._ensure_day()
        if self._carryover_due:
            self.settle_previous_day_orders()
        now = self._clock.now()
        unknown = False
        for entry in self.journal.open_entries():
            unknown = unknown or entry.status is OrderStatus.UNKNOWN
            if entry.status in (OrderStatus.PENDING_SUBMIT, OrderStatus.UNKNOWN, OrderStatus.CANCEL_PENDING):
                continue
            if entry.trading_day < now.date():
                continue  # expired at yesterday's close: settled by the carryover, never cancelled (issue 25)
            if entry.origin_rule in CHORE_RULES:
                continue  # a subscription works until the close; a repo is not re-priced (issue 28 §3)
            age = (now - entry.created_at).total_seconds()
            if entry.side is Side.SELL and age > self._settings.get("SELL_ORDER_TIMEOUT"):
                self._time_out_sell(entry)
            elif entry.side is Side.BUY and age > self._settings.get("BUY_ORDER_TIMEOUT"):
                log.info("买单 %s %s 超时未成交，撤单", entry.client_id, entry.stock_code)
                self._try_cancel(entry)
        self._place_reprices()
        if unknown:
            self.reconcile_unknown()

    def reconcile_unknown(self) -> int:
        """Orders in state unknown (「结果未知」) take the broker's word (status, fills) when the broker knows them
        by remark; returns how many were resolved. One the broker still does not know ORDER_UNKNOWN_SETTLE_SECONDS
        after it was journaled is judged undelivered (rejected, never re-sent; a late broker report still
        applies, issue 13). Until then a repeat for the same stock and side is refused (issue 25)."""
        unknown = {e.client_id: e for e in self.journal.open_entries() if e.status is OrderStatus.UNKNOWN}
        if not unknown:
            return 0
        try:
            broker_orders = self._broker.query_orders()
            trades = [f for f in self._broker.query_trades() if f.client_id in unknown]
        except TradingError as exc:
            log.warning("核对结果未知的委托暂不可行：%s", exc.message)
            return 0
        known = [o for o in broker_orders if o.client_id in unknown]
        with self._event_lock:
            for order in known:
                change = self.journal.apply_update(order, force=True)
                if change:
                    self._after_status_change(*change)
                log.warning("核对：结果未知的委托 %s 按券商更新为 %s", order.client_id, order.status.value)
        for fill in trades:
            rule = self._book_fill(fill)
            if rule is not None:
                self._notify_fill(fill, rule)
        seen = {o.client_id for o in broker_orders}
        settled = [e for cid, e in unknown.items() if cid not in seen and self._unknown_expired(e)]
        for entry in settled:
            self._set_status(entry.client_id, OrderStatus.REJECTED, UNKNOWN_SETTLED, only_from=OrderStatus.UNKNOWN)
            log.warning("核对：委托 %s %s %s %d 股发出后券商按备注始终查不到，判定未送达（未重发）", entry.client_id,
                        entry.stock_code, entry.side.label, entry.volume)
        return len(known) + len(settled)

    def reconcile_by_query(self) -> int:
        """The broker_sync worker, every BROKER_SYNC_INTERVAL in sessions (issue 25): fills the broker lists that
        were never booked (pushes lost while queries work) are booked by the same idempotent path as pushed
        ones, and open orders take the broker's state (forward only). Returns how many fills were booked."""
        open_entries = {e.client_id: e for e in self.journal.open_entries()}
        broker_orders = [o for o in self._broker.query_orders() if o.client_id in open_entries
                         and not _cancel_in_flight(open_entries[o.client_id], o)]
        fills = [f for f in self._broker.query_trades() if not self.journal.has_fill(f.fill_id)]
        booked = 0
        for fill in fills:
            rule = self._book_fill(fill)
            if rule is not None:
                booked += 1
                log.warning("券商核对：补记推送缺失的成交 %s %s %s %d 股 @ %g", fill.fill_id, fill.stock_code,
                            fill.side.label, fill.volume, fill.price)
                self._notify_fill(fill, rule)
        for order in broker_orders:
            self.on_order_update(order)
        return booked

    def roll_day(self, today: date) -> None:
        """Daily counters: the day's start equity (for the daily loss limit); T+1 release of positions; the
        previous day's orders still open are settled (issue 25: while running, not only at a restart)."""
        with self._submit_lock:
            self._day = today
            self._carryover_due = True
            if self.journal.start_equity(today) is None:
                self.journal.set_start_equity(today, self._broker.query_asset().total_asset)
            self._positions.roll_day(today)
        self.settle_previous_day_orders()

    def settle_previous_day_orders(self) -> int:
        """Open journal entries of earlier days: xtquant lists only today's orders, and a day order expires at
        the close, so they are judged by the position change (qmt.carryover) and end, freeing their shares for
        today's exits. Retried by the orders loop while the broker cannot be asked. Returns how many."""
        today = self._clock.today()
        stale = [e for e in self.journal.open_entries() if e.trading_day < today]
        if not stale:
            self._carryover_due = False
            return 0
        try:
            broker_orders = {o.client_id: o for o in self._broker.query_orders() if o.client_id}
            broker_positions = self._broker.query_positions()
        except TradingError as exc:
            log.warning("结算隔日委托暂不可行：%s；稍后再试", exc.message)
            return 0
        with self._submit_lock, self._event_lock:
            settled = self._settle_previous_day(broker_orders, broker_positions)
        self._carryover_due = False
        return settled

    def recover(self) -> None:
        """Start-up reconciliation with the broker (orders matched by client id = remark): statuses from the
        broker; fills missing from trade_records are booked; journaled orders the broker never saw are marked
        (never re-sent; previous-day ones judged by the position change, issue 13); positions take the
        broker's volume/available; reservations = open sells."""
        with self._submit_lock:
            broker_orders = {o.client_id: o for o in self._broker.query_orders() if o.client_id}
            with self._event_lock:
                for order in broker_orders.values():
                    change = self.journal.apply_update(order, force=True)
                    if change:
                        log.info("启动核对：委托 %s 状态按券商更新为 %s", order.client_id, change[1].status.value)
            missing = [f for f in self._broker.query_trades() if not self.journal.has_fill(f.fill_id)]
            for fill in missing:
                log.warning("启动核对：补记成交 %s %s %s %d 股 @ %.3f", fill.fill_id, fill.stock_code, fill.side.label,
                            fill.volume, fill.price)
                self._book_fill(fill)
            broker_positions = self._broker.query_positions()
            with self._event_lock:
                self._settle_previous_day(broker_orders, broker_positions)  # issue 13
                self._mark_unknown_to_broker(broker_orders)
            self._positions.refresh_from_broker(broker_positions)
            reserved: dict[str, int] = {}
            for entry in self.journal.open_entries(side=Side.SELL):
                reserved[entry.stock_code] = reserved.get(entry.stock_code, 0) + entry.remaining
            self._positions.reset_reservations(reserved)
            self._ensure_day()
            log.info("启动核对完成：券商委托 %d 笔，补记成交 %d 笔", len(broker_orders), len(missing))

    # ---- internals: checks
    def _sell(self, code: str, volume: Any, price: Optional[float], rule: Rule, signal_id: Optional[int],
              parent: Optional[JournalEntry] = None, operator_confirmed: bool = False,
              key: str = "") -> OrderRequest:
        volume, order_price = self._checked_sell(code, volume, price)
        return self._prepare(code, Side.SELL, volume, order_price, rule, signal_id, parent, operator_confirmed, key)

    def _checked_buy(self, code: str, amount: Optional[float], volume: Optional[int], price: Optional[float],
                     rule: Rule) -> tuple[str, int, float]:
        """buy_stock's checks before the gates: the normalised code, the volume and the order price."""
        code = checks.normalized_code(code)
        if not self._settings.get("ENABLE_ALLOW_BUY"):
            raise OrderRejected("BUY_DISABLED", "买入已被禁止（「允许买入」开关已关闭）")
        if (amount is None) == (volume is None):
            raise OrderRejected("INVALID_ARGUMENT", "买入须指定金额或股数之一")
        quote = self._quote(code)
        order_price = self._order_price(code, Side.BUY, price, quote)
        if amount is not None:
            volume = self._volume_for_amount(code, amount, order_price)
        volume = checks.check_volume_type(volume)
        checks.check_buy_volume(code, volume)
        checks.check_price(code, Side.BUY, order_price, quote)
        self._check_buy_limits(code, volume, order_price, rule)
        self._check_order_count()
        return code, volume, order_price

    def _checked_sell(self, code: str, volume: Any, price: Optional[float]) -> tuple[int, float]:
        """A sell's checks before the gates: the volume and the order price."""
        if not self._settings.get("ENABLE_ALLOW_SELL"):
            raise OrderRejected("SELL_DISABLED", "卖出已被禁止（「允许卖出」开关已关闭）")
        volume = checks.check_volume_type(volume)
        self._check_no_unknown(code, Side.SELL)  # before the volume check: its shares are still reserved
        position = self._positions.get(code)
        if position is None:
            raise OrderRejected("NO_POSITION", f"没有 {code} 的持仓，无法卖出")
        checks.check_sell_available(code, volume, position.available, position.volume, self._positions.frozen(code))
        checks.check_sell_volume(code, volume, position.available)
        quote = self._quote(code)
        order_price = self._order_price(code, Side.SELL, price, quote)
        checks.check_price(code, Side.SELL, order_price, quote)
        return volume, order_price

    def _check_buy_limits(self, code: str, volume: int, price: float, rule: Rule) -> None:
        value = round(price * volume, 2)
        max_value = self._settings.get("MAX_ORDER_VALUE")
        if value > max_value:
            raise OrderRejected("MAX_ORDER_VALUE", f"单笔委托金额 {value:.2f} 元超过上限 {max_value:.2f} 元")
        asset = self._broker.query_asset()
        need = checks.buy_cost(code, price, volume, self._settings)
        cash = asset.cash - sum(self._sending_cost.values())  # buys on their way to the broker
        if need > cash:
            raise OrderRejected("INSUFFICIENT_CASH", f"可用资金不足：买入 {code} {volume} 股需要 {need:.2f} 元（含费用），"
                                                     f"可用 {cash:.2f} 元")
        ratio = self._settings.get("MAX_TOTAL_POSITION_RATIO")
        held = self._value_at_previous_close(asset)
        # DESIGN §7: total assets for the cap = the cash actually left after this buy's fees + holdings so valued
        total = asset.total_asset - asset.market_value + held - (need - value)
        if total <= 0 or (held + value) / total > ratio:
            raise OrderRejected("POSITION_RATIO", f"买入后持仓市值将超过总资产的 {ratio:.0%}（持仓按昨收计市值 "
                                                  f"{held:.2f} 元，总资产 {total:.2f} 元）")
        if rule is not Rule.MANUAL:
            self._check_daily_loss(asset)

    def _value_at_previous_close(self, asset: Asset) -> float:
        """Holdings at their previous close (DESIGN §7 decided cases, as in the backtest): the cap does not move
        with today's prices. A stock without a quote counts at its last known price."""
        positions = [p for p in self._positions.all() if p.volume > 0]
        if not positions:
            return asset.market_value
        total = 0.0
        for position in positions:
            quote = self._quotes(position.stock_code)
            price = quote.prev_close if quote is not None and quote.prev_close > 0 else position.current_price
            total += position.volume * price
        return round(total, 2)

    def _check_daily_loss(self, asset: Asset) -> None:
        """DAILY_LOSS_LIMIT_RATIO stops automatic buys (the operator's manual buys stay possible)."""
        start = self.journal.start_equity(self._clock.today())
        if not start:
            return
        loss = start - asset.total_asset
        ratio = self._settings.get("DAILY_LOSS_LIMIT_RATIO")
        if loss >= start * ratio:
            raise OrderRejected("DAILY_LOSS_LIMIT", f"今日亏损 {loss:.2f} 元，已达开盘总资产的 {ratio:.1%}，"
                                                    f"停止自动买入")

    def _check_order_count(self, rule: Rule = Rule.MANUAL) -> None:
        if self._breakers is not None or is_protective(rule):
            return  # issue 25: the breakers keep this budget per order source; protective exits draw on none
        limit = self._settings.get("MAX_ORDERS_PER_DAY")
        if self.journal.count_for_day(self._clock.today()) >= limit:
            raise OrderRejected("MAX_ORDERS", f"今日委托已达上限 {limit} 笔，不再下单")

    def _quote(self, code: str) -> Quote:
        quote = self._quotes(code)
        if quote is None:
            raise OrderRejected("NO_QUOTE", f"没有 {code} 的最新行情（缺失或已过期），暂不下单")
        return quote

    def _order_price(self, code: str, side: Side, price: Optional[float], quote: Quote) -> float:
        if price is None:
            return checks.marketable_price(code, side, quote, self._settings.get("ORDER_PRICE_SLIPPAGE"))
        return price

    @staticmethod
    def _volume_for_amount(code: str, amount: Any, price: float) -> int:
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not amount > 0:
            raise OrderRejected("INVALID_AMOUNT", f"买入金额无效：{amount}")
        volume = market_rules.buy_volume_for_amount(code, amount, price)
        if volume <= 0:
            raise OrderRejected("AMOUNT_TOO_SMALL", f"买入金额 {amount:.2f} 元按委托价 {price:g} 元不足买入最小数量")
        return volume

    # ---- internals: sending and cancelling
    def _prepare(self, code: str, side: Side, volume: int, price: float, rule: Rule, signal_id: Optional[int],
                 parent: Optional[JournalEntry] = None, operator_confirmed: bool = False,
                 key: str = "") -> OrderRequest:
        """Under `_submit_lock`: trading-state gate → journal (committed, under the requester's idempotency
        `key`) → reserve shares (sells). A gate refusal never reaches the journal."""
        origin = parent.origin_rule if parent else rule  # issue 25: a re-price counts in its origin's budget
        self._check_gates(code, side, volume, origin, operator_confirmed, rule)
        request = self.journal.open_order(code, side, volume, price, rule, signal_id, origin, parent, key)
        if self._breakers is not None:  # counted once journaled: a loop of refused orders trips too
            self._breakers.record_order(code, origin, operator_confirmed)
        if side is Side.SELL:
            self._positions.reserve(code, volume)
        return request

    def _check_gates(self, code: str, side: Side, volume: int, origin: Rule, operator_confirmed: bool,
                     rule: Optional[Rule] = None) -> None:
        """The gates every order passes just before it is journaled: no unknown order of the same side, the
        trading state, the circuit breakers (which count the order under its `origin` rule)."""
        self._check_no_unknown(code, side)
        if self._state is not None:
            self._state.check_order(code, side, rule or origin, operator_confirmed)
        if self._breakers is not None:
            self._breakers.check_order(code, volume, origin, operator_confirmed)

    def _send(self, request: OrderRequest) -> Order:
        """Outside every executor lock: the broker call. A refusal is journaled as rejected; a call that
        overran its deadline or failed oddly leaves the order unknown (reconciled later, never re-sent)."""
        code, side, volume, price = request.stock_code, request.side, request.volume, request.price
        try:
            self._broker.place_order(request)
        except (OrderRejected, BrokerUnavailable) as exc:
            reason = f"{UNDELIVERED}：{exc.message}" if isinstance(exc, BrokerUnavailable) else exc.message
            self._set_status(request.client_id, OrderStatus.REJECTED, reason)
            log.warning("委托被拒绝 %s %s %s %d 股 @ %g：%s", request.client_id, code, side.label, volume, price,
                        exc.message)
            raise
        except Exception as exc:
            # The order may or may not have reached the broker: keep it open as unknown for reconciliation
            # (unless a broker event already told where it is). The caller gets a TradingError (API: 409).
            message = exc.message if isinstance(exc, TradingError) else str(exc)
            self._set_status(request.client_id, OrderStatus.UNKNOWN, f"发送委托时出错，结果未知：{message}",
                             only_from=OrderStatus.PENDING_SUBMIT)
            log.error("委托 %s %s %s %d 股结果未知（不会重发，将按备注与券商核对）：%s", request.client_id, code,
                      side.label, volume, message)
            if isinstance(exc, TradingError):
                raise
            raise OutcomeUnknown("ORDER_OUTCOME_UNKNOWN", f"委托 {request.client_id} 发送时出错（{message}），"
                                                          "是否已送达券商未知（结果未知）：将与券商核对，核对前同一股票同方向"
                                                          "不会再下单") from exc
        finally:
            self._sending_cost.pop(request.client_id, None)
        self._set_status(request.client_id, OrderStatus.SUBMITTED)
        log.info("已委托 %s %s %s %d 股 @ %g（%s）", request.client_id, code, side.label, volume, price,
                 request.rule.label)
        return self.journal.get(request.client_id).to_order()

    def _cancel(self, entry: JournalEntry) -> None:
        if entry.status.is_terminal:
            raise OrderRejected("ORDER_NOT_OPEN", f"委托 {entry.client_id} 已结束，无法撤单")
        if not entry.order_id:
            raise OrderRejected("ORDER_NOT_ACKNOWLEDGED", f"委托 {entry.client_id} 尚未被券商受理，暂时无法撤单")
        if entry.trading_day < self._clock.today():
            # a day order expired at the close; its id may name another order today (issue 25)
            self._carryover_due = True
            raise OrderRejected("ORDER_EXPIRED", f"委托 {entry.client_id} 是 {entry.trading_day} 的委托，已随收盘失效，"
                                                 "不再撤单（换日核对会按持仓变化结算它）")
        # pending before the send: the broker may answer (a refusal, the cancel) before the call returns, and
        # that answer must not be overwritten (brokers/CONTRACT.md: events may precede the call's return)
        self._set_status(entry.client_id, OrderStatus.CANCEL_PENDING)
        try:
            self._broker.cancel_order(entry.order_id)
        except BaseException:
            self._set_status(entry.client_id, entry.status, only_from=OrderStatus.CANCEL_PENDING)
            raise
        if self._breakers is not None:
            self._breakers.record_cancel(entry.stock_code, entry.origin_rule)

    def _try_cancel(self, entry: JournalEntry) -> bool:
        try:
            self._cancel(entry)
            return True
        except TradingError as exc:
            log.info("撤单 %s 未执行：%s", entry.client_id, exc.message)
            return False

    def _time_out_sell(self, entry: JournalEntry) -> None:
        if entry.reprice_count >= self._settings.get("MAX_REORDER_TIMES"):
            if entry.reprice_state != REPRICE_EXHAUSTED:
                self.journal.set_reprice_state(entry.client_id, REPRICE_EXHAUSTED)
                log.warning("卖单 %s %s 已重报 %d 次仍未成交，保留委托继续等待", entry.client_id, entry.stock_code,
                            entry.reprice_count)
            return
        self.journal.set_reprice_state(entry.client_id, REPRICE_REQUESTED)
        log.info("卖单 %s %s 超时未成交，撤单后改价重报", entry.client_id, entry.stock_code)
        if not self._try_cancel(entry):
            self.journal.set_reprice_state(entry.client_id, "")

    def _place_reprices(self) -> None:
        with self._event_lock:  # a cancel confirmed by an event has also released its shares
            due = self.journal.reprice_due()
        for entry in due:
            remaining = entry.remaining
            if remaining <= 0:
                self.journal.set_reprice_state(entry.client_id, REPRICE_DONE)
                continue
            quote = self._quotes(entry.stock_code)
            if quote is None:
                log.warning("卖单 %s 待重报，但暂无 %s 行情，稍后再试", entry.client_id, entry.stock_code)
                continue
            down, _ = checks.limits(quote)
            step = self._settings.get("REORDER_PRICE_STEP")
            new_price = max(market_rules.round_price_down(entry.stock_code, entry.price * (1 - step)), down)
            try:
                with self._submit_lock:
                    request = self._sell(entry.stock_code, remaining, new_price, Rule.REPRICE, entry.signal_id,
                                         entry)
                order = self._send(request)
            except TradingError as exc:  # refused, or sent without an answer (then unknown, never re-sent)
                self.journal.set_reprice_state(entry.client_id, REPRICE_DONE, reason=f"改价重报失败：{exc.message}")
                log.warning("卖单 %s 改价重报失败：%s", entry.client_id, exc.message)
                continue
            self.journal.set_reprice_state(entry.client_id, REPRICE_DONE, replaced_by=order.client_id)
            log.info("卖单 %s 剩余 %d 股改价 %g → %g 重报为 %s", entry.client_id, remaining, entry.price, new_price,
                     order.client_id)

    # ---- internals: events
    def _set_status(self, client_id: str, status: OrderStatus, reason: str = "",
                    only_from: Optional[OrderStatus] = None) -> None:
        """`only_from`: force the move, but only out of that status (a move the journal's forward-only rule
        would refuse, e.g. pending_submit → unknown)."""
        with self._event_lock:
            if only_from is not None:
                entry = self.journal.get(client_id)
                if entry is None or entry.status is not only_from:
                    return
            change = self.journal.set_status(client_id, status, reason, force=only_from is not None)
            if change:
                self._after_status_change(*change)

    def _after_status_change(self, before: JournalEntry, after: JournalEntry) -> None:
        """Called under `_event_lock`: a sell that ended gives its unfilled shares back to `available`."""
        if after.side is Side.SELL and after.status.is_terminal and not before.status.is_terminal:
            self._positions.release(after.stock_code, after.remaining)

    def _book_fill(self, fill: Fill) -> Optional[Rule]:
        """Positions (idempotent by fill id) then trade_records (unique fill id): safe to repeat after a crash
        between the two, and a duplicate callback changes nothing. Returns the rule when newly recorded."""
        with self._event_lock:
            if self.journal.has_fill(fill.fill_id):
                log.debug("重复的成交回报 %s，已忽略", fill.fill_id)
                return None
            entry = self.journal.get(fill.client_id) if fill.client_id else None
            entry = entry or self.journal.find(fill.order_id)
            rule = entry.origin_rule if entry else Rule.MANUAL
            held = self._positions.get(fill.stock_code)
            name = (held.stock_name if held else "") or self._quote_name(fill.stock_code)
            realized = None if rule in CHORE_RULES else self._positions.book_fill(fill, rule, name).realized_pnl
            recorded = self.journal.record_fill(fill, rule, realized, name, entry)
        if recorded:
            log.info("成交 %s %s %d 股 @ %g，费用 %.2f 元（%s）", fill.stock_code, fill.side.label, fill.volume,
                     fill.price, fill.fees, rule.label)
        return rule if recorded else None

    def _notify_fill(self, fill: Fill, rule: Rule) -> None:
        for listener in list(self._fill_listeners):
            try:
                listener(fill, rule)
            except Exception:
                log.exception("成交监听者处理 %s 时出错", fill.fill_id)

    def _quote_name(self, code: str) -> str:
        quote = self._quotes(code)
        return quote.name if quote else ""

    def _mark_unknown_to_broker(self, broker_orders: dict[str, Order]) -> None:
        today = self._clock.today()
        for entry in self.journal.open_entries():
            if entry.client_id in broker_orders:
                continue
            if entry.status is OrderStatus.PENDING_SUBMIT:
                status, reason = OrderStatus.REJECTED, "程序在委托送达券商前中断，该委托未发出（不会重发）"
                self.journal.release_idempotency_key(entry.client_id)  # its requester may send it again
            elif entry.trading_day < today:
                status, reason = OrderStatus.CANCELLED, "券商已无该隔日委托，按当日有效委托收盘失效处理"
            else:
                status, reason = OrderStatus.UNKNOWN, "券商查询不到该委托，状态未知，请人工核对"
            self.journal.set_status(entry.client_id, status, reason, force=True)
            log.warning("启动核对：委托 %s %s → %s（%s）", entry.client_id, entry.stock_code, status.value, reason)

    # ---- issue 13: late broker reports and previous-day orders (kept together to ease merging) ----------------
    def _is_late_report(self, order: Order) -> bool:
        """A broker report for an order we had marked rejected (e.g. undelivered after a reconnect) that the
        broker in fact has: fills are facts, so its state is applied."""
        if order.status in (OrderStatus.REJECTED, OrderStatus.UNKNOWN):
            return False
        entry = self.journal.get(order.client_id) if order.client_id else None
        return entry is not None and entry.status is OrderStatus.REJECTED

    def _apply_late_report(self, before: JournalEntry, after: JournalEntry) -> None:
        """Reserve again the shares of a sell that works on (the rejection had released them)."""
        if after.side is Side.SELL and not after.status.is_terminal:
            self._positions.reserve(after.stock_code, after.remaining)
        log.error("【券商异常】委托 %s %s 曾判定为未送达/被拒，券商迟到回报其状态为 %s（已成交 %d 股），已按券商回报更新",
                  after.client_id, after.stock_code, after.status.value, after.filled_volume)

    def _settle_previous_day(self, broker_orders: dict[str, Order], broker_positions: list) -> int:
        """Open entries of earlier days the broker no longer lists (xtquant shows only today's orders and
        trades): judged by the position change before the positions take the broker's volumes."""
        today = self._clock.today()
        entries = [e for e in self.journal.open_entries() if e.client_id not in broker_orders
                   and e.status is not OrderStatus.PENDING_SUBMIT and e.trading_day < today]
        held = {p.stock_code: p.volume for p in self._positions.all()}
        broker = {p.stock_code: p.volume for p in broker_positions}
        for verdict in carryover.judge(entries, held, broker):
            entry = verdict.entry
            order = Order(entry.client_id, entry.stock_code, entry.side, entry.volume, entry.price, verdict.status,
                          order_id=entry.order_id, filled_volume=verdict.filled_volume,
                          filled_amount=entry.filled_amount, time=self._clock.now(), reason=verdict.reason)
            change = self.journal.apply_update(order, force=True)
            if change:
                self._after_status_change(*change)  # issue 25: its shares are free for today's exits
            log.warning("核对：隔日委托 %s %s → %s（%s）", entry.client_id, entry.stock_code, verdict.status.value,
                        verdict.reason)
        return len(entries)

    # ---- issue 25: orders whose outcome is unknown ----------------------------------------------------------
    def _check_no_unknown(self, code: str, side: Side) -> None:
        """A repeat of an order whose outcome is unknown (sent, never answered) could double it at the broker:
        refused until that order is reconciled by its remark."""
        for entry in self.journal.open_entries(code, side):
            if entry.status is OrderStatus.UNKNOWN:
                raise OutcomeUnknown("ORDER_OUTCOME_UNKNOWN", f"{code} 有一笔{side.label}委托 {entry.client_id}（"
                                                              f"{entry.volume} 股 @ {entry.price:g}）结果未知，正在按备注与券商"
                                                              f"核对；核对前不再发送{side.label}委托，以免重复下单")

    def _mark_unknown(self, order: Order) -> None:
        """The broker lost track of an order it never acknowledged (e.g. not found after a reconnect): the
        entry becomes 「结果未知」 (its shares stay reserved); an acknowledged or ended one is left alone."""
        with self._event_lock:
            entry = self.journal.get(order.client_id) if order.client_id else None
            if entry is None or entry.order_id or entry.status.is_terminal:
                return
            change = self.journal.set_status(entry.client_id, OrderStatus.UNKNOWN, order.reason, force=True)
        if change:
            log.warning("委托 %s %s 结果未知：%s", entry.client_id, entry.stock_code, order.reason)

    def _unknown_expired(self, entry: JournalEntry) -> bool:
        age = (self._clock.now() - entry.created_at).total_seconds()
        return age >= float(self._settings.get("ORDER_UNKNOWN_SETTLE_SECONDS"))

    def _ensure_day(self) -> None:
        today = self._clock.today()
        if today != self._day:
            self.roll_day(today)
