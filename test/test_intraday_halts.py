"""Issue 28 §1: intraday temporary halts 盘中临时停牌 of new listings and of convertible bonds' first day, as
pure rules in market_rules (facts: shared/reference/instrument_rules.md §2–§4)."""
from datetime import date, datetime

import pytest

import market_rules as mr

STAR_NEW, MAIN_NEW, BJ_NEW, BOND_NEW = "688999.SH", "603999.SH", "920099.BJ", "113999.SH"
LISTED = date(2026, 12, 1)  # Tue: days 1–5 are 12-01 … 12-07, day 6 is 12-08


@pytest.fixture(autouse=True)
def listings():
    before = mr.instrument_data()
    mr.use_instrument_data(before.with_listing_dates({code: LISTED for code in (STAR_NEW, MAIN_NEW, BJ_NEW,
                                                                                 BOND_NEW)}))
    yield
    mr.use_instrument_data(before)


def at(hh, mm, day=LISTED):
    return datetime(day.year, day.month, day.day, hh, mm)


def test_which_days_have_halts():
    assert mr.halt_rule(STAR_NEW, date(2026, 12, 7)) is mr.NEW_LISTING_HALTS  # day 5
    assert mr.halt_rule(STAR_NEW, date(2026, 12, 8)) is None  # day 6: normal band, no halts
    assert mr.halt_rule(MAIN_NEW, LISTED) is mr.NEW_LISTING_HALTS
    assert mr.halt_rule(BJ_NEW, LISTED) is mr.NEW_LISTING_HALTS  # BSE: IPO day 1 only
    assert mr.halt_rule(BJ_NEW, date(2026, 12, 2)) is None
    assert mr.halt_rule(BOND_NEW, LISTED) is mr.BOND_FIRST_DAY_HALTS
    assert mr.halt_rule(BOND_NEW, date(2026, 12, 2)) is None
    assert mr.halt_rule("688000.SH", LISTED) is None  # unknown listing date: an established listing
    assert mr.start_halt_state(STAR_NEW, LISTED, None, 40.0) is None  # the open is not known yet


def test_new_listing_halts_ten_minutes_at_30_then_60_percent_of_the_open():
    state = mr.start_halt_state(STAR_NEW, LISTED, 50.00, 20.00)
    assert state.thresholds("up") == [65.0, 80.0] and state.thresholds("down") == [35.0, 20.0]
    state = mr.advance_halt(state, 64.99, at(9, 50))
    assert state.halted_until is None
    state = mr.advance_halt(state, 65.00, at(10, 0))
    assert state.halted_until == at(10, 10)
    assert state.is_halted(at(10, 9)) and not state.is_halted(at(10, 10))
    assert mr.advance_halt(state, 80.00, at(10, 5)) == state  # during a halt nothing changes
    state = mr.advance_halt(state, 70.00, at(10, 15))  # the +30 % level is spent
    assert state.halted_until == at(10, 10)
    state = mr.advance_halt(state, 80.00, at(10, 20))
    assert state.halted_until == at(10, 30)
    assert mr.advance_halt(state, 90.00, at(10, 40)) == state  # both upward levels spent: no third halt
    assert state.triggered == {("up", 0), ("up", 1)}
    state = mr.advance_halt(state, 35.00, at(10, 45))  # the downward levels are separate
    assert state.halted_until == at(10, 55)
    assert mr.halt_message(state) == "688999.SH 盘中临时停牌，10:55 复牌；停牌期间可委托、撤单，但不会成交"


def test_a_halt_reaching_1457_resumes_at_1457_and_none_starts_after():
    state = mr.start_halt_state(STAR_NEW, LISTED, 50.00, 20.00)
    halted = mr.advance_halt(state, 65.00, at(14, 50))
    assert halted.halted_until == at(14, 57)
    late = mr.advance_halt(state, 65.00, at(14, 58))
    assert not late.is_halted(at(14, 58))


def test_a_jump_over_both_levels_halts_once_by_the_higher():
    bond = mr.start_halt_state(BOND_NEW, LISTED, 101.0, 100.0)  # bonds: from the issue price, not the open
    jumped = mr.advance_halt(bond, 131.000, at(9, 40))
    assert jumped.halted_until == at(14, 57) and jumped.triggered == {("up", 0), ("up", 1)}


def test_bond_first_day_halts_30_minutes_at_20_percent_and_to_1457_at_30_percent():
    state = mr.start_halt_state(BOND_NEW, LISTED, 110.0, 100.000)
    assert state.base == 100.0 and state.thresholds("up") == [120.0, 130.0]
    assert state.thresholds("down") == [80.0, 70.0]
    state = mr.advance_halt(state, 119.999, at(9, 35))
    assert state.halted_until is None
    state = mr.advance_halt(state, 120.000, at(9, 40))
    assert state.halted_until == at(10, 10)
    state = mr.advance_halt(state, 130.000, at(10, 30))
    assert state.halted_until == at(14, 57)
    assert state.is_halted(at(14, 56)) and not state.is_halted(at(14, 57))


def test_bse_ipo_day_halts_from_the_open():
    state = mr.start_halt_state(BJ_NEW, LISTED, 12.34, 8.00)
    assert state.thresholds("up") == [16.04, 19.74]  # 12.34 × 1.3 = 16.042, × 1.6 = 19.744
    assert state.thresholds("down") == [8.64, 4.94]  # 12.34 × 0.7 = 8.638, × 0.4 = 4.936
    assert mr.advance_halt(state, 8.64, at(11, 25)).halted_until == at(11, 35)
