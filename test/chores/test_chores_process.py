"""End to end on a LIVE daemon process (test/stand_ins/live_account.py: the real xttrader/xtdata over the simulated
miniQMT): today's offerings and quota from the counterpart, the subscription job sends every order with the quota's
volume and the repo job lends the spare cash at the quoted bid; the counter's book, /api/chores and the orders agree."""
from __future__ import annotations

import json
import os
import urllib.request

import pytest

from counterpart_support import launch_live
from daemon_support import wait_until

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.name == "nt", reason="the counterpart launcher and signals are POSIX-tested")]

OFFERINGS = {  # the counterpart's day is 2026-12-08 (COUNTERPART_START)
    "732777.SH": {"name": "沪主板新股", "type": "STOCK", "minPurchaseNum": 1000, "maxPurchaseNum": 14000,
                  "purchaseDate": "20261208", "issuePrice": 12.34},
    "754810.SH": {"name": "某某转债", "type": "BOND", "minPurchaseNum": 10, "maxPurchaseNum": 10000,
                  "purchaseDate": "20261208", "issuePrice": 100.0},
}


def trigger(daemon, job_id: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{daemon.port}/api/jobs/{job_id}/trigger", data=b"{}",
                                     method="POST", headers={"X-API-Token": daemon.token(),
                                                             "Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return json.loads(response.read().decode("utf-8"))["data"]["run"]


def test_a_live_daemon_subscribes_with_the_quota_and_lends_the_spare_cash(tmp_path):
    daemon, counterpart = launch_live(tmp_path / "live", {"ENABLE_IPO_SUBSCRIBE": True, "ENABLE_REPO": True,
                                                          "REPO_KEEP_CASH": 10000.0})
    try:
        counterpart.send("ipo", offerings=OFFERINGS, quota={"SH": 8000, "SZ": 500, "KCB": 0})
        counterpart.send("repo_rate", code="204001.SH", rate=1.805)
        counterpart.send("repo_rate", code="131810.SZ", rate=1.78)
        counterpart.book(daemon)  # commands run in order: once the book is dumped, the three before it ran
        run = trigger(daemon, "ipo_subscribe")
        assert run["status"] == "ok", run
        assert run["result"].startswith("新股新债申购 2026-12-08：今日 2 只，已委托 2 只（额度：KCB 0，SH 8000，SZ 500）")
        book = wait_until(lambda: (lambda b: b if sum(o["status"] == 50 for o in b["orders"]) == 2 else None)(
            counterpart.book(daemon)), 10, "both subscriptions reported", daemon)
        assert sorted((o["stock_code"], o["side"], o["volume"], o["price"]) for o in book["orders"]) == [
            ("732777.SH", "buy", 8000, 12.34), ("754810.SH", "buy", 10000, 100.0)]
        run = trigger(daemon, "repo")
        assert run["status"] == "ok", run
        assert run["result"].startswith("国债逆回购 2026-12-08：204001.SH 年化 1.805% 出借 ")
        book = counterpart.book(daemon)
        [repo] = [o for o in book["orders"] if o["stock_code"] == "204001.SH"]
        lent = (book["cash"] + repo["volume"] * 100 - 10000) // 1000 * 1000  # the counter's cash before the freeze
        assert (repo["side"], repo["price"], repo["volume"] * 100) == ("sell", 1.805, lent)
        view = daemon.api("/api/chores")
        assert (view["live"], view["note"]) == (True, "")
        assert [(r["code"], r["volume"], r["status"]) for r in view["subscriptions"]] == [
            ("732777.SH", 8000, "sent"), ("754810.SH", 10000, "sent")]
        assert [(r["code"], r["price"], r["amount"]) for r in view["repo"]] == [("204001.SH", 1.805, float(lent))]
        orders = daemon.api("/api/orders")
        assert sorted((o["stock_code"], o["rule"]) for o in orders) == [
            ("204001.SH", "repo_lend"), ("732777.SH", "ipo_subscribe"), ("754810.SH", "ipo_subscribe")]
    finally:
        daemon.stop_quietly()
