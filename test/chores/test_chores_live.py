"""The chores on a live account: the REAL xttrader.py over the simulated miniQMT (test/stand_ins/fake_xtpythonclient.py)
answers today's offerings, the quota and the repo orders; the executor journals every order before it is sent.
Subscription volumes from the quota, a refused subscription, an allotment with its payment due, the repo amount
with open orders, planned buys and payments kept back, and nothing at all while the switches are off."""
from __future__ import annotations

from datetime import date, datetime
from types import SimpleNamespace

import pytest

from chores.jobs import OFF, SIMULATION_NOTE, ChoreJobs
from chores.store import ChoreStore
from core.events import EventBus, EventKind
from core.models import OrderStatus, Rule, Side, Signal
from core.signal_store import SignalStore
from core.trading_state import TradingState
from persistence.storage import Database
from position_manager import PositionManager
from trading_executor import TradingExecutor
from watch.rules import ActionType, Condition, ConditionType, WatchAction, WatchTask
from watch.store import WatchStore
from test_easy_qmt_trader import WAIT, counterpart, env, loopback_only  # noqa: F401 (fixtures)
from test_qmt_bad_day import QUOTES

DAY = date(2024, 1, 2)  # the counterpart's day (a Tuesday); T+2 = Thursday 2024-01-04
OFFERINGS = {
    "732777.SH": {"name": "沪主板新股", "type": "STOCK", "minPurchaseNum": 1000, "maxPurchaseNum": 14000,
                  "purchaseDate": "20240102", "issuePrice": 12.34},
    "787888.SH": {"name": "科创新股", "type": "STOCK", "minPurchaseNum": 500, "maxPurchaseNum": 6000,
                  "purchaseDate": "20240102", "issuePrice": 30.0},
    "301999.SZ": {"name": "创业新股", "type": "STOCK", "minPurchaseNum": 500, "maxPurchaseNum": 9500,
                  "purchaseDate": "20240102", "issuePrice": 20.5},
    "754810.SH": {"name": "某某转债", "type": "BOND", "minPurchaseNum": 10, "maxPurchaseNum": 10000,
                  "purchaseDate": "20240102", "issuePrice": 100.0},
}
QUOTA = {"SH": 8000, "KCB": 3500, "SZ": 12000}
CHORES_ON = {"ENABLE_IPO_SUBSCRIBE": True, "ENABLE_REPO": True, "REPO_KEEP_CASH": 10000.0}


class Events:
    def __init__(self, bus: EventBus):
        self.messages: list[str] = []
        bus.add_listener(lambda event: self.messages.append(event.message) if event.kind is EventKind.CHORES else None)


def chores_stack(env, rates=None, live=True):
    trader, _ = env.make(listen=False)
    db = Database(env.tmp_path / "trading.db")
    positions = PositionManager(db, env.settings, env.clock, "live")
    state = TradingState(db, env.clock)
    executor = TradingExecutor(db, trader, positions, QUOTES.get, env.settings, env.clock, state)
    trader.set_listener(executor)
    executor.recover()
    bus = EventBus(env.clock)
    signals, watch = SignalStore(db, env.clock), WatchStore(db, env.clock)
    board = dict(rates or {})
    jobs = ChoreJobs(env.clock, env.settings, executor, trader, ChoreStore(db, env.clock), bus, signals, watch,
                     lambda codes: {c: board.get(c) for c in codes}, live=live)
    return SimpleNamespace(trader=trader, executor=executor, jobs=jobs, events=Events(bus), signals=signals,
                           watch=watch, state=state, rates=board, positions=positions)


def counter_orders(counterpart) -> list[tuple]:
    return [(o.stock_code, "buy" if o.is_buy else "sell", o.volume, o.price, o.price_type, o.status)
            for o in sorted(counterpart.orders.values(), key=lambda o: o.order_id)]


def wait_for(predicate, what: str) -> None:
    import time
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_off_by_default_nothing_is_asked_or_sent(env, counterpart):
    counterpart.ipo_offerings, counterpart.purchase_limits = dict(OFFERINGS), dict(QUOTA)
    stack = chores_stack(env, {"204001.SH": 1.8})
    assert stack.jobs.subscribe(DAY) == OFF.format(key="ENABLE_IPO_SUBSCRIBE")
    assert stack.jobs.lend(DAY) == OFF.format(key="ENABLE_REPO")
    asked = {method for method, _, _ in counterpart.request_log}
    assert not asked & {"queryIPODataWithSeq", "queryNewPurchaseLimitWithSeq", "orderStockWithSeq"}
    assert stack.executor.list_orders() == [] and stack.events.messages == []
    assert stack.jobs.view(DAY)["subscriptions"] == []


def test_a_simulated_account_is_told_the_chores_run_only_live(env, counterpart):
    env.settings.update(CHORES_ON, source="test")
    stack = chores_stack(env, live=False)
    assert stack.jobs.subscribe(DAY) == stack.jobs.lend(DAY) == SIMULATION_NOTE
    assert stack.jobs.view(DAY)["note"] == SIMULATION_NOTE
    assert "orderStockWithSeq" not in {method for method, _, _ in counterpart.request_log}


def test_every_offering_is_subscribed_with_the_quota_journaled_first_and_reported(env, counterpart):
    counterpart.ipo_offerings, counterpart.purchase_limits = dict(OFFERINGS), dict(QUOTA)
    env.settings.update(CHORES_ON, source="test")
    stack = chores_stack(env)
    result = stack.jobs.subscribe(DAY)
    wait_for(lambda: all(e.status is OrderStatus.OPEN for e in stack.executor.journal.entries(None, DAY)),
             "every subscription reported")
    assert counter_orders(counterpart) == [  # buys at the issue price, limit orders (11), reported (50)
        ("301999.SZ", "buy", 9500, 20.5, 11, 50), ("732777.SH", "buy", 8000, 12.34, 11, 50),
        ("754810.SH", "buy", 10000, 100.0, 11, 50), ("787888.SH", "buy", 3500, 30.0, 11, 50)]
    entries = stack.executor.journal.entries(None, DAY)
    assert {(e.stock_code, e.rule, e.origin_rule) for e in entries} == {
        (code, Rule.IPO_SUBSCRIBE, Rule.IPO_SUBSCRIBE) for code in OFFERINGS}
    assert sorted(counterpart.sent_remarks) == sorted(e.client_id for e in entries)  # the remark is the journal id
    assert counterpart.cash == 100000.0  # SH/SZ subscriptions freeze no cash on T
    assert result == stack.events.messages[0]
    assert result.startswith("新股新债申购 2024-01-02：今日 4 只，已委托 4 只（额度：KCB 3500，SH 8000，SZ 12000）")
    assert "沪主板新股（732777.SH） 申购 8000 @ 12.34" in result
    stack.executor.check_open_orders()  # a subscription works until the close: never timed out
    env.clock.advance(3600)
    stack.executor.check_open_orders()
    assert all(e.status is OrderStatus.OPEN for e in stack.executor.journal.entries(None, DAY))
    view = stack.jobs.view(DAY)
    assert [(r["code"], r["volume"], r["status_label"], r["order_status_label"]) for r in view["subscriptions"]] == [
        ("301999.SZ", 9500, "已委托", "已报"), ("732777.SH", 8000, "已委托", "已报"),
        ("754810.SH", 10000, "已委托", "已报"), ("787888.SH", 3500, "已委托", "已报")]
    assert stack.jobs.summary(DAY) == "申购 4 只（创业新股、沪主板新股、某某转债、科创新股）"
    assert stack.jobs.subscribe(DAY) and len(counterpart.sent_remarks) == 4  # a re-run sends nothing twice


def test_a_subscription_refused_by_the_broker_or_by_the_trading_state_is_reported_with_its_reason(env, counterpart):
    counterpart.ipo_offerings = {"732777.SH": OFFERINGS["732777.SH"], "754810.SH": OFFERINGS["754810.SH"]}
    counterpart.purchase_limits = dict(QUOTA)
    env.settings.update(CHORES_ON, source="test")
    stack = chores_stack(env)
    counterpart.reject_orders("buy", "该账户无新股申购权限")
    stack.jobs.subscribe(DAY)
    wait_for(lambda: all(e.status is OrderStatus.REJECTED for e in stack.executor.journal.entries(None, DAY)),
             "both refusals")
    view = stack.jobs.view(DAY)
    assert [(r["code"], r["status_label"], r["reason"]) for r in view["subscriptions"]] == [
        ("732777.SH", "被拒绝", "该账户无新股申购权限"), ("754810.SH", "被拒绝", "该账户无新股申购权限")]
    assert stack.jobs.summary(DAY) == "申购 0 只，被拒绝 2 只"

    stack.state.pause("测试暂停", "test")  # the daemon's own gate: refused before anything is journaled
    counterpart.ipo_offerings = {"732777.SH": {**OFFERINGS["732777.SH"], "purchaseDate": "20240103"}}
    result = stack.jobs.subscribe(date(2024, 1, 3))
    assert result.endswith("沪主板新股（732777.SH） 申购被拒绝：自动交易已暂停（测试暂停），不会自动下单；手动委托不受影响")
    [refused] = stack.jobs.view(date(2024, 1, 3))["subscriptions"]
    assert (refused["status"], refused["client_id"], refused["volume"]) == ("refused", "", 8000)
    assert len(counterpart.sent_remarks) == 2


def test_an_allotment_is_found_on_t_plus_2_notified_with_the_payment_due_and_kept_from_the_repo(env, counterpart):
    counterpart.ipo_offerings, counterpart.purchase_limits = {"732777.SH": OFFERINGS["732777.SH"]}, dict(QUOTA)
    env.settings.update(CHORES_ON, source="test")
    stack = chores_stack(env, {"204001.SH": 2.0})
    stack.jobs.subscribe(DAY)
    assert stack.jobs.lendable(DAY).amount == 90000  # the working subscription needs no cash on T
    for _ in range(2):
        counterpart.start_new_day()
        env.clock.advance(86400)
    counterpart.ipo_offerings = {}  # nothing new on the following days
    stack.jobs.subscribe(date(2024, 1, 3))  # T+1: no result yet
    assert [m for m in stack.events.messages if m.startswith("中签")] == []
    counterpart.allot("732777.SH", 1000, "沪主板新股")  # T+2 morning: 1,000 shares won
    result = stack.jobs.subscribe(date(2024, 1, 4))
    assert result.endswith("新中签 1 只")
    assert [m for m in stack.events.messages if m.startswith("中签")] == [
        "中签：沪主板新股（732777.SH）1000，应缴款 12340.00 元，请在 2024-01-04 16:00 前保证账户可用资金足额"]
    stack.jobs.subscribe(date(2024, 1, 4))  # found once
    assert len([m for m in stack.events.messages if m.startswith("中签")]) == 1
    view = stack.jobs.view(date(2024, 1, 4))
    assert [(r["code"], r["volume"], r["amount"], r["due_day"]) for r in view["allotments"]] == [
        ("732777.SH", 1000, 12340.0, "2024-01-04")]
    assert view["payments_due"] == 12340.0
    # the repo of T+2 keeps the payment: 100000 − 10000 kept − 12340 due = 77660 → 77,000
    assert stack.jobs.lendable(date(2024, 1, 4)).amount == 77000
    assert stack.jobs.lendable(date(2024, 1, 5)).amount == 90000  # paid by then: nothing kept for it


def test_the_repo_lends_the_spare_cash_at_the_best_bid_keeping_open_orders_planned_buys_and_payments(env, counterpart):
    env.settings.update(CHORES_ON, source="test")
    stack = chores_stack(env, {"204001.SH": 1.805, "131810.SZ": 1.9})
    stack.executor.buy_stock("600036.SH", volume=1000, price=10.0)  # open at the counter: 10,000 frozen there
    wait_for(lambda: counterpart.frozen_cash == 10000.0, "the open buy frozen at the counter")
    at = datetime(2024, 1, 2, 14, 0)
    stack.signals.add(Signal("000001.SZ", Rule.ADD_POSITION, 1900, 10.2, 10.5, at, amount=20000.0))
    stack.watch.add(WatchTask("600519.SH", (Condition(ConditionType.PRICE_BELOW, 1500.0),),
                              action=WatchAction(ActionType.BUY, amount=15000.0)))
    amount = stack.jobs.lendable(DAY)
    # cash 90,000 after the freeze − 10,000 kept − 0 unfrozen open need − 35,000 planned = 45,000
    assert (amount.cash, amount.open_buys, amount.planned_buys, amount.payments_due, amount.amount) == \
        (90000.0, 0.0, 35000.0, 0.0, 45000)
    result = stack.jobs.lend(DAY)
    assert result == ("国债逆回购 2024-01-02：131810.SZ 年化 1.9% 出借 45000 元（450 张），占款 1 天，预计利息 2.34 元；"
                      "可用资金 90000.00 元，保留 10000.00 元，未成交买单 0.00 元，次日计划买入 35000.00 元，中签待缴款 0.00 元")
    assert stack.events.messages == [result]
    [repo] = [o for o in counterpart.orders.values() if o.stock_code == "131810.SZ"]
    assert (repo.order_type, repo.volume, repo.price, repo.price_type) == (24, 450, 1.9, 11)  # a sell of 450 张
    assert (counterpart.cash, counterpart.frozen_cash) == (45000.0, 55000.0)
    [entry] = [e for e in stack.executor.journal.entries(None, DAY) if e.stock_code == "131810.SZ"]
    assert (entry.side, entry.rule, entry.volume, entry.price) == (Side.SELL, Rule.REPO_LEND, 450, 1.9)
    counterpart.fill(repo.order_id, 450)
    wait_for(lambda: stack.executor.journal.get(entry.client_id).status is OrderStatus.FILLED, "the repo filled")
    assert (counterpart.cash, counterpart.frozen_cash, counterpart.lent_cash) == (45000.0, 10000.0, 45000.0)
    # the loan's fill is recorded, never booked as a (negative or sold) position
    assert stack.positions.get("131810.SZ") is None
    [record] = stack.executor.journal.trade_records(DAY, DAY, "131810.SZ")
    assert (record["volume"], record["realized_pnl"]) == (450, None)
    assert stack.jobs.lend(DAY) == "国债逆回购 2024-01-02：今日已出借 131810.SZ 45000 元，不再重复"
    assert len([r for r in counterpart.sent_remarks if r == entry.client_id]) == 1
    assert stack.jobs.summary(DAY) == "逆回购 131810.SZ 年化 1.9% 出借 45000 元（已成交）"


def test_an_open_buy_the_counter_has_not_frozen_yet_is_kept_back(env, counterpart):
    env.settings.update(CHORES_ON, source="test")
    stack = chores_stack(env, {"204001.SH": 1.8})
    counterpart.fail_next_order_call = "before"  # the send fails: the order's outcome is unknown, nothing frozen
    with pytest.raises(Exception):
        stack.executor.buy_stock("600036.SH", volume=1000, price=10.0)
    amount = stack.jobs.lendable(DAY)
    assert (amount.cash, amount.open_buys, amount.amount) == (100000.0, 10000.0, 80000)


def test_no_bid_and_too_little_cash_lend_nothing_and_say_why(env, counterpart):
    env.settings.update({**CHORES_ON, "REPO_KEEP_CASH": 99500.0}, source="test")
    stack = chores_stack(env, {"204001.SH": 1.8})
    assert stack.jobs.lend(DAY).startswith("国债逆回购 2024-01-02：未出借，可出借资金不足 1000 元（可用资金 100000.00 元，保留 99500.00 元")
    env.settings.update({"REPO_KEEP_CASH": 0.0}, source="test")
    stack.rates.clear()
    assert stack.jobs.lend(date(2024, 1, 3)) == "国债逆回购 2024-01-03：未出借，204001.SH、131810.SZ 都没有买方报价，未出借"
    env.settings.update({"REPO_CODES": ["204001.SH", "600036.SH"]}, source="test")
    assert "REPO_CODES 中有不认识的逆回购代码：600036.SH" in stack.jobs.lend(date(2024, 1, 4))
    assert "orderStockWithSeq" not in {method for method, _, _ in counterpart.request_log}
