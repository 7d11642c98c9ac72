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
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from web_test_support import TOKEN, Client, SseClient, build_system, start_server  # noqa: E402

MAX_SECONDS = 60  # hard bound on the load phase whatever the arguments


class LoadConnection:
    """One keep-alive client connection of the load generator, driven by `load_clients`' selector loop."""

    def __init__(self, port: int, revalidate: bool):
        self.port = port
        self.revalidate = revalidate
        self.etag = ""
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.sent_at = 0.0

    def connect(self, selector: selectors.BaseSelector) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        selector.register(self.sock, selectors.EVENT_READ, self)

    def send(self) -> None:
        extra = f"If-None-Match: {self.etag}\r\n" if self.revalidate and self.etag else ""
        request = (f"GET /api/positions HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nX-API-Token: {TOKEN}\r\n"
                   f"Accept: application/json\r\n{extra}\r\n").encode("latin-1")
        self.buffer.clear()
        self.sent_at = time.perf_counter()
        self.sock.sendall(request)

    def response(self) -> tuple[int, bool] | None:
        """(status, connection closes) once the whole response is in the buffer, else None."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:])
        if len(self.buffer) < end + 4 + int(fields.get("content-length", "0")):
            return None
        self.etag = next((line.split(": ", 1)[1] for line in lines[1:] if line.lower().startswith("etag:")),
                         self.etag)
        return int(lines[0].split(" ", 2)[1]), fields.get("connection") == "close"

    def close(self, selector: selectors.BaseSelector) -> None:
        selector.unregister(self.sock)
        self.sock.close()


def load_clients(port: int, clients: int, seconds: float, results, revalidate: bool = False) -> None:
    """Child process: `clients` keep-alive connections, each asking GET /api/positions again as soon as its
    answer is complete; with `revalidate` each sends the ETag it last saw (200 and 304 both count as
    answered; waitress closes the connection after a 304, so such a client reconnects). One thread and a
    selector, with headers parsed by hand: http.client in 50 threads spent more CPU than the server."""
    selector = selectors.DefaultSelector()
    connections = [LoadConnection(port, revalidate) for _ in range(clients)]
    latencies: list[float] = []
    failures = 0
    started = time.monotonic()
    deadline = started + seconds
    for connection in connections:
        connection.connect(selector)
        connection.send()
    in_flight = len(connections)
    while in_flight:
        for key, _ in selector.select(timeout=5):
            connection = key.data
            data = connection.sock.recv(1 << 18)
            if data:
                connection.buffer += data
                answer = connection.response()
                if answer is None:
                    continue
                latencies.append(time.perf_counter() - connection.sent_at)
                status, closes = answer
                failures += status not in (200, 304)
            else:
                failures, closes = failures + 1, True  # closed before the answer was complete
            if closes:
                connection.close(selector)
            if time.monotonic() >= deadline:
                in_flight -= 1
                if not closes:
                    connection.close(selector)
                continue
            if closes:
                connection.connect(selector)
            connection.send()
    results.put((latencies, failures, time.monotonic() - started))


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
