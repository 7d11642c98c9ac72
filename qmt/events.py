"""How the live broker reads miniQMT's pushes (split out of easy_qmt_trader.py, issue 31): the event state
machine (`_handle` and its `_on_*` handlers), matching pushes to our client ids (parking those whose broker id is
not known yet) and the conversions to `Order`/`Fill`; delivery to the listener is qmt.delivery's. `QmtEventHandling`
is a mixin of `easy_qmt_trader.EasyQmtTrader` and works on its state (journal, `_state`, in-flight bookkeeping,
health)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Optional

from core.models import Fill, Order, OrderStatus
from market.clock import MARKET_TZ
from qmt.delivery import Delivery, ListenerDelivery
from qmt.link import LINK_UNHEALTHY
from qmt.order_journal import CANCEL_NONE, CANCEL_SENT, CANCEL_WAITING_FOR_ID, MappedOrder, fill_key
from qmt.session import QmtEvent

log = logging.getLogger("easy_qmt_trader")


class QmtEventHandling(ListenerDelivery):
    """The `qmt-events` worker's interpretation of pushes, under the host's `_lock` (except `_deliver`, which
    calls the listener outside it)."""

    _log = log

    # ---- dispatch (worker thread; delivery to the listener is qmt.delivery's) ---------------------------------
    def _handle(self, event: "QmtEvent") -> list["Delivery"]:
        handler = {
            "order": self._on_order, "trade": self._on_trade, "order_response": self._on_order_response,
            "order_error": self._on_order_error, "cancel_response": self._on_cancel_response,
            "cancel_error": self._on_cancel_error, "disconnected": self._on_disconnected,
            "account_status": self._on_account_status, "flush": self._on_flush,
        }[event.kind]
        return handler(event)

    # ---- event handlers (worker thread, under self._lock) -----------------------------------------------------
    def _on_flush(self, event: "QmtEvent") -> list["Delivery"]:
        return []

    def _on_order(self, event: "QmtEvent") -> list["Delivery"]:
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

    def _on_trade(self, event: "QmtEvent") -> list["Delivery"]:
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
        return self._learn_order_id(client_id, fill.order_id) + [Delivery(fill=fill)]

    def _on_order_response(self, event: "QmtEvent") -> list["Delivery"]:
        response = event.payload
        key = (event.session, response.seq)
        client_id = self._state.awaiting_response.pop(key, None)
        row = self._journal.get(client_id) if client_id else self._journal.by_seq(*key)
        deliveries: list[Delivery] = []
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

    def _on_order_error(self, event: "QmtEvent") -> list["Delivery"]:
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

    def _on_cancel_response(self, event: "QmtEvent") -> list["Delivery"]:
        response = event.payload
        if int(response.cancel_result) == 0:
            return []
        return self._cancel_refused(str(response.order_id), response.error_msg or "未返回原因",
                                    response.cancel_result)

    def _on_cancel_error(self, event: "QmtEvent") -> list["Delivery"]:
        error = event.payload
        return self._cancel_refused(str(error.order_id), error.error_msg, error.error_id)

    def _cancel_refused(self, order_id: str, message: str, code) -> list["Delivery"]:
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

    def _on_account_status(self, event: "QmtEvent") -> list["Delivery"]:
        status = event.payload
        if status.status != self._xt.xtconstant.ACCOUNT_STATUS_OK:
            log.warning("资金账号 %s 状态异常：%s", self.account.masked_id, status.status)
        return []

    def _on_disconnected(self, event: "QmtEvent") -> list["Delivery"]:
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

    def _learn_order_id(self, client_id: str, order_id: str) -> list["Delivery"]:
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
        deliveries: list[Delivery] = []
        for parked in self._state.parked.pop(order_id, []):
            deliveries += self._handle(parked)
        return deliveries

    def _release_parked_if_settled(self) -> list["Delivery"]:
        """With no order waiting for its response any more, parked pushes are not ours: deliver them as
        external (client id '')."""
        if self._state.awaiting_response or self._sending or not self._state.parked:
            return []
        parked, self._state.parked = self._state.parked, {}
        deliveries: list[Delivery] = []
        for events in parked.values():
            for event in events:
                deliveries += self._handle(event)
        return deliveries

    def _order_changed(self, order: Order, news: bool = False) -> list["Delivery"]:
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
        return [Delivery(order=order)]

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


# ---- what the handlers remember ---------------------------------------------------------------------------------
@dataclass
class EventState:
    """What the worker remembers between events (this process only; the journal has the rest)."""

    awaiting_response: dict[tuple[int, int], str] = field(default_factory=dict)  # (session, seq) → client id
    parked: dict[str, list[QmtEvent]] = field(default_factory=dict)  # order id → pushes waiting for their id
    last_orders: dict[str, tuple] = field(default_factory=dict)  # key → (status, filled, reason) delivered
    delivered_fills: set[str] = field(default_factory=set)
    unconfirmed: set[str] = field(default_factory=set)  # client ids whose send raised: delivered or not unknown
    send_overran: set[str] = field(default_factory=set)  # client ids whose native send never returned (timed out)
    early_responses: dict[tuple[int, int], QmtEvent] = field(default_factory=dict)  # answers before the seq was known
