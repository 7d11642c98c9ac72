"""One miniQMT session over the real `xtquant.xttrader`: lazy import of xtquant's trading modules, the
XtQuantTrader life cycle (start → connect → subscribe → stop) with deadlines, and the callback that only
enqueues. Interpreting the events is qmt.events' job (a mixin of easy_qmt_trader)."""
from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional

from core.models import BrokerUnavailable, DataUnavailable, OrderStatus, Side
from qmt.account import AccountConfig
from qmt.xtquant_import import import_xtquant

log = logging.getLogger("easy_qmt_trader")

NOT_ON_THIS_MACHINE = ("无法加载 xtquant 的交易模块（原生模块 xtquant.xtpythonclient 只有 Windows 64 位、Python 3.6–3.13 的版本）：实盘交易只能在"
                       "装有券商 miniQMT 的 Windows 电脑上运行，且 miniQMT 需以极简模式登录。本机请使用模拟模式"
                       "（python main.py --simulation，或在 config.py 中设 ENABLE_SIMULATION_MODE = True）。")


@dataclass(frozen=True)
class XtApi:
    """The xtquant modules, loaded only in live mode, and what we derive from their constants."""

    xttrader: Any
    xttype: Any
    xtconstant: Any
    trader_class: Any  # xttrader.XtQuantTrader without its event-loop side effects (see _quiet_trader_class)

    def order_status(self, code: int) -> OrderStatus:
        c = self.xtconstant
        return {
            c.ORDER_UNREPORTED: OrderStatus.SUBMITTED, c.ORDER_WAIT_REPORTING: OrderStatus.SUBMITTED,
            c.ORDER_REPORTED: OrderStatus.OPEN, c.ORDER_PART_SUCC: OrderStatus.PARTIALLY_FILLED,
            c.ORDER_SUCCEEDED: OrderStatus.FILLED, c.ORDER_REPORTED_CANCEL: OrderStatus.CANCEL_PENDING,
            c.ORDER_PARTSUCC_CANCEL: OrderStatus.CANCEL_PENDING, c.ORDER_PART_CANCEL: OrderStatus.CANCELLED,
            c.ORDER_CANCELED: OrderStatus.CANCELLED, c.ORDER_JUNK: OrderStatus.REJECTED,
        }.get(code, OrderStatus.UNKNOWN)

    def order_type(self, side: Side) -> int:
        return self.xtconstant.STOCK_BUY if side is Side.BUY else self.xtconstant.STOCK_SELL

    def side(self, order_type: int, offset_flag: Optional[int]) -> Optional[Side]:
        """Buy/sell of a stock order or trade; None for anything else (credit, ETF creation, ...)."""
        c = self.xtconstant
        if order_type == c.STOCK_BUY or (order_type != c.STOCK_SELL and offset_flag == c.OFFSET_FLAG_OPEN):
            return Side.BUY
        if order_type == c.STOCK_SELL or offset_flag == c.OFFSET_FLAG_CLOSE:
            return Side.SELL
        return None

    def price_type(self, choice: str, stock_code: str) -> int:
        """'limit' (default) → FIX_PRICE; 'best5_cancel' → the exchange's best-5-then-cancel market type."""
        c = self.xtconstant
        if choice == "best5_cancel":
            return c.MARKET_SH_CONVERT_5_CANCEL if stock_code.endswith(".SH") else c.MARKET_SZ_CONVERT_5_CANCEL
        return c.FIX_PRICE


def load_xt_api() -> XtApi:
    """Import xtquant's trading modules (offline), or explain in Chinese why live trading cannot run here."""
    try:
        xttrader = import_xtquant("xttrader")
        return XtApi(xttrader, import_xtquant("xttype"), import_xtquant("xtconstant"), _quiet_trader_class(xttrader))
    except DataUnavailable as exc:  # xtquant_import reports a missing native part this way
        log.info("xtquant 交易模块导入失败：%s", exc.__cause__ or exc.message)
        raise BrokerUnavailable("QMT_NOT_AVAILABLE", NOT_ON_THIS_MACHINE) from exc


@dataclass(frozen=True)
class QmtEvent:
    """One callback from xttrader, tagged with the session it came from."""

    kind: str  # order | trade | order_response | order_error | cancel_response | cancel_error | disconnected | ...
    session: int
    payload: Any


@dataclass
class QmtSession:
    session_id: int
    trader: Any  # xttrader.XtQuantTrader
    account: Any  # xttype.StockAccount
    connected: bool = False
    stopped: bool = False

    def shutdown(self) -> None:
        self.connected = False
        if self.stopped:
            return
        self.stopped = True
        try:
            self.trader.stop()
        except Exception:  # an already broken native client; a new session replaces it anyway
            log.warning("停止 miniQMT 会话 %s 时出错", self.session_id, exc_info=True)
        self.trader.loop.close()


def open_session(xt: XtApi, qmt_path: str, account: AccountConfig, session_id: int,
                 on_event: Callable[[QmtEvent], None], timeout: float) -> QmtSession:
    """XtQuantTrader(path, session id) → register callback → start → connect → subscribe, each blocking
    step with a deadline. Raises BrokerUnavailable (Chinese, account id masked)."""
    stock_account = xt.xttype.StockAccount(account.account_id, account.account_type)
    if isinstance(stock_account, str):  # xttype returns an error text instead of raising
        raise BrokerUnavailable("ACCOUNT_INVALID", f"资金账号无效：{stock_account}")
    trader = xt.trader_class(qmt_path, session_id)
    asyncio.set_event_loop(getattr(trader, "oldloop", None))  # undo xttrader's loop switch (see below)
    session = QmtSession(session_id, trader, stock_account)
    trader.register_callback(QueueingCallback(on_event, session_id))
    try:
        trader.start()
        result = bounded_call(trader.connect, timeout, "连接 miniQMT")
        if result != 0:
            raise BrokerUnavailable("QMT_CONNECT_FAILED",
                                    f"连接 miniQMT 失败（返回码 {result}）：请确认 miniQMT 已启动并以极简模式登录，"
                                    f"且 userdata_mini 路径正确（{qmt_path}）")
        result = bounded_call(lambda: trader.subscribe(stock_account), timeout, "订阅资金账号")
        if result != 0:
            raise BrokerUnavailable("QMT_SUBSCRIBE_FAILED",
                                    f"订阅资金账号 {account.masked_id} 失败（返回 {result}）："
                                    "请确认账号和账号类型正确，且该账号已在 miniQMT 中登录")
    except BaseException:
        session.shutdown()
        raise
    session.connected = True
    return session


class QueueingCallback:
    """The XtQuantTraderCallback we register. It runs on xttrader's push thread and ONLY enqueues: a
    blocking xttrader call from there deadlocks that thread (reference/xtquant_api.md)."""

    def __init__(self, put: Callable[[QmtEvent], None], session_id: int):
        self._put = put
        self._session_id = session_id

    def _enqueue(self, kind: str, payload: Any = None) -> None:
        self._put(QmtEvent(kind, self._session_id, payload))

    def on_connected(self) -> None:
        pass  # never called by xttrader 250807

    def on_disconnected(self) -> None:
        self._enqueue("disconnected")

    def on_account_status(self, status) -> None:
        self._enqueue("account_status", status)

    def on_stock_asset(self, asset) -> None:
        pass  # cash is queried when needed (query_asset)

    def on_stock_position(self, position) -> None:
        pass  # positions are pulled by the position sync (query_positions)

    def on_stock_order(self, order) -> None:
        self._enqueue("order", order)

    def on_stock_trade(self, trade) -> None:
        self._enqueue("trade", trade)

    def on_order_error(self, order_error) -> None:
        self._enqueue("order_error", order_error)

    def on_cancel_error(self, cancel_error) -> None:
        self._enqueue("cancel_error", cancel_error)

    def on_order_stock_async_response(self, response) -> None:
        self._enqueue("order_response", response)

    def on_cancel_order_stock_async_response(self, response) -> None:
        self._enqueue("cancel_response", response)


def bounded_call(call: Callable[[], Any], timeout: float, what: str, error: type = BrokerUnavailable) -> Any:
    """Run a blocking xttrader (or xtdata) call with a deadline: xtquant waits for miniQMT's answer without
    one, and a half-dead miniQMT must not hang the daemon. On timeout the helper thread is abandoned (daemon).
    Failures raise `error` (a TradingError class: BrokerUnavailable, or DataUnavailable for data calls)."""
    box = _run_in_thread(call, timeout, f"qmt-call-{what}")
    if box is None:
        raise error("QMT_TIMEOUT", f"{what}超时（{timeout:g} 秒），miniQMT 无响应")
    if "error" in box:
        raise error("QMT_CALL_FAILED", f"{what}出错：{box['error']}") from box["error"]
    return box["value"]


def _run_in_thread(call: Callable[[], Any], timeout: float, name: str) -> Optional[dict[str, Any]]:
    """`call()` in a daemon thread of its own, waited for at most `timeout` seconds: {"value"} or {"error"}, or
    None when it has not returned (the thread is left behind: a native call cannot be interrupted)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the waiting caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    return box if done.wait(timeout) else None


def random_session_ids() -> Callable[[], int]:
    """Session ids must differ between processes/strategies on one miniQMT: start at a random number and
    count up for each reconnect."""
    counter = itertools.count(100000 + secrets.randbelow(800000))
    return lambda: next(counter)


def _quiet_trader_class(xttrader: Any) -> type:
    """XtQuantTrader makes its own (never run) asyncio loop the constructing thread's current loop, and
    its __del__ puts back a loop saved only when built on the main thread, in whatever thread the object
    dies. open_session undoes the first right after construction; this subclass drops the second."""

    class QuietXtQuantTrader(xttrader.XtQuantTrader):
        def __del__(self) -> None:
            pass

    return QuietXtQuantTrader


class SendTimeout(Exception):
    """A native send did not return within its deadline (its outcome is unknown)."""


def send_with_deadline(send: Callable[[], Any], seconds: float, what: str) -> Any:
    """Run one native send (order or cancel) in its own thread and wait at most `seconds` (issue 25): a send
    that blocks (the native call may never return) must not hold its caller, nor any lock. Raises SendTimeout;
    the blocked thread is left behind (daemon)."""
    box = _run_in_thread(send, seconds, "qmt-send")
    if box is None:
        raise SendTimeout(f"发送{what}超过 {seconds:g} 秒未返回")
    if "error" in box:
        raise box["error"]
    return box.get("value")
