"""The operator's calls under a connection flood (issue 25 item 14), on loopback with the real components: open
N idle connections (some of them having sent half a request and stopped), then time fresh operator connections
calling GET /api/health, POST /api/actions/pause and POST /api/actions/emergency_stop (with the token), each
round on a new connection, printing p50 / p99 / max per call. `--unguarded` runs waitress as before the fix
(no read deadline, no eviction when the table is full) for comparison; its calls give up after `--timeout`.

    python bench/bench_flood.py [--connections 1100] [--slow 300] [--rounds 20] [--timeout 20] [--unguarded]
"""
from __future__ import annotations

import argparse
import logging
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

import webapi.server as web_server  # noqa: E402
from web_test_support import Client, build_system, start_server  # noqa: E402

CALLS = (("GET /api/health", "get", "/api/health"), ("POST /api/actions/pause", "post", "/api/actions/pause"),
         ("POST /api/actions/emergency_stop", "post", "/api/actions/emergency_stop"))


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def open_flood(port: int, count: int, slow: int) -> list[socket.socket]:
    sockets = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if index < slow:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sockets.append(sock)
    return sockets


def timed_call(port: int, method: str, path: str, timeout: float) -> tuple[float, str]:
    started = time.perf_counter()
    try:
        reply = getattr(Client(port, timeout=timeout), method)(path)
        outcome = str(reply.status)
    except OSError as exc:  # socket.timeout included: the call did not get through
        outcome = type(exc).__name__
    return time.perf_counter() - started, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--unguarded", action="store_true", help="waitress without the guard (before the fix)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    raise_fd_limit(4 * args.connections)
    if args.unguarded:
        web_server.guard_connections = lambda server, settings: None
    with tempfile.TemporaryDirectory() as folder:
        system = build_system(Path(folder))
        server = start_server(system)
        flood: list[socket.socket] = []
        try:
            started = time.perf_counter()
            flood = open_flood(server.port, args.connections, args.slow)
            print(f"{args.connections} connections opened ({args.slow} slow) in {time.perf_counter() - started:.2f} s; "
                  f"limit {system.settings.get('WEB_CONNECTION_LIMIT')}, {'unguarded' if args.unguarded else 'guarded'}")
            results = {label: [] for label, _, _ in CALLS}
            outcomes = {label: set() for label, _, _ in CALLS}
            for _ in range(args.rounds):
                for label, method, path in CALLS:
                    seconds, outcome = timed_call(server.port, method, path, args.timeout)
                    results[label].append(seconds)
                    outcomes[label].add(outcome)
                if args.unguarded and max(max(r) for r in results.values()) >= args.timeout:
                    break  # one lock-out is the finding; do not wait out every round
            for label, seconds in results.items():
                ordered = sorted(seconds)
                p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
                print(f"{label:34s} n={len(ordered):3d}  p50 {statistics.median(ordered) * 1000:8.1f} ms  "
                      f"p99 {p99 * 1000:8.1f} ms  max {ordered[-1] * 1000:8.1f} ms  status {sorted(outcomes[label])}")
            guarded = server._server
            print(f"evicted {getattr(guarded, 'evicted', 0)}, closed by the read deadline "
                  f"{getattr(guarded, 'read_deadline_closed', 0)}")
        finally:
            for sock in flood:
                sock.close()
            server.stop(2)
            system.close()


if __name__ == "__main__":
    main()
