"""End to end (issue 30): a LIVE daemon process (`main.py --live`, BROKER = "remote", no xtquant on its side) trading
through the real qmt_gateway process on the simulated miniQMT. Quotes come from the gateway, a manual buy is placed
once and its fill booked once, and a fill made while the daemon is killed reaches it after its restart — once."""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from counterpart_support import held, start_live_process
from daemon_support import Daemon, wait_until
from gateway_support import CODE, TOKEN, GatewayProcess

LAUNCHER = Path(__file__).resolve().parent / "daemon_on_gateway.py"


def launch_daemon(root: Path, gateway: GatewayProcess) -> Daemon:
    root.mkdir(parents=True, exist_ok=True)
    pool = root / "pool.json"
    pool.write_text("[]", encoding="utf-8")
    sets = {"BROKER": "remote", "BROKER_URL": f"http://127.0.0.1:{gateway.port}", "BROKER_TOKEN": TOKEN}
    return start_live_process(LAUNCHER, root, pool, sets, {"COUNTERPART_START": gateway.market_start_now()},
                              root / f"daemon-{time.monotonic_ns()}.out")


def post(daemon: Daemon, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{daemon.port}{path}", data=json.dumps(body).encode(),
                                     headers={"X-API-Token": daemon.token(), "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=15) as response:
        return json.loads(response.read().decode("utf-8"))


def working_buy(daemon: Daemon) -> list[dict]:
    return [o for o in daemon.api("/api/orders?status=active") if o["stock_code"] == CODE]


@pytest.fixture
def gateway(tmp_path):
    process = GatewayProcess(tmp_path / "box")
    try:
        process.wait_started(60)
        yield process
    finally:
        process.stop()


def test_a_live_daemon_trades_through_the_gateway_and_a_kill_loses_and_doubles_nothing(gateway, tmp_path):
    daemon = launch_daemon(tmp_path / "daemon", gateway)
    try:
        quote = wait_until(lambda: daemon.try_api(f"/api/data/realtime/{CODE}"), 20, "a quote through the gateway",
                           daemon)
        assert quote["price"] > 0
        post(daemon, "/api/actions/execute_buy", {"stock_code": CODE, "volume": 100, "price": 40.2})
        wait_until(lambda: working_buy(daemon), 15, "the buy acknowledged", daemon)
        gateway.counterpart.send("fill", code=CODE)
        wait_until(lambda: held(daemon).get(CODE) == 100, 20, "the fill booked", daemon)

        post(daemon, "/api/actions/execute_buy", {"stock_code": CODE, "volume": 100, "price": 40.2})
        wait_until(lambda: working_buy(daemon), 15, "the second buy acknowledged", daemon)
        daemon.kill()
        gateway.counterpart.send("fill", code=CODE)  # filled while the daemon is dead: the gateway keeps the event
        book = gateway.counterpart.book()
        assert [o["traded_volume"] for o in book["orders"]] == [100, 100]

        daemon = launch_daemon(tmp_path / "daemon", gateway)
        wait_until(lambda: held(daemon).get(CODE) == 200, 30, "the fill made while it was down", daemon)
        records = daemon.api("/api/trade-records")
        rows = records["records"] if isinstance(records, dict) else records
        assert len([r for r in rows if r["stock_code"] == CODE]) == 2
        assert len(gateway.counterpart.book()["orders"]) == 2  # no order was sent twice
    finally:
        daemon.stop_quietly()
