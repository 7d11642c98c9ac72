"""Issue 25 item 3: staleness is judged on the feed's own clock. A box clock 2 minutes off the feed neither blinds
the rules (every quote "stale") nor floods the log; the skew is alarmed once; a frozen feed still goes stale; a
replay keeps its exact behaviour (skew 0)."""
import logging
from datetime import datetime, timedelta

import pytest

from data_test_support import make_settings
from market.feed_clock import FeedClock
from market.clock import RealClock, ReplayClock
from core.models import Quote
from market.quote_hub import QuoteHub

LOCAL = datetime(2025, 8, 5, 10, 2, 0)  # a Tuesday, continuous session, on the box clock
SKEW = timedelta(seconds=-120)  # the feed stamps ticks 120 s behind the box clock


class BoxClock:
    """The local clock a RealClock reads, moved by the test."""

    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


def tick(when: datetime, price: float = 13.5, code: str = "600000.SH", source: str = "xtquant") -> Quote:
    return Quote(code=code, price=price, prev_close=13.13, time=when, source=source)


@pytest.fixture
def live(tmp_path):
    box = BoxClock(LOCAL)
    settings = make_settings(tmp_path, QUOTE_STALE_SECONDS=30.0, CLOCK_SKEW_ALARM_SECONDS=30.0,
                             CLOCK_SKEW_MAX_SECONDS=300.0, QUOTE_REFUSAL_LOG_SECONDS=60.0)
    hub = QuoteHub(settings, RealClock(source=box))
    alarms = []
    hub.on_clock_skew_alarm(lambda message, **data: alarms.append((message, data)))
    return hub, box, alarms


def feed_ticks(hub, box, count, step=1.0, skew=SKEW, code="600000.SH"):
    """`count` ticks, one per `step` local seconds, each stamped on the skewed feed clock; returns the results."""
    results = []
    for _ in range(count):
        box.advance(step)
        results.append(hub.publish(tick(box.moment + skew, code=code)))
    return results


def test_a_box_clock_two_minutes_fast_no_longer_blinds_the_rules(live):
    hub, box, alarms = live
    assert hub.publish(tick(LOCAL + SKEW)) is False  # a first sighting is no clock sample: judged on the box clock
    assert feed_ticks(hub, box, 30) == [True] * 30  # from the second tick on, every fresh tick is used
    assert hub.clock_skew("xtquant") == -120.0
    assert hub.feed_now() == box.moment - timedelta(seconds=120)
    assert hub.latest("600000.SH").time == box.moment + SKEW
    assert len(alarms) == 1  # alarmed once, not at every tick
    message, data = alarms[0]
    assert data == {"source": "xtquant", "skew_seconds": -120.0}
    assert "本机时钟比行情（xtquant）时间快了约 120 秒" in message and "已改按行情自身的时间判断" in message


def test_a_frozen_feed_still_goes_stale_on_the_feeds_clock(live):
    hub, box, _ = live
    hub.publish(tick(LOCAL + SKEW))
    feed_ticks(hub, box, 3)
    last = box.moment + SKEW
    for _ in range(30):  # the feed freezes: the same tick is re-sent every second
        box.advance(1.0)
        hub.publish(tick(last))
    assert hub.clock_skew() == -120.0  # a re-sent tick is no sample: the freeze cannot drag the estimate along
    assert hub.latest("600000.SH").time == last  # exactly 30 s old on the feed's clock: still fresh
    box.advance(1.0)
    assert hub.latest("600000.SH") is None
    assert hub.publish(tick(last)) is False


def test_an_old_tick_resent_from_the_start_is_never_taken_for_clock_skew(live):
    hub, box, alarms = live
    frozen = LOCAL - timedelta(seconds=120)
    assert [hub.publish(tick(frozen)) for _ in range(10)] == [False] * 10
    assert hub.clock_skew() == 0.0 and hub.feed_now() == box.moment and alarms == []


def test_a_few_bogus_ticks_do_not_move_the_estimate(live):
    hub, box, _ = live
    hub.publish(tick(LOCAL + SKEW))
    feed_ticks(hub, box, 30, step=5.0)  # 30 buckets of 5 s at -120 s
    box.advance(5.0)
    assert hub.publish(tick(box.moment + timedelta(hours=2))) is False  # one tick stamped two hours ahead
    assert hub.clock_skew() == -120.0
    assert "比行情时钟超前 7320 秒" in hub.last_error
    assert feed_ticks(hub, box, 1, step=5.0) == [True]  # the good ticks are still fresh


def test_a_skew_beyond_the_correctable_limit_is_alarmed_and_not_applied(live):
    hub, box, alarms = live
    skew = timedelta(seconds=-400)
    hub.publish(tick(LOCAL + skew))
    assert feed_ticks(hub, box, 5, skew=skew) == [False] * 5  # judged on the box clock: stale, the safe side
    assert hub.clock_skew() == -400.0 and hub.feed_now() == box.moment
    assert len(alarms) == 1 and "超过可校正的 300 秒" in alarms[0][0]


def test_the_alarm_is_raised_again_only_after_the_skew_came_back(live):
    hub, box, alarms = live
    hub.publish(tick(LOCAL + SKEW))
    feed_ticks(hub, box, 3, step=5.0)
    feed_ticks(hub, box, 10, step=5.0, skew=timedelta(0))  # the box clock was synchronised
    assert hub.clock_skew() == 0.0 and len(alarms) == 1
    box.advance(120.0)  # and jumped two minutes ahead again (the feed's ticks go on in its own time)
    assert feed_ticks(hub, box, 4, step=5.0, skew=SKEW) == [False] * 4  # until the median follows: stale
    assert hub.clock_skew() == 0.0 and len(alarms) == 1
    assert feed_ticks(hub, box, 1, step=5.0, skew=SKEW) == [True]  # 5 of the last 9 buckets: ~25 s
    assert hub.clock_skew() == -120.0 and len(alarms) == 2


def test_stale_refusals_are_logged_once_per_stock_per_interval_with_a_count(live, caplog):
    hub, box, _ = live
    frozen = LOCAL - timedelta(seconds=120)
    with caplog.at_level(logging.WARNING, logger="market.quote_hub"):
        for _ in range(94):  # the 94 lines in 30 s
            box.advance(30 / 94)
            hub.publish(tick(frozen))
            hub.publish(tick(frozen, code="000001.SZ"))
        lines = [r.getMessage() for r in caplog.records if "拒绝行情" in r.getMessage()]
        assert len(lines) == 2  # one per stock
        box.advance(30.5)  # 60 s after the first line
        hub.publish(tick(frozen))
        lines = [r.getMessage() for r in caplog.records if "拒绝行情" in r.getMessage()]
    assert len(lines) == 3
    assert lines[2].endswith("（上次记录后另有 93 笔同类行情被拒，未逐条记录）")
    assert hub.rejected == 189  # every refusal still counts


def test_a_replay_clock_keeps_judging_on_its_own_time(tmp_path):
    clock = ReplayClock(LOCAL)
    hub = QuoteHub(make_settings(tmp_path, QUOTE_STALE_SECONDS=30.0), clock)
    results = []
    for second in range(1, 6):
        clock.set(LOCAL + timedelta(seconds=second))
        results.append(hub.publish(tick(clock.now() + SKEW)))
    assert results == [False] * 5  # exactly as before: 120 s old on the replay clock is stale
    assert hub.clock_skew() == 0.0 and hub.feed_now() == clock.now()
    assert hub.publish(tick(clock.now() - timedelta(seconds=30))) is True


def test_feed_clock_estimates_each_source_separately(tmp_path):
    box = BoxClock(LOCAL)
    feed = FeedClock(make_settings(tmp_path), RealClock(source=box))
    for second in range(1, 4):
        box.advance(1.0)
        feed.observe(tick(box.moment + SKEW, source="xtquant"))
        feed.observe(tick(box.moment, code="000001.SZ", source="mootdx"))
    assert feed.skew("xtquant") == -120.0 and feed.skew("mootdx") == 0.0
    assert feed.now("xtquant") == box.moment + SKEW and feed.now("mootdx") == box.moment
