"""The big-QMT bridge's round trips (issue 29): the daemon's BigQmtBroker talking to the REAL
bridge strategy file run by the big-QMT host stand-in (test/stand_ins/bigqmt_host.py), one order at a time.

    python bench/bench_bigqmt.py [--orders 200] [--pumps 200nMilliSecond,50nMilliSecond] [--transports tcp,folder]

Orders arrive at random moments (uniform over one timer period), as signals do. Measured per order: place_order
returns (the bridge has called passorder), and the acknowledgement (the order's first push with its broker id
reaches the listener). Also the query round trip (ACCOUNT through the strategy
thread); over both transports: loopback TCP and the folder of JSON-lines files (the daemon polls every 20 ms).
The strategy's timer period (PUMP_PERIOD, the file's default is 200 ms) bounds every figure: a request
waits for the next timer tick. Inside real QMT add its own scheduling (reported GIL stalls of about 0.5 s)."""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from bigqmt.broker import BigQmtBroker, BridgeTimings  # noqa: E402
from core.models import OrderRequest, Rule, Side  # noqa: E402
from market.clock import ReplayClock  # noqa: E402
from persistence.config_store import ConfigStore  # noqa: E402
from persistence.storage import Database  # noqa: E402
from qmt.account import AccountConfig  # noqa: E402
from stand_ins.bigqmt_host import BigQmtHost, period_seconds  # noqa: E402

ACCOUNT = "8800000001"
MOMENT = datetime(2026, 12, 8, 10, 0)


class AckWatch:
    """Listener: the moment each client id first shows a broker id."""

    def __init__(self):
        self.acked: dict[str, float] = {}
        self._cond = threading.Condition()

    def on_order_update(self, order) -> None:
        if order.order_id:
            with self._cond:
                self.acked.setdefault(order.client_id, time.perf_counter())
                self._cond.notify_all()

    def on_fill(self, fill) -> None:
        pass

    def wait(self, client_id: str, timeout: float) -> float:
        with self._cond:
            if not self._cond.wait_for(lambda: client_id in self.acked, timeout):
                raise TimeoutError(f"no acknowledgement for {client_id}")
            return self.acked[client_id]


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms | p99 {p99 * 1000:.1f} ms | max {ordered[-1] * 1000:.1f} ms"


def run(pump: str, transport: str, orders: int, folder: Path) -> dict[str, list[float]]:
    bridge_folder = folder / f"bridge-{pump}" if transport == "folder" else None
    host = BigQmtHost(ACCOUNT, 1e9, pump_period=pump, now=lambda: MOMENT, folder=bridge_folder).start()
    settings = ConfigStore(Database(folder / f"config-{pump}-{transport}.db"))
    broker = BigQmtBroker(Database(folder / f"trading-{pump}-{transport}.db"), settings, ReplayClock(MOMENT),
                          AccountConfig(ACCOUNT), "127.0.0.1", host.port,
                          timings=BridgeTimings(probe_interval=3600.0, ack_timeout=30.0), transport=transport,
                          folder=str(bridge_folder or ""))
    watch = AckWatch()
    broker.set_listener(watch)
    broker.connect()
    sent, acked, queried = [], [], []
    try:
        pause, jitter, period = threading.Event(), random.Random(29), period_seconds(pump)
        for n in range(orders):
            pause.wait(jitter.uniform(0.0, period))  # orders arrive at any moment, not just after a timer tick
            client_id = f"B{n:05d}"
            started = time.perf_counter()
            broker.place_order(OrderRequest(client_id, "600036.SH", Side.BUY, 100, 10.0, Rule.MANUAL))
            sent.append(time.perf_counter() - started)
            acked.append(watch.wait(client_id, 10.0) - started)
            pause.wait(jitter.uniform(0.0, period))
            started = time.perf_counter()
            broker.ping()
            queried.append(time.perf_counter() - started)
    finally:
        broker.close()
        host.stop()
    return {"place_order returns (passorder called)": sent, "order → acknowledgement (broker id pushed)": acked,
            "query round trip (ACCOUNT)": queried}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--pumps", default="200nMilliSecond,50nMilliSecond")
    parser.add_argument("--transports", default="tcp,folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for pump in args.pumps.split(","):
            for transport in args.transports.split(","):
                print(f"PUMP_PERIOD = {pump}, transport {transport}, {args.orders} orders one at a time")
                for label, samples in run(pump, transport, args.orders, Path(tmp)).items():
                    print(f"  {label}: {percentiles(samples)}")


if __name__ == "__main__":
    main()
