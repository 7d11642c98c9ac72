"""How the live broker recovers a dropped miniQMT link (split out of easy_qmt_trader.py, issue 31): back-off
reconnect, then reconcile (re-query asset, positions, orders, trades; emit what was missed; settle orders sent
before the drop by remark, never re-sending), and the query-side checks that treat a query's answer like a push
(refused cancels, ids never pushed, pushes that stopped). `QmtReconciliation` is a mixin of
`easy_qmt_trader.EasyQmtTrader`; the pushes themselves are handled by `qmt.events.QmtEventHandling`."""
from __future__ import annotations

import logging
import time

from core.models import BrokerUnavailable, Fill, OrderStatus, Side
from qmt.delivery import Delivery
from qmt.link import LINK_CONNECTED, LINK_RECONNECTING, push_lapse
from qmt.link_worker import open_with_backoff
from qmt.session import QmtEvent, QmtSession

log = logging.getLogger("easy_qmt_trader")

UNKNOWN_IN_FLIGHT = "连接中断，委托是否送达 miniQMT 未知（重连后暂未查到），结果未知：按备注继续核对，不会重发"
SELL_NOT_DELIVERED = ("连接失效期间发出的卖单，重连后 miniQMT 当日全部委托中按备注查无此单：判定未送达（该单不会重发，"
                      "卖出条件仍成立时将重新委托；券商若迟到回报仍按其回报更新）")
# Link failures that prove miniQMT was not answering (not merely slow to name one order): a sell sent into one
# and absent from the full order query after the reconnect was not received (issue 25).
DEAD_LINK_CODES = frozenset({"QMT_DISCONNECTED", "LIVENESS_PROBE_FAILED", "QMT_SEND_TIMEOUT", "CANCEL_ACK_TIMEOUT"})


class QmtReconciliation:
    """Reconnect and reconcile on the `qmt-events` worker thread; the host supplies the session, queries and
    the event handlers."""

    # ---- reconnect and reconcile (worker thread) -----------------------------------------------------------
    def _reconnect(self) -> None:
        """Back-off until a new session works, then reconcile. Never re-sends an order."""
        with self._lock:
            old, self._session = self._session, None
            self._last_answer_before_reconnect = self._last_answer
        self.health.set_state(LINK_RECONNECTING)
        if old is not None:
            old.shutdown()
        session = open_with_backoff(self._open_session, BrokerUnavailable, self._stop,
                                    self._timings.reconnect_first_delay, lambda: self._timings.reconnect_factor,
                                    self._reconnect_cap, self._reconnect_refused)
        if session is None:
            return
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

    def _reconnect_refused(self, attempt: int, exc: BrokerUnavailable, delay: float) -> None:
        self.last_error = exc.message
        log.warning("第 %d 次重连 miniQMT 失败：%s；%.1f 秒后重试", attempt, exc.message, delay)

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

    def _settle_in_flight(self, xt_orders: list, link_was_dead: bool = False) -> list["Delivery"]:
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
        deliveries: list[Delivery] = []
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

    # ---- query answers read like pushes (issue 25) -----------------------------------------------------------
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
