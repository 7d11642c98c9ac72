"""The pure schedule rules: due day over weekends/holidays, catch-up policies, next run."""
from __future__ import annotations

from datetime import date, datetime, time

import pytest

import market_rules
from jobs.schedule import CatchUp, Decision, decide, due_day, next_run

CAL = market_rules.DEFAULT_CALENDAR
NINE, POST = time(9, 0), time(15, 5)


def test_due_day_skips_weekends_and_holidays():
    assert due_day(POST, datetime(2024, 4, 8, 10, 0), CAL) == date(2024, 4, 3)  # Qingming + weekend before
    assert due_day(POST, datetime(2024, 4, 8, 15, 5), CAL) == date(2024, 4, 8)
    assert due_day(NINE, datetime(2024, 4, 6, 12, 0), CAL) == date(2024, 4, 3)


@pytest.mark.parametrize("at, policy, now, started, last, expected", [
    # running through the moment: scheduled run
    (NINE, CatchUp.SAME_SESSION, datetime(2024, 4, 8, 9, 0), datetime(2024, 4, 3, 8, 0), date(2024, 4, 3),
     Decision(date(2024, 4, 8), True, "schedule")),
    # already ran for that day: nothing
    (NINE, CatchUp.SAME_SESSION, datetime(2024, 4, 8, 9, 30), datetime(2024, 4, 3, 8, 0), date(2024, 4, 8), None),
    # started at 10:00 after a missed 09:00: same session → catch up; after the close → skip
    (NINE, CatchUp.SAME_SESSION, datetime(2024, 4, 8, 10, 0), datetime(2024, 4, 8, 10, 0), date(2024, 4, 3),
     Decision(date(2024, 4, 8), True, "catch_up")),
    (NINE, CatchUp.SAME_SESSION, datetime(2024, 4, 8, 15, 30), datetime(2024, 4, 8, 15, 30), date(2024, 4, 3),
     Decision(date(2024, 4, 8), False, "skip")),
    # post-close missed over a holiday: the latest day catches up, once
    (POST, CatchUp.LATEST_DAY, datetime(2024, 4, 8, 9, 0), datetime(2024, 4, 8, 9, 0), date(2024, 4, 1),
     Decision(date(2024, 4, 3), True, "catch_up")),
    # the first start ever: nothing to catch up
    (POST, CatchUp.LATEST_DAY, datetime(2024, 4, 8, 9, 0), datetime(2024, 4, 8, 9, 0), None,
     Decision(date(2024, 4, 3), False, "skip")),
])
def test_decide(at, policy, now, started, last, expected):
    assert decide(at, policy, now, CAL, started, last) == expected


def test_next_run():
    assert next_run(POST, datetime(2024, 4, 3, 16, 0), CAL) == datetime(2024, 4, 8, 15, 5)
    assert next_run(POST, datetime(2024, 4, 3, 15, 0), CAL) == datetime(2024, 4, 3, 15, 5)
