"""The live broker: the real account through miniQMT (`xtquant.xttrader`) behind the same `models.Broker`
interface as the simulated one. QMT callbacks only enqueue; one worker thread turns them into `Order`/`Fill`
events for the listener and reconnects (new session, reconcile, never re-sending) when the link drops."""
from __future__ import annotations

import itertools
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn, Optional

import config
from qmt.broker_guard import OutcomeUnknown
from market.clock import MARKET_TZ, Clock, RealClock
from core.models import (Asset, BrokerListener, BrokerPosition, BrokerUnavailable, Fill, Order, OrderRejected,
                    OrderRequest, OrderStatus, Side)
from qmt.account import AccountConfig, load_account_config, resolve_qmt_path
from qmt.link import (LINK_CONNECTED, LINK_DISCONNECTED, LINK_RECONNECTING, LINK_UNHEALTHY, LinkHealth, overdue, probe_due,
                      push_lapse)
from qmt.order_journal import CANCEL_NONE, CANCEL_SENT, CANCEL_WAITING_FOR_ID, MappedOrder, QmtOrderJournal, fill_key
from qmt.session import (QmtEvent, QmtSession, SendTimeout, XtApi, load_xt_api, open_session, random_session_ids,
                         send_with_deadline)
from persistence.storage import Database

log = logging.getLogger("easy_qmt_trader")

PROJECT_DIR = Path(__file__).resolve().parent
UNKNOWN_IN_FLIGHT = "连接中断，委托是否送达 miniQMT 未知（重连后暂未查到），结果未知：按备注继续核对，不会重发"
SELL_NOT_DELIVERED = ("连接失效期间发出的卖单，重连后 miniQMT 当日全部委托中按备注查无此单：判定未送达（该单不会重发，"
                      "卖出条件仍成立时将重新委托；券商若迟到回报仍按其回报更新）")
# Link failures that prove miniQMT was not answering (not merely slow to name one order): a sell sent into one
# and absent from the full order query after the reconnect was not received (issue 25).
DEAD_LINK_CODES = frozenset({"QMT_DISCONNECTED", "LIVENESS_PROBE_FAILED", "QMT_SEND_TIMEOUT", "CANCEL_ACK_TIMEOUT"})


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
    owns_db = db is None
    db = db or Database(Path(data_dir) / "trading.db")
    trader = EasyQmtTrader(db, settings, clock or RealClock(), account, qmt_path,
                           timings=timings or BrokerTimings.from_settings(settings), xt=xt)
    trader.owns_db = owns_db
    try:
        trader.connect()
    except BaseException:
        trader.close()
        raise
    return trader


class EasyQmtTrader:
    """core.models.Broker over miniQMT. Threads: xttrader's push thread (our callback only enqueues), the
    `qmt-events` worker (delivers events, reconnects), and callers of the Broker methods."""

    mode = "live"

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
        self._undelivered: list[_Delivery] = []
        self._state = _EventState()
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

    # ---- models.Broker ------------------------------------------------------------------------------------
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
                xt.price_type(self.account.price_type, request.stock_code), float(request.price),
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

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._events.put(QmtEvent("stop", 0, None))
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(self._timings.close_timeout)
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.shutdown()
        if self.owns_db:
            self._db.close()
        self.health.set_state(LINK_DISCONNECTED)
        log.info("已断开 miniQMT")

    # ---- status for the web page ----------------------------------------------------------------------------
    def connection_status(self) -> dict:
        session = self._session
        return {"connected": self.is_connected(), "account": self.account.masked_id, "qmt_path": self.qmt_path,
                "session_id": session.session_id if session else None, "reconnects": self.reconnects,
                "last_error": self.last_error, **self.health.snapshot()}

    @property
    def link_state(self) -> str:
        """connected / unhealthy / reconnecting / closed (qmt_link): what the web layer shows."""
        return self.health.state

    def anomalies(self) -> list[dict]:
        """Recent anomalies (time, code, Chinese message), oldest first."""
        return self.health.anomalies()

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

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once(timeout=min(0.5, float(self._settings.get("LIVENESS_PROBE_INTERVAL"))))
                self.supervise()
            except Exception:  # the event thread must survive one bad event; the operator sees it in the log
                log.exception("处理 miniQMT 回报时出错")

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

    def _verify_refused_cancels(self) -> None:
        """issue 25: a refused cancel put the order back to working; the counter's own list says what it really
        is (cancelled or filled meanwhile, e.g. expired at the close), matched by remark. The answer is handled
        like a push, so the executor gets the real state."""
        with self._lock:
            wanted, self._verify_after_refusal = self._verify_after_refusal, set()
        try:
            rows = self._query("query_stock_orders_async", "委托", timeout=float(self._settings.get("LIVENESS_PROBE_DEADLINE")))
        except BrokerUnavailable as exc:
            log.warning("撤单被拒后核对委托状态暂不可行：%s，稍后再试", exc.message)
            with self._lock:
                self._verify_after_refusal |= wanted
            return
        session = self._session
        for xt_order in rows or []:
            if xt_order.order_remark in wanted and session is not None:
                self._events.put(QmtEvent("order", session.session_id, xt_order))

    def _learn_ids_from_query(self, rows: list) -> None:
        """Under the lock: an order of ours a query shows (by remark) whose id we never heard is handled as a
        push (issue 25: its id and state reach the executor, its cancels can go out)."""
        session = self._session
        for xt_order in rows:
            row = self._journal.get(xt_order.order_remark) if xt_order.order_remark else None
            if row is not None and not row.order_id and session is not None:
                self._events.put(QmtEvent("order", session.session_id, xt_order))

    def _note_unpushed(self, fills: list[Fill]) -> set[str]:
        """Under the lock: fill ids seen by this query AND the previous one without any push delivering them
        (issue 25: pushes stopped while queries work). Fills the first query of the process found were made
        before it listened and are never pushed: they are the baseline."""
        ids = {f.fill_id for f in fills}
        if self._trades_baseline is None:
            self._trades_baseline = ids
            return set()
        lapsed, self._unpushed = push_lapse(ids, self._state.delivered_fills, self._trades_baseline, self._unpushed)
        return lapsed

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

    def _in_session(self) -> bool:
        try:
            return bool(self._clock.is_trading())
        except Exception:  # no calendar: probe anyway, it is cheap
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

    def _handle(self, event: "QmtEvent") -> list["_Delivery"]:
        handler = {
            "order": self._on_order, "trade": self._on_trade, "order_response": self._on_order_response,
            "order_error": self._on_order_error, "cancel_response": self._on_cancel_response,
            "cancel_error": self._on_cancel_error, "disconnected": self._on_disconnected,
            "account_status": self._on_account_status, "flush": self._on_flush,
        }[event.kind]
        return handler(event)

    def _deliver(self, deliveries: list["_Delivery"]) -> None:
        listener = self._listener
        if listener is None:
            self._undelivered.extend(deliveries)
            return
        pending, self._undelivered = self._undelivered + deliveries, []
        for delivery in pending:
            try:
                if delivery.fill is not None:
                    listener.on_fill(delivery.fill)
                else:
                    listener.on_order_update(delivery.order)
            except Exception:  # a listener bug must not stop later events
                log.exception("委托/成交回报处理出错：%s", delivery)

    # ---- event handlers (worker thread, under self._lock) -----------------------------------------------------
    def _on_flush(self, event: "QmtEvent") -> list["_Delivery"]:
        return []

    def _on_order(self, event: "QmtEvent") -> list["_Delivery"]:
        xt_order = event.payload
        order_id = str(xt_order.order_id)
        client_id = self._resolve_or_park(event, xt_order.order_remark, order_id)
        if client_id is None:
            return []
        order = self._order_from_xt(xt_order, client_id)
        if order is None:
            return []
        row = self._journal.get(client_id) if client_id else None
        if row is not None and row.status is OrderStatus.REJECTED and order.status is not OrderStatus.REJECTED:
            self.health.alarm("LATE_BROKER_REPORT", f"委托 {client_id} 曾判定为未送达/被拒，券商随后报告其状态为"
                                                    f"「{order.status.value}」（编号 {order_id}），已按券商回报更新",
                              logging.WARNING)
        if order.status is OrderStatus.CANCEL_PENDING or order.status.is_terminal:
            self._cancel_sent_at.pop(client_id, None)
        if row is not None and row.order_id and order_id != row.current_id and xt_order.order_remark == client_id:
            self._journal.set_broker_order_id(client_id, order_id)
            self.health.alarm("QMT_ORDER_RENUMBERED", f"委托 {client_id} 的券商编号由 {row.current_id} 变为 {order_id}"
                                                      "（miniQMT 重启后重新编号），撤单改用新编号，成交不会重复记账",
                              logging.WARNING)
            return self._order_changed(order)
        deliveries = self._learn_order_id(client_id, order_id)
        return deliveries + self._order_changed(order)

    def _on_trade(self, event: "QmtEvent") -> list["_Delivery"]:
        xt_trade = event.payload
        client_id = self._resolve_or_park(event, xt_trade.order_remark, str(xt_trade.order_id))
        if client_id is None:
            return []
        fill = self._fill_from_xt(xt_trade, client_id)
        if fill is None or fill.fill_id in self._state.delivered_fills:
            return []
        self._state.delivered_fills.add(fill.fill_id)
        self._unpushed.discard(fill.fill_id)
        log.info("成交回报：%s %s %s %d 股 @ %.3f（委托 %s）", fill.client_id or "外部委托", fill.side.label,
                 fill.stock_code, fill.volume, fill.price, fill.order_id)
        return self._learn_order_id(client_id, fill.order_id) + [_Delivery(fill=fill)]

    def _on_order_response(self, event: "QmtEvent") -> list["_Delivery"]:
        response = event.payload
        key = (event.session, response.seq)
        client_id = self._state.awaiting_response.pop(key, None)
        row = self._journal.get(client_id) if client_id else self._journal.by_seq(*key)
        deliveries: list[_Delivery] = []
        if row is None and self._sending:
            self._state.early_responses[key] = event  # its send has not returned yet: handled when it does
            return []
        if row is None:
            log.warning("收到无法对应的下单回报（会话 %s，序号 %s）", *key)
        elif response.order_id and int(response.order_id) > 0:
            deliveries += self._learn_order_id(row.client_id, str(response.order_id))
        else:
            reason = f"miniQMT 下单失败：{response.error_msg or '未返回原因'}"
            deliveries += self._order_changed(self._order_from_row(row, OrderStatus.REJECTED, reason))
        return deliveries + self._release_parked_if_settled()

    def _on_order_error(self, event: "QmtEvent") -> list["_Delivery"]:
        error = event.payload
        order_id = str(error.order_id) if error.order_id and int(error.order_id) > 0 else ""
        row = (self._journal.get(error.order_remark) if error.order_remark else None) \
            or (self._journal.by_order_id(order_id) if order_id else None) \
            or self._journal.by_seq(event.session, getattr(error, "seq", -1))
        reason = f"券商拒绝委托：{error.error_msg}（错误码 {error.error_id}）"
        if row is None:
            log.warning("收到无法对应的下单失败回报（委托 %s）：%s", order_id or "-", reason)
            return []
        self._state.awaiting_response = {k: v for k, v in self._state.awaiting_response.items() if v != row.client_id}
        deliveries = self._learn_order_id(row.client_id, order_id) if order_id else []
        log.warning("委托 %s 被拒绝：%s", row.client_id, reason)
        return deliveries + self._order_changed(self._order_from_row(row, OrderStatus.REJECTED, reason, order_id))

    def _on_cancel_response(self, event: "QmtEvent") -> list["_Delivery"]:
        response = event.payload
        if int(response.cancel_result) == 0:
            return []
        return self._cancel_refused(str(response.order_id), response.error_msg or "未返回原因",
                                    response.cancel_result)

    def _on_cancel_error(self, event: "QmtEvent") -> list["_Delivery"]:
        error = event.payload
        return self._cancel_refused(str(error.order_id), error.error_msg, error.error_id)

    def _cancel_refused(self, order_id: str, message: str, code) -> list["_Delivery"]:
        """Either way a cancel is refused (cancel_result != 0, or on_cancel_error), the order goes back to its
        working state with the reason, so the executor's supervision loop can time it out and try again."""
        row = self._journal.by_order_id(order_id)
        log.warning("撤单失败：委托 %s：%s（错误码 %s）", order_id, message, code)
        if row is None:
            return []
        self._cancel_sent_at.pop(row.client_id, None)
        self._journal.set_cancel_state(row.client_id, CANCEL_NONE)  # the executor may try again
        self._verify_after_refusal.add(row.client_id)  # issue 25: then the counter's own word on its state
        return self._order_changed(self._order_from_row(row, row.status, f"撤单失败：{message}"), news=True)

    def _on_account_status(self, event: "QmtEvent") -> list["_Delivery"]:
        status = event.payload
        if status.status != self._xt.xtconstant.ACCOUNT_STATUS_OK:
            log.warning("资金账号 %s 状态异常：%s", self.account.masked_id, status.status)
        return []

    def _on_disconnected(self, event: "QmtEvent") -> list["_Delivery"]:
        session = self._session
        if session is None or session.session_id != event.session:
            return []  # a late notice from a session already replaced
        session.connected = False
        self._reconnect_needed = True
        self._link_failure = "QMT_DISCONNECTED"
        self.last_error = "与 miniQMT 的连接已断开"
        self.health.set_state(LINK_UNHEALTHY)
        self.health.alarm("QMT_DISCONNECTED", f"与 miniQMT 的连接已断开（会话 {event.session}），开始重连；断线期间不会发送新委托")
        return []

    # ---- reconnect and reconcile (worker thread) -----------------------------------------------------------
    def _reconnect(self) -> None:
        """Back-off until a new session works, then reconcile. Never re-sends an order."""
        with self._lock:
            old, self._session = self._session, None
            self._last_answer_before_reconnect = self._last_answer
        self.health.set_state(LINK_RECONNECTING)
        if old is not None:
            old.shutdown()
        delay = min(self._timings.reconnect_first_delay, self._reconnect_cap())
        for attempt in itertools.count(1):
            if self._stop.is_set():
                return
            try:
                session = self._open_session()
                break
            except BrokerUnavailable as exc:
                self.last_error = exc.message
                log.warning("第 %d 次重连 miniQMT 失败：%s；%.1f 秒后重试", attempt, exc.message, delay)
            if self._stop.wait(delay):
                return
            delay = min(delay * self._timings.reconnect_factor, self._reconnect_cap())
        if self._stop.is_set():  # closed while the attempt was under way
            session.shutdown()
            return
        with self._lock:
            self._session = session
            self._reconnect_needed = False
            self._state.last_orders.clear()  # every order's current state is delivered again once
        self.reconnects += 1
        try:
            self._reconcile(session)
        except BrokerUnavailable as exc:
            self.last_error = exc.message
            log.error("重连后核对账户失败：%s；将再次重连", exc.message)
            session.connected = False
            self._reconnect_needed = True

    def _reconnect_cap(self) -> float:
        """The longest wait between reconnect attempts: QMT_RECONNECT_SESSION_MAX_DELAY during trading sessions
        (a stop-loss may be waiting: reconnect within seconds of miniQMT answering again), else the maximum."""
        cap = self._timings.reconnect_max_delay
        if self._in_session():
            cap = min(cap, float(self._settings.get("QMT_RECONNECT_SESSION_MAX_DELAY")))
        return cap

    def _reconcile(self, session: "QmtSession") -> None:
        """After a new session: re-query asset, positions, orders and trades, and emit what was missed while
        the link was down (fills first, then order states). In-flight orders are matched by remark; an order
        QMT never received is reported rejected, not sent again."""
        asset = self.query_asset()
        positions = self.query_positions()
        xt_orders = self._query_list("query_stock_orders_async", "委托")
        xt_trades = self._query_list("query_stock_trades_async", "成交")
        with self._lock:
            deliveries = self._settle_in_flight(xt_orders, self._link_failure in DEAD_LINK_CODES)
            self._link_failure = ""
            fills_before = len(self._state.delivered_fills)
            for xt_trade in xt_trades:
                deliveries += self._on_trade(QmtEvent("trade", session.session_id, xt_trade))
            missed_fills = len(self._state.delivered_fills) - fills_before
            for xt_order in xt_orders:
                deliveries += self._on_order(QmtEvent("order", session.session_id, xt_order))
            deliveries += self._release_parked_if_settled()
        self._deliver(deliveries)
        self._send_due_cancels()
        self.last_error = ""
        self._last_probe = time.monotonic()
        self.health.set_state(LINK_CONNECTED)
        self.health.alarm("QMT_RECONNECTED", f"已重新连接 miniQMT（会话 {session.session_id}）：可用资金 {asset.cash:.2f}，"
                                             f"持仓 {len(positions)} 只，今日委托 {len(xt_orders)} 笔，补发成交回报 {missed_fills} 笔",
                          logging.INFO, prefix="")

    def _settle_in_flight(self, xt_orders: list, link_was_dead: bool = False) -> list["_Delivery"]:
        """Orders sent before the drop whose answer never came: found by remark (or, when the counter strips
        remarks, by a unique unmapped order with the same code/side/volume/price); else lost in transit.
        `xt_orders` is the full list of today's orders queried on the new session. When the drop proved miniQMT
        was not answering (`link_was_dead`) and it answered nothing after the send, a SELL absent from it was not
        received (sent into the silence, its request died with the old session): it is settled as
        undelivered at once, so a stop-loss can go out again within seconds instead of after
        ORDER_UNKNOWN_SETTLE_SECONDS. The evidence: its native send returned, miniQMT answered nothing after it,
        the old session was closed before the new one's query. Were it booked late after all, a sell-all twin is
        refused by the counter (its shares are held by the first; no short selling) and the late report still
        applies (LATE_BROKER_REPORT). A buy stays unknown (a late twin would spend the cash twice)."""
        deliveries: list[_Delivery] = []
        silent_since = self._last_answer_before_reconnect  # miniQMT answered nothing after this moment
        in_flight, self._state.awaiting_response = self._state.awaiting_response, {}
        unconfirmed, self._state.unconfirmed = self._state.unconfirmed, set()
        overran, self._state.send_overran = self._state.send_overran | self._sending, set()
        for client_id in list(in_flight.values()) + sorted(unconfirmed - set(in_flight.values())):
            row = self._journal.get(client_id)
            sent_at = self._sent_at.pop(client_id, None)
            if row is None or row.order_id:
                continue
            if any(o.order_remark == client_id for o in xt_orders):
                continue  # _on_order learns its id
            twins = [o for o in xt_orders if not o.order_remark and self._journal.by_order_id(str(o.order_id)) is None
                     and o.stock_code == row.stock_code and self._xt.side(o.order_type, o.offset_flag) is row.side
                     and int(o.order_volume) == row.volume and abs(float(o.price) - row.price) < 1e-6]
            if len(twins) == 1:
                deliveries += self._learn_order_id(client_id, str(twins[0].order_id))
            elif twins:
                deliveries += self._order_changed(self._order_from_row(
                    row, OrderStatus.UNKNOWN, "连接中断，无法确认委托是否送达，请在 miniQMT 中核对"))
            elif (link_was_dead and row.side is Side.SELL and client_id not in overran and sent_at is not None
                  and sent_at > silent_since):  # sent into the silence: miniQMT answered nothing after it
                log.warning("卖单 %s 在连接失效期间发出，重连后 miniQMT 当日委托中查无此单，判定未送达（不会重发该单）", client_id)
                deliveries += self._order_changed(self._order_from_row(row, OrderStatus.REJECTED, SELL_NOT_DELIVERED))
            else:  # issue 25: maybe only booked late; the executor settles it by remark (never re-sent)
                log.warning("委托 %s 重连后暂未在 miniQMT 查到，结果未知，继续按备注核对，不会重发", client_id)
                deliveries += self._order_changed(self._order_from_row(row, OrderStatus.UNKNOWN, UNKNOWN_IN_FLIGHT))
        return deliveries

    # ---- mapping helpers (under self._lock) ------------------------------------------------------------------
    def _client_id_for(self, remark: str, order_id: str) -> str:
        if remark:
            return remark
        row = self._journal.by_order_id(order_id)
        return row.client_id if row is not None else ""

    def _resolve_or_park(self, event: "QmtEvent", remark: str, order_id: str) -> Optional[str]:
        """Client id of a pushed order/trade. Without a remark and with orders still waiting for their
        async response, the push may be one of ours whose id we do not know yet: park it until then."""
        client_id = self._client_id_for(remark, order_id)
        if client_id or not (self._state.awaiting_response or self._sending):
            return client_id
        self._state.parked.setdefault(order_id, []).append(event)
        return None

    def _learn_order_id(self, client_id: str, order_id: str) -> list["_Delivery"]:
        """Record client id → order id; replay pushes parked for that id and send a cancel waiting for it."""
        row = self._journal.get(client_id) if client_id else None
        if row is None or row.order_id:
            if row is not None and order_id not in (row.order_id, row.current_id):
                log.warning("委托 %s 已对应券商编号 %s，忽略另一个编号 %s（备注重复？）", client_id, row.order_id, order_id)
            return []
        self._journal.set_order_id(client_id, order_id)
        self._sent_at.pop(client_id, None)
        if row.cancel_state == CANCEL_WAITING_FOR_ID and self._session is not None:
            self._journal.set_cancel_state(client_id, CANCEL_SENT)
            self._cancel_sent_at[client_id] = time.monotonic()
            self._cancels_due.append((client_id, order_id))  # sent outside the lock (issue 25)
        deliveries: list[_Delivery] = []
        for parked in self._state.parked.pop(order_id, []):
            deliveries += self._handle(parked)
        return deliveries

    def _release_parked_if_settled(self) -> list["_Delivery"]:
        """With no order waiting for its response any more, parked pushes are not ours: deliver them as
        external (client id '')."""
        if self._state.awaiting_response or self._sending or not self._state.parked:
            return []
        parked, self._state.parked = self._state.parked, {}
        deliveries: list[_Delivery] = []
        for events in parked.values():
            for event in events:
                deliveries += self._handle(event)
        return deliveries

    def _order_changed(self, order: Order, news: bool = False) -> list["_Delivery"]:
        """Deliver an order's new state once. `news`: deliver even when only the reason changed (a refused
        cancel must reach the executor, whatever status message the working order already carried)."""
        key = order.client_id or f"qmt:{order.order_id}"
        state = (order.status, order.filled_volume, order.reason)
        previous = self._state.last_orders.get(key)
        if not news and previous is not None and previous[:2] == state[:2] and (
                previous[2] == state[2] or previous[2] or not state[2]):
            return []  # (news, e.g. every refused cancel, always goes through: issue 25)
        self._state.last_orders[key] = state
        if order.client_id and self._journal.get(order.client_id) is not None:
            self._journal.set_state(order.client_id, order.status, order.filled_volume, order.reason, self._clock.now())
        return [_Delivery(order=order)]

    # ---- conversions -----------------------------------------------------------------------------------------
    def _order_from_xt(self, xt_order, client_id: str) -> Optional[Order]:
        side = self._xt.side(xt_order.order_type, getattr(xt_order, "offset_flag", None))
        if side is None:
            return None  # not a plain stock buy/sell (e.g. a credit or ETF creation order)
        volume = int(xt_order.traded_volume)
        return Order(client_id=client_id, stock_code=xt_order.stock_code, side=side, volume=int(xt_order.order_volume),
                     price=float(xt_order.price), status=self._xt.order_status(int(xt_order.order_status)),
                     order_id=str(xt_order.order_id), filled_volume=volume,
                     filled_amount=round(float(xt_order.traded_price) * volume, 2),
                     time=self._broker_time(xt_order.order_time), reason=str(xt_order.status_msg or ""))

    def _order_from_row(self, row: MappedOrder, status: OrderStatus, reason: str, order_id: str = "") -> Order:
        return Order(client_id=row.client_id, stock_code=row.stock_code, side=row.side, volume=row.volume,
                     price=row.price, status=status, order_id=order_id or row.order_id,
                     filled_volume=row.filled_volume, time=self._clock.now(), reason=reason)

    def _fill_from_xt(self, xt_trade, client_id: str) -> Optional[Fill]:
        side = self._xt.side(xt_trade.order_type, getattr(xt_trade, "offset_flag", None))
        if side is None:
            return None
        row = self._journal.get(client_id) if client_id else None
        order_id = row.order_id if row is not None and row.order_id else str(xt_trade.order_id)  # renumbering
        traded_at = self._broker_time(xt_trade.traded_time)
        fill = Fill(fill_id=fill_key(order_id, str(xt_trade.traded_id), traded_at), order_id=order_id,
                    client_id=client_id, stock_code=xt_trade.stock_code, side=side,
                    price=float(xt_trade.traded_price), volume=int(xt_trade.traded_volume), time=traded_at)
        return self._journal.record_fill(fill, self._settings, float(getattr(xt_trade, "commission", 0.0) or 0.0))

    def _broker_time(self, value) -> datetime:
        """QMT stamps are Unix seconds (ms in some builds); 0 or garbage falls back to the clock."""
        try:
            stamp = float(value)
        except (TypeError, ValueError):
            return self._clock.now()
        if stamp > 1e12:
            stamp /= 1000.0
        if stamp <= 0:
            return self._clock.now()
        return datetime.fromtimestamp(stamp, MARKET_TZ).replace(tzinfo=None)

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


# ---- internals ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Delivery:
    order: Optional[Order] = None
    fill: Optional[Fill] = None


@dataclass
class _EventState:
    """What the worker remembers between events (this process only; the journal has the rest)."""

    awaiting_response: dict[tuple[int, int], str] = field(default_factory=dict)  # (session, seq) → client id
    parked: dict[str, list[QmtEvent]] = field(default_factory=dict)  # order id → pushes waiting for their id
    last_orders: dict[str, tuple] = field(default_factory=dict)  # key → (status, filled, reason) delivered
    delivered_fills: set[str] = field(default_factory=set)
    unconfirmed: set[str] = field(default_factory=set)  # client ids whose send raised: delivered or not unknown
    send_overran: set[str] = field(default_factory=set)  # client ids whose native send never returned (timed out)
    early_responses: dict[tuple[int, int], QmtEvent] = field(default_factory=dict)  # answers before the seq was known


