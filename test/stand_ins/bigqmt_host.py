"""A big-QMT host stand-in (issue 29): runs bigqmt/bridge_strategy.py UNCHANGED under a fake of big QMT's strategy
API, backed by a small matching venue, with the fault catalogue.

What it reproduces of big QMT (facts: /work/shared/reference/bigqmt_api.md):
- one strategy thread runs init, the run_time timers and every callback; trading functions called from another
  thread return [] / None (as QMT's do);
- passorder returns None; the order id (m_strOrderSysID, a str) only arrives in order_callback / ORDER queries;
  userOrderId comes back as m_strRemark, strategyName as m_strSource; a bad code is refused locally through
  orderError_callback with no order row; a counter rejection goes 50 -> 57 with the text in m_strCancelInfo;
- cancel returns a bool meaning "request sent" (True for a made-up id); a refused cancel sends no callback;
- callbacks are asynchronous (queued to the strategy thread) unless `callbacks_in_call` delivers them inside
  passorder/cancel, before the call returns; order and deal pushes of a fill have no fixed order.
Fault knobs: hang(seconds), drop_pushes, duplicate_pushes, order_first, reverse_pushes, callbacks_in_call,
refuse_cancels (or refuse_next_cancel), cancel_returns_false, reject_message (or reject_next), popup_rejects,
strip_deal_remark, restart(renumber, repush), reinit(), repush(). One host per process: like QMT's own Python,
the bridge keeps its running instance in sys.modules."""
from __future__ import annotations

import importlib.util
import itertools
import re
import threading
import time
from collections import deque
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator, Optional
from zoneinfo import ZoneInfo

BRIDGE_FILE = Path(__file__).resolve().parents[2] / "bigqmt" / "bridge_strategy.py"
MARKET_TZ = ZoneInfo("Asia/Shanghai")
NOT_SET = 2147483647  # QMT's "error id not set"
CODE = re.compile(r"^\d{6}\.(SH|SZ)$")
_PERIOD = re.compile(r"^(\d+)n(MilliSecond|Second)$")
_load_counter = itertools.count(1)


def period_seconds(period: str) -> float:
    """QMT's run_time period text ("500nMilliSecond", "1nSecond") in seconds."""
    match = _PERIOD.match(period)
    if not match:
        raise ValueError(f"unsupported run_time period {period!r}")
    return int(match.group(1)) / (1000.0 if match.group(2) == "MilliSecond" else 1.0)


class ContextInfo:
    """The part of QMT's ContextInfo the bridge uses."""

    def __init__(self, host: "BigQmtHost"):
        self._host = host
        self.bound_account = None

    def set_account(self, account_id) -> None:
        self.bound_account = str(account_id)

    def run_time(self, fname: str, period: str, start: str) -> None:
        self._host._add_timer(fname, period_seconds(period))

    def is_last_bar(self) -> bool:
        return True


class Venue:
    """Orders, deals, cash and positions of one stock account; fills on demand or against a set price."""

    def __init__(self, cash: float, now: Callable[[], datetime]):
        self.cash = float(cash)
        self.frozen = 0.0
        self.now = now
        self.orders: dict[str, SimpleNamespace] = {}  # sysid -> ORDER object (insertion order = time order)
        self.deals: list[SimpleNamespace] = []
        self.positions: dict[str, dict] = {}  # code -> volume, can_use, cost
        self.prices: dict[str, float] = {}
        self._sysids = itertools.count(1082240001)
        self._trade_ids = itertools.count(700001)

    def new_sysid(self) -> str:
        return str(next(self._sysids))

    def hold(self, code: str, volume: int, cost: float) -> None:
        self.positions[code] = {"volume": int(volume), "can_use": int(volume), "cost": float(cost)}

    def add_order(self, code: str, side: str, volume: int, price: float, remark: str, source: str) -> SimpleNamespace:
        stamp = self.now()
        bare, exchange = code.split(".")
        order = SimpleNamespace(
            m_strOrderSysID=self.new_sysid(), m_strRemark=remark, m_strSource=source, m_nOrderStatus=50,
            m_nVolumeTotalOriginal=int(volume), m_nVolumeTraded=0, m_nVolumeTotal=int(volume),
            m_dLimitPrice=float(price), m_dTradedPrice=0.0, m_nOffsetFlag=48 if side == "buy" else 49,
            m_nOpType=23 if side == "buy" else 24, m_nDirection=48, m_strInstrumentID=bare, m_strExchangeID=exchange,
            m_strInsertDate=stamp.strftime("%Y%m%d"), m_strInsertTime=stamp.strftime("%H%M%S"), m_strCancelInfo="",
            m_strErrorMsg="", m_nErrorID=NOT_SET, code=code, side=side)
        self.orders[order.m_strOrderSysID] = order
        return order

    def reserve(self, order: SimpleNamespace) -> str:
        """The counter's checks; the rejection text (empty when accepted)."""
        amount = order.m_dLimitPrice * order.m_nVolumeTotalOriginal
        if order.side == "buy":
            if amount > self.cash - self.frozen:
                return "[COUNTER][260200][可用资金不足]"
            self.frozen += amount
            return ""
        held = self.positions.get(order.code)
        if held is None or held["can_use"] < order.m_nVolumeTotalOriginal:
            return "[COUNTER][251005][可用股份不足]"
        held["can_use"] -= order.m_nVolumeTotalOriginal
        return ""

    def fill(self, order: SimpleNamespace, volume: int, price: float) -> SimpleNamespace:
        volume = min(int(volume), order.m_nVolumeTotal)
        amount = round(price * volume, 2)
        commission = round(max(5.0, amount * 0.00025), 2) if order.m_nVolumeTraded == 0 else round(amount * 0.00025, 2)
        traded = order.m_nVolumeTraded + volume
        order.m_dTradedPrice = round((order.m_dTradedPrice * order.m_nVolumeTraded + price * volume) / traded, 4)
        order.m_nVolumeTraded, order.m_nVolumeTotal = traded, order.m_nVolumeTotal - volume
        pending_cancel = order.m_nOrderStatus in (51, 52)
        order.m_nOrderStatus = 56 if order.m_nVolumeTotal == 0 else (52 if pending_cancel else 55)
        held = self.positions.setdefault(order.code, {"volume": 0, "can_use": 0, "cost": 0.0})
        if order.side == "buy":
            self.frozen -= order.m_dLimitPrice * volume
            self.cash -= amount + commission
            held["cost"] = (held["cost"] * held["volume"] + amount + commission) / (held["volume"] + volume)
            held["volume"] += volume  # T+1: not usable today
        else:
            self.cash += amount - commission
            held["volume"] -= volume
        stamp = self.now()
        deal = SimpleNamespace(
            m_strTradeID=str(next(self._trade_ids)), m_strOrderSysID=order.m_strOrderSysID,
            m_strRemark=order.m_strRemark, m_strSource=order.m_strSource, m_dPrice=float(price), m_nVolume=volume,
            m_dTradeAmount=amount, m_strTradeDate=stamp.strftime("%Y%m%d"), m_strTradeTime=stamp.strftime("%H%M%S"),
            m_nOffsetFlag=order.m_nOffsetFlag, m_nOpType=order.m_nOpType, m_strInstrumentID=order.m_strInstrumentID,
            m_strExchangeID=order.m_strExchangeID, m_dCommission=commission, m_dComssion=commission)
        self.deals.append(deal)
        return deal

    def cancel(self, order: SimpleNamespace) -> None:
        rest = order.m_nVolumeTotal
        if order.side == "buy":
            self.frozen -= order.m_dLimitPrice * rest
        else:
            self.positions[order.code]["can_use"] += rest
        order.m_nOrderStatus = 53 if order.m_nVolumeTraded else 54

    def renumber(self) -> dict[str, str]:
        """A restarted client numbers today's orders afresh (the deal ids stay): old sysid -> new."""
        mapping = {}
        for old, order in list(self.orders.items()):
            order.m_strOrderSysID = mapping[old] = self.new_sysid()
        self.orders = {o.m_strOrderSysID: o for o in self.orders.values()}
        for deal in self.deals:
            deal.m_strOrderSysID = mapping.get(deal.m_strOrderSysID, deal.m_strOrderSysID)
        return mapping

    def account_row(self) -> SimpleNamespace:
        value = sum(p["volume"] * self.prices.get(code, p["cost"]) for code, p in self.positions.items())
        return SimpleNamespace(m_dAvailable=round(self.cash - self.frozen, 2), m_dBalance=round(self.cash + value, 2),
                               m_dInstrumentValue=round(value, 2), m_dStockValue=round(value, 2),
                               m_dFrozenCash=round(self.frozen, 2), m_dFetchBalance=round(self.cash - self.frozen, 2))

    def position_rows(self) -> list[SimpleNamespace]:
        rows = []
        for code, p in self.positions.items():
            bare, exchange = code.split(".")
            price = self.prices.get(code, p["cost"])
            rows.append(SimpleNamespace(m_strInstrumentID=bare, m_strExchangeID=exchange, m_strInstrumentName="",
                                        m_nVolume=p["volume"], m_nCanUseVolume=p["can_use"],
                                        m_nFrozenVolume=0, m_nOnRoadVolume=0, m_dOpenPrice=round(p["cost"], 4),
                                        m_dMarketValue=round(p["volume"] * price, 2), m_dLastPrice=price))
        return rows


class BigQmtHost:
    """Loads the bridge strategy file as QMT does and runs it on one strategy thread. `port` 0 binds a free
    loopback port (`self.port` tells which); `pump_period` overrides the file's PUMP_PERIOD (as a user may)."""

    def __init__(self, account_id: str = "8800000001", cash: float = 1_000_000.0, *, port: int = 0,
                 pump_period: Optional[str] = None, strategy_file: Path = BRIDGE_FILE, folder: Optional[Path] = None,
                 now: Callable[[], datetime] = lambda: datetime.now(MARKET_TZ).replace(tzinfo=None)):
        self.account_id = account_id
        self.venue = Venue(cash, now)
        self.strategy_file = strategy_file
        self.requested_port = port
        self.pump_period = pump_period
        self.folder = folder  # the folder transport (the file's TRANSPORT = "folder", FOLDER = this) instead of TCP
        self.port = 0
        self.module = None
        self.context: Optional[ContextInfo] = None
        self.log: list[str] = []
        # fault knobs
        self.drop_pushes = False
        self.duplicate_pushes = False
        self.order_first = False  # a fill's order push before its deal push (default: the deal first)
        self.callbacks_in_call = False
        self.refuse_cancels = False
        self.cancel_returns_false = False
        self.reject_message = ""  # every order refused by the counter with this text
        self.reject_next = ""  # the next order only
        self.refuse_next_cancel = False  # the next cancel of a working order only
        self.hold_cancels = False  # cancels go to 51/52 (待撤) and stay there until release_cancels()
        self.hold_acks = False  # new orders are booked, but pushes and queries hide them until release_acks()
        self._held: set[str] = set()  # sysids hidden by hold_acks
        self.reverse_pushes = False  # the pushes of one action (an order, a fill, a cancel) arrive last-first
        self.received: list[str] = []  # the remark of every passorder call
        self._burst: Optional[list] = None
        self.popup_rejects = False
        self.strip_deal_remark = False
        self.passorder_calls = 0
        self._hang_until = 0.0
        self._lock = threading.Condition()
        self._callbacks: deque = deque()
        self._timers: dict[str, list] = {}  # fname -> [period, next due]
        self._tasks: deque = deque()  # functions to run on the strategy thread
        self._thread: Optional[threading.Thread] = None
        self._stop = False

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> "BigQmtHost":
        self._thread = threading.Thread(target=self._loop, name="qmt-strategy", daemon=True)
        self._thread.start()
        self.on_strategy_thread(self._load_and_init)
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        try:
            self.on_strategy_thread(lambda: self.module.stop(self.context))
        except TimeoutError:
            pass
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._thread.join(5)
        self._thread = None

    def restart(self, renumber: bool = True, repush: bool = False) -> None:
        """The QMT client restarts: the process (and the bridge's sockets) die without stop(); today's orders may
        be numbered afresh; the strategy is loaded and initialised again; `repush` re-pushes every order and deal."""
        def do() -> None:
            bridge = getattr(self.module, "_bridge", None)
            if bridge is not None:
                bridge.close()  # the OS closes a dead process's sockets
            self.module = None
            self._timers.clear()
            self._callbacks.clear()
            if renumber:
                self.venue.renumber()
            self._load_and_init()
            if repush:
                self._queue_full_repush()
        self.on_strategy_thread(do)

    def go_offline(self) -> None:
        """QMT (or the strategy) stops: the bridge's sockets close and nothing listens until `come_online`."""
        def do() -> None:
            if self.module is not None:
                self.module.stop(self.context)
            self.module = None
            self._timers.clear()
            self._callbacks.clear()
        self.on_strategy_thread(do)

    def come_online(self) -> None:
        """The strategy runs again (same order numbers)."""
        self.on_strategy_thread(self._load_and_init)

    def release_acks(self) -> None:
        """The held orders show up: their current state is pushed and queries list them."""
        def do() -> None:
            self.hold_acks = False
            held, self._held = self._held, set()
            for order in list(self.venue.orders.values()):
                if order.m_strOrderSysID in held:
                    self._push("order_callback", self._snapshot(order))
        self.on_strategy_thread(do)

    def release_cancels(self) -> None:
        """Every cancel held pending completes; later cancels complete at once."""
        def do() -> None:
            self.hold_cancels = False
            for order in list(self.venue.orders.values()):
                if order.m_nOrderStatus in (51, 52):
                    with self._action():
                        self.venue.cancel(order)
                        self._push("order_callback", self._snapshot(order))
        self.on_strategy_thread(do)

    def reinit(self) -> None:
        """启用自动初始化: the strategy is run again in the same process (the old module's socket still open)."""
        def do() -> None:
            self._timers.clear()
            self._load_and_init()
        self.on_strategy_thread(do)

    def repush(self) -> None:
        """A full re-push of the day's orders and deals (as after a reconnect)."""
        self.on_strategy_thread(self._queue_full_repush)

    def hang(self, seconds: float) -> None:
        """The strategy thread stalls (QMT's C++ loop holding it): no timer, no callback runs meanwhile."""
        with self._lock:
            self._hang_until = time.monotonic() + seconds
            self._lock.notify_all()

    def end_hang(self, lose_requests: bool = False) -> None:
        """The stall ends; with `lose_requests` the daemon's connection is dropped first, its unread requests lost."""
        def lose() -> None:
            bridge = getattr(self.module, "_bridge", None)
            if bridge is not None and bridge.endpoint is not None:
                bridge.endpoint.drop()
        with self._lock:
            if lose_requests:
                self._tasks.appendleft(lose)  # runs before any timer can read them
            self._hang_until = 0.0
            self._lock.notify_all()

    # ---- the venue's controls ----------------------------------------------------------------------------------
    def set_price(self, code: str, price: float) -> None:
        self.on_strategy_thread(lambda: self.venue.prices.__setitem__(code, float(price)))

    def hold(self, code: str, volume: int, cost: float) -> None:
        self.on_strategy_thread(lambda: self.venue.hold(code, volume, cost))

    def fill(self, sysid: Optional[str] = None, volume: Optional[int] = None, price: Optional[float] = None,
             remark: Optional[str] = None, timeout: float = 10.0) -> None:
        """Fill (part of) a working order, found by sysid or by remark, at `price` (default: its limit)."""
        def do() -> None:
            order = self._find(sysid, remark)
            self._fill(order, volume or order.m_nVolumeTotal, order.m_dLimitPrice if price is None else price)
        self.on_strategy_thread(do, timeout)

    def trade_at(self, code: str, price: float) -> None:
        """The market trades at `price`: the quote moves and every working order it trades through fills."""
        def do() -> None:
            self.venue.prices[code] = float(price)
            for order in list(self.venue.orders.values()):
                crossed = price <= order.m_dLimitPrice if order.side == "buy" else price >= order.m_dLimitPrice
                if order.code == code and order.m_nOrderStatus in (50, 51, 52, 55) and crossed:
                    self._fill(order, order.m_nVolumeTotal, price)
        self.on_strategy_thread(do)

    def order_by_remark(self, remark: str) -> Optional[SimpleNamespace]:
        return next((o for o in list(self.venue.orders.values()) if o.m_strRemark == remark), None)

    def on_strategy_thread(self, action: Callable[[], object], timeout: float = 10.0):
        """Run `action` on the strategy thread and wait for it (the host's controls change the venue only there)."""
        done = threading.Event()
        box: dict = {}

        def task() -> None:
            try:
                box["value"] = action()
            except BaseException as exc:
                box["error"] = exc
            done.set()

        with self._lock:
            self._tasks.append(task)
            self._lock.notify_all()
        if not done.wait(timeout):
            raise TimeoutError("strategy thread did not run the task in time")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    # ---- QMT's API as the strategy sees it ----------------------------------------------------------------------
    def passorder(self, opType, orderType, accountID, orderCode, prType, price, volume, strategyName=None,
                  quickTrade=0, userOrderId="", C=None):
        self._require_strategy_thread()
        self.passorder_calls += 1
        self.received.append(str(userOrderId))
        with self._action():
            return self._passorder(opType, orderType, accountID, orderCode, prType, price, volume, strategyName,
                                   quickTrade, userOrderId)

    def _passorder(self, opType, orderType, accountID, orderCode, prType, price, volume, strategyName, quickTrade,
                   userOrderId):
        side = {23: "buy", 24: "sell"}.get(opType)
        args = SimpleNamespace(opType=opType, orderType=orderType, accountID=accountID, orderCode=orderCode,
                               prType=prType, modelPrice=price, modelVolume=volume,
                               strategyName=f"{strategyName}_&&&_{userOrderId}")
        if side is None or orderType != 1101 or not CODE.match(str(orderCode)) or str(accountID) != self.account_id:
            self._push("orderError_callback", args, f"[函数交易] 参数 {orderCode} 不合法!")
            return None
        if quickTrade != 2:
            self.log.append("passorder without quickTrade=2 outside handlebar: ignored")
            return None
        if self.popup_rejects:
            self.log.append("pop-up: order refused before the counter, no row, no push")
            return None
        order = self.venue.add_order(orderCode, side, volume, price, str(userOrderId), str(strategyName))
        if self.hold_acks:
            self._held.add(order.m_strOrderSysID)
        refusal, self.reject_next = self.reject_next or self.reject_message, ""
        refusal = refusal or self.venue.reserve(order)
        self._push("order_callback", self._snapshot(order))
        if refusal:  # nothing was reserved: the counter refused it
            order.m_nOrderStatus, order.m_strCancelInfo = 57, refusal
            self._push("order_callback", self._snapshot(order))
            return None
        quote = self.venue.prices.get(orderCode)
        if quote is not None and ((side == "buy" and quote <= price) or (side == "sell" and quote >= price)):
            self._fill(order, order.m_nVolumeTotal, quote)
        return None

    def cancel(self, sysid, accountID, accountType, C=None) -> bool:
        self._require_strategy_thread()
        order = self.venue.orders.get(str(sysid))
        if order is None or str(accountID) != self.account_id:
            return True  # "request sent", even for a made-up id
        if order.m_nOrderStatus in (53, 54, 56, 57):
            return True  # the counter refuses; no callback tells
        if self.refuse_cancels or self.refuse_next_cancel:
            self.refuse_next_cancel = False
            return True
        if order.m_nOrderStatus in (51, 52):
            return True  # already pending
        with self._action():
            if self.hold_cancels:
                order.m_nOrderStatus = 52 if order.m_nVolumeTraded else 51
            else:
                self.venue.cancel(order)
            self._push("order_callback", self._snapshot(order))
        return not self.cancel_returns_false

    def get_trade_detail_data(self, accountID, accountType, kind, strategyName=None):
        if not self._on_strategy_thread() or str(accountID) != self.account_id:
            return []
        kind = kind.upper()
        if kind == "ACCOUNT":
            return [self.venue.account_row()]
        if kind == "POSITION":
            return self.venue.position_rows()
        if kind == "ORDER":
            return [self._snapshot(o) for o in self.venue.orders.values() if o.m_strOrderSysID not in self._held]
        if kind == "DEAL":
            return [self._deal_view(d) for d in self.venue.deals]
        return []

    def get_value_by_order_id(self, sysid, accountID, accountType, kind):
        if not self._on_strategy_thread():
            return None
        order = self.venue.orders.get(str(sysid))
        return None if order is None or order.m_strOrderSysID in self._held else self._snapshot(order)

    # ---- internals ---------------------------------------------------------------------------------------------
    def _load_and_init(self) -> None:
        spec = importlib.util.spec_from_file_location(f"bigqmt_bridge_run{next(_load_counter)}", self.strategy_file)
        module = importlib.util.module_from_spec(spec)
        for name in ("passorder", "cancel", "get_trade_detail_data", "get_value_by_order_id"):
            setattr(module, name, getattr(self, name))  # QMT puts its API in the strategy's namespace
        spec.loader.exec_module(module)  # top-level code runs before `account` is injected
        module.account, module.accountType = self.account_id, "STOCK"
        if self.requested_port is not None:
            module.PORT = self.requested_port if self.port == 0 else self.port  # a restart binds the same port
        if self.pump_period:
            module.PUMP_PERIOD = self.pump_period
        if self.folder is not None:
            module.TRANSPORT, module.FOLDER = "folder", str(self.folder)
        self.module = module
        self.context = ContextInfo(self)
        module.init(self.context)
        self.port = module._bridge.port() or self.port

    def _add_timer(self, fname: str, period: float) -> None:
        self._timers[fname] = [period, time.monotonic()]  # a past start time fires at once

    def _queue_full_repush(self) -> None:
        for order in list(self.venue.orders.values()):
            self._push("order_callback", self._snapshot(order))
        for deal in list(self.venue.deals):
            self._push("deal_callback", self._deal_view(deal))

    def _find(self, sysid: Optional[str], remark: Optional[str]) -> SimpleNamespace:
        order = self.venue.orders.get(sysid) if sysid else self.order_by_remark(remark or "")
        if order is None:
            raise KeyError(f"no order {sysid or remark}")
        return order

    def _fill(self, order: SimpleNamespace, volume: int, price: float) -> None:
        with self._action():
            deal = self.venue.fill(order, volume, price)
            pushes = [("deal_callback", self._deal_view(deal)), ("order_callback", self._snapshot(order))]
            for name, payload in (reversed(pushes) if self.order_first else pushes):
                self._push(name, payload)

    @contextmanager
    def _action(self) -> Iterator[None]:
        """One venue action; with `reverse_pushes` its pushes are collected and queued last-first at its end."""
        if not self.reverse_pushes or self._burst is not None:
            yield
            return
        self._burst = []
        try:
            yield
        finally:
            burst, self._burst = self._burst, None
            for callback, args in reversed(burst):
                self._push(callback, *args)

    def _snapshot(self, order: SimpleNamespace) -> SimpleNamespace:
        return SimpleNamespace(**vars(order))

    def _deal_view(self, deal: SimpleNamespace) -> SimpleNamespace:
        view = SimpleNamespace(**vars(deal))
        if self.strip_deal_remark:
            view.m_strRemark = ""
        return view

    def _push(self, callback: str, *args) -> None:
        """Queue a callback for the strategy thread (or run it now, inside the API call, when asked)."""
        if self.drop_pushes or (callback == "order_callback" and args[0].m_strOrderSysID in self._held):
            return
        if self._burst is not None:
            self._burst.append((callback, args))
            return
        copies = 2 if self.duplicate_pushes else 1
        for _ in range(copies):
            if self.callbacks_in_call and self._on_strategy_thread():
                self._run_callback(callback, args)
            else:
                self._callbacks.append((callback, args))

    def _run_callback(self, callback: str, args: tuple) -> None:
        function = getattr(self.module, callback, None)
        if function is not None:
            function(self.context, *args)

    def _on_strategy_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _require_strategy_thread(self) -> None:
        if not self._on_strategy_thread():
            raise RuntimeError("QMT trading functions run only on the strategy thread")

    def _loop(self) -> None:
        """The strategy thread: tasks, then callbacks, then due timers; waits for the next due timer."""
        while True:
            with self._lock:
                if self._stop:
                    return
                hang = self._hang_until - time.monotonic()
                if hang > 0:
                    self._lock.wait(min(hang, 1.0))
                    continue
                task = self._tasks.popleft() if self._tasks else None
            if task is not None:
                task()
                continue
            if self._callbacks:
                callback, args = self._callbacks.popleft()
                self._run_callback(callback, args)
                continue
            now = time.monotonic()
            due = [(name, timer) for name, timer in list(self._timers.items()) if timer[1] <= now]
            for name, timer in due:
                timer[1] = now + timer[0]
                function = getattr(self.module, name, None) if self.module is not None else None
                if function is not None:
                    function(self.context)
            if due:
                continue
            next_due = min((t[1] for t in self._timers.values()), default=now + 0.5)
            with self._lock:
                if not self._tasks and not self._stop:
                    self._lock.wait(max(0.0, next_due - time.monotonic()))
