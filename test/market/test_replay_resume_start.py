"""Issue 26 item 10: a restarted replay goes on after the last day it started, whatever REPLAY_START_DATE the
restart has (left out, or earlier): the clock never runs backwards on a used data dir."""
from __future__ import annotations

from data_manager import build_data_manager
from data_test_support import make_settings
from market.replay_source import DEFAULT_START_INDEX
from config import SYNTHETIC_SEED
from market.synthetic_market import SyntheticMarket

CODES = ["600000.SH"]


def replay_two_days(tmp_path, data_dir, start: str):
    """Start a replay on `data_dir`, play until it has started a second day, then close it; the days started."""
    settings = make_settings(tmp_path, DATA_SOURCE="replay", REPLAY_TICKS_PER_DAY=4, REPLAY_START_DATE=start)
    manager, clock = build_data_manager(settings, data_dir)
    try:
        manager.set_watchlist(CODES)
        first = clock.today()
        while clock.today() == first:
            manager.run_once()
        return first, clock.today()
    finally:
        manager.close()


def test_restart_without_or_with_an_earlier_start_date_resumes_after_the_last_started_day(tmp_path):
    days = SyntheticMarket(SYNTHETIC_SEED).trading_days()
    data_dir = tmp_path / "data"
    later = days[DEFAULT_START_INDEX + 1]
    first, second = replay_two_days(tmp_path / "run1", data_dir, later.isoformat())
    assert (first, second) == (later, days[DEFAULT_START_INDEX + 2])
    # the restart leaves REPLAY_START_DATE out: the default start (day 61) lies before the last started day
    resumed, _ = replay_two_days(tmp_path / "run2", data_dir, "")
    assert resumed == days[DEFAULT_START_INDEX + 3]
    resumed, _ = replay_two_days(tmp_path / "run3", data_dir, days[DEFAULT_START_INDEX].isoformat())
    assert resumed == days[DEFAULT_START_INDEX + 5]
