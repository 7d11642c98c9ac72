"""Issue 28 instruments in market_rules: convertible bonds, T+0 funds, 北交所, new listings and codes the daemon only
shows — codes, limits, lots, ticks, fees, T+0, with exact numbers (facts: shared/reference/instrument_rules.md)."""
from datetime import date

import pytest

import market_rules as mr
from market_rules import Board, InstrumentData

BOND_SH, BOND_SZ, BJ, STAR_NEW = "113050.SH", "123100.SZ", "920001.BJ", "688999.SH"
FEES = {"COMMISSION_RATE": 0.0003, "MIN_COMMISSION": 5.0, "STAMP_DUTY_RATE": 0.0005, "TRANSFER_FEE_RATE": 0.00001,
        "BOND_COMMISSION_RATE": 0.0001, "BOND_MIN_COMMISSION": 0.0}


@pytest.fixture
def listings():
    """Install listing dates for the test; the shipped T+0 table stays."""
    before = mr.instrument_data()
    mr.use_instrument_data(before.with_listing_dates({STAR_NEW: date(2026, 12, 1), "600999.SH": date(2020, 1, 6),
                                                      "920099.BJ": date(2026, 12, 1),
                                                      "113999.SH": date(2026, 12, 1)}))
    yield
    mr.use_instrument_data(before)


@pytest.mark.parametrize("text, expected, kind", [
    ("113050", "113050.SH", Board.BOND), ("110059.SH", "110059.SH", Board.BOND), ("111001", "111001.SH", Board.BOND),
    ("118000", "118000.SH", Board.BOND), ("123100", "123100.SZ", Board.BOND), ("sz127001", "127001.SZ", Board.BOND),
    ("128001", "128001.SZ", Board.BOND), ("920001", "920001.BJ", Board.BJ), ("bj920118", "920118.BJ", Board.BJ),
    ("920001.bj", "920001.BJ", Board.BJ),
])
def test_new_kinds_are_recognised(text, expected, kind):
    assert mr.normalize_code(text) == expected and mr.board(expected) is kind


@pytest.mark.parametrize("text", ["920001.SH", "113050.SZ", "123100.SH", "830799", "430047.BJ", "204001.SH",
                                  "131810.SZ", "132001.SH", "120001.SZ"])
def test_other_codes_stay_refused(text):
    with pytest.raises(ValueError) as info:
        mr.normalize_code(text)
    assert "不支持" in str(info.value) or "不符" in str(info.value)


@pytest.mark.parametrize("code, expected", [
    ("204001.SH", "上海国债逆回购"), ("131810.SZ", "深圳国债逆回购"), ("132001.SH", "上海可交换债"),
    ("830799.BJ", "北交所旧代码"), ("999999.SH", "未知品种"), ("600036.SH", ""), (BOND_SH, ""), (BJ, ""),
])
def test_untradable_reason_names_the_instrument(code, expected):
    reason = mr.untradable_reason(code)
    assert reason.startswith(expected) if expected else reason == ""
    if expected:
        assert "只显示" in reason


@pytest.mark.parametrize("code, tick, minimum, step", [
    (BOND_SH, "0.001", 10, 10), (BOND_SZ, "0.001", 10, 10), (BJ, "0.01", 100, 1), ("511880.SH", "0.001", 100, 100),
    ("600036.SH", "0.01", 100, 100), ("688981.SH", "0.01", 200, 1),
])
def test_ticks_and_lots(code, tick, minimum, step):
    assert str(mr.tick_size(code)) == tick
    assert (mr.min_buy_volume(code), mr.lot_rule(code).step) == (minimum, step)


def test_bond_lots_are_multiples_of_ten():
    assert mr.buy_volume_for_amount(BOND_SH, 10_000, 123.456) == 80  # 81 张 fit, rounded down to 80
    assert mr.buy_volume_for_amount(BOND_SH, 1_000, 123.456) == 0  # 8 张: below one 手 of 10
    assert [mr.is_valid_buy_volume(BOND_SH, v) for v in (10, 15, 20, 5, 0)] == [True, False, True, False, False]
    assert mr.is_valid_sell_volume(BOND_SH, 10, 25) and mr.is_valid_sell_volume(BOND_SH, 25, 25)
    assert not mr.is_valid_sell_volume(BOND_SH, 15, 25)
    assert mr.sell_volume_for_ratio(BOND_SH, 25, 0.6) == 10  # 15 → 10
    assert mr.sell_volume_for_ratio(BOND_SH, 15, 0.6) == 15  # 9 rounds to 0: everything
    assert mr.volume_unit(BOND_SH) == "张" and mr.volume_unit(BJ) == "股"


def test_bj_buys_100_then_any_whole_share():
    assert mr.buy_volume_for_amount(BJ, 1_234, 10.00) == 123
    assert mr.buy_volume_for_amount(BJ, 999, 10.00) == 0  # 99 shares: below the 100-share minimum
    assert [mr.is_valid_buy_volume(BJ, v) for v in (100, 101, 150, 99, 1)] == [True, True, True, False, False]
    assert mr.is_valid_sell_volume(BJ, 120, 150) and mr.is_valid_sell_volume(BJ, 150, 150)
    assert not mr.is_valid_sell_volume(BJ, 50, 150)  # below 100 unless it is the whole remainder
    assert mr.sell_volume_for_ratio(BJ, 250, 0.6) == 150
    assert mr.sell_volume_for_ratio(BJ, 150, 0.6) == 150  # 90 < 100: everything


def test_buy_lot_messages_by_kind():
    assert mr.buy_lot_message(BOND_SH, 15) == "可转债买入数量必须是 10 张的整数倍（一手 10 张），收到 15 张"
    assert mr.buy_lot_message(BJ, 99) == "北交所买入数量至少 100 股，收到 99 股"
    assert mr.buy_lot_message("688981.SH", 150) == "科创板买入数量至少 200 股，收到 150 股"
    assert mr.buy_lot_message("600036.SH", 150) == "买入数量必须是 100 股的整数倍（一手 100 股），收到 150 股"


@pytest.mark.parametrize("code, prev_close, day, expected", [
    (BOND_SH, 120.0, date(2026, 12, 8), (96.0, 144.0)),
    (BOND_SZ, 123.456, date(2026, 12, 8), (98.765, 148.147)),  # 98.7648 / 148.1472, half-up to 0.001
    (BOND_SH, 120.0, date(2022, 7, 29), None),  # before the 2022-08-01 CB rules: no daily band
    (BJ, 10.0, date(2026, 12, 8), (7.0, 13.0)),
    (BJ, 12.34, date(2026, 12, 8), (8.64, 16.04)),  # 8.638 / 16.042
    ("511880.SH", 100.0, date(2026, 12, 8), (90.0, 110.0)),
])
def test_normal_bands(code, prev_close, day, expected):
    assert mr.day_limits(code, prev_close, day=day) == expected


def test_st_band_unchanged_by_date():
    assert mr.day_limits("600001.SH", 10.0, True, date(2026, 7, 3)) == (9.5, 10.5)
    assert mr.day_limits("600001.SH", 10.0, True, date(2026, 7, 6)) == (9.0, 11.0)


def test_new_listing_has_no_limit_for_five_trading_days(listings):
    # listed Tue 2026-12-01: days 1..5 are 12-01, 12-02, 12-03, 12-04 and Mon 12-07; 12-08 is day 6
    for day in (date(2026, 12, 1), date(2026, 12, 4), date(2026, 12, 7)):
        assert mr.day_limits(STAR_NEW, 50.0, day=day) is None
        assert mr.listing_rule_applies(STAR_NEW, day)
    assert mr.listing_day_number(STAR_NEW, date(2026, 12, 8)) == 6
    assert mr.day_limits(STAR_NEW, 50.0, day=date(2026, 12, 8)) == (40.0, 60.0)
    assert not mr.listing_rule_applies(STAR_NEW, date(2026, 12, 8))
    # unknown listing date: an established listing (the normal band) — the documented fallback
    assert mr.day_limits("688000.SH", 50.0, day=date(2026, 12, 2)) == (40.0, 60.0)
    assert not mr.listing_rule_applies("688000.SH", date(2026, 12, 2))


def test_bj_first_day_only_and_bond_first_day_range(listings):
    assert mr.day_limits("920099.BJ", 10.0, day=date(2026, 12, 1)) is None
    assert mr.day_limits("920099.BJ", 10.0, day=date(2026, 12, 2)) == (7.0, 13.0)
    assert mr.day_limits("113999.SH", 100.0, day=date(2026, 12, 1)) == (56.7, 157.3)  # −43.3 % / +57.3 %
    assert mr.day_limits("113999.SH", 130.0, day=date(2026, 12, 2)) == (104.0, 156.0)


def test_listing_before_the_boards_registration_date_keeps_the_old_first_day(listings):
    # SH main board before 2023-04-10: day 1 +44 % / −36 %, then ±10 %
    assert mr.day_limits("600999.SH", 10.0, day=date(2020, 1, 6)) == (6.4, 14.4)
    assert mr.day_limits("600999.SH", 14.4, day=date(2020, 1, 7)) == (12.96, 15.84)


@pytest.mark.parametrize("code, t0", [
    ("511880.SH", True), ("518880.SH", True), ("513100.SH", True), ("511010.SH", True), ("159920.SZ", True),
    ("159985.SZ", True), ("510300.SH", False), ("159915.SZ", False), (BOND_SH, True), (BOND_SZ, True),
    ("600036.SH", False), (BJ, False), ("688981.SH", False),
])
def test_t0_from_the_shipped_table(code, t0):
    assert mr.is_t0(code) is t0


def test_t0_table_and_listing_file_from_config(tmp_path):
    table = tmp_path / "t0.csv"
    table.write_text("# my broker's list, 2026-12-08\ncode,name,kind\n510300.SH,300ETF,test\n", encoding="utf-8")
    listing = tmp_path / "listings.csv"
    listing.write_text("code,listing_date\n688999.SH,2026-12-01\n", encoding="utf-8")
    data = mr.instrument_data_from_config({"T0_ETF_FILE": str(table), "LISTING_DATES_FILE": str(listing)})
    assert data.t0_codes == frozenset({"510300.SH"})
    assert data.listing_dates == {"688999.SH": date(2026, 12, 1)}
    assert mr.is_t0("510300.SH", data) and not mr.is_t0("511880.SH", data)
    assert mr.day_limits(STAR_NEW, 50.0, day=date(2026, 12, 2), data=data) is None
    with pytest.raises(ValueError) as info:
        mr.instrument_data_from_config({"T0_ETF_FILE": str(tmp_path / "missing.csv"), "LISTING_DATES_FILE": ""})
    assert "missing.csv" in str(info.value) and "T0_ETF_FILE" in str(info.value)
    table.write_text("code\n999999.SH\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        mr.read_t0_table(table)
    assert "T+0 品种表" in str(info.value)


def test_fees_by_kind():
    # bond: own commission 万1 without minimum, no stamp duty, no transfer fee: 20 张 × 123.456 = 2,469.12
    assert mr.fees(BOND_SH, "sell", 123.456, 20, FEES) == {"commission": 0.25, "stamp_duty": 0.0, "transfer_fee": 0.0,
                                                          "total": 0.25}
    assert mr.fees(BOND_SH, "buy", 123.456, 20, {**FEES, "BOND_MIN_COMMISSION": 1.0})["total"] == 1.0
    # BSE shares: commission (minimum 5), stamp duty 0.05 % on sells, transfer fee 0.001 %
    assert mr.fees(BJ, "sell", 10.0, 100, FEES) == {"commission": 5.0, "stamp_duty": 0.5, "transfer_fee": 0.01,
                                                   "total": 5.51}
    # T+0 fund: commission only
    assert mr.fees("511880.SH", "sell", 100.0, 100, FEES) == {"commission": 5.0, "stamp_duty": 0.0,
                                                              "transfer_fee": 0.0, "total": 5.0}

    # outside the rules (a repo loan, an SH subscription code): zero, never an error in the push handler
    for code in ("204001.SH", "131810.SZ", "732777.SH"):
        assert mr.fees(code, "sell", 1.9, 450, FEES)["total"] == 0.0


def test_shipped_t0_table_rows_are_valid_fund_codes():
    codes = mr.read_t0_table(mr.DEFAULT_T0_TABLE)
    assert len(codes) >= 30 and all(mr.board(code) is Board.ETF for code in codes)
    assert InstrumentData(codes).t0_codes == codes


@pytest.mark.parametrize("detail, expected", [
    ({"OpenDate": 20261201}, date(2026, 12, 1)), ({"OpenDate": "20261201"}, date(2026, 12, 1)),
    ({"OpenDate": 0}, None), ({"OpenDate": "99999999"}, None), ({}, None), (None, None),
])
def test_listing_date_from_an_xtdata_detail(detail, expected):
    assert mr.listing_date_of_detail(detail) == expected


def test_noted_listing_dates_reach_the_limits():
    before = mr.instrument_data()
    try:
        mr.note_listing_dates({STAR_NEW: date(2026, 12, 1)})
        assert mr.day_limits(STAR_NEW, 50.0, day=date(2026, 12, 3)) is None
        assert mr.instrument_data().t0_codes == before.t0_codes
    finally:
        mr.use_instrument_data(before)
