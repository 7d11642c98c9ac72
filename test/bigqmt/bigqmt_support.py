"""Shared pieces of the big-QMT bridge tests: the host stand-in running the real strategy file, a broker wired to
it over loopback, and the miniQMT tests' recording listener (which lets a test wait, bounded, for a condition)."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Optional

from bigqmt.broker import BigQmtBroker, BridgeTimings
from market.clock import ReplayClock
from persistence.config_store import ConfigStore
from persistence.storage import Database
from qmt.account import AccountConfig
from stand_ins.bigqmt_host import BigQmtHost
from test_easy_qmt_trader import WAIT, Recorder as LiveRecorder, req  # noqa: F401 (WAIT, req: the bigqmt tests')

ACCOUNT_ID = "8800000001"
MARKET_OPEN = datetime(2026, 12, 8, 10, 0)
OPEN_BROKERS: list = []  # closed after every test by conftest (also when a test fails half-way)
PUMP = "20nMilliSecond"  # the tests' strategy timer (the file's default is 200 ms)
FAST = BridgeTimings(query_timeout=2.0, send_timeout=1.0, connect_timeout=2.0, ack_timeout=1.0, cancel_verify=0.5,
                     probe_interval=0.3, probe_deadline=0.5, reconnect_first_delay=0.05, reconnect_max_delay=0.2,
                     reconnect_session_max_delay=0.2, close_timeout=2.0)


class Recorder(LiveRecorder):
    """The miniQMT tests' recording listener, also subscribed to the broker's link health."""

    def __init__(self):
        super().__init__()
        self.anomalies: list[str] = []

    def on_anomaly(self, anomaly) -> None:
        """Subscribed to the broker's link health: a reconnect or an alarm wakes the waiting test."""
        with self._cond:
            self.anomalies.append(anomaly.code)
            self._cond.notify_all()


def start_host(**options) -> BigQmtHost:
    options.setdefault("pump_period", PUMP)
    options.setdefault("now", lambda: MARKET_OPEN)
    return BigQmtHost(ACCOUNT_ID, **options).start()


def make_broker(tmp_path: Path, host: BigQmtHost, *, timings: BridgeTimings = FAST, db: Optional[Database] = None,
                account_id: str = ACCOUNT_ID, listen: bool = True, connect: bool = True
                ) -> tuple[BigQmtBroker, Recorder]:
    """A broker over the host's transport (its folder when it runs the folder transport, else its TCP port)."""
    settings = ConfigStore(Database(tmp_path / "config.db"))
    broker = BigQmtBroker(db or Database(tmp_path / "trading.db"), settings, ReplayClock(MARKET_OPEN),
                          AccountConfig(account_id, "STOCK", ""), "127.0.0.1", host.port, timings=timings,
                          transport="folder" if host.folder is not None else "tcp", folder=str(host.folder or ""))
    OPEN_BROKERS.append(broker)
    recorder = Recorder()
    broker.health.subscribe(recorder.on_anomaly)
    if listen:
        broker.set_listener(recorder)
    if connect:
        broker.connect()
    return broker, recorder
