"""DESIGN §8a asks for a sell order working AT THE BROKER: a live sell counts as working only while the broker has
named it (a push or a query listing it) within PROTECTION_ORDER_CONFIRM_SECONDS; while pushes are lost and queries
refused, the journal's word alone turns into 「卖单状态未能与券商核实」. The simulated broker confirms synchronously."""
from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from core.models import Order, OrderStatus, Rule, Side
from core.order_journal import OrderJournal
from protection.sentinel import Cause, LinkFacts, ProtectionState, judge_position
from protection_support import CROSSED, LiveRig, assert_books_equal, expect_protection, failure, fill_working_sell
from protection_support import CODE as LIVE_CODE
from protection_support import WORKING
from persistence.storage import Database
from test_bad_day_matrix import rig_holding
from test_easy_qmt_trader import counterpart, env, loopback_only  # noqa: F401 (fixtures)
from test_protection_sentinel import NOW, STOP, entry, facts, held
from trading_support import replay_clock

EW, F = ProtectionState.EXIT_WORKING, ProtectionState.FAILURE
CONFIRMED_AT = NOW - timedelta(seconds=30)


def live_facts(confirmed_at, link=LinkFacts(), confirm_seconds=30.0):
    sell = replace(entry(OrderStatus.OPEN), confirmed_at=confirmed_at)
    return replace(facts(held(available=0), sells=[sell], link=link), confirm_seconds=confirm_seconds)


@pytest.mark.parametrize("given, state, cause, reason", [
    (live_facts(CONFIRMED_AT), EW, None, f"{STOP}，卖单 SIM1 已在券商处工作（未成交 1000 股）"),  # 30 s: inclusive
    (live_facts(CONFIRMED_AT - timedelta(seconds=1)), F, Cause.ORDER_UNVERIFIED,
     f"{STOP}，但卖单 SIM1 的状态已 31 秒未获券商核实（最近确认 09:59:29），券商处可能已撤单或成交"),
    (live_facts(None), F, Cause.ORDER_UNVERIFIED, f"{STOP}，但卖单 SIM1 的状态从未获券商核实，券商处可能已撤单或成交"),
    (live_facts(CONFIRMED_AT - timedelta(seconds=60), link=LinkFacts(False, "券商接口 query_orders 已 5 秒未返回")),
     F, Cause.ORDER_UNVERIFIED, f"{STOP}，但卖单 SIM1 的状态已 90 秒未获券商核实（最近确认 09:58:30），券商处可能已撤单"
                                "或成交，券商连接断开（券商接口 query_orders 已 5 秒未返回）"),
    (live_facts(None, confirm_seconds=None), EW, None, f"{STOP}，卖单 SIM1 已在券商处工作（未成交 1000 股）"),  # sim
], ids=["confirmed-30s-ago", "confirmed-31s-ago", "never-confirmed", "stale-and-link-down", "sim-broker"])
def test_a_live_sell_works_only_while_the_broker_confirmed_it_recently(given, state, cause, reason):
    judgement = judge_position(given.positions[0], given)
    assert (judgement.state, judgement.cause, judgement.reason) == (state, cause, reason)


def test_every_broker_report_naming_an_order_confirms_it_even_without_a_change(tmp_path):
    clock = replay_clock("2024-02-19 10:00:00")
    journal = OrderJournal(Database(tmp_path / "trading.db"), clock, "live")
    request = journal.open_order(LIVE_CODE, Side.SELL, 1000, 9.02, Rule.STOP_LOSS, None)
    assert journal.get(request.client_id).confirmed_at is None  # journaled, the broker has not named it yet
    report = Order(client_id=request.client_id, stock_code=LIVE_CODE, side=Side.SELL, volume=1000, price=9.02,
                   status=OrderStatus.OPEN, order_id="1001")
    clock.set(datetime(2024, 2, 19, 10, 0, 5))
    assert journal.apply_update(report) is not None
    assert journal.get(request.client_id).confirmed_at == datetime(2024, 2, 19, 10, 0, 5)
    clock.set(datetime(2024, 2, 19, 10, 0, 15))
    assert journal.apply_update(report) is None  # the same state again (a periodic query): nothing changed...
    assert journal.get(request.client_id).confirmed_at == datetime(2024, 2, 19, 10, 0, 15)  # ...but confirmed


def test_the_migration_adds_confirmed_at_to_an_existing_journal(tmp_path):
    path = tmp_path / "trading.db"
    clock = replay_clock("2024-02-19 10:00:00")
    OrderJournal(Database(path), clock, "live").open_order(LIVE_CODE, Side.SELL, 1000, 9.02, Rule.STOP_LOSS, None)
    with sqlite3.connect(path) as conn:  # the journal as the previous release left it
        conn.execute("ALTER TABLE orders DROP COLUMN confirmed_at")
        conn.execute("UPDATE schema_versions SET version=3 WHERE owner='order_journal'")
    [old] = OrderJournal(Database(path), clock, "live").open_entries()
    assert (old.volume, old.confirmed_at) == (1000, None)


def test_a_sell_filled_at_the_counter_during_a_hang_is_not_taken_as_working(env, counterpart):  # noqa: F811
    """Before: the journal's OPEN sell kept the stock 「已在券商处工作」 for as long as the hang lasted."""
    rig = rig_holding(env, counterpart, SELL_ORDER_TIMEOUT=600.0)
    rig.price = CROSSED
    expect_protection(rig, WORKING)
    counterpart.hang()  # pushes lost, queries unanswered (the BrokerGuard then refuses every call)
    fill_working_sell(rig)  # the counter fills the sell: nobody tells us
    confirmed = rig.executor.journal.open_entries(LIVE_CODE, Side.SELL)[0].confirmed_at
    while (rig.clock.now() - confirmed).total_seconds() < 30:  # the pass at +30 s (PROTECTION_ORDER_CONFIRM_SECONDS)
        assert rig.step().verdicts[0].state is ProtectionState.EXIT_WORKING
    took = expect_protection(rig, failure(Cause.ORDER_UNVERIFIED))
    assert took == 15.0  # PROTECTION_DEADLINE after the confirmation went stale
    assert "卖单状态未能与券商核实" in rig.verdict().failure_view()["cause_label"]
    counterpart.end_hang()
    rig.wait_calls_returned()
    assert rig.wait_link()
    rig.broker_sync()  # the query names the order: filled; the fill is booked, the position is gone
    rig.step()
    assert rig.positions.get(LIVE_CODE) is None or rig.positions.get(LIVE_CODE).volume == 0
    assert rig.report.ok
    assert_books_equal(rig)
