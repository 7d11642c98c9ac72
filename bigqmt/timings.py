"""The bridge's deadlines (from the daemon's settings) and the version of the strategy file shipped with the daemon."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

BRIDGE_FILE = Path(__file__).resolve().parent / "bridge_strategy.py"


def bridge_version(path: Path = BRIDGE_FILE) -> str:
    """The version of the strategy file shipped with this daemon: the bridge the user pasted must say the same."""
    match = re.search(r'^BRIDGE_VERSION = "([^"]+)"', path.read_text(encoding="ascii"), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{path} has no BRIDGE_VERSION line")
    return match.group(1)


@dataclass(frozen=True)
class BridgeTimings:
    """Deadlines (seconds); the daemon takes them from its settings, tests pass their own."""

    query_timeout: float = 10.0
    send_timeout: float = 3.0
    connect_timeout: float = 5.0
    ack_timeout: float = 10.0
    cancel_verify: float = 10.0
    probe_interval: float = 5.0
    probe_deadline: float = 3.0
    reconnect_first_delay: float = 1.0
    reconnect_max_delay: float = 60.0
    reconnect_session_max_delay: float = 2.0
    reconnect_factor: float = 2.0
    close_timeout: float = 5.0

    @classmethod
    def from_settings(cls, settings) -> "BridgeTimings":
        get = settings.get
        return cls(query_timeout=get("QMT_QUERY_TIMEOUT"), send_timeout=get("QMT_SEND_TIMEOUT"),
                   connect_timeout=get("BIGQMT_CONNECT_TIMEOUT"), ack_timeout=get("ORDER_ACK_TIMEOUT"),
                   cancel_verify=get("BIGQMT_CANCEL_VERIFY_SECONDS"), probe_interval=get("LIVENESS_PROBE_INTERVAL"),
                   probe_deadline=get("LIVENESS_PROBE_DEADLINE"), reconnect_first_delay=get("QMT_RECONNECT_FIRST_DELAY"),
                   reconnect_max_delay=get("QMT_RECONNECT_MAX_DELAY"),
                   reconnect_session_max_delay=get("QMT_RECONNECT_SESSION_MAX_DELAY"))
