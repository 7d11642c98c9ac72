"""The big-QMT back-end: core.models.Broker over the bridge strategy running inside big QMT (issue 29).

The bridge calls passorder with our client id as remark (userOrderId and strategyName); the broker id (合同编号,
a str) arrives only with the order's first push or in an ORDER query, matched by remark. A send whose answer
does not come in time is 「结果未知」 (never re-sent; reconciled by remark). A cancel is done only when the order
says 53/54: the bridge watches the order after `cancel` (whose bool means nothing) and reports the outcome.
Liveness probe, ack deadlines, reconnect with back-off and reconciliation by remark mirror easy_qmt_trader;
the order journal, fill fees and link health are qmt/'s. Fills are booked once (fill id = first broker id,
trade id, date), whatever the bridge re-pushes after a reconnect or a QMT restart that renumbers orders."""
from __future__ import annotations

import itertools
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Optional

from bigqmt import rows as qrows
from bigqmt.channel import BridgeChannel, BridgeClosed, BridgeNotOpen, BridgeTimeout, FolderChannel
from bigqmt.timings import BridgeTimings, bridge_version
from core.models import (Asset, BrokerListener, BrokerPosition, BrokerUnavailable, Fill, Order, OrderRejected,
                         OrderRequest, OrderStatus, Side)
from market.clock import Clock, RealClock
from persistence.storage import Database
from qmt.account import AccountConfig, load_account_config
from qmt.broker_guard import OutcomeUnknown
from qmt.broker_setup import connected, trading_db
from qmt.delivery import Delivery, ListenerDelivery
from qmt.link import LINK_CONNECTED, LINK_RECONNECTING, LINK_UNHEALTHY, LinkHealth, overdue, probe_due, push_lapse
from qmt.link_worker import LinkLifecycle, open_with_backoff
from qmt.order_journal import CANCEL_NONE, CANCEL_SENT, CANCEL_WAITING_FOR_ID, MappedOrder, QmtOrderJournal, fill_key

log = logging.getLogger("bigqmt")

PROJECT_DIR = Path(__file__).resolve().parents[1]
NOT_DELIVERED = "连接中断前桥接策略没有收到该委托（重连后桥接策略确认未调用 passorder）：未送达，不会重发"
UNKNOWN_PLACED = "桥接策略已调用 passorder，但大QMT 没有显示该委托（可能被弹窗拒绝），结果未知：按备注继续核对，不会重发"
UNKNOWN_IN_FLIGHT = "与大QMT 的连接中断（或大QMT 已重启），委托是否送达未知：按备注继续核对，不会重发"
PRICE_TYPES = {"limit": 11}  # passorder prType: 11 = limit (market types differ per exchange and counter)


def connect_live_broker(settings, data_dir: Path, db: Optional[Database] = None, clock: Optional[Clock] = None, *,
                        account_config_path: Optional[Path] = None,
                        timings: Optional[BridgeTimings] = None) -> "BigQmtBroker":
    """Build and connect the big-QMT back-end; BrokerUnavailable (Chinese) when the bridge cannot be used."""
    account = load_account_config(account_config_path or PROJECT_DIR / "account_config.json")
    db, owns_db = trading_db(data_dir, db)
    broker = BigQmtBroker(db, settings, clock or RealClock(), account, settings.get("BIGQMT_HOST"),
                          int(settings.get("BIGQMT_PORT")), timings=timings, transport=settings.get("BIGQMT_TRANSPORT"),
                          folder=settings.get("BIGQMT_FOLDER"))
    broker.owns_db = owns_db
    return connected(broker)


class BigQmtBroker(ListenerDelivery, LinkLifecycle):
    """Threads: the channel's reader (only enqueues), the `bigqmt-events` worker (handles events, supervises,
    reconnects) and callers of the Broker methods. `self._lock` guards journal and state, never held while
    waiting for the bridge or calling the listener."""

    mode = "live"
    _log = log
    _closed_text = "已断开大QMT 桥接"
    _worker_error_text = "处理大QMT 回报时出错"

    def __init__(self, db: Database, settings, clock: Clock, account: AccountConfig, host: str, port: int, *,
                 timings: Optional[BridgeTimings] = None, transport: str = "tcp", folder: str = ""):
        if account.price_type not in PRICE_TYPES:
            raise BrokerUnavailable("BIGQMT_PRICE_TYPE", f"大QMT 桥接目前只支持限价委托（price_type=limit），"
                                                         f"account_config.json 中为 {account.price_type}")
        self.account = account
        self.host, self.port = host, int(port)
        self.transport, self.folder = transport, folder  # "tcp" (host:port) or "folder" (for QMT builds without socket)
        self.owns_db = False
        self.reconnects = 0
        self.last_error = ""
        self.bridge_boot = ""
        self.last_round_trip: Optional[float] = None  # seconds of the last probe (the doctor shows it)
        self.health = LinkHealth(clock.now)
        self._db, self._settings, self._clock, self._fixed_timings = db, settings, clock, timings
        self._version = bridge_version()
        self._journal = QmtOrderJournal(db)
        self._lock = threading.RLock()
        self._events: queue.Queue = queue.Queue()
        self._channel: Optional[BridgeChannel] = None
        self._connection_ids = itertools.count(1)
        self._connection_no = 0
        self._listener: Optional[BrokerListener] = None
        self._undelivered: list[Delivery] = []
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._reconnect_needed = False
        self._closed = False
        self._state = _State()
        self._last_probe: Optional[float] = None

    def _timings(self) -> BridgeTimings:
        """The fixed timings a test passed, else the settings' current values (the web page may change them)."""
        return self._fixed_timings or BridgeTimings.from_settings(self._settings)

    # ---- models.Broker ----------------------------------------------------------------------------------------
    def set_listener(self, listener: BrokerListener) -> None:
        self._listener = listener
        self._events.put(("flush", 0, None))

    def connect(self) -> None:
        if self.is_connected():
            return
        try:
            hello = self._open_channel()
        except _Refused as exc:
            raise BrokerUnavailable(exc.code, exc.message) from None
        self._state.boot_seen = str(hello.get("boot"))
        self._last_probe = time.monotonic()
        self._start_worker()
        self.health.set_state(LINK_CONNECTED)
        log.info("已连接大QMT 桥接策略：%s，账号 %s，桥接版本 %s", self.where, self.account.masked_id, self._version)

    def is_connected(self) -> bool:
        channel = self._channel
        return channel is not None and channel.is_open and not self._reconnect_needed

    def place_order(self, request: OrderRequest) -> None:
        """Journal the client id, then ask the bridge to passorder with it as remark. OrderRejected: invalid,
        duplicate or refused by the bridge; BrokerUnavailable: not connected; OutcomeUnknown: no answer in time."""
        _check_request(request)
        with self._lock:
            channel = self._require_channel()
            if self._journal.get(request.client_id) is not None:
                raise OrderRejected("DUPLICATE_CLIENT_ID", f"委托 {request.client_id} 已经发送过，不会重复发送（请先核对该委托的状态）")
            try:
                self._journal.add(request, self._connection_no, self._clock.now())
            except sqlite3.IntegrityError as exc:
                raise OrderRejected("DUPLICATE_CLIENT_ID", f"委托 {request.client_id} 已经发送过，不会重复发送") from exc
            self._state.sent_at[request.client_id] = time.monotonic()
        try:
            answer = channel.request("order", self._timings().send_timeout, remark=request.client_id,
                                     code=request.stock_code, side=request.side.value, volume=int(request.volume),
                                     price=float(request.price), price_type=PRICE_TYPES[self.account.price_type])
        except BridgeNotOpen as exc:  # nothing was written: definitely not sent
            with self._lock:
                self._state.sent_at.pop(request.client_id, None)
                self._journal.set_state(request.client_id, OrderStatus.REJECTED, 0, "大QMT 桥接未连接，委托未发出",
                                        self._clock.now())
            raise BrokerUnavailable("QMT_DISCONNECTED", "大QMT 桥接未连接（可能正在重连），委托未发出，请稍后再试") from exc
        except (BridgeTimeout, BridgeClosed) as exc:
            self._send_outcome_unknown(request.client_id, str(exc), link_dead=True)
        if not answer.get("ok"):
            if answer.get("unknown"):
                self._send_outcome_unknown(request.client_id, f"passorder 出错：{answer.get('error')}", link_dead=False)
            with self._lock:
                self._state.sent_at.pop(request.client_id, None)
                self._journal.set_state(request.client_id, OrderStatus.REJECTED, 0, "桥接策略拒绝接收委托", self._clock.now())
            raise OrderRejected("BIGQMT_REFUSED", f"大QMT 桥接策略拒绝接收委托：{answer.get('error')}")
        self._last_probe = time.monotonic()  # the answer came from QMT's strategy thread: it is alive
        log.info("已发送委托 %s：%s %s %d 股 @ %.3f（大QMT 桥接）", request.client_id, request.side.label,
                 request.stock_code, request.volume, request.price)

    def cancel_order(self, order_id: str) -> None:
        """Cancel by broker id or client id; an order without a broker id yet is cancelled when it gets one. The
        outcome arrives as an order update: CANCELLED only when QMT shows 53/54, else the reason it failed."""
        with self._lock:
            self._require_channel()
            row = self._journal.get(order_id) or self._journal.by_order_id(order_id)
            if row is not None and not row.order_id:
                self._journal.set_cancel_state(row.client_id, CANCEL_WAITING_FOR_ID)
                log.info("委托 %s 尚未获得券商编号，撤单将在编号返回后发出", row.client_id)
                return
            sysid = row.current_id if row is not None else order_id
            if not sysid:
                raise OrderRejected("ORDER_NOT_FOUND", f"找不到委托 {order_id}，无法撤单")
            if row is not None:
                self._journal.set_cancel_state(row.client_id, CANCEL_SENT)
                self._state.cancel_sent_at[row.client_id] = time.monotonic()
        self._send_cancel(row.client_id if row is not None else "", sysid)

    def query_asset(self) -> Asset:
        found = self._query("account", "资金")
        if not found:
            raise BrokerUnavailable("BIGQMT_QUERY_FAILED", "大QMT 没有返回资金信息")
        return qrows.asset_of(found[0])

    def query_positions(self) -> list[BrokerPosition]:
        """Rows sold down to zero are left out; an empty answer is believed only when the asset agrees."""
        positions = [qrows.position_of(r) for r in self._query("positions", "持仓")]
        positions = [p for p in positions if p.volume > 0]
        if not positions:
            asset = self.query_asset()
            if asset.market_value > 0:
                message = f"大QMT 返回空持仓，但资金显示持仓市值 {asset.market_value:.2f} 元：本次持仓查询不可信，已忽略"
                self.health.alarm("QMT_POSITIONS_EMPTY", message, logging.WARNING)
                raise BrokerUnavailable("QMT_POSITIONS_EMPTY", message)
        return positions

    def query_orders(self) -> list[Order]:
        found = self._query("orders", "委托")
        with self._lock:
            orders = [self._order_from_row(r, self._client_id_for(r)) for r in found]
            for r in found:  # an order of ours the pushes have not named yet: handled as a push
                row = self._journal.get(qrows.remark_of(r)) if qrows.remark_of(r) else None
                if row is not None and not row.order_id:
                    self._events.put(("event", self._connection_no, {"ev": "order", "row": r}))
        return [o for o in orders if o is not None]

    def query_trades(self) -> list[Fill]:
        """Today's fills; a fill two queries in a row show that no push delivered raises one PUSH_LAPSE alarm (QMT
        pushes nothing when the strategy runs as 模拟信号, without a bound account, or with 启动本地 python)."""
        found = self._query("trades", "成交")
        with self._lock:
            fills = [f for f in (self._fill_from_row(r, self._client_id_for(r)) for r in found) if f is not None]
            lapsed = self._note_unpushed({f.fill_id for f in fills})
        if lapsed:
            self.health.alarm("PUSH_LAPSE", f"成交 {'、'.join(sorted(lapsed))} 查询可见但大QMT 一直没有推送（已按查询补记，不会重复记账）："
                                            "请确认桥接策略在「模型交易」中以「实盘交易」方式运行、绑定了资金账号、未勾选「启动本地 python」",
                              logging.WARNING)
        return fills

    def _note_unpushed(self, ids: set[str]) -> set[str]:
        """Under the lock: fill ids newly lapsed (seen by this query and the previous one, never pushed); the first
        query's fills were made before this process listened and are never pushed (the baseline)."""
        state = self._state
        if state.trades_baseline is None:
            state.trades_baseline = ids
            return set()
        lapsed, state.unpushed = push_lapse(ids, state.delivered_fills, state.trades_baseline, state.unpushed)
        lapsed -= state.lapse_alarmed
        state.lapse_alarmed |= lapsed
        return lapsed

    # ---- closing (LinkLifecycle.close) --------------------------------------------------------------------------
    def _stop_item(self) -> tuple:
        return ("stop", 0, None)

    def _close_timeout(self) -> float:
        return self._timings().close_timeout

    def _drop_link(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    # ---- status ---------------------------------------------------------------------------------------------
    def connection_status(self) -> dict:
        return {"connected": self.is_connected(), "account": self.account.masked_id, "backend": "bigqmt",
                "bridge": self.where, "bridge_version": self._version, "bridge_boot": self.bridge_boot,
                "reconnects": self.reconnects, "last_error": self.last_error,
                "round_trip_ms": None if self.last_round_trip is None else round(self.last_round_trip * 1000, 1),
                **self.health.snapshot()}

    @property
    def where(self) -> str:
        return f"文件夹 {self.folder}" if self.transport == "folder" else f"{self.host}:{self.port}"

    def ping(self) -> float:
        """One round trip through QMT's strategy thread (an ACCOUNT query); seconds. Raises BrokerUnavailable."""
        started = time.monotonic()
        self._query("account", "资金", self._timings().probe_deadline)
        self.last_round_trip = time.monotonic() - started
        return self.last_round_trip

    def drain(self, timeout: float) -> bool:
        """Wait until every push received so far has been handled and delivered (True), at most `timeout` s."""
        reached = threading.Event()
        self._events.put(("barrier", 0, reached))
        return reached.wait(timeout)

    # ---- the worker ---------------------------------------------------------------------------------------------
    def run_once(self, timeout: float) -> bool:
        if self._reconnect_needed:
            self._reconnect()
            return True
        try:
            kind, connection, payload = self._events.get(timeout=timeout)
        except queue.Empty:
            return False
        if kind == "stop":
            return True
        if kind == "barrier":
            payload.set()
            return True
        if kind == "closed":
            if connection == self._connection_no:
                self._link_failed("QMT_DISCONNECTED", "与大QMT 桥接策略的连接已断开（大QMT 退出、策略停止或重新初始化），开始重连；"
                                                      "断线期间不会发送新委托")
            return True
        deliveries: list[Delivery] = []
        if kind == "event":
            with self._lock:
                deliveries = self._handle(payload)
        self._deliver(deliveries)
        self._send_due_cancels()
        return True

    def supervise(self) -> None:
        """Between events: orders without a broker id after ORDER_ACK_TIMEOUT and cancels without an outcome are
        checked against QMT's order list; a probe every LIVENESS_PROBE_INTERVAL in session (any answer of the
        bridge counts as one) that misses its deadline drops the link, which is then reconnected and reconciled."""
        if self._reconnect_needed or not self.is_connected():
            return
        now = time.monotonic()
        with self._lock:
            late = overdue(self._state.sent_at, now, self._timings().ack_timeout, self._still_unacknowledged)
            late_cancels = overdue(self._state.cancel_sent_at, now,
                                   self._timings().ack_timeout + self._timings().cancel_verify, self._cancel_still_pending)
            parked_since = min(self._state.parked_at.values(), default=None)
        if late or late_cancels or (parked_since is not None and now - parked_since > 1.0):
            self._check_against_order_list(late, late_cancels)
            return
        if not probe_due(self._last_probe, now, self._timings().probe_interval, True, False) or not self._in_session():
            return  # (no forced probe after a send: the send's answer itself came from the strategy thread)
        self._last_probe = now
        try:
            self.ping()
        except BrokerUnavailable as exc:
            self._link_failed("LIVENESS_PROBE_FAILED", f"大QMT 探测查询无响应（{exc.message}），判定连接失效，开始重连")

    def _start_worker(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return
        self._worker = threading.Thread(target=self._run, name="bigqmt-events", daemon=True)
        self._worker.start()

    def _probe_interval(self) -> float:
        return self._timings().probe_interval

    def _check_against_order_list(self, late: list[str], late_cancels: list[str]) -> None:
        """QMT's own order list settles what the pushes left open: ids learned by remark, cancels decided by
        status, parked fills resolved; an order QMT still does not show is 「结果未知」 (never re-sent)."""
        try:
            found = self._query("orders", "委托", self._timings().probe_deadline)
        except BrokerUnavailable as exc:
            self._link_failed("ORDER_ACK_TIMEOUT", f"核对委托时大QMT 无响应（{exc.message}），判定连接失效，重连后按备注核对")
            return
        with self._lock:
            deliveries: list[Delivery] = []
            by_remark = {qrows.remark_of(r): r for r in found if qrows.remark_of(r)}
            for r in found:
                deliveries += self._on_order({"row": r})
            for client_id in late:
                if client_id in by_remark:
                    continue
                self._state.sent_at.pop(client_id, None)
                row = self._journal.get(client_id)
                if row is not None and not row.order_id:
                    log.warning("委托 %s 发出超过 %g 秒大QMT 仍未显示，结果未知，按备注继续核对", client_id, self._timings().ack_timeout)
                    deliveries += self._order_changed(self._order_from_journal(row, OrderStatus.UNKNOWN, UNKNOWN_PLACED))
            for client_id in late_cancels:
                self._state.cancel_sent_at.pop(client_id, None)
                row = self._journal.get(client_id)
                if row is not None and row.cancel_state == CANCEL_SENT and not row.status.is_terminal:
                    deliveries += self._cancel_refused(row, "超时未得到撤单结果，委托仍在大QMT 中")
            deliveries += self._release_parked()
        self._deliver(deliveries)
        self._send_due_cancels()

    # ---- event handlers (worker thread, under self._lock) ----------------------------------------------------------
    def _handle(self, message: dict) -> list["Delivery"]:
        handler = {"order": self._on_order, "deal": self._on_deal, "order_error": self._on_order_error,
                   "cancel_result": self._on_cancel_result}.get(message.get("ev"))
        if handler is None:
            log.warning("未知的大QMT 桥接推送：%s", message.get("ev"))
            return []
        return handler(message)

    def _on_order(self, message: dict) -> list["Delivery"]:
        data = message["row"]
        sysid = str(data.get("m_strOrderSysID") or "")
        client_id = self._client_id_for(data)
        order = self._order_from_row(data, client_id)
        if order is None or not sysid:
            return []
        row = self._journal.get(client_id) if client_id else None
        deliveries: list[Delivery] = []
        if row is not None:
            if order.status is OrderStatus.CANCEL_PENDING or order.status.is_terminal:
                self._state.cancel_sent_at.pop(client_id, None)
            if row.status is OrderStatus.REJECTED and order.status is not OrderStatus.REJECTED:
                self.health.alarm("LATE_BROKER_REPORT", f"委托 {client_id} 曾判定为未送达/被拒，大QMT 随后报告其状态为"
                                                        f"「{order.status.value}」（编号 {sysid}），已按大QMT 回报更新",
                                  logging.WARNING)
            if row.order_id and sysid != row.current_id:
                self._journal.set_broker_order_id(client_id, sysid)
                self.health.alarm("QMT_ORDER_RENUMBERED", f"委托 {client_id} 的券商编号由 {row.current_id} 变为 {sysid}"
                                                          "（大QMT 重启后重新编号），撤单改用新编号，成交不会重复记账",
                                  logging.WARNING)
                deliveries += self._replay_parked(sysid)
            elif not row.order_id:
                deliveries += self._learn_order_id(row, sysid)
            order.order_id = row.order_id or sysid  # the first id: what the executor and the fills know
        return deliveries + self._order_changed(order)

    def _on_deal(self, message: dict) -> list["Delivery"]:
        data = message["row"]
        sysid = str(data.get("m_strOrderSysID") or "")
        client_id = self._client_id_for(data)
        if not client_id and sysid:  # no remark (not always present) and an id we do not know yet: wait for it
            self._state.parked.setdefault(sysid, []).append(message)
            self._state.parked_at.setdefault(sysid, time.monotonic())
            return []
        return self._book_deal(data, client_id)

    def _book_deal(self, data: dict, client_id: str) -> list["Delivery"]:
        deliveries: list[Delivery] = []
        row = self._journal.get(client_id) if client_id else None
        if row is not None and not row.order_id and data.get("m_strOrderSysID"):
            deliveries += self._learn_order_id(row, str(data["m_strOrderSysID"]))
        fill = self._fill_from_row(data, client_id)
        if fill is None or fill.fill_id in self._state.delivered_fills:
            return deliveries
        self._state.delivered_fills.add(fill.fill_id)
        log.info("成交回报：%s %s %s %d 股 @ %.3f（委托 %s）", fill.client_id or "外部委托", fill.side.label,
                 fill.stock_code, fill.volume, fill.price, fill.order_id)
        return deliveries + [Delivery(fill=fill)]

    def _on_order_error(self, message: dict) -> list["Delivery"]:
        """passorder failed before the counter (bad code, price ...): no order row will ever exist. Without a
        usable remark the one unacknowledged order with the same code, side, volume and price is meant."""
        args, text = message.get("args") or {}, str(message.get("msg") or "未返回原因")
        row = self._journal.get(qrows.remark_of_error(args)) if qrows.remark_of_error(args) else None
        if row is None:
            row = self._unique_unacknowledged(args)
        if row is None or row.order_id:
            log.warning("收到无法对应的大QMT 下单失败回报：%s", text)
            return []
        self._state.sent_at.pop(row.client_id, None)
        self._state.unconfirmed.discard(row.client_id)
        log.warning("委托 %s 被大QMT 拒绝：%s", row.client_id, text)
        return self._order_changed(self._order_from_journal(row, OrderStatus.REJECTED, f"大QMT 拒绝委托：{text}"))

    def _on_cancel_result(self, message: dict) -> list["Delivery"]:
        sysid = str(message.get("sysid") or "")
        data = message.get("row")
        row = self._journal.by_order_id(sysid)
        deliveries = self._on_order({"row": data}) if data else []
        if message.get("cancelled"):
            return deliveries
        if row is None:
            log.warning("撤单未成功：委托 %s：%s", sysid, message.get("error"))
            return deliveries
        row = self._journal.get(row.client_id)
        if row.status.is_terminal:
            self._state.cancel_sent_at.pop(row.client_id, None)
            self._journal.set_cancel_state(row.client_id, CANCEL_NONE)
            return deliveries  # filled or rejected meanwhile: its state was delivered above
        return deliveries + self._cancel_refused(row, "大QMT 中委托状态未变为已撤" if data else "大QMT 找不到该委托")

    def _cancel_refused(self, row: MappedOrder, why: str) -> list["Delivery"]:
        """The order stays working, with the reason: the executor may time it out and try again."""
        log.warning("撤单未成功：委托 %s（%s）：%s", row.client_id, row.current_id, why)
        self._state.cancel_sent_at.pop(row.client_id, None)
        self._journal.set_cancel_state(row.client_id, CANCEL_NONE)
        return self._order_changed(self._order_from_journal(row, row.status, f"撤单失败：{why}"), news=True)

    # ---- mapping helpers (under self._lock) ------------------------------------------------------------------------
    def _client_id_for(self, data: dict) -> str:
        remark = qrows.remark_of(data)
        if remark:
            return remark
        row = self._journal.by_order_id(str(data.get("m_strOrderSysID") or ""))
        return row.client_id if row is not None else ""

    def _learn_order_id(self, row: MappedOrder, sysid: str) -> list["Delivery"]:
        self._journal.set_order_id(row.client_id, sysid)
        self._state.sent_at.pop(row.client_id, None)
        self._state.unconfirmed.discard(row.client_id)
        if row.cancel_state == CANCEL_WAITING_FOR_ID:
            self._journal.set_cancel_state(row.client_id, CANCEL_SENT)
            self._state.cancel_sent_at[row.client_id] = time.monotonic()
            self._state.cancels_due.append((row.client_id, sysid))
        return self._replay_parked(sysid)

    def _replay_parked(self, sysid: str) -> list["Delivery"]:
        self._state.parked_at.pop(sysid, None)
        deliveries: list[Delivery] = []
        for message in self._state.parked.pop(sysid, []):
            deliveries += self._book_deal(message["row"], self._client_id_for(message["row"]))
        return deliveries

    def _release_parked(self) -> list["Delivery"]:
        """After a full order list was handled: a parked fill still unmatched belongs to no order of ours."""
        deliveries: list[Delivery] = []
        for sysid in list(self._state.parked):
            deliveries += self._replay_parked(sysid)
        return deliveries

    def _unique_unacknowledged(self, args: dict) -> Optional[MappedOrder]:
        side = {23: Side.BUY, 24: Side.SELL}.get(int(args.get("opType") or 0))
        candidates = [self._journal.get(c) for c in list(self._state.sent_at)]
        matches = [r for r in candidates if r is not None and not r.order_id and r.stock_code == args.get("orderCode")
                   and r.side is side and r.volume == int(args.get("modelVolume") or 0)
                   and abs(r.price - float(args.get("modelPrice") or 0.0)) < 1e-6]
        return matches[0] if len(matches) == 1 else None

    def _order_changed(self, order: Order, news: bool = False) -> list["Delivery"]:
        """Deliver an order's new state once (a re-pushed or duplicated state is not news)."""
        key = order.client_id or f"qmt:{order.order_id}"
        state = (order.status, order.filled_volume, order.reason)
        previous = self._state.last_orders.get(key)
        if not news and previous is not None and previous[:2] == state[:2] and (
                previous[2] == state[2] or previous[2] or not state[2]):
            return []
        self._state.last_orders[key] = state
        if order.client_id and self._journal.get(order.client_id) is not None:
            self._journal.set_state(order.client_id, order.status, order.filled_volume, order.reason, self._clock.now())
        return [Delivery(order=order)]

    def _still_unacknowledged(self, client_id: str) -> bool:
        row = self._journal.get(client_id)
        if row is None or row.order_id or row.status.is_terminal or row.status is OrderStatus.UNKNOWN:
            self._state.sent_at.pop(client_id, None)
            return False
        return True

    def _cancel_still_pending(self, client_id: str) -> bool:
        row = self._journal.get(client_id)
        if row is None or row.cancel_state != CANCEL_SENT or row.status.is_terminal:
            self._state.cancel_sent_at.pop(client_id, None)
            return False
        return True

    # ---- conversions ------------------------------------------------------------------------------------------
    def _order_from_row(self, data: dict, client_id: str) -> Optional[Order]:
        side = qrows.side_of(data)
        if side is None:
            return None
        filled = int(data.get("m_nVolumeTraded") or 0)
        row = self._journal.get(client_id) if client_id else None
        return Order(client_id=client_id, stock_code=qrows.stock_code(data), side=side,
                     volume=int(data.get("m_nVolumeTotalOriginal") or 0), price=float(data.get("m_dLimitPrice") or 0.0),
                     status=qrows.status_of(data),
                     order_id=(row.order_id if row is not None and row.order_id else str(data.get("m_strOrderSysID") or "")),
                     filled_volume=filled, filled_amount=round(float(data.get("m_dTradedPrice") or 0.0) * filled, 2),
                     time=qrows.broker_time(data.get("m_strInsertDate"), data.get("m_strInsertTime"), self._clock.now),
                     reason=qrows.order_reason(data))

    def _order_from_journal(self, row: MappedOrder, status: OrderStatus, reason: str) -> Order:
        return Order(client_id=row.client_id, stock_code=row.stock_code, side=row.side, volume=row.volume,
                     price=row.price, status=status, order_id=row.order_id, filled_volume=row.filled_volume,
                     time=self._clock.now(), reason=reason)

    def _fill_from_row(self, data: dict, client_id: str) -> Optional[Fill]:
        side = qrows.side_of(data)
        if side is None:
            return None
        row = self._journal.get(client_id) if client_id else None
        order_id = row.order_id if row is not None and row.order_id else str(data.get("m_strOrderSysID") or "")
        traded_at = qrows.broker_time(data.get("m_strTradeDate"), data.get("m_strTradeTime"), self._clock.now)
        fill = Fill(fill_id=fill_key(order_id, str(data.get("m_strTradeID") or ""), traded_at), order_id=order_id,
                    client_id=client_id, stock_code=qrows.stock_code(data), side=side,
                    price=float(data.get("m_dPrice") or 0.0), volume=int(data.get("m_nVolume") or 0), time=traded_at)
        return self._journal.record_fill(fill, self._settings, qrows.commission_of(data))

    # ---- sending ----------------------------------------------------------------------------------------------
    def _send_cancel(self, client_id: str, sysid: str) -> None:
        """Outside the lock. The answer only says the request reached QMT; the outcome comes as cancel_result."""
        channel = self._channel
        try:
            if channel is None:
                raise BridgeClosed("未连接")
            answer = channel.request("cancel", self._timings().send_timeout, sysid=sysid,
                                     verify_seconds=self._timings().cancel_verify)
        except (BridgeTimeout, BridgeClosed) as exc:
            self._cancel_send_failed(client_id, sysid, str(exc), link_dead=isinstance(exc, BridgeTimeout))
        if not answer.get("ok"):
            self._cancel_send_failed(client_id, sysid, str(answer.get("error")), link_dead=False)
        log.info("已发送撤单请求：委托 %s（cancel 返回 %s，结果以委托状态为准）", sysid, answer.get("sent"))

    def _send_due_cancels(self) -> None:
        with self._lock:
            due, self._state.cancels_due = self._state.cancels_due, []
        for client_id, sysid in due:
            try:
                self._send_cancel(client_id, sysid)
            except BrokerUnavailable as exc:
                log.warning("补发撤单未成功：%s", exc.message)
                continue
            log.info("委托 %s 获得券商编号 %s，已补发撤单请求", client_id, sysid)

    def _cancel_send_failed(self, client_id: str, sysid: str, why: str, link_dead: bool) -> NoReturn:
        if client_id:
            with self._lock:
                self._journal.set_cancel_state(client_id, CANCEL_NONE)
                self._state.cancel_sent_at.pop(client_id, None)
        log.error("向大QMT 发送撤单（委托 %s）时出错：%s", sysid, why)
        if link_dead:
            self._link_failed("QMT_SEND_TIMEOUT", f"撤单请求（委托 {sysid}）{why}，判定大QMT 桥接无响应，重连后核对委托状态")
        raise BrokerUnavailable("QMT_CANCEL_SEND_FAILED", f"撤单请求未能确认送达（委托 {sysid}：{why}），将与大QMT 核对该委托后再撤")

    def _send_outcome_unknown(self, client_id: str, why: str, link_dead: bool) -> NoReturn:
        with self._lock:
            self._journal.set_state(client_id, OrderStatus.UNKNOWN, 0, f"发送异常，结果未知：{why}", self._clock.now())
            self._state.unconfirmed.add(client_id)
        log.error("向大QMT 发送委托 %s 时出错，是否送达未知，将按备注核对：%s", client_id, why)
        if link_dead:
            self._link_failed("QMT_SEND_TIMEOUT", f"委托 {client_id} 发送后没有回答（{why}），判定大QMT 桥接无响应，重连后按备注核对")
        raise OutcomeUnknown("ORDER_OUTCOME_UNKNOWN", f"委托 {client_id} 发送时出错（{why}），是否已送达券商未知（结果未知）："
                                                      "将按备注与券商核对，核对前同一股票同方向不会再下单")

    # ---- the link: open, fail, reconnect, reconcile ------------------------------------------------------------------
    def _open_channel(self) -> dict:
        """Connect and shake hands. Raises _Refused (Chinese reason)."""
        number = next(self._connection_ids)
        on_event, on_closed = lambda m: self._events.put(("event", number, m)), lambda: self._events.put(("closed", number, None))
        channel = (FolderChannel(self.folder, on_event, on_closed) if self.transport == "folder"
                   else BridgeChannel(self.host, self.port, on_event, on_closed))
        try:
            channel.open(self._timings().connect_timeout)
            hello = channel.request("hello", self._timings().connect_timeout, version=self._version)
        except (BridgeClosed, BridgeTimeout) as exc:
            channel.close()
            raise _Refused("BIGQMT_UNREACHABLE", f"无法连接大QMT 桥接策略（{self.where}：{exc}）：请确认大QMT 已登录，"
                                                 "桥接策略已在「模型交易」中以「实盘交易」方式运行并绑定资金账号，"
                                                 "端口（或文件夹）与 BIGQMT_PORT（BIGQMT_FOLDER）一致") from exc
        refusal = self._hello_refusal(hello)
        if refusal is not None:
            channel.close()
            raise refusal
        with self._lock:
            old, self._channel = self._channel, channel
            self._connection_no = number
            self.bridge_boot = str(hello.get("boot"))
            self._reconnect_needed = False
        if old is not None:
            old.close()
        return hello

    def _hello_refusal(self, hello: dict) -> Optional["_Refused"]:
        if not hello.get("ok") and hello.get("error") == "version":
            return _Refused("BIGQMT_VERSION_MISMATCH", f"大QMT 中运行的桥接策略版本为 {hello.get('version')}，本程序需要 "
                                                       f"{self._version}：请把 bigqmt/bridge_strategy.py 重新粘贴到大QMT 策略编辑器并重启该策略")
        if not hello.get("ok"):
            return _Refused("BIGQMT_HELLO_FAILED", f"大QMT 桥接策略拒绝连接：{hello.get('error')}")
        bound = str(hello.get("account") or "")
        if bound != self.account.account_id:
            shown = "（未绑定）" if not bound else f" {bound[:2]}***"
            return _Refused("BIGQMT_ACCOUNT_MISMATCH", f"大QMT 桥接策略绑定的资金账号{shown}与 account_config.json 中的 "
                                                       f"{self.account.masked_id} 不一致：请在「模型交易」中为该策略绑定正确的账号")
        return None

    def _link_failed(self, code: str, message: str) -> None:
        with self._lock:
            if self._reconnect_needed or self._channel is None:
                return
            self._reconnect_needed = True
        self.last_error = message
        self.health.set_state(LINK_UNHEALTHY)
        self.health.alarm(code, message)

    def _reconnect(self) -> None:
        """Back-off until the bridge answers a hello again, then reconcile. Never re-sends an order."""
        with self._lock:
            old, self._channel = self._channel, None
        if old is not None:
            old.close()
        self.health.set_state(LINK_RECONNECTING)
        hello = open_with_backoff(self._open_channel, _Refused, self._stop, self._timings().reconnect_first_delay,
                                  lambda: self._timings().reconnect_factor, self._reconnect_cap,
                                  self._reconnect_refused)
        if hello is None:
            return
        self.reconnects += 1
        try:
            self._reconcile(hello)
        except BrokerUnavailable as exc:
            self.last_error = exc.message
            log.error("重连后核对账户失败：%s；将再次重连", exc.message)
            self._link_failed("QMT_DISCONNECTED", f"重连后核对账户失败：{exc.message}")

    def _reconnect_refused(self, attempt: int, exc: "_Refused", delay: float) -> None:
        self.last_error = exc.message
        log.warning("第 %d 次重连大QMT 桥接失败：%s；%.1f 秒后重试", attempt, exc.message, delay)

    def _reconnect_cap(self) -> float:
        cap = self._timings().reconnect_max_delay
        return min(cap, self._timings().reconnect_session_max_delay) if self._in_session() else cap

    def _reconcile(self, hello: dict) -> None:
        """Re-query everything and emit what was missed: orders in flight settled by remark (the bridge says which
        remarks it passordered since it started), fills booked once, every order's state delivered again once."""
        asset = self.query_asset()
        found_orders = self._query("orders", "委托")
        found_trades = self._query("trades", "成交")
        placed, same_boot = set(hello.get("placed") or ()), str(hello.get("boot")) == self._state.boot_seen
        with self._lock:
            self._state.last_orders.clear()  # every order's current state is delivered again once
            order_deliveries: list[Delivery] = []
            for data in found_orders:
                order_deliveries += self._on_order({"row": data})
            order_deliveries += self._settle_in_flight({qrows.remark_of(r) for r in found_orders}, placed, same_boot)
            fill_deliveries: list[Delivery] = []
            for data in found_trades:
                fill_deliveries += self._book_deal(data, self._client_id_for(data))
            fill_deliveries += self._release_parked()
            self._state.boot_seen = str(hello.get("boot"))
        self._deliver(fill_deliveries + order_deliveries)
        self._send_due_cancels()
        self.last_error = ""
        self._last_probe = time.monotonic()
        self.health.set_state(LINK_CONNECTED)
        self.health.alarm("QMT_RECONNECTED", f"已重新连接大QMT 桥接策略：可用资金 {asset.cash:.2f}，今日委托 {len(found_orders)} 笔，"
                                             f"补发成交回报 {len(fill_deliveries)} 笔", logging.INFO, prefix="")

    def _settle_in_flight(self, remarks_seen: set[str], placed: set[str], same_boot: bool) -> list["Delivery"]:
        """Orders sent before the drop that QMT does not show: with the same bridge instance, a remark it never
        passordered was never sent (its unread request died with the old connection): rejected, not re-sent.
        Otherwise (passordered, or QMT restarted meanwhile) 「结果未知」 for the executor to settle by remark."""
        deliveries: list[Delivery] = []
        in_flight = set(self._state.sent_at) | self._state.unconfirmed
        self._state.unconfirmed = set()
        for client_id in sorted(in_flight):
            self._state.sent_at.pop(client_id, None)
            row = self._journal.get(client_id)
            if row is None or row.order_id or client_id in remarks_seen:
                continue
            if same_boot and client_id not in placed:
                log.warning("委托 %s 未送达大QMT（桥接策略确认未调用 passorder），不会重发", client_id)
                deliveries += self._order_changed(self._order_from_journal(row, OrderStatus.REJECTED, NOT_DELIVERED))
            else:
                reason = UNKNOWN_PLACED if client_id in placed else UNKNOWN_IN_FLIGHT
                deliveries += self._order_changed(self._order_from_journal(row, OrderStatus.UNKNOWN, reason))
        return deliveries

    # ---- queries ---------------------------------------------------------------------------------------------
    def _query(self, what: str, label: str, timeout: Optional[float] = None) -> list[dict]:
        channel = self._require_channel(allow_reconnecting=True)
        limit = self._timings().query_timeout if timeout is None else timeout
        try:
            answer = channel.request("query", limit, what=what)
        except BridgeTimeout as exc:
            raise BrokerUnavailable("QMT_QUERY_TIMEOUT", f"查询{label}超时（{limit:g} 秒），大QMT 桥接无响应") from exc
        except BridgeClosed as exc:
            raise BrokerUnavailable("QMT_DISCONNECTED", f"查询{label}时与大QMT 桥接的连接断开") from exc
        if not answer.get("ok"):
            raise BrokerUnavailable("BIGQMT_QUERY_FAILED", f"大QMT 查询{label}失败：{answer.get('error')}")
        return list(answer.get("rows") or [])

    def _require_channel(self, allow_reconnecting: bool = False) -> BridgeChannel:
        channel = self._channel
        if channel is None or not channel.is_open or (self._reconnect_needed and not allow_reconnecting):
            raise BrokerUnavailable("QMT_DISCONNECTED", "大QMT 桥接未连接（可能正在重连），请稍后再试")
        return channel


def _check_request(request: OrderRequest) -> None:
    if not request.client_id:
        raise OrderRejected("CLIENT_ID_MISSING", "委托缺少客户端编号，拒绝发送")
    if int(request.volume) != request.volume or request.volume <= 0:
        raise OrderRejected("VOLUME_INVALID", f"委托数量无效：{request.volume}")
    if not request.price > 0:
        raise OrderRejected("PRICE_INVALID", f"委托价格无效：{request.price}")


class _Refused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class _State:
    """What the worker remembers between events (this process only; the journal has the rest)."""

    sent_at: dict[str, float] = field(default_factory=dict)  # client id -> sent (monotonic), until QMT names it
    unconfirmed: set[str] = field(default_factory=set)  # sends whose outcome is unknown
    cancel_sent_at: dict[str, float] = field(default_factory=dict)  # client id -> cancel sent, until an outcome
    cancels_due: list[tuple[str, str]] = field(default_factory=list)  # cancels that waited for the broker id
    parked: dict[str, list[dict]] = field(default_factory=dict)  # sysid -> deal pushes without a known owner yet
    parked_at: dict[str, float] = field(default_factory=dict)
    last_orders: dict[str, tuple] = field(default_factory=dict)
    delivered_fills: set[str] = field(default_factory=set)
    boot_seen: str = ""  # the bridge instance the previous hello came from
    trades_baseline: Optional[set[str]] = None  # fill ids the first trade query found (never pushed)
    unpushed: set[str] = field(default_factory=set)  # fill ids the last query found that no push delivered
    lapse_alarmed: set[str] = field(default_factory=set)
