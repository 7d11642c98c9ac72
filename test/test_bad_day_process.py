"""Issue 25 §3: the protection guarantee on a bad day, as real processes. ONE live daemon (main.main through
test/stand_ins/live_account.py: the real xttrader/xtdata over the simulated miniQMT) runs inside a trading session
(COUNTERPART_START) with automatic trading on; each scenario drives the counterpart's faults through its control
file (COUNTERPART_CONTROL) on a stock of its own and checks the invariant of DESIGN §8a at the counter itself:
within PROTECTION_DEADLINE a sell is working at the counterpart, or /api/health is red with a protection failure
naming the stock; no order is sent twice; at the end the daemon's books equal the counterpart's."""
from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

import config
from counterpart_support import REJECTED, held, launch_live, protection_failures
from daemon_support import wait_until

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.name == "nt", reason="the counterpart launcher and signals are POSIX-tested")]

PROTECTION_DEADLINE = config.PROTECTION_DEADLINE
VOLUME = 1000
# code -> (cost carried from an earlier day, price that crosses the stop-loss); every crossing price lies below
# cost × (1 + STOP_LOSS_RATIO) and above the limit-down of the counterpart's previous close (see live_account.py)
HOLDINGS = {"600000.SH": (14.00, 12.50),   # stop 14.00 × 0.905 = 12.67, limit-down 12.38
            "600036.SH": (40.80, 36.50),   # stop 36.92, limit-down 36.09
            "000002.SZ": (8.30, 7.45),     # stop 7.51, limit-down 7.34
            "601988.SH": (5.30, 4.75),     # stop 4.80, limit-down 4.68
            "601318.SH": (46.50, 41.50)}   # stop 42.08, limit-down 41.04
SYNC_SECONDS = float(config.BROKER_SYNC_INTERVAL) * 2 + 10  # positions reach the daemon by its broker sync


def stop_level(cost: float) -> float:
    return cost * (1 + config.STOP_LOSS_RATIO)


def safely(call, default):
    """An API read that may fail for a moment on a loaded machine counts as 'not yet'."""
    try:
        return call()
    except (AssertionError, OSError, ValueError):
        return default


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_day")
    daemon, counterpart = launch_live(root, {"ENABLE_AUTO_TRADING": True})
    try:
        for code, (cost, _) in HOLDINGS.items():
            counterpart.send("hold", code=code, volume=VOLUME, cost=cost)
        wait_until(lambda: safely(lambda: held(daemon), {}) == {code: VOLUME for code in HOLDINGS}, SYNC_SECONDS,
                   "the carried positions in the daemon's books", daemon)
        yield SimpleNamespace(daemon=daemon, counterpart=counterpart)
    finally:
        daemon.stop_quietly()


def cross(live, code: str) -> float:
    """Quote `code` below its stop-loss level; returns when (monotonic) the command was written."""
    cost, price = HOLDINGS[code]
    assert price < stop_level(cost), (code, price, stop_level(cost))
    return live.counterpart.send("price", code=code, price=price)


def wait_working_sell(live, code: str, seconds: float, since: float) -> dict:
    """The one sell of `code` working at the counter, within `seconds` of `since`."""
    working = wait_until(lambda: live.counterpart.working_sells(code, live.daemon),
                         max(0.0, since + seconds - time.monotonic()), f"a sell of {code} working at the counterpart",
                         live.daemon)
    assert len(working) == 1, working
    return working[0]


def linked(live) -> bool:
    health = live.daemon.try_api("/api/health") or {}
    return (health.get("broker") or {}).get("link_state") == "connected"


def daemon_sells(live, code: str) -> list[str]:
    rows = safely(lambda: live.daemon.api("/api/orders"), [])
    return sorted(o["client_id"] for o in rows if o["stock_code"] == code and o["side"] == "sell")


def feed_skew(live) -> float:
    status = live.daemon.try_api("/api/connection/status") or {}
    return float((status.get("data") or {}).get("clock_skew_seconds") or 0.0)


def daemon_active_sells(live, code: str) -> list[str]:
    rows = safely(lambda: live.daemon.api("/api/orders?status=active"), [])
    return sorted(o["client_id"] for o in rows if o["stock_code"] == code and o["side"] == "sell")


def test_clean_day_stop_loss_is_working_at_the_counter_within_the_deadline_and_its_fill_booked(live):
    code = "600000.SH"
    crossed = cross(live, code)
    sell = wait_working_sell(live, code, PROTECTION_DEADLINE, crossed)
    assert (sell["volume"], sell["traded_volume"]) == (VOLUME, 0)
    assert sell["price"] <= HOLDINGS[code][1]  # marketable: at or below the quote
    live.counterpart.send("fill", code=code)  # the exchange fills it: the sale reaches the daemon's books
    wait_until(lambda: code not in safely(lambda: held(live.daemon), {code: VOLUME}), SYNC_SECONDS,
               f"{code} sold out in the daemon's books", live.daemon)


def test_hang_during_a_stop_loss_sends_no_duplicate_and_a_sell_works_after_it(live):
    code, hang = "600036.SH", 20.0
    live.counterpart.send("hang", seconds=hang, book_late=True)  # what was sent into the hang is booked at its end
    crossed = cross(live, code)
    sell = wait_working_sell(live, code, hang + PROTECTION_DEADLINE, crossed)
    assert sell["volume"] == VOLUME
    # settled: the link is back and the daemon's own working sells are exactly the counter's (a re-send after the
    # reconnect would show here or in the books check at the end); still one order, sent once
    wait_until(lambda: linked(live) and daemon_active_sells(live, code) == [
        o["remark"] for o in live.counterpart.working_sells(code)], hang + PROTECTION_DEADLINE,
        f"the link back and the daemon's view of the {code} sell agreeing with the counter", live.daemon)
    orders = live.counterpart.orders(code)
    assert [o["remark"] for o in orders if o["working"]] == [sell["remark"]], orders
    remarks = live.counterpart.book()["sent_remarks"]
    assert remarks.count(sell["remark"]) == 1


def test_stop_loss_lost_in_a_hang_is_working_or_a_protection_failure_within_the_deadline(live):
    """A stop-loss sent into a hang that loses it: after the reconnect the full order query does not list it, so it
    is settled as never delivered (never re-sent itself) and the stop-loss goes out again, once: one sell works
    within the deadline."""
    code, hang = "601318.SH", 5.0
    # an earlier scenario's link outage may still show as this stock's failure: start from a protected stock
    wait_until(lambda: linked(live) and code not in (safely(lambda: protection_failures(live.daemon), {code: 1}) or {}),
               SYNC_SECONDS, f"the link up and no protection failure for {code}", live.daemon)
    live.counterpart.send("hang", seconds=hang)  # requests sent meanwhile are lost
    crossed = cross(live, code)

    def outcome():
        if live.counterpart.working_sells(code, live.daemon):
            return "sell working"
        failure = (protection_failures(live.daemon) or {}).get(code)
        return failure and failure["cause"]

    result = wait_until(outcome, max(0.0, crossed + PROTECTION_DEADLINE + 2.0 - time.monotonic()),
                        f"a sell of {code} working or 保护失效 for it", live.daemon)
    assert result == "sell working", result
    sell = wait_working_sell(live, code, PROTECTION_DEADLINE, crossed)
    mine = daemon_sells(live, code)  # the lost one (settled as never delivered) and the one working
    remarks = live.counterpart.book()["sent_remarks"]
    assert len(mine) == 2 and sell["remark"] in mine, mine
    assert [o["remark"] for o in live.counterpart.orders(code)] == [sell["remark"]]  # the lost one never booked
    assert all(remarks.count(r) <= 1 for r in mine)  # neither was sent twice


def test_feed_clock_two_minutes_behind_still_sends_the_stop_loss(live):
    code = "000002.SZ"
    live.counterpart.send("skew_clock", seconds=-120)
    try:
        crossed = cross(live, code)
        sell = wait_working_sell(live, code, PROTECTION_DEADLINE, crossed)
        assert sell["volume"] == VOLUME
        assert -125.0 <= feed_skew(live) <= -115.0  # judged on the feed's own clock, estimated at about −120 s
    finally:
        live.counterpart.send("clear")
        wait_until(lambda: abs(feed_skew(live)) < 5.0, PROTECTION_DEADLINE, "the feed clock estimate back at 0",
                   live.daemon)  # the next scenario's quotes are accepted again


def test_refused_stop_loss_turns_health_red_with_a_protection_failure_within_the_deadline(live):
    code, message = "601988.SH", "柜台拒绝：该证券暂停卖出"
    live.counterpart.send("reject_orders", side="sell", message=message)
    try:
        crossed = cross(live, code)
        refused = wait_until(lambda: [o for o in live.counterpart.orders(code, "sell", live.daemon)
                                      if o["status"] == REJECTED], PROTECTION_DEADLINE, f"the {code} sell refused")
        assert refused[0]["status_msg"] == message and refused[0]["volume"] == VOLUME
        failure = wait_until(lambda: (protection_failures(live.daemon) or {}).get(code),
                             max(0.0, crossed + PROTECTION_DEADLINE + 2.0 - time.monotonic()),
                             f"/api/health red with a protection failure for {code}", live.daemon)
        assert (failure["cause"], failure["cause_label"]) == ("no_working_sell", "清仓条件成立但没有卖单"), failure
        assert failure["since"]
    finally:
        live.counterpart.send("clear")


def test_books_equal_the_counterparts_at_the_end(live):
    """Positions and cash of the daemon are the counter's; no stock has more than one working sell."""
    def agreed():
        book = live.counterpart.book(live.daemon)
        theirs = {code: p["volume"] for code, p in book["positions"].items() if p["volume"] > 0}
        status = safely(lambda: live.daemon.api("/api/status"), None)
        mine = safely(lambda: held(live.daemon), None)
        return book if status and mine == theirs and status["account"]["cash"] == book["cash"] else None

    book = wait_until(agreed, SYNC_SECONDS, "the daemon's positions and cash equal the counterpart's", live.daemon)
    assert "600000.SH" not in book["positions"] or book["positions"]["600000.SH"]["volume"] == 0
    working: dict[str, int] = {}
    for order in book["orders"]:
        if order["working"] and order["side"] == "sell":
            working[order["stock_code"]] = working.get(order["stock_code"], 0) + 1
    assert all(count == 1 for count in working.values()), book["orders"]
    assert len(book["sent_remarks"]) == len(set(book["sent_remarks"]))  # no order was ever sent twice
