"""QuoteHub: push delivery of validated quotes; zero, NaN and stale quotes never reach subscribers or readers."""
import threading
from datetime import date, datetime, timedelta

import pytest

from data_test_support import make_settings
from market.clock import ReplayClock
from core.models import Quote
from market.quote_hub import QuoteHub, StalenessReference, last_trading_moment

T0 = datetime(2025, 8, 5, 10, 0, 0)  # a Tuesday, continuous session


def quote(price, when=T0, code="600000.SH", prev_close=13.13):
    return Quote(code=code, price=price, prev_close=prev_close, time=when, source="test")


@pytest.fixture
def hub_and_clock(tmp_path):
    clock = ReplayClock(T0)
    return QuoteHub(make_settings(tmp_path, QUOTE_STALE_SECONDS=30.0), clock), clock


def test_good_quote_is_stored_and_pushed(hub_and_clock):
    hub, _ = hub_and_clock
    seen = []
    hub.subscribe(seen.append)
    assert hub.publish(quote(13.50)) is True
    assert hub.version == 1
    assert hub.latest("600000.SH").price == 13.50
    assert [q.price for q in seen] == [13.50]


@pytest.mark.parametrize("price, prev_close, fragment", [
    (0.0, 13.13, "现价为 0（不大于 0）"),
    (-1.0, 13.13, "现价为 -1（不大于 0）"),
    (float("nan"), 13.13, "现价为 nan"),
    (13.5, 0.0, "昨收价为 0（不大于 0）"),
])
def test_unusable_prices_are_refused_and_reported(hub_and_clock, price, prev_close, fragment):
    hub, _ = hub_and_clock
    seen = []
    hub.subscribe(seen.append)
    hub.publish(quote(13.40))
    assert hub.publish(quote(price, prev_close=prev_close)) is False
    assert seen == [quote(13.40)]  # the subscriber (the rules) never saw the bad quote
    assert hub.latest("600000.SH").price == 13.40 and hub.version == 1
    assert hub.rejected == 1
    assert fragment in hub.last_error and "600000.SH" in hub.last_error


def test_quote_older_than_stale_limit_is_refused(hub_and_clock):
    hub, _ = hub_and_clock
    assert hub.publish(quote(13.4, when=datetime(2025, 8, 5, 9, 59, 29))) is False  # 31 s old
    assert "行情过期" in hub.last_error and "30 秒" in hub.last_error
    assert hub.publish(quote(13.4, when=datetime(2025, 8, 5, 9, 59, 30))) is True  # exactly 30 s: still fresh


def test_stored_quote_ages_out_for_readers(hub_and_clock):
    hub, clock = hub_and_clock
    hub.publish(quote(13.4))
    clock.set(datetime(2025, 8, 5, 10, 0, 30))
    assert hub.latest("600000.SH").price == 13.4
    clock.set(datetime(2025, 8, 5, 10, 0, 31))
    assert hub.latest("600000.SH") is None  # the rules get nothing rather than an old price
    assert hub.last_seen("600000.SH").price == 13.4  # still shown (with its time) in the UI


def test_close_price_stays_current_after_the_close_until_the_next_open(hub_and_clock):
    hub, clock = hub_and_clock
    clock.set(datetime(2025, 8, 5, 15, 0, 0))
    hub.publish(quote(13.75, when=datetime(2025, 8, 5, 15, 0, 0)))
    clock.set(datetime(2025, 8, 5, 20, 0, 0))
    assert hub.latest("600000.SH").price == 13.75
    clock.set(datetime(2025, 8, 6, 9, 20, 0))  # call auction of the next day: prices move again
    assert hub.latest("600000.SH") is None


def test_the_per_minute_staleness_reference_equals_the_calendar_answer_at_every_moment():
    """StalenessReference asks the calendar once per minute; that is exact because every session boundary is
    on a whole minute. Checked every 7 s (in order and shuffled) over a trading day, a weekend and the
    National Day holiday, against last_trading_moment itself."""
    import random

    import market_rules

    boundaries = (market_rules.PRE_OPEN_START, market_rules.CALL_AUCTION_START, market_rules.CALL_AUCTION_END,
                  market_rules.MORNING_OPEN, market_rules.MORNING_CLOSE, market_rules.AFTERNOON_OPEN,
                  market_rules.CLOSING_AUCTION_START, market_rules.MARKET_CLOSE)
    assert all(t.second == 0 and t.microsecond == 0 for t in boundaries)
    moments = [datetime(day.year, day.month, day.day) + timedelta(seconds=s)
               for day in (date(2025, 9, 30), date(2025, 10, 1), date(2025, 10, 4), date(2025, 10, 9))
               for s in range(8 * 3600, 16 * 3600, 7)]
    for order in (moments, random.Random(5).sample(moments, len(moments))):
        reference = StalenessReference()
        assert [reference.at(now) for now in order] == [last_trading_moment(now) for now in order]


def test_last_trading_moment():
    assert last_trading_moment(datetime(2025, 8, 5, 10, 0)) == datetime(2025, 8, 5, 10, 0)
    assert last_trading_moment(datetime(2025, 8, 5, 12, 0)) == datetime(2025, 8, 5, 11, 30)
    assert last_trading_moment(datetime(2025, 8, 5, 18, 0)) == datetime(2025, 8, 5, 15, 0)
    assert last_trading_moment(datetime(2025, 8, 5, 9, 27)) == datetime(2025, 8, 5, 9, 25)
    # Saturday 2025-08-09 and the early Monday morning both point back to Friday's close
    assert last_trading_moment(datetime(2025, 8, 9, 11, 0)) == datetime(2025, 8, 8, 15, 0)
    assert last_trading_moment(datetime(2025, 8, 11, 8, 0)) == datetime(2025, 8, 8, 15, 0)


def test_out_of_order_quote_does_not_replace_a_newer_one(hub_and_clock):
    hub, _ = hub_and_clock
    hub.publish(quote(13.5, when=T0))
    assert hub.publish(quote(13.1, when=datetime(2025, 8, 5, 9, 59, 50))) is False
    assert hub.latest("600000.SH").price == 13.5 and hub.rejected == 0


def test_wait_for_update_wakes_on_publish_and_times_out_otherwise(hub_and_clock):
    hub, _ = hub_and_clock
    assert hub.wait_for_update(0, timeout=0.01) == 0
    started = threading.Event()

    def publisher():
        started.wait(5)
        hub.publish(quote(13.6))

    thread = threading.Thread(target=publisher)
    thread.start()
    started.set()
    assert hub.wait_for_update(0, timeout=5) == 1
    thread.join(5)


def test_a_failing_subscriber_does_not_stop_the_others(hub_and_clock):
    hub, _ = hub_and_clock
    seen = []

    def broken(_):
        raise RuntimeError("boom")

    hub.subscribe(broken)
    hub.subscribe(seen.append)
    assert hub.publish(quote(13.6)) is True
    assert [q.price for q in seen] == [13.6]
