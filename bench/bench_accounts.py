"""Supervisor overhead: `GET /api/positions` of one account, direct to its daemon vs forwarded by the account
supervisor (`/api/accounts/<id>/positions`), sequential keep-alive requests on loopback; p50/p99 of each.
The account is a real child daemon on the demo market holding `--positions` stocks.

    python bench/bench_accounts.py [--requests 500] [--positions 50]
"""
from __future__ import annotations

import argparse
import http.client
import json
import logging
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from accounts.config import AccountSpec  # noqa: E402
from accounts.supervisor import Supervisor  # noqa: E402
from accounts.web import create_supervisor_app  # noqa: E402
from persistence.config_store import ConfigStore  # noqa: E402
from persistence.storage import Database  # noqa: E402
from web_server import WebServer  # noqa: E402

START_SECONDS = 120


def timed_gets(port: int, path: str, token: str, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", path, headers={"X-API-Token": token, "Host": f"127.0.0.1:{port}"})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body[:200]
        latencies.append((time.perf_counter() - started) * 1000)
    conn.close()
    return latencies


def wait_ready(port: int, token: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/health", headers={"X-API-Token": token})
            with opener.open(request, timeout=5) as response:
                if json.loads(response.read())["data"]["all_alive"]:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the account daemon did not become healthy")


def buy(port: int, token: str, codes: list[str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for code in codes:
        conn.request("POST", "/api/actions/execute_buy", body=json.dumps({"stock_code": code, "volume": 100}),
                     headers={"X-API-Token": token, "Content-Type": "application/json", "Host": f"127.0.0.1:{port}"})
        conn.getresponse().read()
    conn.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--positions", type=int, default=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = ConfigStore(Database(root / "supervisor_config.db"))
        spec = AccountSpec("sim1", "基准", "simulation")
        supervisor = Supervisor([spec], settings, root / "data", root / "logs", {"REPLAY_SECONDS_PER_DAY": 600.0})
        token = "bench-supervisor-token-0123456789"
        app = create_supervisor_app(supervisor, token, "127.0.0.1", 0, [])
        web = WebServer(None, "127.0.0.1", 0, threads=8, app=app)
        web.start()
        supervisor.start_all()
        child = supervisor.child("sim1")
        try:
            wait_ready(child.port, child.token)
            codes = [f"{600000 + i:06d}.SH" for i in range(args.positions)]
            buy(child.port, child.token, codes)
            timed_gets(child.port, "/api/positions", child.token, 20)  # warm-up
            direct = timed_gets(child.port, "/api/positions", child.token, args.requests)
            forwarded = timed_gets(web.port, "/api/accounts/sim1/positions", token, args.requests)
        finally:
            web.stop(2)
            supervisor.shutdown(15)
    print(f"GET /api/positions, {args.positions} positions, {args.requests} sequential keep-alive requests")
    for name, values in (("direct to the account daemon", direct), ("forwarded by the supervisor", forwarded)):
        print(f"  {name:30s} p50 {statistics.median(values):7.2f} ms  p99 {pct(values, 0.99):7.2f} ms")
    print(f"  overhead                       p50 {statistics.median(forwarded) - statistics.median(direct):+7.2f} ms"
          f"  p99 {pct(forwarded, 0.99) - pct(direct, 0.99):+7.2f} ms")


if __name__ == "__main__":
    main()
