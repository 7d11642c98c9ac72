"""Issue 28 §1: an intraday temporary halt 盘中临时停牌 of a new listing is an explained block while its quotes stop,
a working protective sell notes the halt, and after the resume time a stale feed is a failure again."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import market_rules
from core.models import OrderStatus, Quote
from protection.sentinel import Cause, ProtectionState, judge_position
from test_protection_sentinel import CODE, NOW, Scene, entry, facts, quote

HALT = f"{CODE} 盘中临时停牌，10:10 复牌；停牌期间可委托、撤单，但不会成交"
STALE_QUOTE = quote(9.04, at=NOW - timedelta(seconds=31))  # QUOTE_STALE_SECONDS 30 in the facts table


def test_a_halt_explains_stopped_quotes_but_not_a_missing_sell():
    stale = judge_position(facts(q=STALE_QUOTE).positions[0],
                           replace(facts(q=STALE_QUOTE), halted={CODE: HALT}))
    assert (stale.state, stale.cause, stale.reason) == (ProtectionState.EXPLAINED, None,
                                                        f"{HALT}（行情暂停更新，卖单复牌后才能成交）")
    # orders are accepted during a halt: a held exit without a sell is still a failure
    missing = judge_position(facts().positions[0], replace(facts(), halted={CODE: HALT}))
    assert (missing.state, missing.cause) == (ProtectionState.FAILURE, Cause.NO_SELL)
    given = replace(facts(position=facts().positions[0].copy(available=0), sells=[entry(OrderStatus.OPEN)]),
                    halted={CODE: HALT})
    working = judge_position(given.positions[0], given)
    assert working.state is ProtectionState.EXIT_WORKING
    assert working.reason.endswith(f"卖单 SIM1 已在券商处工作（未成交 1000 股）；{HALT}")


def test_the_sentinel_follows_a_new_listings_halt_from_its_quotes(tmp_path):
    scene = Scene(tmp_path)  # holds 1000 × CODE; here CODE is a registration listing whose first day is 02-19
    before = market_rules.instrument_data()
    market_rules.use_instrument_data(before.with_listing_dates({CODE: date(2024, 2, 19)}))
    try:
        scene.clock.set(datetime(2024, 2, 19, 9, 30))
        assert scene.hub.publish(Quote(CODE, 10.00, 10.00, scene.clock.now(), "test", open=10.00))
        assert scene.check(100.0).ok
        scene.clock.set(datetime(2024, 2, 19, 10, 0))
        assert scene.hub.publish(Quote(CODE, 7.00, 10.00, scene.clock.now(), "test"))  # −30 % of the open
        scene.check(101.0)
        scene.clock.set(datetime(2024, 2, 19, 10, 9))  # no quote for 9 minutes: the halt explains it
        scene.check(200.0)
        report = scene.check(400.0)
        assert report.ok and [(v.state, v.reason) for v in report.verdicts] == [
            (ProtectionState.EXPLAINED, f"{HALT}（行情暂停更新，卖单复牌后才能成交）")]
        assert scene.published() == []
        scene.clock.set(datetime(2024, 2, 19, 10, 11))  # resumed at 10:10, still no quote: stale again
        scene.check(500.0)
        assert [v.cause for v in scene.check(600.0).failures] == [Cause.QUOTE_STALE]
    finally:
        market_rules.use_instrument_data(before)
