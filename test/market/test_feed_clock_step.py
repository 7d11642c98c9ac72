"""Issue 25 follow-up: the feed's clock stepping BACK while the daemon runs (miniQMT's clock set two minutes back,
as the counterpart's skew_clock does) was never estimated: a sample needed a tick newer than any seen before, so
none came for two minutes and every quote was refused as stale. The estimate must follow within seconds."""
from __future__ import annotations

from datetime import timedelta

from test_feed_clock import LOCAL, SKEW, feed_ticks, live, tick  # noqa: F401 (fixture)


def test_feed_clock_stepping_back_two_minutes_is_followed_within_seconds(live):
    hub, box, alarms = live
    hub.publish(tick(LOCAL))
    assert feed_ticks(hub, box, 20, skew=timedelta(0)) == [True] * 20  # a synchronised feed
    results = feed_ticks(hub, box, 12, skew=SKEW)
    assert results == [False] * 5 + [True] * 7  # the step (no sample), then at the 5th sample 5 of the last 9 agree
    assert hub.clock_skew("xtquant") == -120.0 and hub.feed_now() == box.moment + SKEW
    assert len(alarms) == 1 and "快了约 120 秒" in alarms[0][0]


def test_the_newest_tick_resent_after_a_step_back_is_no_sample(live):
    hub, box, _ = live
    hub.publish(tick(LOCAL))
    feed_ticks(hub, box, 20, skew=timedelta(0))
    newest = box.moment
    for _ in range(40):  # a frozen pair: an old tick and the newest one re-sent in turn
        box.advance(1.0)
        hub.publish(tick(newest - timedelta(seconds=60)))
        hub.publish(tick(newest))
    assert hub.clock_skew() == 0.0  # the freeze did not drag the estimate back
    assert hub.latest("600000.SH") is None  # 40 s later: the newest tick went stale
