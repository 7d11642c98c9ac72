"""Latency and throughput of the live broker's event path over the REAL xttrader.py (stand-in native client):
counterpart fill → xttrader push thread → our queue → qmt-events worker → listener.on_fill.
Run: python bench/bench_qmt_events.py [fills]"""
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

from config_store import ConfigStore  # noqa: E402
from easy_qmt_trader import BrokerTimings, EasyQmtTrader  # noqa: E402
from market_clock import ReplayClock  # noqa: E402
from models import OrderRequest, Side  # noqa: E402
from qmt_account import AccountConfig  # noqa: E402
from stand_ins.fake_xtpythonclient import FakeQmt  # noqa: E402
from storage import Database  # noqa: E402
from xtquant_import import xtquant_package  # noqa: E402


class Timer:
    def __init__(self):
        self.arrived: list[float] = []
        self._cond = threading.Condition()

    def on_order_update(self, order) -> None:
        pass

    def on_fill(self, fill) -> None:
        with self._cond:
            self.arrived.append(time.perf_counter())
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.arrived) >= count, timeout)


def main(fills: int) -> None:
    counterpart = FakeQmt(cash=1e9)
    xtquant_package()
    sys.modules["xtquant.xtpythonclient"] = counterpart.module()
    with tempfile.TemporaryDirectory() as folder:
        settings = ConfigStore(Database(Path(folder) / "config.db"))
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
        trader.close()
    print(f"burst of {burst} fills: {burst / elapsed:.0f} fills/s delivered")
    print(f"single fill → on_fill latency ms ({len(latencies)} fills): median {statistics.median(latencies):.2f}, "
          f"p95 {latencies[int(len(latencies) * 0.95) - 1]:.2f}, max {latencies[-1]:.2f}")
    print(f"query_asset round trip: {query_ms:.2f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
