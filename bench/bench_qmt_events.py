"""Latency and throughput of the live broker's event path over the REAL xttrader.py (stand-in native client):
counterpart fill → xttrader push thread → our queue → qmt-events worker → listener.on_fill; then (issue 13)
how long a hung miniQMT takes to be noticed, replaced by a new session and its unacknowledged order settled.
Run: python bench/bench_qmt_events.py [fills] [hang trials]"""
from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test")]

from persistence.config_store import ConfigStore  # noqa: E402
from easy_qmt_trader import BrokerTimings, EasyQmtTrader  # noqa: E402
from market.clock import ReplayClock  # noqa: E402
from core.models import OrderRequest, OrderStatus, Side  # noqa: E402
from qmt.account import AccountConfig  # noqa: E402
from stand_ins.fake_xtpythonclient import FakeQmt  # noqa: E402
from persistence.storage import Database  # noqa: E402
from qmt.xtquant_import import xtquant_package  # noqa: E402


class Timer:
    def __init__(self):
        self.arrived: list[float] = []
        self.settled: dict[str, float] = {}  # client id → when it was reported rejected (reconciled)
        self._cond = threading.Condition()

    def on_order_update(self, order) -> None:
        if order.status is OrderStatus.REJECTED:
            with self._cond:
                self.settled[order.client_id] = time.perf_counter()
                self._cond.notify_all()

    def wait_settled(self, client_id: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: client_id in self.settled, timeout)

    def on_fill(self, fill) -> None:
        with self._cond:
            self.arrived.append(time.perf_counter())
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.arrived) >= count, timeout)


# Liveness settings for the hang trials: the probe answers within LIVENESS_PROBE_DEADLINE or the link is dropped.
HANG_SETTINGS = {"ORDER_ACK_TIMEOUT": 2.0, "LIVENESS_PROBE_INTERVAL": 1.0, "LIVENESS_PROBE_DEADLINE": 0.5}
HANG_SECONDS = 0.3


def hang_trials(trader: EasyQmtTrader, counterpart: FakeQmt, timer: Timer, trials: int) -> list[tuple[float, ...]]:
    """miniQMT hangs right before an order is sent: (detected, reconnected, reconciled) seconds after the send."""
    detected: list[float] = []
    reconnected: list[float] = []
    trader.health.subscribe(lambda anomaly: detected.append(time.perf_counter()))
    reconcile = trader._reconcile

    def timed_reconcile(session) -> None:
        reconnected.append(time.perf_counter())
        reconcile(session)

    trader._reconcile = timed_reconcile
    results = []
    for trial in range(trials):
        counterpart.hang(seconds=HANG_SECONDS)
        client_id = f"HANG{trial}"
        sent = time.perf_counter()
        trader.place_order(OrderRequest(client_id, "600036.SH", Side.BUY, 100, 10.0))
        assert timer.wait_settled(client_id, 30), "the unacknowledged order was not reconciled"
        results.append((detected[-1] - sent, reconnected[-1] - sent, timer.settled[client_id] - sent))
        counterpart.end_hang()
    return results


def main(fills: int, trials: int) -> None:
    counterpart = FakeQmt(cash=1e9)
    xtquant_package()
    sys.modules["xtquant.xtpythonclient"] = counterpart.module()
    with tempfile.TemporaryDirectory() as folder:
        settings = ConfigStore(Database(Path(folder) / "config.db"))
        settings.update(HANG_SETTINGS, source="bench")
        clock = ReplayClock(datetime(2024, 1, 2, 9, 30))
        trader = EasyQmtTrader(Database(Path(folder) / "trading.db"), settings, clock, AccountConfig("8800123456"),
                               folder, timings=BrokerTimings())
        timer = Timer()
        trader.set_listener(timer)
        trader.connect()
        trader.place_order(OrderRequest("BENCH1", "600036.SH", Side.BUY, 100 * fills, 10.0))
        # One at a time: the latency of a single fill through all the threads (includes the fee journal commit).
        latencies = []
        for count in range(1, fills // 2 + 1):
            sent = time.perf_counter()
            counterpart.fill(1001, 100, 10.0)
            assert timer.wait_for(count, 10), "fill did not arrive"
            latencies.append((timer.arrived[-1] - sent) * 1000)
        latencies.sort()
        # A burst: throughput when the counterpart pushes as fast as it can.
        burst = fills - fills // 2
        started = time.perf_counter()
        for _ in range(burst):
            counterpart.fill(1001, 100, 10.0)
        assert timer.wait_for(fills, 120), "fills did not all arrive"
        elapsed = time.perf_counter() - started
        query_started = time.perf_counter()
        for _ in range(200):
            trader.query_asset()
        query_ms = (time.perf_counter() - query_started) / 200 * 1000
        hangs = hang_trials(trader, counterpart, timer, trials)
        trader.close()
    print(f"burst of {burst} fills: {burst / elapsed:.0f} fills/s delivered")
    print(f"single fill → on_fill latency ms ({len(latencies)} fills): median {statistics.median(latencies):.2f}, "
          f"p95 {latencies[int(len(latencies) * 0.95) - 1]:.2f}, max {latencies[-1]:.2f}")
    print(f"query_asset round trip: {query_ms:.2f} ms")
    print(f"hang {HANG_SECONDS:g} s before a send, {HANG_SETTINGS} ({trials} trials), seconds after the send:")
    for name, column in zip(("hang detected", "reconnected", "order reconciled"), zip(*hangs)):
        print(f"  {name}: median {statistics.median(column):.3f}, max {max(column):.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, int(sys.argv[2]) if len(sys.argv) > 2 else 5)
