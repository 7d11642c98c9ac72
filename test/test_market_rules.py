"""A-share market facts with exact numbers (DESIGN §5)."""
from datetime import date, datetime, time

import pytest

import config
import market_rules as mr
from market_rules import Board, TradingCalendar

FEES = dict(config.DEFAULTS)


@pytest.mark.parametrize("text, expected", [
    ("600036", "600036.SH"), ("sh600036", "600036.SH"), ("SH600036", "600036.SH"), ("600036.SH", "600036.SH"),
    ("600036.sh", "600036.SH"), (" 000001 ", "000001.SZ"), ("sz000001", "000001.SZ"), ("300750", "300750.SZ"),
    ("688981", "688981.SH"), ("510300", "510300.SH"), ("159915", "159915.SZ"), ("001289.SZ", "001289.SZ"),
])
def test_normalize_code_accepts_common_spellings(text, expected):
    assert mr.normalize_code(text) == expected


@pytest.mark.parametrize("text", ["", "60003", "6000366", "abcdef", "600036.SZ", "sz600036", "sh600036.SH",
                                  "830799", "900901", "600036.HK", None, 600036])
def test_normalize_code_rejects_with_chinese_message(text):
    with pytest.raises(ValueError) as info:
        mr.normalize_code(text)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in str(info.value))


@pytest.mark.parametrize("code, expected", [
    ("600036.SH", Board.MAIN), ("000001.SZ", Board.MAIN), ("300750.SZ", Board.CHINEXT), ("301269.SZ", Board.CHINEXT),
    ("688981.SH", Board.STAR), ("689009.SH", Board.STAR), ("510300.SH", Board.ETF),
])
def test_board(code, expected):
    assert mr.board(code) is expected


@pytest.mark.parametrize("code, prev_close, is_st, expected", [
    ("600036.SH", 10.05, False, (9.05, 11.06)),  # 9.045 → 9.05 and 11.055 → 11.06: half-up
    ("600036.SH", 10.05, True, (9.05, 11.06)),  # ST main board today ±10 %: 9.045 → 9.05, 11.055 → 11.06
    ("300750.SZ", 10.05, False, (8.04, 12.06)),  # ChiNext 20 %
    ("300750.SZ", 10.05, True, (8.04, 12.06)),  # ChiNext ST keeps 20 %
    ("688981.SH", 55.55, False, (44.44, 66.66)),  # STAR 20 %
    ("600000.SH", 13.75, False, (12.38, 15.13)),  # 12.375 → 12.38, 15.125 → 15.13
    ("510300.SH", 4.005, False, (3.605, 4.406)),  # ETF tick 0.001: 3.6045 → 3.605, 4.4055 → 4.406
])
def test_price_limits(code, prev_close, is_st, expected):
    assert mr.price_limits(code, prev_close, is_st) == expected


@pytest.mark.parametrize("code, prev_close, day, expected", [
    # the last trading day of the ±5 % band (SSE/SZSE 2026 trading-rule revisions, effective 2026-07-06)
    ("600036.SH", 10.05, date(2026, 7, 3), (9.55, 10.55)),  # 9.5475 → 9.55, 10.5525 → 10.55
    ("000001.SZ", 3.33, date(2026, 7, 3), (3.16, 3.50)),  # 3.1635 → 3.16, 3.4965 → 3.50
    ("000004.SZ", 10.00, date(2020, 5, 25), (9.50, 10.50)),
    # from the change date on: ±10 %
    ("600036.SH", 10.05, date(2026, 7, 6), (9.05, 11.06)),  # 9.045 → 9.05, 11.055 → 11.06
    ("000001.SZ", 3.33, date(2026, 7, 6), (3.00, 3.66)),  # 2.997 → 3.00, 3.663 → 3.66
    ("000004.SZ", 10.00, date(2026, 12, 8), (9.00, 11.00)),
    # ChiNext and STAR ST keep ±20 % on both sides of the date
    ("300750.SZ", 10.05, date(2026, 7, 3), (8.04, 12.06)),
    ("688981.SH", 55.55, date(2026, 7, 6), (44.44, 66.66)),
])
def test_st_limits_follow_the_trading_day(code, prev_close, day, expected):
    assert mr.price_limits(code, prev_close, True, day) == expected
    assert mr.price_limits(code, prev_close, True, datetime.combine(day, time(10, 0))) == expected


def test_st_rule_comes_from_the_parameters():
    rule = mr.StLimitRule.from_config({"ST_LIMIT_CHANGE_DATE": "2027-01-04", "ST_LIMIT_PCT_BEFORE": 0.05,
                                       "ST_LIMIT_PCT": 0.10})
    assert mr.price_limits("600036.SH", 10.00, True, date(2026, 12, 31), rule) == (9.50, 10.50)
    assert mr.price_limits("600036.SH", 10.00, True, date(2027, 1, 4), rule) == (9.00, 11.00)
    assert mr.StLimitRule.from_config(config.DEFAULTS) == mr.StLimitRule()  # config.py and the cited facts agree
    installed = mr.st_rule()
    try:
        mr.use_st_rule(rule)
        assert mr.price_limits("600036.SH", 10.00, True, date(2026, 12, 31)) == (9.50, 10.50)
    finally:
        mr.use_st_rule(installed)


def test_price_limits_refuse_invalid_prev_close():
    with pytest.raises(ValueError):
        mr.price_limits("600036.SH", 0)


@pytest.mark.parametrize("code, price, expected", [
    ("600036.SH", 12.345, 12.35), ("600036.SH", 12.344, 12.34), ("600036.SH", 2.675, 2.68),
    ("510300.SH", 4.0005, 4.001),
])
def test_round_price_half_up(code, price, expected):
    assert mr.round_price(code, price) == expected


def test_round_price_up_and_down_to_tick():
    assert mr.round_price_up("600036.SH", 10.601) == 10.61
    assert mr.round_price_up("600036.SH", 10.60) == 10.60
    assert mr.round_price_down("600036.SH", 9.0499) == 9.04
    assert mr.round_price_down("600036.SH", 9.05) == 9.05


@pytest.mark.parametrize("code, amount, price, expected", [
    ("600036.SH", 20000, 12.34, 1600), ("600036.SH", 999, 10.0, 0), ("600036.SH", 1000, 10.0, 100),
    ("688981.SH", 20000, 99.0, 202), ("688981.SH", 19000, 99.0, 0), ("300750.SZ", 20000, 180.0, 100),
])
def test_buy_volume_for_amount(code, amount, price, expected):
    assert mr.buy_volume_for_amount(code, amount, price) == expected


@pytest.mark.parametrize("code, volume, valid", [
    ("600036.SH", 250, False), ("600036.SH", 300, True), ("600036.SH", 0, False), ("600036.SH", -100, False),
    ("600036.SH", 100.5, False), ("600036.SH", True, False), ("300750.SZ", 100, True),
    ("688981.SH", 199, False), ("688981.SH", 201, True), ("688981.SH", 200, True),
])
def test_buy_lots(code, volume, valid):
    assert mr.is_valid_buy_volume(code, volume) is valid


@pytest.mark.parametrize("code, volume, available, valid", [
    ("600036.SH", 150, 150, True),  # the odd remainder sold at once
    ("600036.SH", 150, 250, False),
    ("600036.SH", 250, 250, True),
    ("600036.SH", 200, 250, True),
    ("600036.SH", 300, 250, False),  # more than available
    ("688981.SH", 150, 150, True),
    ("688981.SH", 150, 350, False),
    ("688981.SH", 201, 350, True),
])
def test_sell_lots(code, volume, available, valid):
    assert mr.is_valid_sell_volume(code, volume, available) is valid


@pytest.mark.parametrize("available, ratio, expected", [(250, 0.6, 100), (100, 0.6, 100), (1000, 0.6, 600),
                                                        (1600, 0.6, 900), (50, 0.6, 50)])
def test_sell_volume_for_ratio_rounds_down_to_lot_or_sells_all(available, ratio, expected):
    assert mr.sell_volume_for_ratio("600036.SH", available, ratio) == expected


def test_fees_minimum_commission_on_small_buy():
    result = mr.fees("600036.SH", "buy", 10.0, 1000, FEES)  # 10,000 CNY × 0.0003 = 3 → minimum 5
    assert result == {"commission": 5.0, "stamp_duty": 0.0, "transfer_fee": 0.1, "total": 5.1}


def test_fees_large_sell():
    result = mr.fees("600036.SH", "sell", 100.0, 10000, FEES)  # 1,000,000 CNY
    assert result == {"commission": 300.0, "stamp_duty": 500.0, "transfer_fee": 10.0, "total": 810.0}


def test_fees_buy_of_1600_at_12_34():
    # 19,744 CNY: commission 5.9232 → 5.92, transfer 0.19744 → 0.20
    assert mr.fees("600036.SH", "buy", 12.34, 1600, FEES) == {
        "commission": 5.92, "stamp_duty": 0.0, "transfer_fee": 0.2, "total": 6.12}


def test_fees_etf_no_stamp_duty_or_transfer_fee():
    assert mr.fees("510300.SH", "sell", 4.0, 100000, FEES)["total"] == 120.0


@pytest.mark.parametrize("day, trading", [
    (date(2025, 9, 30), True), (date(2025, 10, 1), False), (date(2025, 10, 3), False), (date(2025, 10, 6), False),
    (date(2025, 10, 8), False), (date(2025, 10, 9), True), (date(2025, 9, 28), False),  # Sunday make-up workday
    (date(2025, 10, 11), False),  # Saturday make-up workday
])
def test_calendar(day, trading):
    assert mr.is_trading_day(day) is trading


@pytest.mark.parametrize("moment, session", [
    (datetime(2025, 9, 30, 8, 0), "closed"), (datetime(2025, 9, 30, 9, 5), "pre_open"),
    (datetime(2025, 9, 30, 9, 15), "call_auction"), (datetime(2025, 9, 30, 9, 27), "pre_open"),
    (datetime(2025, 9, 30, 9, 30), "continuous"), (datetime(2025, 9, 30, 11, 29, 59), "continuous"),
    (datetime(2025, 9, 30, 11, 45), "lunch_break"), (datetime(2025, 9, 30, 13, 0), "continuous"),
    (datetime(2025, 9, 30, 14, 58), "closing_auction"), (datetime(2025, 9, 30, 15, 0), "closed"),
    (datetime(2025, 10, 1, 10, 0), "closed"), (datetime(2025, 9, 28, 10, 0), "closed"),
])
def test_session_at(moment, session):
    assert mr.session_at(moment) == session


@pytest.mark.parametrize("moment, expected", [
    (datetime(2025, 9, 30, 8, 0), datetime(2025, 9, 30, 9, 15)),
    (datetime(2025, 9, 30, 9, 27), datetime(2025, 9, 30, 9, 30)),
    (datetime(2025, 9, 30, 10, 0), datetime(2025, 9, 30, 10, 0)),
    (datetime(2025, 9, 30, 11, 45), datetime(2025, 9, 30, 13, 0)),
    (datetime(2025, 9, 30, 15, 30), datetime(2025, 10, 9, 9, 15)),  # over National Day
    (datetime(2025, 9, 27, 12, 0), datetime(2025, 9, 29, 9, 15)),
])
def test_next_session_start(moment, expected):
    assert mr.next_session_start(moment) == expected


def test_calendar_falls_back_to_weekdays_past_its_table_with_one_warning(caplog):
    calendar = TradingCalendar()
    calendar._load()
    beyond = calendar._last.replace(year=calendar._last.year + 1)
    monday = beyond.fromordinal(beyond.toordinal() - beyond.weekday())
    assert calendar.is_trading_day(monday) is True
    assert calendar.is_trading_day(monday.fromordinal(monday.toordinal() + 5)) is False  # Saturday
    assert "工作日" in calendar.fallback_warning
    assert sum("工作日" in r.getMessage() for r in caplog.records) == 1


def test_broker_calendar_extends_the_table():
    calendar = TradingCalendar()
    calendar._load()
    holiday = calendar._last.replace(year=calendar._last.year + 1, month=1, day=1)
    while holiday.weekday() >= 5:
        holiday = holiday.fromordinal(holiday.toordinal() + 1)
    after = holiday.fromordinal(holiday.toordinal() + 1)
    calendar.add_broker_days([after])
    assert calendar.is_trading_day(holiday) is False
    assert calendar.fallback_warning == ""
