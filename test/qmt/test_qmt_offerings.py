"""The live broker's new share / new bond queries (qmt/offerings.py) on the REAL xttrader.py: today's offerings and
the subscription quota arrive in xttrader's own shapes, the account's quota only for its account, and a miniQMT
that stops answering makes the query fail within its deadline instead of hanging."""
from __future__ import annotations

import time

import pytest

from core.models import BrokerUnavailable
from qmt.broker_guard import BrokerGuard
from test_easy_qmt_trader import counterpart, env, loopback_only  # noqa: F401 (fixtures)
from easy_qmt_trader import BrokerTimings

OFFERINGS = {
    "732777.SH": {"name": "沪主板新股", "type": "STOCK", "minPurchaseNum": 1000, "maxPurchaseNum": 14000,
                  "purchaseDate": "20240102", "issuePrice": 12.34},
    "754810.SH": {"name": "某某转债", "type": "BOND", "minPurchaseNum": 10, "maxPurchaseNum": 10000,
                  "purchaseDate": "20240102", "issuePrice": 100.0},
}


def test_offerings_and_quota_come_back_in_xttraders_shapes(env, counterpart):
    counterpart.ipo_offerings = dict(OFFERINGS)
    counterpart.purchase_limits = {"SH": 8000, "KCB": 3500, "SZ": 12000}
    trader, _ = env.make()
    assert trader.query_ipo_data() == OFFERINGS
    assert trader.query_new_purchase_limit() == {"KCB": 3500, "SH": 8000, "SZ": 12000}
    guarded = BrokerGuard(trader, lambda: 5.0)  # the chores call them through the guard's deadline
    assert guarded.call("query_ipo_data", guarded.inner.query_ipo_data) == OFFERINGS
    asked = [method for method, _, _ in counterpart.request_log]
    assert asked.count("queryIPODataWithSeq") == 2 and asked.count("queryNewPurchaseLimitWithSeq") == 1


def test_no_offerings_today_is_an_empty_answer(env, counterpart):
    trader, _ = env.make()
    assert (trader.query_ipo_data(), trader.query_new_purchase_limit()) == ({}, {})


def test_a_hung_miniqmt_fails_the_query_within_its_deadline(env, counterpart):
    trader, _ = env.make(timings=BrokerTimings(query_timeout=0.3, connect_timeout=5.0, reconnect_first_delay=0.01,
                                               reconnect_max_delay=0.05))
    counterpart.hang()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as refused:
        trader.query_new_purchase_limit()
    assert time.monotonic() - started < 2.0
    assert refused.value.message == "查询新股申购额度超时（0.3 秒），miniQMT 无响应"
    counterpart.end_hang()


def test_subscriptions_and_repos_go_as_limit_orders_even_when_stock_orders_use_best_five(env, counterpart):
    import itertools

    from core.models import OrderRequest, Rule, Side
    from easy_qmt_trader import EasyQmtTrader
    from persistence.storage import Database
    from qmt.account import AccountConfig
    from test_easy_qmt_trader import FAST, Recorder

    counterpart.ipo_offerings = dict(OFFERINGS)
    counterpart.purchase_limits = {"SH": 8000}
    trader = EasyQmtTrader(Database(env.tmp_path / "trading.db"), env.settings, env.clock,
                           AccountConfig("8800123456", "STOCK", str(env.qmt_dir), "best5_cancel"), env.qmt_dir,
                           timings=FAST, session_ids=itertools.count(700).__next__)
    recorder = Recorder()
    trader.set_listener(recorder)
    trader.connect()
    try:
        trader.place_order(OrderRequest("C1", "732777.SH", Side.BUY, 8000, 12.34, Rule.IPO_SUBSCRIBE))
        trader.place_order(OrderRequest("C2", "204001.SH", Side.SELL, 900, 1.805, Rule.REPO_LEND))
        trader.place_order(OrderRequest("C3", "600036.SH", Side.BUY, 100, 10.0, Rule.MANUAL))
        recorder.wait(lambda: all(recorder.statuses(c) for c in ("C1", "C2", "C3")))
        assert {o.remark: o.price_type for o in counterpart.orders.values()} == {"C1": 11, "C2": 11, "C3": 42}
    finally:
        trader.close()
