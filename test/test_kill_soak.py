"""The kill -9 soak (issue 21 proof): `python main.py` auto-trades on replayed real bars with resting orders
in the book and is killed with SIGKILL 25 times at seeded random moments (a random delay, or just after a new
order was journaled); after a final clean start and SIGTERM its books reconcile: no order reached the broker
twice, every broker fill is recorded exactly once, journal and broker agree on every order (the resting ones
too), positions equal the broker's, cash reconciles to the cent, every database passes integrity_check."""
from __future__ import annotations

import json
import random
import time
import urllib.request

import pytest

from daemon_support import DAILY, daily_codes, integrity, query, start_ready, wait_until
from test_daemon_recovery import SEED, TRADING, TRADING_SPEED, _check_books, _max_seq

KILLS = 25
BOUND_SECONDS = 200  # the whole soak, start-ups included (about 100 s on an idle 2-core machine)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not DAILY.is_dir(), reason=f"real daily bars not found at {DAILY}")]


def post(daemon, path: str, body: dict) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{daemon.port}{path}", data=json.dumps(body).encode(),
                                     headers={"X-API-Token": daemon.token(), "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:  # refused (e.g. a price below limit-down): the soak goes on
        return exc.code


def open_orders(data) -> int:
    return query(data / "sim_trading.db", "SELECT COUNT(*) FROM sim_orders WHERE status IN "
                                          "('submitted', 'open', 'partially_filled')")[0][0]


def rest_a_buy(daemon, codes: list[str], rng: random.Random) -> bool:
    """A manual limit buy 3 % under the market: it rests in the book across the kills."""
    code = rng.choice(codes)
    deadline = time.monotonic() + 3
    quote = None
    while quote is None and time.monotonic() < deadline:  # the first tick after a start may take a moment
        quote = daemon.try_api(f"/api/data/realtime/{code}")
    if not quote:
        return False
    price = round(quote["price"] * 0.97, 2)
    return post(daemon, "/api/actions/execute_buy", {"stock_code": code, "volume": 100, "price": price}) == 200


def test_25_kills_during_auto_trading_with_resting_orders_reconcile_exactly(tmp_path):
    started = time.monotonic()
    rng = random.Random(SEED + 21)
    codes = daily_codes()
    (tmp_path / "pool.json").write_text(json.dumps(codes), encoding="utf-8")
    args = ["--replay-data", str(DAILY), "--replay-speed", TRADING_SPEED, "--stock-pool", str(tmp_path / "pool.json")]
    # resting buys stay resting between the kills; a replayed tick is 24 market minutes apart from the next
    sets = {**TRADING, "BUY_ORDER_TIMEOUT": 3600.0, "QUOTE_STALE_SECONDS": 3600.0}
    data = tmp_path / "data"
    resting = resting_at_kill = 0
    for kill in range(KILLS):
        assert time.monotonic() - started < BOUND_SECONDS, f"only {kill} kills within {BOUND_SECONDS} s"
        daemon = start_ready(tmp_path, args, sets, name=f"soak{kill}")
        try:
            resting += rest_a_buy(daemon, codes, rng)
            if kill % 3 == 2:  # just after a new order was journaled: the pipeline is busy with it
                seen = _max_seq(data)
                wait_until(lambda: _max_seq(data) > seen, 30, "a new order", daemon)
                time.sleep(rng.uniform(0.0, 0.01))
            else:
                time.sleep(rng.uniform(0.05, 0.6))
            assert daemon.poll() is None, daemon.output()
            resting_at_kill += bool(open_orders(data))
            assert daemon.kill() == -9
        finally:
            daemon.stop_quietly()
        assert set(integrity(data).values()) == {"ok"}
    final = start_ready(tmp_path, args, {**sets, "ENABLE_AUTO_TRADING": False}, name="final")
    try:
        code, seconds = final.terminate(10)
        assert code == 0 and seconds < 10, final.output()
    finally:
        final.stop_quietly()
    assert resting >= KILLS // 2, f"only {resting} resting orders were placed"
    # a replayed day lasts 0.4 s (its orders expire at its close), so not every kill finds one in the book
    assert resting_at_kill >= KILLS // 5, f"orders rested in the book at only {resting_at_kill} kills"
    _check_books(data)
