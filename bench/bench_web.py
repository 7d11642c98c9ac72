"""Web server figures on loopback with the real components (synthetic replay market, SimTrader, executor,
positions on SQLite): GET /api/positions with 200 positions under 50 concurrent keep-alive clients (p50/p99
latency, requests/s; the clients run in a separate process so they do not share the server's GIL) — once
fetching the full body every time, once revalidating with If-None-Match as a browser does (304 while the
snapshot's data_version is unchanged) — and the delay from a fill to the server-sent event that carries it
(idle, and under that load).

    python bench/bench_web.py [--positions 200] [--clients 50] [--seconds 10] [--fills 40] [--threads 16]
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from web_test_support import Client, SseClient, build_system, start_server  # noqa: E402

MAX_SECONDS = 60  # hard bound on the load phase whatever the arguments


def load_clients(port: int, clients: int, seconds: float, results, revalidate: bool = False) -> None:
    """Child process: `clients` threads, each GET /api/positions on its own keep-alive connection; with
    `revalidate` each sends the ETag it last saw (200 and 304 both count as answered)."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]

    def worker() -> None:
        client = Client(port, timeout=30)
        mine = []
        etag = ""
        while time.monotonic() < deadline:
            started = time.perf_counter()
            reply = client.get("/api/positions", headers={"If-None-Match": etag} if revalidate and etag else None)
            mine.append(time.perf_counter() - started)
            etag = reply.headers.get("etag", etag)
            if reply.status not in (200, 304):
                failures[0] += 1
        client.close()
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put((latencies, failures[0], time.monotonic() - started))


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def fill_to_event_delays(system, port: int, fills: int, codes: list[str]) -> tuple[list[float], list[float]]:
    """Per buy: (time from calling buy_stock to the SSE snapshot showing the fill, time from buy_stock's return,
    i.e. the fill journaled and booked with fsync, to that snapshot). The sim broker fills synchronously."""
    stream = SseClient(port, timeout=10)
    _, snapshot = stream.next_event()
    delays, after_commit = [], []
    pause = threading.Event()
    for i in range(fills):
        code = codes[i % len(codes)]
        before = next((p["volume"] for p in snapshot["positions"] if p["stock_code"] == code), 0)
        started = time.perf_counter()
        system.executor.buy_stock(code, volume=100)
        booked = time.perf_counter()
        _, snapshot = stream.wait_for(lambda e, d: e == "positions" and any(
            p["stock_code"] == code and p["volume"] == before + 100 for p in d["positions"]), timeout=10)
        arrived = time.perf_counter()
        delays.append(arrived - started)
        after_commit.append(arrived - booked)
        pause.wait(0.15)  # fills spaced out like a person or a rule would place them
    stream.close()
    return delays, after_commit


def report_delays(title: str, measured: tuple[list[float], list[float]]) -> None:
    for label, delays in zip(("from buy call", "from fill booked"), measured):
        print(f"{title}, {label}: n={len(delays)} p50={percentile(delays, 50) * 1000:.1f} ms "
              f"p99={percentile(delays, 99) * 1000:.1f} ms max={max(delays) * 1000:.1f} ms")


def main() -> int:
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" is the point of the test
    logging.getLogger("data_manager").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=200)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fills", type=int, default=40)
    parser.add_argument("--threads", type=int, default=16, help="waitress worker threads")
    args = parser.parse_args()
    seconds = min(args.seconds, MAX_SECONDS)

    with tempfile.TemporaryDirectory() as folder:
        system = build_system(Path(folder), overrides={
            "SIMULATION_BALANCE": 1e9, "MAX_ORDERS_PER_DAY": 10000, "MAX_ORDER_VALUE": 1e7}, pool=[],
            with_probe=False)
        codes = [f"{600000 + i:06d}.SH" for i in range(args.positions)]
        system.data.set_watchlist(codes)
        system.data.run_once()
        for code in codes:
            system.executor.buy_stock(code, volume=100)
        held = len(system.positions.all())
        server = start_server(system, threads=args.threads)
        one = Client(server.port).get("/api/positions")
        print(f"positions held: {held}; GET /api/positions body: {len(one.body) / 1024:.0f} KiB; "
              f"waitress threads: {args.threads}; machine: {multiprocessing.cpu_count()} cores")

        idle = fill_to_event_delays(system, server.port, args.fills, codes)
        report_delays("fill → SSE event, idle", idle)

        context = multiprocessing.get_context("spawn")
        for revalidate in (False, True):
            results = context.Queue()
            child = context.Process(target=load_clients,
                                    args=(server.port, args.clients, seconds, results, revalidate))
            child.start()
            loaded = fill_to_event_delays(system, server.port, max(5, args.fills // 4), codes)
            latencies, failures, elapsed = results.get(timeout=MAX_SECONDS + 60)
            child.join()
            how = "revalidating with If-None-Match" if revalidate else "full body every time"
            print(f"GET /api/positions ({how}), {args.clients} concurrent clients, {elapsed:.1f} s: "
                  f"{len(latencies)} requests, {len(latencies) / elapsed:.0f} req/s, "
                  f"p50={percentile(latencies, 50) * 1000:.1f} ms p99={percentile(latencies, 99) * 1000:.1f} ms "
                  f"mean={statistics.mean(latencies) * 1000:.1f} ms, errors: {failures}")
            report_delays(f"fill → SSE event, under that load ({how})", loaded)
        server.stop()
        system.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
