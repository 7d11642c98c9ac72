"""The remote gateway over loopback (issue 30): order → acknowledgement p50/p99 on the paper account directly and
through the gateway in its own process (signed HTTP, the gateway's remark and event journals, the daemon's
RemoteBroker), the added milliseconds; events per second through the resumable stream; time from a connection cut to
the next fill delivered (these two with gateway and client in this process).

    python bench/bench_gateway.py [--orders 500] [--events 2000] [--cuts 20]

Real SQLite files (synchronous=FULL, an fsync per commit, as in production) in a
temporary folder, with the client's default settings from config.py."""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "test", ROOT / "test" / "gateway"):
    sys.path.insert(0, str(_path))

import config  # noqa: E402
from gateway.client import ClientTimings, GatewayCursor, RemoteBroker, Transport  # noqa: E402
from gateway_support import TOKEN, Recorder, Rig, buy  # noqa: E402
from persistence.storage import Database  # noqa: E402

RESTING = 39.0  # below the quote (40.0): the buy rests, so its acknowledgement is the whole work


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def order_acks(rig: Rig, orders: int, gateway_port: int) -> tuple[list[float], list[float], list[float]]:
    """Milliseconds per place_order: straight on this process's paper account, then through the gateway serving an
    identical account in its own process (`--serve`), as on the Windows box; and the bare signed round trip."""
    direct = []
    for n in range(orders):
        started = time.perf_counter()
        rig.sim.place_order(buy(f"D{n}", RESTING))
        direct.append((time.perf_counter() - started) * 1000)
    db = Database(rig.root / "bench-acks.db")
    broker = RemoteBroker(Transport(f"http://127.0.0.1:{gateway_port}", TOKEN), GatewayCursor(db),
                          ClientTimings.from_settings(_Defaults()), reader="bench-acks")
    broker.set_listener(Recorder())
    broker.connect()
    remote, health = [], []
    for n in range(orders):
        started = time.perf_counter()
        broker.place_order(buy(f"R{n}", RESTING))
        remote.append((time.perf_counter() - started) * 1000)
    for _ in range(orders):
        started = time.perf_counter()
        broker.transport.request("GET", "/health")
        health.append((time.perf_counter() - started) * 1000)
    broker.close()
    db.close()
    return direct, remote, health


def serve(folder: str) -> int:
    """Child process: the paper account behind a gateway; prints its port, serves until stdin closes."""
    rig = Rig(Path(folder), settings_overrides={"SIMULATION_BALANCE": 1e10})
    print(rig.gateway.port, flush=True)
    sys.stdin.read()
    rig.close()
    return 0


def events_per_second(rig: Rig, fills: int) -> tuple[float, int]:
    """The stream's own rate: `fills` marketable orders are made on the account (each: order updates and a fill,
    journaled by the gateway) while no reader is connected; then a RemoteBroker connects and drains them.
    Events delivered per second, from connect() to the last fill at the listener."""
    for n in range(fills):
        rig.fill_once(f"E{n}")
    recorder = Recorder()
    started = time.perf_counter()
    broker = rig.client("bench-events.db", reader="bench-events", timings=ClientTimings.from_settings(_Defaults()),
                        listener=recorder)
    assert recorder.wait_for(lambda r: len(r.fills) >= fills, timeout=120), "not every fill arrived"
    elapsed = time.perf_counter() - started
    delivered = broker.delivered
    broker.close()
    return delivered / elapsed, delivered


def resume_after_cut(rig: Rig, cuts: int) -> list[float]:
    """Milliseconds from cutting every connection (a long-poll mid-stream) to the next fill at the listener."""
    proxy = rig.with_proxy()
    recorder = Recorder()
    rig.client("bench-cuts.db", reader="bench-cuts", timings=ClientTimings.from_settings(_Defaults()), listener=recorder)
    times = []
    for n in range(cuts):
        have = len(recorder.fills)
        pause = threading.Event()
        pause.wait(0.05)  # let the client's next long-poll be open at the gateway, so the cut hits it mid-stream
        started = time.perf_counter()
        proxy.cut()
        rig.fill_once(f"C{n}")
        assert recorder.wait_for(lambda r: len(r.fills) > have, timeout=30), "no fill after the cut"
        times.append((time.perf_counter() - started) * 1000)
    return times


class _Defaults:
    def get(self, key: str):
        return config.DEFAULTS[key]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--cuts", type=int, default=20)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "box").mkdir()
        child = subprocess.Popen([sys.executable, __file__, "--serve", str(Path(tmp) / "box")], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        rig = Rig(Path(tmp), settings_overrides={"SIMULATION_BALANCE": 1e10})
        try:
            direct, remote, health = order_acks(rig, args.orders, int(child.stdout.readline()))
            rate, delivered = events_per_second(rig, args.events)
            cuts = resume_after_cut(rig, args.cuts)
        finally:
            rig.close()
            child.stdin.close()
            child.wait(30)
    p50_d, p99_d = percentile(direct, 0.5), percentile(direct, 0.99)
    p50_r, p99_r = percentile(remote, 0.5), percentile(remote, 0.99)
    print(f"order → ack, {args.orders} resting buys")
    print(f"  direct (SimTrader.place_order):   p50 {p50_d:.2f} ms  p99 {p99_d:.2f} ms  max {max(direct):.2f} ms")
    print(f"  via gateway (RemoteBroker):       p50 {p50_r:.2f} ms  p99 {p99_r:.2f} ms  max {max(remote):.2f} ms")
    print(f"  added by the gateway:             p50 {p50_r - p50_d:.2f} ms  p99 {p99_r - p99_d:.2f} ms")
    print(f"  of which the wire (signed GET /health round trip): p50 {percentile(health, 0.5):.2f} ms  "
          f"p99 {percentile(health, 0.99):.2f} ms; the rest: the remark's journal commit before the send and the event stream's work beside it")
    print(f"events: {delivered} journaled events ({args.events} fills with their order updates) drained at "
          f"{rate:,.0f} events/s")
    print(f"resume after a cut ({args.cuts} cuts, next fill delivered): p50 {statistics.median(cuts):.1f} ms  "
          f"p99 {percentile(cuts, 0.99):.1f} ms  max {max(cuts):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
