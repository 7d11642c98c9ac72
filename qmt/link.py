"""Health of the link to miniQMT as the operator sees it (issue 13): the link state, the recent anomalies
(each also an operator log line in Chinese) and the pure deadline rules of the liveness supervision. The
live broker owns one `LinkHealth`; the web layer reads `snapshot()`; a notifier can later subscribe."""
from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping, Optional

log = logging.getLogger("easy_qmt_trader")

# link states
LINK_CONNECTED, LINK_UNHEALTHY, LINK_RECONNECTING, LINK_DISCONNECTED = "connected", "unhealthy", "reconnecting", "closed"
LINK_LABELS = {LINK_CONNECTED: "正常", LINK_UNHEALTHY: "无响应（准备重连）", LINK_RECONNECTING: "重连中",
               LINK_DISCONNECTED: "未连接"}
KEEP_ANOMALIES = 100
# Anomaly code → the event kind (core.events.EventKind value on main) a notifier should route it as; others: "alarm".
EVENT_KIND_BY_CODE = {
    "QMT_DISCONNECTED": "broker_disconnected", "LIVENESS_PROBE_FAILED": "link_unhealthy",
    "ORDER_ACK_TIMEOUT": "link_unhealthy", "CANCEL_ACK_TIMEOUT": "link_unhealthy",
    "LATE_BROKER_REPORT": "order_unknown", "PUSH_LAPSE": "link_unhealthy", "QMT_SEND_TIMEOUT": "link_unhealthy", "QMT_RECONNECTED": "broker_reconnected", "QMT_POSITIONS_EMPTY": "alarm", "QMT_ORDER_RENUMBERED": "alarm",
}


@dataclass(frozen=True)
class Anomaly:
    """One thing the operator must know about: a machine code, a Chinese message, when (ISO, clock time)."""

    time: str
    code: str
    message: str

    @property
    def event_kind(self) -> str:
        return EVENT_KIND_BY_CODE.get(self.code, "alarm")


class LinkHealth:
    """Thread-safe link state and anomaly list. `alarm` logs the line and keeps it for /api/health."""

    def __init__(self, now: Callable[[], object], keep: int = KEEP_ANOMALIES):
        self._now = now
        self._lock = threading.Lock()
        self._anomalies: deque[Anomaly] = deque(maxlen=keep)
        self._listeners: list[Callable[[Anomaly], None]] = []
        self.state = LINK_DISCONNECTED
        self.total = 0

    def subscribe(self, listener: Callable[[Anomaly], None]) -> None:
        """`listener(anomaly)` for every later alarm (e.g. the notifier); it must not block."""
        self._listeners.append(listener)

    def alarm(self, code: str, message: str, level: int = logging.ERROR, prefix: str = "【券商异常】") -> Anomaly:
        moment = self._now()
        anomaly = Anomaly(moment.isoformat(timespec="seconds") if hasattr(moment, "isoformat") else str(moment),
                          code, message)
        with self._lock:
            self._anomalies.append(anomaly)
            self.total += 1
        log.log(level, "%s%s", prefix, message)
        for listener in list(self._listeners):
            try:
                listener(anomaly)
            except Exception:  # a notifier problem must not break the broker's worker
                log.exception("异常通知处理出错")
        return anomaly

    def set_state(self, state: str) -> None:
        self.state = state

    def anomalies(self) -> list[dict]:
        with self._lock:
            return [asdict(a) for a in self._anomalies]

    def snapshot(self) -> dict:
        with self._lock:
            recent = [asdict(a) for a in self._anomalies]
        return {"link_state": self.state, "link_label": LINK_LABELS.get(self.state, self.state),
                "healthy": self.state == LINK_CONNECTED, "anomaly_count": self.total, "anomalies": recent[-20:]}


def push_lapse(found: set[str], pushed: set[str], baseline: set[str], seen_before: set[str]) -> tuple[set[str], set[str]]:
    """issue 25: fill ids a trade query `found` that no push delivered: (lapsed, unpushed). `lapsed` were already
    unpushed at the previous query (`seen_before`): a push still on its way is not a lapse, one missing for a
    whole sync interval is. `baseline`: fills made before the process listened, never pushed to it."""
    unpushed = found - pushed - baseline
    return unpushed & seen_before, unpushed


def overdue(started: Mapping[str, float], now: float, limit: float,
            still_waiting: Callable[[str], bool] = lambda _key: True) -> list[str]:
    """Keys whose wait (monotonic start time) exceeds `limit` seconds and which are still waiting."""
    return [key for key, since in started.items() if now - since > limit and still_waiting(key)]


def probe_due(last_probe: Optional[float], now: float, interval: float, in_session: bool, forced: bool) -> bool:
    """A liveness probe is due right after a send (forced) or every `interval` seconds during sessions."""
    if forced:
        return True
    return in_session and (last_probe is None or now - last_probe >= interval)


def summarize(anomalies: Iterable[dict], limit: int = 3) -> str:
    """The latest anomaly messages on one line (for a short status text)."""
    messages = [a["message"] for a in anomalies][-limit:]
    return "；".join(messages)
