"""The chores' pure rules with exact numbers: subscription volumes from the quota, the repo's lendable cash with open
orders, planned buys and allotment payments reserved, the repo code and rate, interest days, allotments and T+2."""
from __future__ import annotations

from datetime import date, datetime
from types import SimpleNamespace

import pytest

import chores.rules as rules
from core.models import BrokerPosition, Rule, Signal
from watch.rules import ActionType, Condition, ConditionType, WatchAction, WatchTask

TUESDAY = date(2026, 12, 8)
RAW = {  # xttrader.query_ipo_data() of a day with every case
    "732777.SH": {"name": "沪主板新股", "type": "STOCK", "minPurchaseNum": 1000, "maxPurchaseNum": 14000,
                  "purchaseDate": "20261208", "issuePrice": 12.34},
    "787888.SH": {"name": "科创新股", "type": "STOCK", "minPurchaseNum": 500, "maxPurchaseNum": 6000,
                  "purchaseDate": "20261208", "issuePrice": 30.0},
    "301999.SZ": {"name": "创业新股", "type": "STOCK", "minPurchaseNum": 500, "maxPurchaseNum": 9500,
                  "purchaseDate": "20261208", "issuePrice": 20.5},
    "754810.SH": {"name": "某某转债", "type": "BOND", "minPurchaseNum": 10, "maxPurchaseNum": 10000,
                  "purchaseDate": "20261208", "issuePrice": 100.0},
    "920111.BJ": {"name": "北交新股", "type": "STOCK", "minPurchaseNum": 100, "maxPurchaseNum": 5000,
                  "purchaseDate": "20261208", "issuePrice": 8.0},
    "002888.SZ": {"name": "明日新股", "type": "STOCK", "minPurchaseNum": 500, "maxPurchaseNum": 9500,
                  "purchaseDate": "20261209", "issuePrice": 9.0},
}
QUOTA = {"SH": 8000, "KCB": 3500, "SZ": 12000}


def plans(kinds=("stock", "bond"), exclude=()):
    return {p.offering.code: (p.volume, p.reason) for p in
            rules.plan_subscriptions(rules.parse_offerings(RAW), QUOTA, TUESDAY, kinds, exclude)}


def test_each_offering_gets_the_whole_quota_of_its_market_capped_by_its_maximum_in_whole_units():
    assert plans() == {
        "002888.SZ": (0, "申购日是 20261209，不是今天"),
        "301999.SZ": (9500, ""),  # SZ quota 12000 > the offering's maximum 9500
        "732777.SH": (8000, ""),  # SH quota 8000 < maximum 14000, a multiple of the 1000 unit
        "754810.SH": (10000, ""),  # a bond: the maximum, no market value needed
        "787888.SH": (3500, ""),  # STAR: the KCB quota, 500-share units
        "920111.BJ": (0, "北交所新股须全额预缴资金，不自动申购"),
    }
    [sh] = [p for p in rules.plan_subscriptions(rules.parse_offerings(RAW), QUOTA, TUESDAY, ["stock"], [])
            if p.offering.code == "732777.SH"]
    assert sh.amount == 98720.0  # 8000 × 12.34


def test_quota_below_one_unit_kinds_and_the_exclude_list_skip_with_their_reason():
    low = {p.offering.code: (p.volume, p.reason) for p in rules.plan_subscriptions(
        rules.parse_offerings(RAW), {"SH": 999, "KCB": 1700, "SZ": 0}, TUESDAY, ["stock", "bond"], [])}
    assert low["732777.SH"] == (0, "申购额度不足（SH额度 999 股，最少申购 1000 股）")
    assert low["787888.SH"] == (1500, "")  # 1700 rounded down to 500-share units
    assert low["301999.SZ"] == (0, "申购额度不足（SZ额度 0 股，最少申购 500 股）")
    only_bonds = plans(kinds=["bond"])
    assert only_bonds["754810.SH"] == (10000, "")
    assert only_bonds["732777.SH"] == (0, "品种新股未选择（IPO_SUBSCRIBE_KINDS）")
    excluded = plans(exclude=["754810.SH", "创业新股"])
    assert excluded["754810.SH"] == excluded["301999.SZ"] == (0, "在排除名单中（IPO_SUBSCRIBE_EXCLUDE）")


def test_quota_keys_follow_the_subscription_code():
    assert [rules.quota_key(c) for c in ("732777.SH", "780001.SH", "787888.SH", "301999.SZ", "920111.BJ")] == \
        ["SH", "SH", "KCB", "SZ", None]


@pytest.mark.parametrize("cash, keep, open_need, frozen, planned, due, expected", [
    (100000.0, 10000.0, 0.0, 0.0, 0.0, 0.0, 90000),
    # an open buy of 20,050 CNY of which the broker has frozen 15,000: 5,050 more is kept back
    (100000.0, 10000.0, 20050.0, 15000.0, 0.0, 0.0, 84000),
    # the broker froze all of it already (its available cash excludes it): nothing more is kept back
    (100000.0, 10000.0, 20050.0, 20050.0, 0.0, 0.0, 90000),
    # tomorrow's planned buys 32,500.50 and an allotment payment 12,340 due: 100000-10000-32500.5-12340 = 45159.5
    (100000.0, 10000.0, 0.0, 0.0, 32500.5, 12340.0, 45000),
    (10999.99, 10000.0, 0.0, 0.0, 0.0, 0.0, 0),  # less than the 1,000 CNY step above the cash kept
    (5000.0, 10000.0, 0.0, 0.0, 0.0, 0.0, 0),
])
def test_repo_lends_the_spare_cash_in_1000_cny_steps(cash, keep, open_need, frozen, planned, due, expected):
    amount = rules.repo_amount(cash, keep, open_need, frozen, planned, due)
    assert amount.amount == expected
    assert amount.volume == expected // 100  # 张 of 100 CNY, a multiple of 10


def test_repo_reserve_breakdown_is_kept():
    amount = rules.repo_amount(100000.0, 10000.0, 20050.0, 15000.0, 32500.5, 12340.0)
    assert (amount.open_buys, amount.planned_buys, amount.payments_due, amount.amount, amount.volume) == \
        (5050.0, 32500.5, 12340.0, 40000, 400)


def test_the_best_bid_rate_wins_ties_go_to_the_preferred_code_and_the_rate_is_on_the_0005_tick():
    codes = ["204001.SH", "131810.SZ"]
    assert rules.choose_repo({"204001.SH": 1.805, "131810.SZ": 1.9}, codes) == ("131810.SZ", 1.9)
    assert rules.choose_repo({"204001.SH": 2.0, "131810.SZ": 2.0}, codes) == ("204001.SH", 2.0)
    assert rules.choose_repo({"204001.SH": 1.8079, "131810.SZ": None}, codes) == ("204001.SH", 1.805)
    assert rules.choose_repo({"204001.SH": None, "131810.SZ": 0.0}, codes) is None
    assert rules.unknown_repo_codes(["204001.SH", "600036.SH"]) == ["600036.SH"]


def weekdays(day: date) -> bool:
    return day.weekday() < 5 and day != date(2026, 12, 25)  # a holiday on Friday 25 Dec for the test


def test_interest_days_count_the_calendar_days_to_the_maturity_settlement():
    assert rules.repo_days(date(2026, 12, 8), 1, weekdays) == 1  # Tuesday: Wed → Thu
    assert rules.repo_days(date(2026, 12, 10), 1, weekdays) == 3  # Thursday: Fri → Mon
    assert rules.repo_days(date(2026, 12, 23), 1, weekdays) == 4  # Wed before the Friday holiday: Thu → Mon
    assert rules.repo_days(date(2026, 12, 8), 7, weekdays) == 7
    assert rules.repo_interest(90000.0, 1.805, 3) == 13.35  # 90000 × 1.805 % × 3 / 365


def test_planned_buys_are_queued_buy_signals_and_active_watch_task_buys_only():
    at = datetime(2026, 12, 8, 14, 0)
    signals = [Signal("600036.SH", Rule.ADD_POSITION, 1000, 10.0, 10.05, at, amount=20000.0),
               Signal("000001.SZ", Rule.WATCH_BUY, 500, 12.0, 12.1, at),  # sized by volume: 500 × 12.1
               Signal("000002.SZ", Rule.STOP_LOSS, 800, 9.0, 8.9, at)]  # a sell needs no cash
    tasks = [WatchTask("600519.SH", (Condition(ConditionType.PRICE_BELOW, 1500.0),),
                       action=WatchAction(ActionType.BUY, amount=30000.0)),
             WatchTask("601318.SH", (Condition(ConditionType.PRICE_BELOW, 40.0),), action=WatchAction())]
    assert rules.planned_buy_cash(signals, tasks) == 56050.0


def test_allotments_match_the_code_or_the_name_and_are_due_by_t_plus_2():
    subscriptions = [(date(2026, 12, 8), "732777.SH", "沪主板新股", 12.34), (date(2026, 12, 8), "754810.SH", "某某转债", 100.0),
                     (date(2026, 12, 9), "301999.SZ", "创业新股", 20.5)]
    positions = [BrokerPosition("732777.SH", 1000, 0, 0.0, 0.0, ""), BrokerPosition("370999.SZ", 10, 0, 0.0, 0.0, "某某转债"),
                 BrokerPosition("600036.SH", 500, 500, 10.0, 5000.0, "招商银行")]
    found = rules.find_allotments(subscriptions, positions, set(), weekdays)
    assert [(a.code, a.volume, a.amount, a.due_day) for a in found] == [
        ("732777.SH", 1000, 12340.0, date(2026, 12, 10)), ("754810.SH", 10, 1000.0, date(2026, 12, 10))]
    assert rules.find_allotments(subscriptions, positions, {(date(2026, 12, 8), "732777.SH")}, weekdays)[0].code == \
        "754810.SH"
    assert rules.payment_day(date(2026, 12, 10), weekdays) == date(2026, 12, 14)  # Thursday → Monday
    assert rules.payment_day(date(2026, 12, 23), weekdays) == date(2026, 12, 28)  # over the Friday holiday
