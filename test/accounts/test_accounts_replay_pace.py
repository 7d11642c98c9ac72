"""One replay clock origin shared by several account processes: step k of the replay is due at wall time
origin + k × step seconds, so accounts started apart (or restarted) see the same quotes at the same market
times; a process that is behind runs its due steps at once, one that is ahead waits."""
from datetime import datetime

from data_test_support import make_settings
from market.clock import ReplayClock
from market.replay_source import ReplayPace, ReplayProgress, ReplaySource, replay_days
from persistence.storage import Database
from market.synthetic_market import SyntheticMarket

CODES = ["600000.SH", "000001.SZ"]
TICKS = 9  # + the close step: 10 steps per day
SECONDS_PER_DAY = 5.0  # so one step is 0.5 s
ORIGIN = 1_000.0


class Wall:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def source(tmp_path, wall: Wall, start_offset: int = 0):
    settings = make_settings(tmp_path, REPLAY_TICKS_PER_DAY=TICKS, REPLAY_SECONDS_PER_DAY=SECONDS_PER_DAY)
    feed = SyntheticMarket(seed=7)
    days, start = replay_days(feed, "")
    clock = ReplayClock(ReplaySource.start_moment(days, start + start_offset))
    replay = ReplaySource(settings, clock, feed, days, start + start_offset, pace=ReplayPace(ORIGIN, start, wall))
    replay.set_watchlist(CODES)
    return replay, clock


def play(replay, clock, wall: Wall) -> list:
    """Run what is due now; (market time, code, price) of every quote, and the wait asked for last."""
    seen = []
    while True:
        step = replay.run_once()
        seen += [(clock.now(), q.code, q.price) for q in step.quotes]
        if step.wait > 0:
            return seen, step.wait


def test_a_process_started_early_waits_for_the_origin(tmp_path):
    wall = Wall(ORIGIN - 2.0)
    replay, clock = source(tmp_path, wall)
    before = clock.now()
    seen, wait = play(replay, clock, wall)
    assert seen == [] and wait == 2.0 and clock.now() == before
    wall.t = ORIGIN
    seen, wait = play(replay, clock, wall)
    first_open = datetime.combine(before.date(), datetime.min.time().replace(hour=9, minute=30))
    assert [t for t, _, _ in seen] == [first_open] * len(CODES) and wait == 0.5


def test_a_late_process_catches_up_and_then_sees_what_the_early_one_saw(tmp_path):
    wall = Wall(ORIGIN)
    early, early_clock = source(tmp_path / "a", wall)
    late, late_clock = source(tmp_path / "b", wall)
    early_seen, _ = play(early, early_clock, wall)
    for _ in range(7):  # the early process follows the wall step by step
        wall.t += 0.5
        seen, wait = play(early, early_clock, wall)
        early_seen += seen
        assert len(seen) == len(CODES) and wait == 0.5
    late_seen, wait = play(late, late_clock, wall)  # started 3.5 s late: runs the 8 due steps at once
    assert late_seen == early_seen and len(late_seen) == 8 * len(CODES)
    assert late_clock.now() == early_clock.now() and wait == 0.5


def test_a_restarted_process_resumes_on_the_next_day_in_step_with_the_others(tmp_path):
    wall = Wall(ORIGIN + 2.2)  # step 4 of day 0 is due: the others are mid-day
    restarted, clock = source(tmp_path, wall, start_offset=1)
    seen, wait = play(restarted, clock, wall)
    assert seen == [] and round(wait, 6) == round(ORIGIN + 10 * 0.5 - wall.t, 6)  # waits for day 1's first step


def test_the_origin_day_is_kept_for_a_restart_under_the_same_origin(tmp_path):
    progress = ReplayProgress(Database(tmp_path / "market.db"), "feed|")
    first, later = datetime(2020, 4, 1).date(), datetime(2020, 4, 8).date()
    assert progress.pace_origin_day(ORIGIN, first) == first
    assert progress.pace_origin_day(ORIGIN, later) == first  # a restart keeps counting from the first day
    assert progress.pace_origin_day(ORIGIN + 60, later) == later  # a new supervisor run starts afresh
