"""Stand-in for the Windows-only native module `xtquant.xtpythonclient`, with a simulated miniQMT counterpart
behind it, so that the REAL xttrader.py runs in tests. The counterpart keeps a stock account (cash, T+1
positions, orders, trades) and follows QMT's order states: 48→50→55→56, cancel 51→54/53, rejection 57."""
from __future__ import annotations

import itertools
import queue
import threading
import time
import types
from dataclasses import dataclass
from typing import Any, Callable, Optional

# Every bindOn*Callback that xttrader.XtQuantTrader.__init__ calls (250807.1.2). Only these exist on the
# stand-in client: if xttrader starts calling another one, the tests fail loudly instead of passing by luck.
BIND_METHODS = (
    "bindOnSubscribeRespCallback", "bindOnUnsubscribeRespCallback", "bindOnQueryStockAssetCallback",
    "bindOnQueryStockOrdersCallback", "bindOnQueryStockTradesCallback", "bindOnQueryStockPositionsCallback",
    "bindOnQueryCreditDetailRespCallback", "bindOnQueryStkCompactsRespCallback",
    "bindOnQueryCreditSubjectsRespCallback", "bindOnQueryCreditSloCodeRespCallback",
    "bindOnQueryCreditAssureRespCallback", "bindOnQueryNewPurchaseLimitCallback", "bindOnQueryIPODataCallback",
    "bindOnTransferRespCallback", "bindOnQueryComFundRespCallback", "bindOnSmtQueryQuoterRespCallback",
    "bindOnSmtQueryOrderRespCallback", "bindOnSmtQueryCompactRespCallback",
    "bindOnQueryPositionStatisticsRespCallback", "bindOnExportDataRespCallback",
    "bindOnSyncTransactionFromExternalRespCallback", "bindOnBankTransferRespCallback",
    "bindOnQueryBankInfoRespCallback", "bindOnQueryBankAmountRespCallback",
    "bindOnQueryBankTransferStreamRespCallback", "bindOnQuerySecuAccountRespCallback",
    "bindOnCtpInternalTransferRespCallback", "bindOnGetSmartAlgoParamRespCallback",
    "bindOnSmartOrderStockRespCallback", "bindOnQuerySmartAlgoTaskRespCallback",
    "bindOnOperateSmartAlgoTaskRespCallback", "bindOnQueryAccountInfosCallback",
    "bindOnQueryAccountStatusCallback", "bindOnOrderStockRespCallback", "bindOnCancelOrderStockRespCallback",
    "bindOnDisconnectedCallback", "bindOnUpdateAccountStatusCallback", "bindOnStockAssetCallback",
    "bindOnStockOrderCallback", "bindOnStockTradeCallback", "bindOnStockPositionCallback",
    "bindOnOrderErrorCallback", "bindOnCancelErrorCallback", "bindOnSmtAppointmentRespCallback",
)

# Request classes are plain attribute bags in the native module; xttrader fills in m_* fields.
REQUEST_CLASSES = (
    "SubscribeReq", "UnsubscribeReq", "OrderStockReq", "CancelOrderStockReq", "QueryAccountInfosReq",
    "QueryAccountStatusReq", "QueryStockAssetReq", "QueryStockOrdersReq", "QueryStockTradesReq",
    "QueryStockPositionsReq", "QueryCreditDetailReq", "QueryStkCompactsReq", "QueryCreditSubjectsReq",
    "QueryCreditSloCodeReq", "QueryCreditAssureReq", "QueryNewPurchaseLimitReq", "QueryIPODataReq",
    "TransferParam", "QueryComFundReq", "QueryComPositionReq", "SmtQueryQuoterReq", "SmtNegotiateOrderReq",
    "SmtAppointmentOrderReq", "SmtAppointmentCancelReq", "SmtQueryOrderReq", "SmtQueryCompactReq",
    "SmtCompactRenewalReq", "SmtCompactReturnReq", "QueryPositionStatisticsReq", "BankTransferReq",
    "QueryBankInfoReq", "QueryBankAmountReq", "QueryBankTransferStreamReq", "QuerySecuAccountReq",
    "CtpInternalTransferReq", "OperateSmartAlgoTaskReq",
)

# xtconstant values the counterpart speaks (it must not import xtquant: it stands for the native side).
STOCK_BUY, STOCK_SELL = 23, 24
FIX_PRICE = 11
SECURITY_ACCOUNT = 2
ORDER_UNREPORTED, ORDER_REPORTED, ORDER_REPORTED_CANCEL, ORDER_PARTSUCC_CANCEL = 48, 50, 51, 52
ORDER_PART_CANCEL, ORDER_CANCELED, ORDER_PART_SUCC, ORDER_SUCCEEDED, ORDER_JUNK = 53, 54, 55, 56, 57
TERMINAL = (ORDER_PART_CANCEL, ORDER_CANCELED, ORDER_SUCCEEDED, ORDER_JUNK)
LOT = 100
REPO_PREFIXES, REPO_FACE, REPO_LOT, REPO_TICK = ("204", "1318"), 100, 10, 0.005  # issue 28 §3 (instrument_rules §6)
_SENTINEL = object()


class NativeObject:
    """What the native layer hands to Python: an object with attributes."""

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        return f"NativeObject({self.__dict__})"


@dataclass
class FakeOrder:
    order_id: int
    seq: int
    session: int
    stock_code: str
    order_type: int
    volume: int
    price_type: int
    price: float
    remark: str
    strategy_name: str
    order_time: int
    status: int = ORDER_UNREPORTED
    status_msg: str = ""
    traded_volume: int = 0
    traded_amount: float = 0.0
    booked_at: float = 0.0  # time.monotonic() when the counter booked it

    @property
    def is_buy(self) -> bool:
        return self.order_type == STOCK_BUY

    @property
    def remaining(self) -> int:
        return self.volume - self.traded_volume


@dataclass
class FakePosition:
    volume: int
    can_use_volume: int
    open_price: float
    avg_price: float
    last_price: float
    name: str = ""


class FakeQmt:
    """The simulated miniQMT + broker counter behind every stand-in client of one account.

    Switches a test flips to script the hard cases:
    - push_order_before_response: order pushes (48, 50) reach the client before the async order response;
    - hold_order_responses: async order responses are kept until `release_held_responses()`;
    - strip_remarks: the counter drops order_remark (some brokers do), so only seq/order id identify orders;
    - drop_link_on_next_order: the next order is booked, then the link dies before any answer reaches the client;
    - lose_next_order: the next order request is lost in transit (never booked) and the link dies;
    - auto_report / auto_confirm_cancel: 48→50 and 51→54 happen at once (else `report()` / `confirm_cancel()`);
    - refuse_connects: the next N connect() calls fail (-1);
    - report_commission: trades carry the counter's commission (rate `commission_rate`, no minimum).

    Faults of a bad day (issue 13), each scriptable on demand:
    - hang(seconds, book_late): miniQMT stops answering without a disconnect; requests sent meanwhile are
      lost, or (book_late) carried out when the hang ends, so an order can appear long after it was sent;
    - restart(renumber): miniQMT restarts: every client is disconnected, order ids may be renumbered;
    - empty_position_answers: the next N position queries answer [] (a failed or half-initialised query);
    - working_status_msg: accepted orders carry this non-empty status_msg while they work;
    - refuse_next_cancel: "result" (cancel_result != 0, nothing else) or "error" (accepted request, then
      on_cancel_error while the order works on);
    - order_delay: orders are booked and answered only this many seconds after they were sent;
    - fail_next_order_call: "before" / "after": the native send raises, the order was not / was booked;
    - fills during a disconnect: disconnect(), fill(), then let the client reconnect;
    - start_new_day(): today's orders and trades are gone (xtquant only returns today's), T+1 release.
    """

    def __init__(self, account_id: str = "8800123456", cash: float = 100000.0,
                 positions: Optional[dict[str, FakePosition]] = None, now: Callable[[], int] = lambda: 1704159000,
                 commission_rate: float = 0.00025):
        self.account_id = account_id
        self.cash = cash
        self.frozen_cash = 0.0
        self.positions: dict[str, FakePosition] = dict(positions or {})
        self.orders: dict[int, FakeOrder] = {}
        self.trades: list[NativeObject] = []
        self.now = now
        self.commission_rate = commission_rate
        self.lock = threading.RLock()
        self.clients: list[FakeAsyncClient] = []
        self.request_log: list[tuple[str, str, int]] = []  # (method, calling thread name, session)
        self.sent_remarks: list[str] = []  # the remark of every order request that reached the stand-in
        self.trade_history: list[NativeObject] = []  # every trade, also those of earlier days
        self.native_errors: list[BaseException] = []
        self.connect_attempts = 0
        self._attempted = threading.Condition()
        self.refuse_connects = 0
        self.push_order_before_response = False
        self.hold_order_responses = False
        self.strip_remarks = False
        self.drop_link_on_next_order = False
        self.lose_next_order = False
        self.auto_report = True
        self.auto_confirm_cancel = True
        self.report_commission = False
        self.empty_position_answers = 0
        self.working_status_msg = ""
        self.refuse_next_cancel = ""
        self.order_delay = 0.0
        self.fail_next_order_call = ""
        # issue 28 §3 (chores): today's offerings as query_ipo_data rows, the quota, reverse repo cash lent out
        self.ipo_offerings: dict[str, dict] = {}  # code → {name, type, min/maxPurchaseNum, purchaseDate, issuePrice}
        self.purchase_limits: dict[str, int] = {}  # 'SH' / 'SZ' / 'KCB' → shares (query_new_purchase_limit)
        self.lent_cash = 0.0  # filled reverse repo sells: back in cash on the next day
        # process-level faults driven by test/stand_ins/live_account.py's control file (issue 25)
        self.pushes_dropped_until = 0.0  # time.monotonic() until which pushes are lost (queries still answer)
        self.rejected_sides: dict[str, str] = {}  # "buy"/"sell" -> the counter's rejection message
        self.cancel_refusal = ""  # non-empty: every cancel is refused with this message
        # issue 25 (broker fault paths): a native order send that blocks in the caller's thread
        self.send_gate: Optional[threading.Event] = None  # set: order sends block until the event is set
        self.send_blocked = threading.Event()  # set when an order send reached the closed gate
        self.hung = False
        self._hang_book_late = False
        self._hung_requests: list[tuple[FakeAsyncClient, str, int, Any]] = []
        self._timers: list[threading.Timer] = []
        self._held: list[tuple[FakeAsyncClient, int, NativeObject]] = []
        self._order_ids = itertools.count(1001)
        self._trade_ids = itertools.count(1)

    # ---- the native module -----------------------------------------------------------------------------
    def module(self) -> types.ModuleType:
        """A fresh `xtquant.xtpythonclient` stand-in whose clients talk to this counterpart."""
        module = types.ModuleType("xtquant.xtpythonclient")
        for name in REQUEST_CLASSES:
            setattr(module, name, type(name, (), {"__module__": module.__name__}))
        module.XtQuantAsyncClient = type("XtQuantAsyncClient", (FakeAsyncClient,), {"counterpart": self})
        return module

    # ---- test controls -----------------------------------------------------------------------------------
    def live_clients(self) -> list["FakeAsyncClient"]:
        with self.lock:
            return [c for c in self.clients if c.alive]

    def disconnect(self) -> None:
        """The link to miniQMT drops: every live client gets on_disconnected and answers nothing more."""
        with self.lock:
            for client in self.live_clients():
                self._kill(client)

    def hang(self, seconds: Optional[float] = None, book_late: bool = False) -> None:
        """miniQMT stops answering without saying so (half-dead): requests go unanswered, nothing is pushed,
        new connects fail, no on_disconnected. After `seconds` (None: never) it answers again; with `book_late`
        the requests that arrived meanwhile are then carried out (an order sent into the hang appears late)."""
        with self.lock:
            self.hung = True
            self._hang_book_late = book_late
            if seconds is not None:
                self._later(seconds, self.end_hang)

    def end_hang(self) -> None:
        with self.lock:
            if not self.hung:
                return
            self.hung = False
            waiting, self._hung_requests = self._hung_requests, []
            for client, method, seq, req in waiting if self._hang_book_late else []:
                getattr(self, "_on_" + method)(client, seq, req)

    def restart(self, renumber: bool = False) -> None:
        """miniQMT restarts: every client is disconnected (on_disconnected), a hang ends, and (renumber) today's
        orders get new ids, as a restarted client may number them afresh."""
        with self.lock:
            self.hung, self._hung_requests = False, []
            self.disconnect()
            if renumber:
                offset = 5000
                self.orders = {oid + offset: order for oid, order in self.orders.items()}
                for order in self.orders.values():
                    order.order_id += offset
                for trade in self.trades:
                    trade.order_id += offset
                    trade.order_sysid = f"S{trade.order_id}"
                self._order_ids = itertools.count(max(self.orders, default=1000 + offset) + 1)

    def start_new_day(self) -> None:
        """The next trading day: open orders expired at yesterday's close, queries return only today's orders
        and trades (none yet), shares bought yesterday become sellable."""
        with self.lock:
            for order in self.orders.values():
                if order.status not in TERMINAL:
                    self._release(order)
                    order.status = ORDER_PART_CANCEL if order.traded_volume else ORDER_CANCELED
            self.orders, self.trades = {}, []
            self.next_day()

    def carry_position(self, code: str, position: FakePosition) -> None:
        """A position carried from an earlier day (replacing any): pushed to subscribed clients like a change."""
        with self.lock:
            self.positions[code] = position
            self._push("bindOnStockPositionCallback", self._xt_position(code))
            self._push("bindOnStockAssetCallback", self._xt_asset())

    def drop_pushes(self, seconds: float) -> None:
        """For `seconds` every push (orders, trades, positions, asset) is lost; queries still answer."""
        with self.lock:
            self.pushes_dropped_until = time.monotonic() + seconds

    def reject_orders(self, side: str, message: str) -> None:
        """The counter rejects every order of `side` ("buy"/"sell") with `message` (status 57) until cleared."""
        with self.lock:
            self.rejected_sides[side] = message

    def refuse_cancels(self, message: str) -> None:
        """The counter refuses every cancel with the same `message` (the order works on) until cleared."""
        with self.lock:
            self.cancel_refusal = message

    def clear_faults(self) -> None:
        """Every fault off: a hang ends (requests sent into it are lost), pushes flow, orders and cancels pass."""
        with self.lock:
            self.pushes_dropped_until = 0.0
            self.rejected_sides = {}
            self.cancel_refusal = ""
            self.refuse_next_cancel = ""
            self.order_delay = 0.0
            self.fail_next_order_call = ""
            self.end_hang()

    def book(self) -> dict:
        """The counter's book as plain data (positions, orders, cash): what a test compares the daemon with."""
        with self.lock:
            return {
                "cash": self.cash, "frozen_cash": self.frozen_cash,
                "positions": {code: {"volume": p.volume, "can_use_volume": p.can_use_volume,
                                     "open_price": p.open_price} for code, p in sorted(self.positions.items())},
                "orders": [{"order_id": o.order_id, "stock_code": o.stock_code, "side": "buy" if o.is_buy else "sell",
                            "volume": o.volume, "price": o.price, "status": o.status, "status_msg": o.status_msg,
                            "traded_volume": o.traded_volume, "remark": o.remark, "order_time": o.order_time,
                            "booked_at": o.booked_at, "working": o.status not in TERMINAL}
                           for o in sorted(self.orders.values(), key=lambda o: o.order_id)],
                "sent_remarks": list(self.sent_remarks)}

    def restart_numbering(self) -> None:
        """The counter numbers orders and trades afresh (as many do each day): ids of earlier days come back."""
        with self.lock:
            self._order_ids = itertools.count(1001)
            self._trade_ids = itertools.count(1)

    def close(self) -> None:
        """Stop timers of delayed faults (tests call this at the end)."""
        for timer in self._timers:
            timer.cancel()

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def report(self, order_id: int) -> None:
        with self.lock:
            order = self.orders[order_id]
            if order.status == ORDER_UNREPORTED:
                order.status = ORDER_REPORTED
                self._push_order(order)

    def fill(self, order_id: int, volume: int, price: Optional[float] = None) -> NativeObject:
        """The exchange fills `volume` of an open order at `price` (default: the order price)."""
        with self.lock:
            order = self.orders[order_id]
            if order.status not in (ORDER_REPORTED, ORDER_PART_SUCC, ORDER_REPORTED_CANCEL, ORDER_PARTSUCC_CANCEL):
                raise AssertionError(f"order {order_id} cannot fill in status {order.status}")
            if not 0 < volume <= order.remaining:
                raise AssertionError(f"fill {volume} exceeds the remaining {order.remaining}")
            price = order.price if price is None else price
            amount = round(price * volume, 2)
            commission = round(amount * self.commission_rate, 2)
            self._book_fill(order, volume, price, amount, commission)
            order.traded_volume += volume
            order.traded_amount = round(order.traded_amount + amount, 2)
            if order.status in (ORDER_REPORTED_CANCEL, ORDER_PARTSUCC_CANCEL):
                order.status = ORDER_SUCCEEDED if order.remaining == 0 else ORDER_PARTSUCC_CANCEL
            else:
                order.status = ORDER_SUCCEEDED if order.remaining == 0 else ORDER_PART_SUCC
            trade = NativeObject(
                account_type=SECURITY_ACCOUNT, account_id=self.account_id, stock_code=order.stock_code,
                order_type=order.order_type, traded_id=f"T{next(self._trade_ids):06d}", traded_time=self.now(),
                traded_price=price, traded_volume=volume, traded_amount=amount, order_id=order.order_id,
                order_sysid=f"S{order.order_id}", strategy_name=order.strategy_name,
                order_remark=self._remark(order), direction=48, offset_flag=48 if order.is_buy else 49,
                commission=commission if self.report_commission else 0.0, secu_account="A000000001",
                instrument_name="")
            self.trades.append(trade)
            self.trade_history.append(trade)
            self._push("bindOnStockTradeCallback", trade)
            self._push_order(order)
            if order.stock_code in self.positions:  # issue 28 §3: a repo fill makes no position
                self._push("bindOnStockPositionCallback", self._xt_position(order.stock_code))
            self._push("bindOnStockAssetCallback", self._xt_asset())
            return trade

    def confirm_cancel(self, order_id: int) -> None:
        with self.lock:
            order = self.orders[order_id]
            if order.status not in (ORDER_REPORTED_CANCEL, ORDER_PARTSUCC_CANCEL):
                raise AssertionError(f"order {order_id} has no pending cancel")
            self._release(order)
            order.status = ORDER_PART_CANCEL if order.traded_volume else ORDER_CANCELED
            self._push_order(order)
            self._push("bindOnStockAssetCallback", self._xt_asset())

    def next_day(self) -> None:
        """T+1: shares bought yesterday become sellable."""
        with self.lock:
            for position in self.positions.values():
                position.can_use_volume = position.volume
            self.cash, self.lent_cash = round(self.cash + self.lent_cash, 2), 0.0  # issue 28 §3: the repo matured

    def release_held_responses(self) -> None:
        with self.lock:
            held, self._held = self._held, []
            for client, seq, response in held:
                client.deliver("bindOnOrderStockRespCallback", seq, response)

    def order_by_remark(self, remark: str) -> list[FakeOrder]:
        with self.lock:
            return [o for o in self.orders.values() if o.remark == remark]

    # ---- called by the stand-in clients ------------------------------------------------------------------
    def wait_for_connect_attempts(self, count: int, timeout: float) -> bool:
        with self._attempted:
            return self._attempted.wait_for(lambda: self.connect_attempts >= count, timeout)

    def connect(self, client: "FakeAsyncClient") -> int:
        with self.lock, self._attempted:
            self.connect_attempts += 1
            self._attempted.notify_all()
            if self.refuse_connects > 0 or self.hung:
                self.refuse_connects = max(0, self.refuse_connects - 1)
                return -1
            client.alive = True
            self.clients.append(client)
            return 0

    def request(self, client: "FakeAsyncClient", method: str, seq: int, req: Any) -> None:
        gate = self.send_gate
        if method == "orderStockWithSeq" and gate is not None and not gate.is_set():
            self.send_blocked.set()
            gate.wait(30)  # the native send blocks the caller (outside the counter's lock: the rest answers)
        with self.lock:
            self.request_log.append((method, threading.current_thread().name, client.session))
            if method == "orderStockWithSeq":
                self.sent_remarks.append(req.m_strOrderRemark)
            if not client.alive:
                return  # a dead link: the request goes nowhere and nothing ever answers
            if self.hung:
                self._hung_requests.append((client, method, seq, req))
                return
            if method == "orderStockWithSeq" and self.fail_next_order_call:
                when, self.fail_next_order_call = self.fail_next_order_call, ""
                if when == "after":
                    self._book_silently(client, seq, req)
                raise RuntimeError("native send failed")
            if method == "orderStockWithSeq" and self.order_delay > 0:
                self._later(self.order_delay, lambda: self._delayed(client, method, seq, req))
                return
            getattr(self, "_on_" + method)(client, seq, req)

    def _book_silently(self, client, seq: int, req: Any) -> None:
        """Book an order whose answers and pushes never reach the client (its send failed on the client side):
        only a query shows it."""
        client.deliver = lambda *args: None
        try:
            self._on_orderStockWithSeq(client, seq, req)
        finally:
            del client.deliver

    def _delayed(self, client, method: str, seq: int, req: Any) -> None:
        with self.lock:
            if self.hung:
                self._hung_requests.append((client, method, seq, req))
            else:
                getattr(self, "_on_" + method)(client, seq, req)

    def _on_subscribeWithSeq(self, client, seq, req) -> None:
        ok = req.m_strAccountID == self.account_id and req.m_nAccountType == SECURITY_ACCOUNT
        client.subscribed = ok
        client.deliver("bindOnSubscribeRespCallback", seq, 0 if ok else -1)

    def _on_queryStockAssetWithSeq(self, client, seq, req) -> None:
        client.deliver("bindOnQueryStockAssetCallback", seq, [self._xt_asset()] if self._mine(req) else [])

    def _on_queryStockPositionsWithSeq(self, client, seq, req) -> None:
        rows = [self._xt_position(code) for code in sorted(self.positions)] if self._mine(req) else []
        if self.empty_position_answers > 0:
            self.empty_position_answers -= 1
            rows = []
        client.deliver("bindOnQueryStockPositionsCallback", seq, rows)

    def _on_queryStockOrdersWithSeq(self, client, seq, req) -> None:
        orders = sorted(self.orders.values(), key=lambda o: o.order_id) if self._mine(req) else []
        if getattr(req, "m_bCanCancel", False):
            orders = [o for o in orders if o.status not in TERMINAL]
        client.deliver("bindOnQueryStockOrdersCallback", seq, [self._xt_order(o) for o in orders])

    def _on_queryStockTradesWithSeq(self, client, seq, req) -> None:
        client.deliver("bindOnQueryStockTradesCallback", seq, list(self.trades) if self._mine(req) else [])

    def _on_orderStockWithSeq(self, client, seq, req) -> None:
        if self.lose_next_order:
            self.lose_next_order = False
            self._kill(client)
            return
        order = FakeOrder(
            order_id=next(self._order_ids), seq=seq, session=client.session, stock_code=req.m_strStockCode,
            order_type=req.m_nOrderType, volume=int(req.m_nOrderVolume), price_type=req.m_nPriceType,
            price=float(req.m_dPrice), remark=req.m_strOrderRemark, strategy_name=req.m_strStrategyName,
            order_time=self.now(), booked_at=time.monotonic())
        self.orders[order.order_id] = order
        problem = self._check(order)
        if problem is None:
            self._accept(order)
            order.status_msg = self.working_status_msg
        else:
            order.status, order.status_msg = ORDER_JUNK, problem[1]
        if self.drop_link_on_next_order:
            self.drop_link_on_next_order = False
            if problem is None and self.auto_report:
                order.status = ORDER_REPORTED  # the counter carries on; only the client hears nothing
            self._kill(client)
            return
        response = NativeObject(m_strAccountID=self.account_id, m_nOrderID=order.order_id,
                                m_strStrategyName=order.strategy_name, m_strOrderRemark=self._remark(order),
                                m_strErrorMsg="" if problem is None else problem[1])
        if not self.push_order_before_response:
            self._respond_order(client, seq, response)
        self._push_order(order)
        if problem is None and self.auto_report:
            self.report(order.order_id)
        if self.push_order_before_response:
            self._respond_order(client, seq, response)
        if problem is not None:
            client.deliver("bindOnOrderErrorCallback", NativeObject(
                account_type=SECURITY_ACCOUNT, account_id=self.account_id, order_id=order.order_id,
                error_id=problem[0], error_msg=problem[1], strategy_name=order.strategy_name,
                order_remark=self._remark(order), seq=seq))

    def _on_cancelOrderStockWithSeq(self, client, seq, req) -> None:
        order = self.orders.get(req.m_nOrderID)
        refusal, self.refuse_next_cancel = self.refuse_next_cancel, ""
        if order is not None and self.cancel_refusal and order.status not in TERMINAL:
            client.deliver("bindOnCancelOrderStockRespCallback", seq, NativeObject(
                m_strAccountID=self.account_id, m_nCancelResult=-1, m_nOrderID=order.order_id,
                m_strOrderSysID=f"S{order.order_id}", m_strErrorMsg=self.cancel_refusal))
            client.deliver("bindOnCancelErrorCallback", NativeObject(
                account_type=SECURITY_ACCOUNT, account_id=self.account_id, order_id=order.order_id, market=0,
                order_sysid=f"S{order.order_id}", error_id=-63, error_msg=self.cancel_refusal))
            return
        if order is not None and refusal == "result":
            client.deliver("bindOnCancelOrderStockRespCallback", seq, NativeObject(
                m_strAccountID=self.account_id, m_nCancelResult=-1, m_nOrderID=order.order_id,
                m_strOrderSysID=f"S{order.order_id}", m_strErrorMsg="柜台拒绝撤单：当前时段不允许撤单"))
            return
        if order is not None and refusal == "error":
            client.deliver("bindOnCancelOrderStockRespCallback", seq, NativeObject(
                m_strAccountID=self.account_id, m_nCancelResult=0, m_nOrderID=order.order_id,
                m_strOrderSysID=f"S{order.order_id}", m_strErrorMsg=""))
            self._push_order(order)  # still working, with its status_msg
            client.deliver("bindOnCancelErrorCallback", NativeObject(
                account_type=SECURITY_ACCOUNT, account_id=self.account_id, order_id=order.order_id, market=0,
                order_sysid=f"S{order.order_id}", error_id=-62, error_msg="交易所拒绝撤单"))
            return
        if order is None or order.status in TERMINAL or order.status in (ORDER_REPORTED_CANCEL, ORDER_PARTSUCC_CANCEL):
            message = "委托不存在" if order is None else "委托已是最终状态，不能撤单"
            client.deliver("bindOnCancelOrderStockRespCallback", seq, NativeObject(
                m_strAccountID=self.account_id, m_nCancelResult=-1, m_nOrderID=req.m_nOrderID, m_strOrderSysID="",
                m_strErrorMsg=message))
            client.deliver("bindOnCancelErrorCallback", NativeObject(
                account_type=SECURITY_ACCOUNT, account_id=self.account_id, order_id=req.m_nOrderID, market=0,
                order_sysid="", error_id=-61, error_msg=message))
            return
        order.status = ORDER_PARTSUCC_CANCEL if order.traded_volume else ORDER_REPORTED_CANCEL
        self._push_order(order)
        client.deliver("bindOnCancelOrderStockRespCallback", seq, NativeObject(
            m_strAccountID=self.account_id, m_nCancelResult=0, m_nOrderID=order.order_id, m_strOrderSysID="",
            m_strErrorMsg=""))
        if self.auto_confirm_cancel:
            self.confirm_cancel(order.order_id)

    # ---- bookkeeping -------------------------------------------------------------------------------------
    def _check(self, order: FakeOrder) -> Optional[tuple[int, str]]:
        if order.order_type not in (STOCK_BUY, STOCK_SELL):
            return -1, "不支持的委托类型"
        if order.price_type != FIX_PRICE:
            return -2, "本柜台只接受限价委托"
        if order.volume <= 0 or order.price <= 0:
            return -3, "委托数量或价格无效"
        rejection = self.rejected_sides.get("buy" if order.is_buy else "sell")
        if rejection:
            return -8, rejection
        if self._is_chore(order):  # issue 28 §3
            return self._check_chore(order)
        if order.is_buy:
            if order.volume % LOT:
                return -4, "买入数量必须是100股的整数倍"
            if order.price * order.volume > self.cash + 1e-9:
                return -5, "可用资金不足"
            return None
        position = self.positions.get(order.stock_code)
        available = position.can_use_volume if position else 0
        if order.volume > available:
            return -6, f"可用股份不足（可用 {available} 股）"
        if order.volume % LOT and order.volume != available:
            return -7, "卖出数量必须是100股的整数倍（零股须一次卖出）"
        return None

    def _accept(self, order: FakeOrder) -> None:
        if self._is_chore(order):  # issue 28 §3
            return self._move_repo_cash(order, order.volume, -1)
        if order.is_buy:
            frozen = round(order.price * order.volume, 2)
            self.cash = round(self.cash - frozen, 2)
            self.frozen_cash = round(self.frozen_cash + frozen, 2)
        else:
            self.positions[order.stock_code].can_use_volume -= order.volume

    def _release(self, order: FakeOrder) -> None:
        """Unfreeze what the unfilled rest of a cancelled order held."""
        if self._is_chore(order):  # issue 28 §3
            return self._move_repo_cash(order, order.remaining, 1)
        if order.is_buy:
            frozen = round(order.price * order.remaining, 2)
            self.cash = round(self.cash + frozen, 2)
            self.frozen_cash = round(self.frozen_cash - frozen, 2)
        else:
            self.positions[order.stock_code].can_use_volume += order.remaining

    def _book_fill(self, order: FakeOrder, volume: int, price: float, amount: float, commission: float) -> None:
        if self._is_chore(order):  # issue 28 §3: a repo fill lends its frozen face value
            if not order.is_buy:
                face = volume * REPO_FACE
                self.frozen_cash, self.lent_cash = round(self.frozen_cash - face, 2), round(self.lent_cash + face, 2)
            return
        position = self.positions.get(order.stock_code)
        if order.is_buy:
            frozen = round(order.price * volume, 2)
            self.frozen_cash = round(self.frozen_cash - frozen, 2)
            self.cash = round(self.cash + frozen - amount - commission, 2)
            if position is None:
                position = self.positions[order.stock_code] = FakePosition(0, 0, 0.0, 0.0, price)
            total = position.volume + volume
            position.open_price = round((position.open_price * position.volume + amount) / total, 4)
            position.avg_price = position.open_price
            position.volume = total  # T+1: can_use_volume does not grow until next_day()
        else:
            self.cash = round(self.cash + amount - commission, 2)
            position.volume -= volume
        position.last_price = price

    # ---- issue 28 §3: new share / new bond subscription and the reverse repo ---------------------------------
    def allot(self, code: str, volume: int, name: str = "") -> None:
        """中签: the won shares (or bonds) show as a position of the subscription code on T+2."""
        self.carry_position(code, FakePosition(volume, 0, 0.0, 0.0, 0.0, name))

    def _is_chore(self, order: FakeOrder) -> bool:
        return order.stock_code in self.ipo_offerings or order.stock_code.startswith(REPO_PREFIXES)

    def _check_chore(self, order: FakeOrder) -> Optional[tuple[int, str]]:
        offering = self.ipo_offerings.get(order.stock_code)
        if offering is not None:
            if not order.is_buy or abs(order.price - offering["issuePrice"]) > 1e-9:
                return -11, "申购须按发行价买入"
            unit = max(1, offering["minPurchaseNum"])
            if not unit <= order.volume <= offering["maxPurchaseNum"] or order.volume % unit:
                return -12, f"申购数量须在 {unit}–{offering['maxPurchaseNum']} 之间且为 {unit} 的整数倍"
            key = "KCB" if order.stock_code.startswith("787") else order.stock_code[-2:]
            if offering["type"] == "STOCK" and order.volume > self.purchase_limits.get(key, 0):
                return -13, f"超过新股申购额度（{key} 额度 {self.purchase_limits.get(key, 0)} 股）"
            return None
        if order.is_buy or order.volume % REPO_LOT:
            return -14, "逆回购须卖出，数量为 10 张的整数倍（1000 元起）"
        if round(order.price / REPO_TICK, 6) % 1:
            return -15, "逆回购利率须为 0.005 的整数倍"
        if order.volume * REPO_FACE > self.cash + 1e-9:
            return -5, "可用资金不足"
        return None

    def _move_repo_cash(self, order: FakeOrder, volume: int, sign: int) -> None:
        """A repo sell freezes its face value (sign -1) or gives it back (+1); a subscription moves no cash on T."""
        if order.stock_code in self.ipo_offerings:
            return
        face = volume * REPO_FACE
        self.cash = round(self.cash + sign * face, 2)
        self.frozen_cash = round(self.frozen_cash - sign * face, 2)

    def _on_queryIPODataWithSeq(self, client, seq, req) -> None:  # noqa: N802 - native name
        client.deliver("bindOnQueryIPODataCallback", seq, [NativeObject(
            m_strIPOCode=code, m_strIPOName=row["name"], m_strIPOType=row["type"], m_nMaxPurchaseNum=row["maxPurchaseNum"],
            m_nMinPurchaseNum=row["minPurchaseNum"], m_strPurchaseDate=row["purchaseDate"], m_dIssuePrice=row["issuePrice"])
            for code, row in sorted(self.ipo_offerings.items())])

    def _on_queryNewPurchaseLimitWithSeq(self, client, seq, req) -> None:  # noqa: N802 - native name
        rows = [NativeObject(m_strNewPurchaseLimitKey=key, m_nNewPurchaseLimitValue=value)
                for key, value in sorted(self.purchase_limits.items())] if self._mine(req) else []
        client.deliver("bindOnQueryNewPurchaseLimitCallback", seq, rows)

    def _kill(self, client: "FakeAsyncClient") -> None:
        client.alive = False
        client.deliver("bindOnDisconnectedCallback")

    def _respond_order(self, client: "FakeAsyncClient", seq: int, response: NativeObject) -> None:
        if self.hold_order_responses:
            self._held.append((client, seq, response))
        else:
            client.deliver("bindOnOrderStockRespCallback", seq, response)

    def _push(self, bind_name: str, data: NativeObject) -> None:
        if self.hung:
            return  # a hung miniQMT pushes nothing; queries after the hang show the state
        if time.monotonic() < self.pushes_dropped_until:
            return  # pushes lost (drop_pushes); queries still show the state
        for client in self.live_clients():
            if client.subscribed:
                client.deliver(bind_name, data)

    def _push_order(self, order: FakeOrder) -> None:
        self._push("bindOnStockOrderCallback", self._xt_order(order))

    def _mine(self, req: Any) -> bool:
        return req.m_strAccountID == self.account_id

    def _remark(self, order: FakeOrder) -> str:
        return "" if self.strip_remarks else order.remark

    def _xt_order(self, order: FakeOrder) -> NativeObject:
        traded_price = round(order.traded_amount / order.traded_volume, 4) if order.traded_volume else 0.0
        return NativeObject(
            account_type=SECURITY_ACCOUNT, account_id=self.account_id, stock_code=order.stock_code,
            order_id=order.order_id, order_sysid=f"S{order.order_id}", order_time=order.order_time,
            order_type=order.order_type, order_volume=order.volume, price_type=order.price_type, price=order.price,
            traded_volume=order.traded_volume, traded_price=traded_price, order_status=order.status,
            status_msg=order.status_msg, strategy_name=order.strategy_name, order_remark=self._remark(order),
            direction=48, offset_flag=48 if order.is_buy else 49, secu_account="A000000001", instrument_name="")

    def _xt_position(self, code: str) -> NativeObject:
        p = self.positions[code]
        return NativeObject(
            account_type=SECURITY_ACCOUNT, account_id=self.account_id, stock_code=code, volume=p.volume,
            can_use_volume=p.can_use_volume, open_price=p.open_price, avg_price=p.avg_price,
            market_value=round(p.volume * p.last_price, 2), frozen_volume=p.volume - p.can_use_volume,
            on_road_volume=0, yesterday_volume=p.volume, direction=48, last_price=p.last_price,
            profit_rate=0.0, secu_account="A000000001", instrument_name=p.name)

    def _xt_asset(self) -> NativeObject:
        market_value = round(sum(p.volume * p.last_price for p in self.positions.values()), 2)
        return NativeObject(
            account_type=SECURITY_ACCOUNT, account_id=self.account_id, cash=self.cash, frozen_cash=self.frozen_cash,
            market_value=market_value, total_asset=round(self.cash + self.frozen_cash + self.lent_cash + market_value, 2),
            fetch_balance=self.cash)


class FakeAsyncClient:
    """The native `XtQuantAsyncClient` contract as xttrader.py uses it. Answers and pushes arrive on the
    client's own "native" thread, like the real one's network thread."""

    counterpart: FakeQmt  # set on the per-module subclass

    def __init__(self, path: bytes, name: str, session: int):
        if not isinstance(path, bytes):
            raise TypeError("XtQuantAsyncClient expects the gb18030-encoded path as bytes")
        self.path = path.decode("gb18030")
        self.name = name
        self.session = session
        self.callbacks: dict[str, Callable] = {}
        self.alive = False
        self.subscribed = False
        self.started = False
        self.timeout: Optional[int] = None
        self._seq = itertools.count(1)
        self._seq_lock = threading.Lock()
        self._outbox: queue.Queue = queue.Queue()
        self._thread: Optional[threading.Thread] = None

    def init(self) -> None:
        pass

    def start(self) -> None:
        self.started = True
        self._thread = threading.Thread(target=self._run, name=f"fake-native-{self.session}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self.counterpart.lock:
            self.alive = False
        self._outbox.put(_SENTINEL)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def connect(self) -> int:
        return self.counterpart.connect(self)

    def nextSeq(self) -> int:  # noqa: N802 - native name
        with self._seq_lock:
            return next(self._seq)

    def setTimeout(self, timeout: int) -> None:  # noqa: N802 - native name
        self.timeout = timeout

    def deliver(self, bind_name: str, *args: Any) -> None:
        self._outbox.put((bind_name, args))

    def _run(self) -> None:
        while True:
            item = self._outbox.get()
            if item is _SENTINEL:
                return
            bind_name, args = item
            callback = self.callbacks.get(bind_name)
            if callback is None:
                continue
            try:
                callback(*args)
            except BaseException as exc:  # recorded: the tests assert the native side saw no errors
                self.counterpart.native_errors.append(exc)


def _binder(bind_name: str) -> Callable:
    def bind(self: FakeAsyncClient, callback: Callable) -> None:
        self.callbacks[bind_name] = callback
    bind.__name__ = bind_name
    return bind


def _requester(method: str) -> Callable:
    def send(self: FakeAsyncClient, seq: int, req: Any) -> None:
        self.counterpart.request(self, method, seq, req)
    send.__name__ = method
    return send


for _name in BIND_METHODS:
    setattr(FakeAsyncClient, _name, _binder(_name))
for _name in ("subscribeWithSeq", "queryStockAssetWithSeq", "queryStockPositionsWithSeq", "queryStockOrdersWithSeq",
              "queryStockTradesWithSeq", "orderStockWithSeq", "cancelOrderStockWithSeq"):
    setattr(FakeAsyncClient, _name, _requester(_name))
for _name in ("queryIPODataWithSeq", "queryNewPurchaseLimitWithSeq"):  # issue 28 §3
    setattr(FakeAsyncClient, _name, _requester(_name))
