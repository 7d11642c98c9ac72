"""A side look at the bridge strategy for the doctor: is it listening, which version, which account, is a daemon
connected, and how long a round trip through QMT's strategy thread takes. Uses "probe" lines, which the bridge
answers without touching the daemon's own connection."""
from __future__ import annotations

import time
from dataclasses import dataclass
from statistics import median

from bigqmt.channel import BridgeChannel, BridgeClosed, BridgeTimeout, FolderChannel


@dataclass(frozen=True)
class BridgeProbe:
    version: str
    account: str
    boot: str
    daemon_connected: bool
    round_trips: tuple[float, ...]  # seconds

    @property
    def median_ms(self) -> float:
        return round(median(self.round_trips) * 1000, 1)

    @property
    def worst_ms(self) -> float:
        return round(max(self.round_trips) * 1000, 1)


def probe_bridge(host: str, port: int, timeout: float, count: int = 5, folder: str = "") -> BridgeProbe:
    """`count` probes over one side connection (over the folder transport when `folder` is given). Raises
    BridgeClosed (nothing listening) or BridgeTimeout."""
    channel = (FolderChannel(folder, on_event=lambda _message: None, on_closed=lambda: None) if folder
               else BridgeChannel(host, port, on_event=lambda _message: None, on_closed=lambda: None))
    channel.open(timeout)
    try:
        trips, answer = [], {}
        for _ in range(count):
            started = time.monotonic()
            answer = channel.request("probe", timeout)
            trips.append(time.monotonic() - started)
            if not answer.get("ok"):
                raise BridgeClosed(str(answer.get("error")))
        return BridgeProbe(str(answer.get("version")), str(answer.get("account") or ""), str(answer.get("boot")),
                           bool(answer.get("daemon_connected")), tuple(trips))
    finally:
        channel.close()


__all__ = ["BridgeProbe", "probe_bridge", "BridgeClosed", "BridgeTimeout"]
