"""Handing order updates and fills to the broker's listener, shared by the miniQMT back-end (qmt.events) and the
big-QMT back-end (bigqmt.broker): what arrives before a listener is set is kept and delivered first, in order,
once one is; a listener that raises does not stop the events after it."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from core.models import Fill, Order


@dataclass(frozen=True)
class Delivery:
    order: Optional[Order] = None
    fill: Optional[Fill] = None


class ListenerDelivery:
    """Mixin: the host has `_listener` (a BrokerListener or None), `_undelivered` (a list of Delivery) and `_log`
    (its logger, where a listener's exception goes). Call `_deliver` outside the host's lock."""

    _log: logging.Logger

    def _deliver(self, deliveries: list[Delivery]) -> None:
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
                self._log.exception("委托/成交回报处理出错：%s", delivery)
