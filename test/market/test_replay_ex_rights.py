"""Issue 28 §2 in the market package: on an ex-date a replayed quote's previous close is the exchange's
ex-rights reference price and the day's limits follow it; the indicators read raw bars forward-adjusted by the
known events; the ex-rights keeper's quote listener runs before the quote reaches anyone else."""
import threading
from datetime import date, datetime

import pytest

from core.models import Quote
from data_manager import build_data_manager
from data_test_support import make_settings, no_network  # noqa: F401 (fixture)
from market import ex_rights
from market.adjusted_bars import ForwardAdjustedBars
from market.bar_store import BarStore, DailyBar
from market.clock import ReplayClock
from market.quote_hub import QuoteHub
from persistence.storage import Database

pytestmark = pytest.mark.usefixtures("no_network")

EVENTS = ("code,ex_date,cash_per_share,shares_per_share\n"
          "600000.SH,2020-07-23,0.59,0\n"
          "600036.SH,2020-07-23,0,0.5\n")


def replay_days_seen(tmp_path, events: bool) -> dict:
    folder = tmp_path / "bars"
    folder.mkdir()
    rows = {"600000.SH": ["2020-07-21,10,10,10,10,1000", "2020-07-22,10,10,10,10,1000",
                          "2020-07-23,9.40,9.50,9.30,9.45,1000", "2020-07-24,9.45,9.50,9.40,9.42,1000"],
            "600036.SH": ["2020-07-21,5,5,5,5,1000", "2020-07-22,5,5,5,5,1000",  # suspended on its ex-date 07-23
                          "2020-07-24,3.35,3.40,3.30,3.36,1000"]}
    for code, lines in rows.items():
        (folder / f"{code}.csv").write_text("date,open,high,low,close,volume\n" + "\n".join(lines) + "\n",
                                            encoding="utf-8")
    (tmp_path / "events.csv").write_text(EVENTS, encoding="utf-8")
    overrides = {"EX_RIGHTS_EVENTS_FILE": str(tmp_path / "events.csv")} if events else {}
    settings = make_settings(tmp_path, REPLAY_DATA_DIR=str(folder), REPLAY_TICKS_PER_DAY=4,
                             REPLAY_START_DATE="2020-07-22", **overrides)
    manager, clock = build_data_manager(settings, tmp_path / "data")
    manager.set_watchlist(["600000.SH", "600036.SH"])
    seen = {}
    manager.hub.subscribe(lambda q: seen.setdefault((q.code, q.time.date()), (q.prev_close, q.limit_down, q.limit_up)))
    while clock.now() < datetime(2020, 7, 24, 14, 0):
        manager.run_once()
    return seen


def test_the_ex_date_quote_carries_the_reference_price_and_its_limits(tmp_path):
    seen = replay_days_seen(tmp_path, events=True)
    assert seen[("600000.SH", date(2020, 7, 23))] == (9.41, 8.47, 10.35)  # 10.00 − 0.59; ±10 % half-up
    assert seen[("600000.SH", date(2020, 7, 24))] == (9.45, 8.51, 10.40)  # the next day: the raw close again
    assert seen[("600036.SH", date(2020, 7, 24))] == (3.33, 3.0, 3.66)  # 5.00 ÷ 1.5, at its first bar after


def test_without_events_the_limits_come_from_the_raw_close(tmp_path):
    seen = replay_days_seen(tmp_path, events=False)
    assert seen[("600000.SH", date(2020, 7, 23))] == (10.0, 9.0, 11.0)
    assert seen[("600036.SH", date(2020, 7, 24))] == (5.0, 4.5, 5.5)


def test_the_history_is_forward_adjusted_by_the_events_up_to_its_last_bar(tmp_path):
    store = BarStore(Database(tmp_path / "market.db"))
    closes = {date(2020, 7, 21): 10.0, date(2020, 7, 22): 10.0, date(2020, 7, 23): 9.45}
    store.upsert([DailyBar("600000.SH", day, c, c, c, c, 1000) for day, c in closes.items()])
    events = ex_rights.events_by_code(ex_rights.parse_events(EVENTS + "600000.SH,2020-07-24,1,0\n"))
    history = ForwardAdjustedBars(store, events).get_history("600000.SH")
    assert [round(c, 9) for c in history["close"]] == [9.41, 9.41, 9.45]  # × 0.941; 07-24 is after the last bar
    assert list(history["open"]) == list(history["close"])
    cut = ForwardAdjustedBars(store, events).get_history("600000.SH", start=date(2020, 7, 22))
    assert cut["close"].round(9).tolist() == [9.41, 9.45]  # adjusted before the range is cut
    assert list(ForwardAdjustedBars(store, {}).get_history("600000.SH")["close"]) == [10.0, 10.0, 9.45]


def test_a_first_listener_runs_before_the_quote_is_visible_to_anyone(tmp_path):
    clock = ReplayClock(datetime(2025, 8, 5, 10, 0))
    hub = QuoteHub(make_settings(tmp_path, QUOTE_STALE_SECONDS=30.0), clock)
    order = []
    hub.subscribe(lambda q: order.append(("listener", q.price)))
    hub.subscribe(lambda q: order.append(("first", q.price, hub.version, hub.latest(q.code))), first=True)
    woken = []
    ready = threading.Event()

    def monitor():
        ready.set()
        hub.wait_for_update(0, timeout=10)
        woken.append(list(order))

    thread = threading.Thread(target=monitor)
    thread.start()
    ready.wait(10)
    good = Quote(code="600000.SH", price=13.5, prev_close=13.13, time=clock.now(), source="test")
    assert hub.publish(good) is True
    thread.join(10)
    assert order == [("first", 13.5, 0, None), ("listener", 13.5)]
    assert woken and woken[0][0] == ("first", 13.5, 0, None)  # a waiting monitor wakes after the first listener
    older = Quote(code="600000.SH", price=13.4, prev_close=13.13, time=datetime(2025, 8, 5, 9, 59, 59), source="test")
    bad = Quote(code="600000.SH", price=0.0, prev_close=13.13, time=clock.now(), source="test")
    assert hub.publish(older) is False and hub.publish(bad) is False  # out of order, unusable: never delivered
    assert len(order) == 2
