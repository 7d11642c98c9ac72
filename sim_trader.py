"""Simulated broker (core.models.Broker, mode 'simulation'): limit orders matched against current quotes under the
A-share rules (lots, price limits, T+1 or T+0 by kind, fees, sessions; the facts are market_rules'); its whole
book lives in the `sim_*` tables."""
from __future__ import annotations

import logging
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable, Iterator, Optional

import market_rules
import core.order_checks as checks
from core.models import (Asset, BrokerListener, BrokerPosition, BrokerUnavailable, Fill, Order, OrderRejected, OrderRequest,
                    OrderStatus, Quote, Side)
from persistence.storage import Database, migrate

log = logging.getLogger(__name__)

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS sim_account (
        id INTEGER PRIMARY KEY CHECK (id = 1), initial_balance REAL NOT NULL, cash REAL NOT NULL,
        frozen_cash REAL NOT NULL, day TEXT NOT NULL, order_seq INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS sim_positions (
        stock_code TEXT PRIMARY KEY, stock_name TEXT NOT NULL DEFAULT '', volume INTEGER NOT NULL,
        frozen INTEGER NOT NULL, locked INTEGER NOT NULL, locked_until TEXT, cost_amount REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS sim_orders (
        order_id TEXT PRIMARY KEY, client_id TEXT NOT NULL UNIQUE, stock_code TEXT NOT NULL, side TEXT NOT NULL,
        volume INTEGER NOT NULL, price REAL NOT NULL, status TEXT NOT NULL, rule TEXT NOT NULL, day TEXT NOT NULL,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL, filled_volume INTEGER NOT NULL,
        filled_amount REAL NOT NULL, frozen_cash REAL NOT NULL, commission REAL NOT NULL, stamp_duty REAL NOT NULL,
        transfer_fee REAL NOT NULL, fill_count INTEGER NOT NULL, reason TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS sim_fills (
        fill_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, client_id TEXT NOT NULL, stock_code TEXT NOT NULL,
        side TEXT NOT NULL, price REAL NOT NULL, volume INTEGER NOT NULL, time TEXT NOT NULL,
        commission REAL NOT NULL, stamp_duty REAL NOT NULL, transfer_fee REAL NOT NULL)
    """,
)

CENTS = Decimal("0.01")


@dataclass
class _SimOrder:
    order_id: str
    client_id: str
    stock_code: str
    side: Side
    volume: int
    price: float
    status: OrderStatus
    rule: str
    day: date
    created_at: datetime
    updated_at: datetime
    filled_volume: int = 0
    filled_amount: float = 0.0
    frozen_cash: float = 0.0  # cash still frozen for this buy (amount + estimated fees at the limit price)
    commission: float = 0.0  # fees charged so far (per order: the minimum commission applies once per order)
    stamp_duty: float = 0.0
    transfer_fee: float = 0.0
    fill_count: int = 0
    reason: str = ""

    @property
    def remaining(self) -> int:
        return self.volume - self.filled_volume

    def to_order(self) -> Order:
        return Order(client_id=self.client_id, stock_code=self.stock_code, side=self.side, volume=self.volume,
                     price=self.price, status=self.status, order_id=self.order_id, filled_volume=self.filled_volume,
                     filled_amount=self.filled_amount, time=self.created_at, reason=self.reason)


@dataclass
class _SimPosition:
    stock_code: str
    volume: int = 0
    frozen: int = 0  # in open sell orders
    locked: int = 0  # bought on a day whose next trading day has not come yet (T+1; never for T+0 kinds)
    locked_until: Optional[date] = None
    cost_amount: float = 0.0  # cost basis incl. buy fees, reduced pro rata by sells
    stock_name: str = ""

    def available(self) -> int:
        return self.volume - self.frozen - self.locked


class SimTrader:
    """The simulated account. `max_fill_volume` caps the shares one quote can fill (liquidity; None = all).

    Locking: `_lock` guards the book and is held only around a book change and its db write (the db lock is
    a leaf inside it; quotes are read before taking it). Events are queued under `_lock` and delivered after
    it is released, one thread at a time and in order, so a listener may call back into the broker (place,
    cancel, query) without deadlock. A thread that finds another thread delivering does not wait for it: it
    leaves its events to that thread, which re-checks the queue after releasing the delivery lock.
    """

    mode = "simulation"

    def __init__(self, db: Database, settings, clock, quotes: Callable[[str], Optional[Quote]],
                 max_fill_volume: Optional[int] = None):
        self._db = db
        self._settings = settings
        self._clock = clock
        self._quotes = quotes
        self._max_fill_volume = max_fill_volume
        self._lock = threading.Lock()
        self._deliver_lock = threading.Lock()
        self._outbox: deque[tuple[str, object]] = deque()  # committed events awaiting delivery
        self._staged: list[tuple[str, object]] = []  # events of the change being made (until it commits)
        self._listener: Optional[BrokerListener] = None
        self._connected = True
        self._orders: dict[str, _SimOrder] = {}
        self._maybe_resting: set[str] = set()  # codes that may have a working order; pruned lazily by on_quote
        self._by_client: dict[str, _SimOrder] = {}
        self._positions: dict[str, _SimPosition] = {}
        self._fills: list[Fill] = []
        self._last_price: dict[str, float] = {}
        self._halts = market_rules.HaltTracker()  # today's intraday halts 盘中临时停牌 by code (issue 28)
        migrate(db, "sim_trader", MIGRATIONS)
        with self._lock:
            self._load()

    # ---- Broker interface
    def set_listener(self, listener: BrokerListener) -> None:
        self._listener = listener

    def connect(self) -> None:
        self._connected = True

    def is_connected(self) -> bool:
        return self._connected

    def close(self) -> None:
        self._connected = False

    def place_order(self, request: OrderRequest) -> None:
        """Accept (and match at once when marketable) or raise OrderRejected with nothing changed but a
        rejected order in the book."""
        quote = self._quotes(request.stock_code)
        try:
            with self._book():
                self._require_connected()
                self._roll_if_new_day()
                if not request.client_id:
                    raise OrderRejected("INVALID_ORDER", "委托缺少本地委托编号（备注）")
                if request.client_id in self._by_client:
                    raise OrderRejected("DUPLICATE_ORDER", f"重复的委托编号 {request.client_id}，已拒绝（不会重复下单）")
                order = self._new_order(request)
                try:
                    self._validate(order, quote)
                except OrderRejected as exc:
                    order.status, order.reason = OrderStatus.REJECTED, exc.message
                    self._register(order)
                    self._commit(orders=[order])
                    log.info("模拟券商拒绝委托 %s %s：%s", request.client_id, request.stock_code, exc.message)
                    raise
                self._accept(order)
                halted = quote is not None and self._observe_halt(quote)[1]
                fills = self._match(order, quote, resting=False) if quote and not halted else []
                self._commit(orders=[order], fills=fills, codes=[order.stock_code])
        finally:
            self._deliver()

    def cancel_order(self, order_id: str) -> None:
        """Cancel an open order (broker order id or client id); raises OrderRejected when not open."""
        try:
            with self._book():
                self._require_connected()
                self._roll_if_new_day()
                order = self._orders.get(order_id) or self._by_client.get(order_id)
                if order is None:
                    raise OrderRejected("ORDER_NOT_FOUND", f"找不到委托 {order_id}")
                if order.status.is_terminal:
                    raise OrderRejected("ORDER_NOT_OPEN", f"委托 {order_id} 已结束（{order.status.value}），无法撤单")
                self._cancel(order, "已撤单")
                self._commit(orders=[order], codes=[order.stock_code])
        finally:
            self._deliver()

    def query_asset(self) -> Asset:
        prices = self._prices([p.stock_code for p in self._positions_snapshot()])
        with self._book():
            self._roll_if_new_day()
            market_value = sum(p.volume * prices.get(p.stock_code, self._cost_price(p))
                               for p in self._positions.values())
            cash, frozen = self._cash, self._frozen_cash
        self._deliver()
        market_value = _cents(market_value)
        return Asset(cash=cash, frozen_cash=frozen, market_value=market_value,
                     total_asset=_cents(cash + frozen + market_value))

    def query_positions(self) -> list[BrokerPosition]:
        prices = self._prices([p.stock_code for p in self._positions_snapshot()])
        with self._book():
            self._roll_if_new_day()
            result = [BrokerPosition(stock_code=p.stock_code, volume=p.volume, available=p.available(),
                                     cost_price=self._cost_price(p),
                                     market_value=_cents(p.volume * prices.get(p.stock_code, self._cost_price(p))),
                                     stock_name=p.stock_name)
                      for p in sorted(self._positions.values(), key=lambda x: x.stock_code)]
        self._deliver()
        return result

    def query_orders(self) -> list[Order]:
        """The whole persisted book (a simulated account has no reason to forget its history)."""
        with self._book():
            self._roll_if_new_day()
            result = [o.to_order() for o in self._orders.values()]
        self._deliver()
        return result

    def query_trades(self) -> list[Fill]:
        with self._book():
            self._roll_if_new_day()
            result = list(self._fills)
        self._deliver()
        return result

    # ---- simulation
    def on_quote(self, quote: Quote) -> None:
        """Match the resting orders of `quote.code` against it (subscribe this to the QuoteHub)."""
        try:
            with self._book():
                self._last_price[quote.code] = quote.price
                halted_before, _ = self._observe_halt(quote)
                if quote.code not in self._maybe_resting or not self._connected or not self._may_trade_now():
                    return  # the common case, kept O(1): every quote of the market passes through here
                if halted_before:
                    return  # 盘中临时停牌: orders rest, nothing matches until the resume time
                self._roll_if_new_day()
                working = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
                resting = [o for o in self._orders.values() if o.stock_code == quote.code and o.status in working]
                if not resting:
                    self._maybe_resting.discard(quote.code)
                    return
                resting.sort(key=lambda o: (o.created_at, o.order_id))
                fills, touched = [], []
                for order in resting:
                    new = self._match(order, quote, resting=True)
                    if new:
                        fills += new
                        touched.append(order)
                if fills:
                    self._commit(orders=touched, fills=fills, codes=[quote.code])
        finally:
            self._deliver()

    def roll_day(self, today: date) -> None:
        """Day roll-over: yesterday's unfilled orders expire (A-share orders are day orders), T+1 releases."""
        try:
            with self._book():
                self._roll(today)
        finally:
            self._deliver()

    def apply_corporate_action(self, action) -> Optional[object]:
        """issue 28: an ex-rights event (market.ex_rights.CorporateAction) on the held shares — bonus shares
        added, the pre-tax cash dividend credited, the cost basis lowered by it (ex_rights.holding_change) — so
        the account's equity is continuous across the ex-date on unadjusted prices. Once per event (its marker
        commits with the book); returns the HoldingChange, or None when not held or already applied."""
        from market import ex_rights

        migrate(self._db, "sim_corporate_actions", ("CREATE TABLE IF NOT EXISTS sim_corporate_actions ("
                                                    " key TEXT PRIMARY KEY, detail TEXT NOT NULL)",))
        try:
            with self._book():
                position = self._positions.get(action.code)
                done = self._db.query_one("SELECT 1 FROM sim_corporate_actions WHERE key=?", (action.key,))
                if position is None or position.volume <= 0 or done is not None:
                    return None
                change = ex_rights.holding_change(position.volume, position.cost_amount, action)
                position.volume, position.cost_amount = change.volume_after, change.cost_amount_after
                self._cash = _cents(self._cash + change.cash_credit)
                with self._db.transaction() as conn:
                    conn.execute("INSERT INTO sim_corporate_actions(key, detail) VALUES(?, ?)",
                                 (action.key, f"{change.volume_before}->{change.volume_after} +{change.cash_credit}"))
                    conn.execute("UPDATE sim_account SET cash=? WHERE id=1", (self._cash,))
                    conn.execute("INSERT OR REPLACE INTO sim_positions VALUES(?,?,?,?,?,?,?)", _position_row(position))
            log.info("模拟账户除权除息 %s（%s）：持股 %d → %d 股，现金红利 %.2f 元", action.code, action.describe(),
                     change.volume_before, change.volume_after, change.cash_credit)
            return change
        finally:
            self._deliver()

    # ---- internals: orders
    def _new_order(self, request: OrderRequest) -> _SimOrder:
        now = self._clock.now()
        self._order_seq += 1
        return _SimOrder(order_id=f"SIM{now:%Y%m%d%H%M%S}{self._order_seq:06d}", client_id=request.client_id,
                         stock_code=request.stock_code, side=request.side, volume=request.volume,
                         price=request.price, status=OrderStatus.SUBMITTED, rule=request.rule.value,
                         day=now.date(), created_at=now, updated_at=now)

    def _validate(self, order: _SimOrder, quote: Optional[Quote]) -> None:
        code = checks.normalized_code(order.stock_code)
        if code != order.stock_code:
            raise OrderRejected("INVALID_CODE", f"股票代码须写成 {code}")
        if not self._may_trade_now():
            raise OrderRejected("MARKET_CLOSED", f"当前非交易时段（{self._clock.session()}），模拟账户不接受委托")
        volume = checks.check_volume_type(order.volume)
        if quote is None:
            raise OrderRejected("NO_QUOTE", f"没有 {code} 的最新行情，模拟账户无法撮合")
        checks.check_price(code, order.side, order.price, quote)
        if order.side is Side.BUY:
            checks.check_buy_volume(code, volume)
            need = checks.buy_cost(code, order.price, volume, self._settings)
            if need > self._cash:
                raise OrderRejected("INSUFFICIENT_CASH", f"可用资金不足：需要 {need:.2f} 元（含费用），"
                                                         f"可用 {self._cash:.2f} 元")
        else:
            position = self._positions.get(code) or _SimPosition(code)
            self._unlock_if_due(position, self._clock.today())
            checks.check_sell_available(code, volume, position.available(), position.volume, position.frozen)
            checks.check_sell_volume(code, volume, position.available())

    def _accept(self, order: _SimOrder) -> None:
        """Freeze what the order needs: cash (amount + estimated fees) for buys, shares for sells."""
        if order.side is Side.BUY:
            order.frozen_cash = checks.buy_cost(order.stock_code, order.price, order.volume, self._settings)
            self._cash = _cents(self._cash - order.frozen_cash)
            self._frozen_cash = _cents(self._frozen_cash + order.frozen_cash)
        else:
            self._positions[order.stock_code].frozen += order.volume
        order.status = OrderStatus.OPEN
        self._register(order)
        self._emit("order", order.to_order())

    def _match(self, order: _SimOrder, quote: Quote, resting: bool) -> list[Fill]:
        """Fill `order` if `quote` trades through it: a new marketable order at the quote price, a resting
        order at its own limit price (it was in the book first). Never a buy at limit-up or a sell at
        limit-down."""
        if quote is None or order.remaining <= 0:
            return []
        down, up = checks.limits(quote)
        if order.side is Side.BUY:
            crosses = quote.price <= order.price and quote.price < up
        else:
            crosses = quote.price >= order.price and quote.price > down
        if not crosses:
            return []
        volume = self._fill_volume(order)
        return [self._fill(order, order.price if resting else quote.price, volume, quote.name)]

    def _fill_volume(self, order: _SimOrder) -> int:
        cap = self._max_fill_volume
        if cap is None or order.remaining <= cap:
            return order.remaining
        rule = market_rules.lot_rule(order.stock_code)
        return max(rule.minimum, cap // rule.step * rule.step)

    def _fill(self, order: _SimOrder, price: float, volume: int, name: str) -> Fill:
        now = self._clock.now()
        amount = _cents(price * volume)
        cumulative = _cents(order.filled_amount + amount)
        # Fees per order, not per fill: the minimum commission is charged once for the whole order.
        total = market_rules.fees(order.stock_code, order.side.value, cumulative, 1, self._settings)
        commission = _cents(total["commission"] - order.commission)
        stamp = _cents(total["stamp_duty"] - order.stamp_duty)
        transfer = _cents(total["transfer_fee"] - order.transfer_fee)
        order.commission, order.stamp_duty, order.transfer_fee = (total["commission"], total["stamp_duty"],
                                                                   total["transfer_fee"])
        fees = _cents(commission + stamp + transfer)
        position = self._positions.setdefault(order.stock_code, _SimPosition(order.stock_code))
        if name:
            position.stock_name = name
        if order.side is Side.BUY:
            cost = _cents(amount + fees)
            order.frozen_cash = _cents(order.frozen_cash - cost)
            self._frozen_cash = _cents(self._frozen_cash - cost)
            self._unlock_if_due(position, now.date())
            position.volume += volume
            if not market_rules.is_t0(order.stock_code):  # T+0 kinds (bonds, T+0 funds) sell the same day
                position.locked += volume
                position.locked_until = self._clock.calendar.next_trading_day(now.date())
            position.cost_amount = _cents(position.cost_amount + cost)
        else:
            self._cash = _cents(self._cash + amount - fees)
            basis = position.cost_amount if volume == position.volume else \
                _cents(position.cost_amount * volume / position.volume)
            position.volume -= volume
            position.frozen -= volume
            position.cost_amount = _cents(position.cost_amount - basis)
        order.filled_volume += volume
        order.filled_amount = cumulative
        order.fill_count += 1
        order.updated_at = now
        order.status = OrderStatus.FILLED if order.remaining == 0 else OrderStatus.PARTIALLY_FILLED
        if order.status is OrderStatus.FILLED:
            self._release_cash(order)
        fill = Fill(fill_id=f"{order.order_id}-{order.fill_count}", order_id=order.order_id,
                    client_id=order.client_id, stock_code=order.stock_code, side=order.side, price=price,
                    volume=volume, time=now, commission=commission, stamp_duty=stamp, transfer_fee=transfer)
        self._fills.append(fill)
        self._emit("fill", fill)
        self._emit("order", order.to_order())
        return fill

    def _cancel(self, order: _SimOrder, reason: str) -> None:
        if order.side is Side.BUY:
            self._release_cash(order)
        else:
            position = self._positions.get(order.stock_code)
            if position is not None:
                position.frozen -= order.remaining
        order.status = OrderStatus.CANCELLED
        order.reason = reason
        order.updated_at = self._clock.now()
        self._emit("order", order.to_order())

    def _release_cash(self, order: _SimOrder) -> None:
        self._cash = _cents(self._cash + order.frozen_cash)
        self._frozen_cash = _cents(self._frozen_cash - order.frozen_cash)
        order.frozen_cash = 0.0

    def _register(self, order: _SimOrder) -> None:
        self._orders[order.order_id] = order
        self._by_client[order.client_id] = order
        self._maybe_resting.add(order.stock_code)

    def halt_state(self, code: str) -> Optional[market_rules.HaltState]:
        """Today's intraday-halt state of `code` as the sim account has seen it (None: no halts today)."""
        with self._lock:
            return self._halts.state(code, self._clock.today())

    def _observe_halt(self, quote: Quote) -> tuple[bool, bool]:
        """Advance the code's intraday-halt state by the trade `quote` shows (at the sim clock's time): (halted
        before it, halted after it). A resting order still meets the trade that triggers a halt (it happened);
        nothing matches after it until the resume time. Kept in memory: a restart mid-halt forgets the halt."""
        now = self._clock.now()
        before, after = self._halts.observe(quote.code, quote.price, quote.open, quote.prev_close, now)
        if after and not before:
            log.info("模拟账户：%s", self._halts.halted_message(quote.code, now))
        return before, after

    # ---- internals: day, session, prices
    def _may_trade_now(self) -> bool:
        return self._settings.get("SIMULATION_IGNORE_TRADING_HOURS") or self._clock.is_trading()

    def _roll_if_new_day(self) -> None:
        today = self._clock.today()
        if today > self._day:
            self._roll(today)

    def _roll(self, today: date) -> None:
        if today <= self._day:
            return
        expired = [o for o in self._orders.values() if o.status.is_open and o.day < today]
        for order in expired:
            self._cancel(order, "当日未成交，收盘后自动撤销")
        for position in self._positions.values():
            self._unlock_if_due(position, today)
        self._day = today
        self._commit(orders=expired, codes=list(self._positions))
        if expired:
            log.info("模拟账户日切 %s：%d 笔未成交委托已失效", today, len(expired))

    def _unlock_if_due(self, position: _SimPosition, today: date) -> None:
        if position.locked and position.locked_until is not None and today >= position.locked_until:
            position.locked, position.locked_until = 0, None

    def _prices(self, codes: list[str]) -> dict[str, float]:
        """Latest prices, read outside the book lock (the quote source has its own lock)."""
        prices = {}
        for code in codes:
            quote = self._quotes(code)
            if quote is not None:
                prices[code] = quote.price
            elif code in self._last_price:
                prices[code] = self._last_price[code]
        return prices

    def _positions_snapshot(self) -> list[_SimPosition]:
        with self._lock:
            return [replace(p) for p in self._positions.values()]

    @staticmethod
    def _cost_price(position: _SimPosition) -> float:
        if position.volume <= 0:
            return 0.0
        return float((Decimal(repr(position.cost_amount)) / position.volume).quantize(Decimal("0.001"),
                                                                                       rounding=ROUND_HALF_UP))

    def _require_connected(self) -> None:
        if not self._connected:
            raise BrokerUnavailable("BROKER_CLOSED", "模拟券商已关闭")

    # ---- events
    @contextmanager
    def _book(self) -> Iterator[None]:
        """Hold the book lock for one change. A refusal (OrderRejected) leaves the book as committed; any
        other error reloads the book from the db and drops the change's events."""
        with self._lock:
            try:
                yield
            except OrderRejected:
                self._staged.clear()
                raise
            except BaseException:
                self._staged.clear()
                self._load()
                raise

    def _emit(self, kind: str, payload: object) -> None:
        self._staged.append((kind, payload))

    def _deliver(self) -> None:
        """Deliver queued events in order, never under `_lock`. Only one thread delivers at a time; a thread
        that finds the delivery lock taken returns at once (the holder re-checks the queue after releasing),
        so a listener that calls back into the broker cannot deadlock with it."""
        while self._outbox:
            if not self._deliver_lock.acquire(blocking=False):
                return
            try:
                while self._outbox:
                    kind, payload = self._outbox.popleft()
                    listener = self._listener
                    if listener is None:
                        continue  # no one listens: the book keeps everything for a later recover()
                    try:
                        if kind == "fill":
                            listener.on_fill(payload)
                        else:
                            listener.on_order_update(payload)
                    except Exception:
                        log.exception("模拟券商事件处理出错（%s）", kind)
            finally:
                self._deliver_lock.release()

    # ---- persistence
    def _commit(self, orders=(), fills=(), codes=()) -> None:
        """Write the changed part of the book in one transaction; on failure reload the book from the db so
        memory never runs ahead of what was committed."""
        try:
            with self._db.transaction() as conn:
                conn.execute("UPDATE sim_account SET cash=?, frozen_cash=?, day=?, order_seq=? WHERE id=1",
                             (self._cash, self._frozen_cash, self._day.isoformat(), self._order_seq))
                for order in orders:
                    conn.execute("INSERT OR REPLACE INTO sim_orders VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                 _order_row(order))
                for fill in fills:
                    conn.execute("INSERT INTO sim_fills VALUES(?,?,?,?,?,?,?,?,?,?,?)", _fill_row(fill))
                for code in set(codes):
                    position = self._positions.get(code)
                    if position is None or position.volume == 0 and position.frozen == 0:
                        self._positions.pop(code, None)
                        conn.execute("DELETE FROM sim_positions WHERE stock_code=?", (code,))
                    else:
                        conn.execute("INSERT OR REPLACE INTO sim_positions VALUES(?,?,?,?,?,?,?)",
                                     _position_row(position))
        except BaseException:
            self._staged.clear()
            self._load()
            raise
        self._outbox.extend(self._staged)
        self._staged.clear()

    def _load(self) -> None:
        row = self._db.query_one("SELECT * FROM sim_account WHERE id=1")
        if row is None:
            balance = float(self._settings.get("SIMULATION_BALANCE"))
            self._db.execute("INSERT INTO sim_account VALUES(1, ?, ?, 0, ?, 0)",
                             (balance, balance, self._clock.today().isoformat()))
            row = self._db.query_one("SELECT * FROM sim_account WHERE id=1")
            log.info("新建模拟账户，初始资金 %.2f 元", balance)
        self._cash, self._frozen_cash = row["cash"], row["frozen_cash"]
        self._day, self._order_seq = date.fromisoformat(row["day"]), row["order_seq"]
        self._positions = {r["stock_code"]: _SimPosition(
            r["stock_code"], r["volume"], r["frozen"], r["locked"],
            date.fromisoformat(r["locked_until"]) if r["locked_until"] else None, r["cost_amount"], r["stock_name"])
            for r in self._db.query("SELECT * FROM sim_positions")}
        self._orders, self._by_client = {}, {}
        for r in self._db.query("SELECT * FROM sim_orders ORDER BY created_at, order_id"):
            self._register(_SimOrder(
                r["order_id"], r["client_id"], r["stock_code"], Side(r["side"]), r["volume"], r["price"],
                OrderStatus(r["status"]), r["rule"], date.fromisoformat(r["day"]),
                datetime.fromisoformat(r["created_at"]), datetime.fromisoformat(r["updated_at"]), r["filled_volume"],
                r["filled_amount"], r["frozen_cash"], r["commission"], r["stamp_duty"], r["transfer_fee"],
                r["fill_count"], r["reason"]))
        self._fills = [Fill(r["fill_id"], r["order_id"], r["client_id"], r["stock_code"], Side(r["side"]), r["price"],
                            r["volume"], datetime.fromisoformat(r["time"]), r["commission"], r["stamp_duty"],
                            r["transfer_fee"])
                       for r in self._db.query("SELECT * FROM sim_fills ORDER BY rowid")]


def _order_row(o: _SimOrder) -> tuple:
    return (o.order_id, o.client_id, o.stock_code, o.side.value, o.volume, o.price, o.status.value, o.rule,
            o.day.isoformat(), o.created_at.isoformat(sep=" "), o.updated_at.isoformat(sep=" "), o.filled_volume,
            o.filled_amount, o.frozen_cash, o.commission, o.stamp_duty, o.transfer_fee, o.fill_count, o.reason)


def _fill_row(f: Fill) -> tuple:
    return (f.fill_id, f.order_id, f.client_id, f.stock_code, f.side.value, f.price, f.volume,
            f.time.isoformat(sep=" "), f.commission, f.stamp_duty, f.transfer_fee)


def _position_row(p: _SimPosition) -> tuple:
    return (p.stock_code, p.stock_name, p.volume, p.frozen, p.locked,
            p.locked_until.isoformat() if p.locked_until else None, p.cost_amount)


def _cents(value: float) -> float:
    return float(Decimal(repr(value)).quantize(CENTS, rounding=ROUND_HALF_UP))
