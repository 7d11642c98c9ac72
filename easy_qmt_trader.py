"""The live broker: the real account through miniQMT (`xtquant.xttrader`) behind the same `core.models.Broker`
interface as the simulated one. QMT callbacks only enqueue; one worker thread turns them into `Order`/`Fill`
events for the listener and reconnects (new session, reconcile, never re-sending) when the link drops."""
from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, Optional

import config
from qmt.broker_guard import OutcomeUnknown
from qmt.broker_setup import connected, trading_db
from market.clock import Clock, RealClock
from core.models import (Asset, BrokerListener, BrokerPosition, BrokerUnavailable, Fill, Order, OrderRejected,
                    OrderRequest, OrderStatus)
from qmt.account import AccountConfig, load_account_config, resolve_qmt_path
from qmt.delivery import Delivery
from qmt.events import EventState, QmtEventHandling
from qmt.link import LINK_CONNECTED, LINK_UNHEALTHY, LinkHealth, overdue, probe_due
from qmt.link_worker import LinkLifecycle
from qmt.order_journal import CANCEL_NONE, CANCEL_SENT, CANCEL_WAITING_FOR_ID, MappedOrder, QmtOrderJournal
from qmt.reconcile import QmtReconciliation
from qmt.offerings import QmtOfferings, price_choice  # issue 28 §3
# re-exported: callers and tests import the settle reasons from the face
from qmt.reconcile import DEAD_LINK_CODES, SELL_NOT_DELIVERED, UNKNOWN_IN_FLIGHT  # noqa: F401
from qmt.session import (QmtEvent, QmtSession, SendTimeout, XtApi, load_xt_api, open_session, random_session_ids,
                         send_with_deadline)
from persistence.storage import Database

log = logging.getLogger("easy_qmt_trader")

PROJECT_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BrokerTimings:
    """How long to wait for miniQMT, and the reconnect back-off (seconds); the daemon takes them from its
    settings (`from_settings`), tests pass their own."""

    query_timeout: float = config.QMT_QUERY_TIMEOUT
    connect_timeout: float = config.QMT_CONNECT_TIMEOUT
    reconnect_first_delay: float = config.QMT_RECONNECT_FIRST_DELAY
    reconnect_max_delay: float = config.QMT_RECONNECT_MAX_DELAY
    reconnect_factor: float = 2.0  # each failed attempt doubles the wait, up to the maximum
    close_timeout: float = 5.0  # closing a hung client must not hold the daemon's exit longer

    @classmethod
    def from_settings(cls, settings) -> "BrokerTimings":
        return cls(query_timeout=settings.get("QMT_QUERY_TIMEOUT"), connect_timeout=settings.get("QMT_CONNECT_TIMEOUT"),
                   reconnect_first_delay=settings.get("QMT_RECONNECT_FIRST_DELAY"),
                   reconnect_max_delay=settings.get("QMT_RECONNECT_MAX_DELAY"))


def connect_live_broker(settings, data_dir: Path, db: Optional[Database] = None, clock: Optional[Clock] = None, *,
                        account_config_path: Optional[Path] = None, qmt_candidates: Optional[Iterable[Path]] = None,
                        timings: Optional[BrokerTimings] = None) -> "EasyQmtTrader":
    """Build and connect the live broker for `main.py`. Fails fast with BrokerUnavailable (a Chinese message
    saying what is missing and what to do) when xtquant's native part, the account config or miniQMT is
    not there; no traceback is needed to understand it."""
    xt = load_xt_api()
    account = load_account_config(account_config_path or PROJECT_DIR / "account_config.json")
    qmt_path = resolve_qmt_path(account.qmt_path, qmt_candidates)
    db, owns_db = trading_db(data_dir, db)
    trader = EasyQmtTrader(db, settings, clock or RealClock(), account, qmt_path,
                           timings=timings or BrokerTimings.from_settings(settings), xt=xt)
    trader.owns_db = owns_db
    return connected(trader)


class EasyQmtTrader(QmtReconciliation, QmtEventHandling, QmtOfferings, LinkLifecycle):
    """core.models.Broker over miniQMT. Threads: xttrader's push thread (our callback only enqueues), the
    `qmt-events` worker (delivers events, reconnects), and callers of the Broker methods. Reading the pushes is
    `qmt.events.QmtEventHandling`, recovering a dropped link `qmt.reconcile.QmtReconciliation` (mixins on this
    state); this class sends, queries, supervises the link and runs the worker."""

    mode = "live"
    _log = log
    _closed_text = "已断开 miniQMT"
    _worker_error_text = "处理 miniQMT 回报时出错"

    def __init__(self, db: Database, settings, clock: Clock, account: AccountConfig, qmt_path: Path | str, *,
                 timings: BrokerTimings = BrokerTimings(), xt: Optional[XtApi] = None,
                 session_ids: Optional[Callable[[], int]] = None):
        self.account = account
        self.qmt_path = str(qmt_path)
        self.owns_db = False
        self._db = db
        self._settings = settings
        self._clock = clock
        self._timings = timings
        self._xt = xt
        self._session_ids = session_ids or random_session_ids()
        self._journal = QmtOrderJournal(db)
        self._lock = threading.RLock()  # journal/mapping state and sending; never held while calling the listener
        self._session: Optional[QmtSession] = None
        self._events: queue.Queue[QmtEvent] = queue.Queue()
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._listener: Optional[BrokerListener] = None
        self._undelivered: list[Delivery] = []
        self._state = EventState()
        self._reconnect_needed = False
        self._link_failure = ""  # code of the failure that dropped the current session (cleared by the reconcile)
        self._closed = False
        self.reconnects = 0
        self.last_error = ""
        # issue 13: liveness supervision (monotonic seconds) and what the operator must see
        self.health = LinkHealth(clock.now)
        self._sent_at: dict[str, float] = {}  # client id → when sent, until QMT names the order
        self._cancel_sent_at: dict[str, float] = {}  # client id → when a cancel left, until it has an outcome
        self._last_probe: Optional[float] = None
        self._last_answer = float("-inf")  # monotonic time of miniQMT's last answer to a query
        self._last_answer_before_reconnect = float("-inf")  # … as it stood when the link was dropped
        self._probe_forced = False
        # issue 25: sends run outside the lock with a deadline; what a refused cancel or a push lapse needs
        self._sending: set[str] = set()  # client ids whose native send has not returned yet
        self._verify_after_refusal: set[str] = set()  # client ids whose real state a query must confirm
        self._trades_baseline: Optional[set[str]] = None  # fill ids the first trade query found (never pushed)
        self._unpushed: set[str] = set()  # fill ids a query found that no push had delivered (yet)
        self._cancels_due: list[tuple[str, str]] = []  # (client id, order id): cancels that waited for the id

    # ---- core.models.Broker -------------------------------------------------------------------------------
    def set_listener(self, listener: BrokerListener) -> None:
        self._listener = listener
        self._events.put(QmtEvent("flush", 0, None))  # hand over what arrived before there was a listener

    def connect(self) -> None:
        """Start a session (connect + subscribe) and the event worker. Raises BrokerUnavailable."""
        if self.is_connected():
            return
        if self._xt is None:
            self._xt = load_xt_api()
        session = self._open_session()
        with self._lock:
            self._session = session
        self._last_probe = time.monotonic()  # connecting proved the link
        self._start_worker()
        self.health.set_state(LINK_CONNECTED)
        log.info("已连接 miniQMT：账号 %s，会话 %s，路径 %s", self.account.masked_id, session.session_id, self.qmt_path)

    def is_connected(self) -> bool:
        session = self._session
        return session is not None and session.connected

    def place_order(self, request: OrderRequest) -> None:
        """Journal the client id, then send asynchronously with it as order_remark. Raises OrderRejected for
        an invalid or already-used request, BrokerUnavailable when miniQMT is not connected."""
        _check_request(request)
        xt = self._require_xt()
        with self._lock:
            session = self._require_session()
            if self._journal.get(request.client_id) is not None:
                raise OrderRejected("DUPLICATE_CLIENT_ID",
                                    f"委托 {request.client_id} 已经发送过，不会重复发送（请先核对该委托的状态）")
            try:
                self._journal.add(request, session.session_id, self._clock.now())
            except sqlite3.IntegrityError as exc:
                raise OrderRejected("DUPLICATE_CLIENT_ID", f"委托 {request.client_id} 已经发送过，不会重复发送") from exc
            self._sending.add(request.client_id)
            self._sent_at[request.client_id] = time.monotonic()  # a send that blocks is an unacknowledged order
        # issue 25: the native send runs outside the lock and with a deadline, so a blocked send freezes
        # neither the event worker nor the supervision (which then drops the session and reconciles).
        try:
            seq = self._native_send(lambda: session.trader.order_stock_async(
                session.account, request.stock_code, xt.order_type(request.side), int(request.volume),
                xt.price_type(price_choice(request.rule, self.account.price_type), request.stock_code),
                float(request.price),
                request.rule.value, request.client_id), "委托")
        except Exception as exc:
            self._send_outcome_unknown(request.client_id, exc)
        with self._lock:
            self._sending.discard(request.client_id)
            if not isinstance(seq, int) or seq <= 0:
                self._journal.set_state(request.client_id, OrderStatus.REJECTED, 0, "miniQMT 拒绝接收委托", self._clock.now())
                raise OrderRejected("QMT_SEND_REFUSED", f"miniQMT 拒绝接收委托（返回 {seq}）")
            self._journal.set_seq(request.client_id, seq)
            self._state.awaiting_response[(session.session_id, seq)] = request.client_id
            early = self._state.early_responses.pop((session.session_id, seq), None)
            if early is not None:
                self._events.put(early)  # its answer came before the send returned: handle it now
            self._probe_forced = True  # is miniQMT still answering right after a send?
        self._events.put(QmtEvent("flush", 0, None))  # wake the worker: the probe runs now, not after a poll
        log.info("已发送委托 %s：%s %s %d 股 @ %.3f（会话 %s，序号 %s）", request.client_id, request.side.label,
                 request.stock_code, request.volume, request.price, session.session_id, seq)

    def cancel_order(self, order_id: str) -> None:
        """Cancel by QMT order id or by our client id. If QMT has not yet told us the order id, the cancel
        is sent the moment it does."""
        with self._lock:
            session = self._require_session()
            row = self._journal.get(order_id) or self._journal.by_order_id(order_id)
            broker_id = row.current_id if row is not None else order_id
            if row is not None and not row.order_id:
                self._journal.set_cancel_state(row.client_id, CANCEL_WAITING_FOR_ID)
                log.info("委托 %s 尚未获得券商编号，撤单将在编号返回后发出", row.client_id)
                return
            if not broker_id.isdigit():
                raise OrderRejected("ORDER_NOT_FOUND", f"找不到委托 {order_id}，无法撤单")
            if row is not None:
                self._journal.set_cancel_state(row.client_id, CANCEL_SENT)
                self._cancel_sent_at[row.client_id] = time.monotonic()
        try:  # outside the lock, with a deadline (issue 25)
            self._native_send(lambda: session.trader.cancel_order_stock_async(session.account, int(broker_id)), "撤单")
        except Exception as exc:
            self._cancel_send_failed(row, order_id, exc)
        log.info("已发送撤单请求：委托 %s", order_id)

    def _native_send(self, send: Callable[[], Any], what: str) -> Any:
        """A native send outside every lock, bounded by QMT_SEND_TIMEOUT (issue 25). Raises SendTimeout."""
        return send_with_deadline(send, float(self._settings.get("QMT_SEND_TIMEOUT")), what)

    def _send_due_cancels(self) -> None:
        """Worker thread, outside the lock: the cancels that waited for their order's broker id."""
        with self._lock:
            due, self._cancels_due = self._cancels_due, []
        session = self._session
        for client_id, order_id in due:
            if session is None:
                break
            try:
                self._native_send(lambda: session.trader.cancel_order_stock_async(session.account, int(order_id)), "撤单")
            except Exception as exc:
                row = self._journal.get(client_id)
                try:
                    self._cancel_send_failed(row, order_id, exc)
                except BrokerUnavailable as failed:
                    log.warning("补发撤单未成功：%s", failed.message)
                continue
            log.info("委托 %s 获得券商编号 %s，已补发撤单请求", client_id, order_id)

    def _send_outcome_unknown(self, client_id: str, exc: Exception) -> NoReturn:
        """The send raised or overran: it may have reached the counter. The row stays 「结果未知」 for matching by
        remark (the reconnect ORDER_ACK_TIMEOUT forces settles it); the caller gets OutcomeUnknown."""
        with self._lock:
            self._sending.discard(client_id)
            self._journal.set_state(client_id, OrderStatus.UNKNOWN, 0, f"发送异常，结果未知：{exc}", self._clock.now())
            self._state.unconfirmed.add(client_id)
            if isinstance(exc, SendTimeout):  # the native call never returned: the request may still be on its way
                self._state.send_overran.add(client_id)
        log.error("向 miniQMT 发送委托 %s 时出错，是否送达未知，将按备注核对：%s", client_id, exc)
        if isinstance(exc, SendTimeout):
            self._link_failed("QMT_SEND_TIMEOUT", f"委托 {client_id} {exc}，判定 miniQMT 无响应，重连后按备注核对")
        raise OutcomeUnknown("ORDER_OUTCOME_UNKNOWN", f"委托 {client_id} 发送时出错（{exc}），是否已送达券商未知（结果未知）："
                                                      "将按备注与券商核对，核对前同一股票同方向不会再下单") from exc

    def _cancel_send_failed(self, row: Optional[MappedOrder], order_id: str, exc: Exception) -> NoReturn:
        if row is not None:
            with self._lock:
                self._journal.set_cancel_state(row.client_id, CANCEL_NONE)
                self._cancel_sent_at.pop(row.client_id, None)
        log.error("向 miniQMT 发送撤单（委托 %s）时出错：%s", order_id, exc)
        if isinstance(exc, SendTimeout):
            self._link_failed("QMT_SEND_TIMEOUT", f"撤单请求（委托 {order_id}）{exc}，判定 miniQMT 无响应，重连后核对委托状态")
        raise BrokerUnavailable("QMT_CANCEL_SEND_FAILED", f"撤单请求未能发出（委托 {order_id}：{exc}），"
                                                          "将与券商核对该委托后再撤") from exc

    def query_asset(self) -> Asset:
        xt_asset = self._query("query_stock_asset_async", "资金")
        if xt_asset is None:
            raise BrokerUnavailable("QMT_QUERY_FAILED", "miniQMT 没有返回资金信息")
        return Asset(cash=float(xt_asset.cash), frozen_cash=float(xt_asset.frozen_cash),
                     market_value=float(xt_asset.market_value), total_asset=float(xt_asset.total_asset))

    def query_positions(self) -> list[BrokerPosition]:
        """Broker-authoritative volume, available (can_use_volume) and cost (open_price, not the diluted
        avg_price). Rows sold down to zero today are left out."""
        rows = self._query_list("query_stock_positions_async", "持仓")
        if not any(int(p.volume) > 0 for p in rows):
            self._check_empty_positions()
        return [BrokerPosition(stock_code=p.stock_code, volume=int(p.volume), available=int(p.can_use_volume),
                               cost_price=float(p.open_price), market_value=float(p.market_value),
                               stock_name=str(getattr(p, "instrument_name", "") or ""))
                for p in rows if int(p.volume) > 0]

    def query_orders(self) -> list[Order]:
        """Today's orders, client ids from order_remark (else our map): what recover() matches its journal by."""
        rows = self._query_list("query_stock_orders_async", "委托")
        with self._lock:
            orders = [self._order_from_xt(o, self._client_id_for(o.order_remark, str(o.order_id))) for o in rows]
            self._learn_ids_from_query(rows)
        return [o for o in orders if o is not None]

    def query_trades(self) -> list[Fill]:
        rows = self._query_list("query_stock_trades_async", "成交")
        with self._lock:
            fills = [self._fill_from_xt(t, self._client_id_for(t.order_remark, str(t.order_id))) for t in rows]
            fills = [f for f in fills if f is not None]
            lapsed = self._note_unpushed(fills)
        if lapsed:
            self._link_failed("PUSH_LAPSE", f"成交 {'、'.join(sorted(lapsed))} 查询可见但一直没有推送：miniQMT 推送中断，"
                                            "已按查询补记（不会重复记账），重连以恢复推送")
        return fills

    # ---- closing (LinkLifecycle.close) ----------------------------------------------------------------------
    def _stop_item(self) -> QmtEvent:
        return QmtEvent("stop", 0, None)

    def _close_timeout(self) -> float:
        return self._timings.close_timeout

    def _drop_link(self) -> None:
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.shutdown()

    # ---- status for the web page ----------------------------------------------------------------------------
    def connection_status(self) -> dict:
        session = self._session
        return {"connected": self.is_connected(), "account": self.account.masked_id, "qmt_path": self.qmt_path,
                "session_id": session.session_id if session else None, "reconnects": self.reconnects,
                "last_error": self.last_error, **self.health.snapshot()}

    # ---- the worker ---------------------------------------------------------------------------------------
    def run_once(self, timeout: float) -> bool:
        """One step of the `qmt-events` thread: handle one queued callback (or reconnect when the link is
        down). Returns False when there was nothing to do within `timeout`."""
        if self._reconnect_needed:
            self._reconnect()
            return True
        try:
            event = self._events.get(timeout=timeout)
        except queue.Empty:
            return False
        if event.kind == "stop":
            return True
        with self._lock:
            deliveries = self._handle(event)
        self._deliver(deliveries)
        self._send_due_cancels()
        return True

    def _start_worker(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="qmt-events", daemon=True)
        self._worker.start()

    def _probe_interval(self) -> float:
        return float(self._settings.get("LIVENESS_PROBE_INTERVAL"))

    # ---- liveness (issue 13) -------------------------------------------------------------------------------
    def supervise(self) -> None:
        """Worker thread, between events: a link that is "connected" but no longer answers is found by
        (a) an order without a broker id after ORDER_ACK_TIMEOUT, (b) a cancel without an outcome after it,
        (c) a probe query (right after a send, and every LIVENESS_PROBE_INTERVAL in session) that misses
        LIVENESS_PROBE_DEADLINE. Then: alarm, drop the session, reconnect, reconcile by remark."""
        session = self._session
        if session is None or not session.connected or self._reconnect_needed:
            return
        now, limit = time.monotonic(), float(self._settings.get("ORDER_ACK_TIMEOUT"))
        with self._lock:
            late_acks = overdue(self._sent_at, now, limit, self._still_unacknowledged)
            late_cancels = overdue(self._cancel_sent_at, now, limit, self._cancel_still_pending)
        if late_acks:
            self._link_failed("ORDER_ACK_TIMEOUT", f"委托 {'、'.join(late_acks)} 发出超过 {limit:g} 秒仍未获得券商编号，"
                                                   "判定 miniQMT 无响应，重连后按备注核对")
            return
        if late_cancels:
            self._link_failed("CANCEL_ACK_TIMEOUT", f"委托 {'、'.join(late_cancels)} 的撤单请求超过 {limit:g} 秒没有结果，"
                                                    "判定 miniQMT 无响应，重连后核对委托状态")
            return
        if self._verify_after_refusal:
            self._verify_refused_cancels()
        forced, self._probe_forced = self._probe_forced, False
        interval = float(self._settings.get("LIVENESS_PROBE_INTERVAL"))
        if not probe_due(self._last_probe, now, interval, True, forced) or not (forced or self._in_session()):
            return  # (the calendar is asked only when a probe would otherwise be due)
        self._last_probe = now
        deadline = float(self._settings.get("LIVENESS_PROBE_DEADLINE"))
        try:
            self._query("query_stock_asset_async", "资金", timeout=deadline)
        except BrokerUnavailable as exc:
            self._link_failed("LIVENESS_PROBE_FAILED", f"miniQMT 探测查询无响应（{exc.message}），判定连接失效，开始重连")

    def _still_unacknowledged(self, client_id: str) -> bool:
        if client_id in self._sending:
            return False  # its send has not returned: QMT_SEND_TIMEOUT watches it (issue 25)
        row = self._journal.get(client_id)
        if row is None or row.order_id or row.status.is_terminal:
            self._sent_at.pop(client_id, None)
            return False
        return True

    def _cancel_still_pending(self, client_id: str) -> bool:
        row = self._journal.get(client_id)
        if row is None or row.cancel_state != CANCEL_SENT or row.status.is_terminal:
            self._cancel_sent_at.pop(client_id, None)
            return False
        return True

    def _link_failed(self, code: str, message: str) -> None:
        with self._lock:
            session = self._session
            if session is None or not session.connected:
                return
            session.connected = False
            self._reconnect_needed = True
            self._link_failure = code
        self.last_error = message
        self.health.set_state(LINK_UNHEALTHY)
        self.health.alarm(code, message)

    def _check_empty_positions(self) -> None:
        """An empty position answer is believed only when the asset agrees (no market value): a failed or
        half-initialised query must not look like "everything was sold"."""
        asset = self._query("query_stock_asset_async", "资金")
        if asset is not None and float(asset.market_value) > 0:
            message = f"miniQMT 返回空持仓，但资金显示持仓市值 {float(asset.market_value):.2f} 元：本次持仓查询不可信，已忽略"
            self.health.alarm("QMT_POSITIONS_EMPTY", message, logging.WARNING)
            raise BrokerUnavailable("QMT_POSITIONS_EMPTY", message)

    # ---- sessions and queries ----------------------------------------------------------------------------------
    def _open_session(self) -> QmtSession:
        return open_session(self._require_xt(), self.qmt_path, self.account, self._session_ids(), self._events.put,
                            self._timings.connect_timeout)

    def _query(self, method: str, label: str, timeout: Optional[float] = None) -> Any:
        """Run an xttrader *_async query and wait (bounded) for its answer. The answer arrives on xttrader's
        push thread, where our callback only stores it, so this never deadlocks, whichever thread asks."""
        session = self._require_session()
        done = threading.Event()
        box: list[Any] = []

        def answer(result: Any) -> None:
            box.append(result)
            done.set()

        getattr(session.trader, method)(session.account, answer)
        limit = self._timings.query_timeout if timeout is None else timeout
        if not done.wait(limit):
            raise BrokerUnavailable("QMT_QUERY_TIMEOUT", f"查询{label}超时（{limit:g} 秒），miniQMT 无响应")
        self._last_answer = time.monotonic()
        return box[0]

    def _query_list(self, method: str, label: str) -> list:
        result = self._query(method, label)
        if result is None:
            raise BrokerUnavailable("QMT_QUERY_FAILED", f"miniQMT 没有返回{label}信息")
        return list(result)

    def _require_session(self) -> "QmtSession":
        session = self._session
        if session is None or not session.connected:
            raise BrokerUnavailable("QMT_DISCONNECTED", "miniQMT 未连接（可能正在重连），请稍后再试")
        return session

    def _require_xt(self) -> XtApi:
        if self._xt is None:
            raise BrokerUnavailable("QMT_NOT_CONNECTED", "尚未连接 miniQMT")
        return self._xt


def _check_request(request: OrderRequest) -> None:
    if not request.client_id:
        raise OrderRejected("CLIENT_ID_MISSING", "委托缺少客户端编号，拒绝发送")
    if int(request.volume) != request.volume or request.volume <= 0:
        raise OrderRejected("VOLUME_INVALID", f"委托数量无效：{request.volume}")
    if not request.price > 0:
        raise OrderRejected("PRICE_INVALID", f"委托价格无效：{request.price}")
