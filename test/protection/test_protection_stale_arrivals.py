"""Issue 25 follow-up: quotes that keep ARRIVING but are refused as stale (a feed clock step, a feed replaying old
ticks) leave an older accepted quote standing; the sentinel must judge the newest quote that arrived, so it says
「无法判断：行情过期」 instead of judging the account protected by a price it no longer gets."""
from __future__ import annotations

from datetime import timedelta

from core.models import Quote
from protection.sentinel import Cause, ProtectionState
from test_protection_sentinel import CODE, Scene

F, P = ProtectionState.FAILURE, ProtectionState.PROTECTED


def test_quotes_arriving_but_refused_as_stale_become_a_stale_quote_failure(tmp_path):
    scene = Scene(tmp_path)
    scene.price(10.00, 10.00)  # accepted at 10:00:00
    assert scene.check(1000.0).ok
    scene.clock.set(scene.clock.now() + timedelta(seconds=5))
    old = Quote(CODE, 8.00, 10.00, scene.clock.now() - timedelta(seconds=90), "test")  # below the stop, 90 s old
    assert scene.hub.publish(old) is False  # refused: stale
    assert scene.hub.latest(CODE).price == 10.00  # the accepted quote (5 s old) still stands for the rules
    report = scene.check(1001.0)
    [verdict] = report.verdicts
    assert verdict.reason.startswith(f"无法判断：行情过期，{CODE} 的最新行情时间 09:58:35 已超过 30 秒")
    report = scene.check(1016.0)
    assert [(v.stock_code, v.state, v.cause) for v in report.failures] == [(CODE, F, Cause.QUOTE_STALE)]
    scene.price(10.00, 10.00)  # a fresh quote is accepted again: judged by it
    assert scene.check(1017.0).ok and [v.state for v in scene.check(1018.0).verdicts] == [P]
