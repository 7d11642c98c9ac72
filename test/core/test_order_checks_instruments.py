"""core.order_checks with the issue-28 instruments: a new listing's no-limit days override the band a quote
carries, marketable prices and price checks follow, lot messages name each kind's rule."""
import math
from datetime import date, datetime

import pytest

import core.order_checks as checks
import market_rules
from core.models import OrderRejected, Quote, Side

NEW = "688999.SH"


@pytest.fixture
def listed():
    before = market_rules.instrument_data()
    market_rules.use_instrument_data(before.with_listing_dates({NEW: date(2026, 12, 1)}))
    yield
    market_rules.use_instrument_data(before)


def quote(code, price, prev_close, day, limits=(None, None)):
    return Quote(code=code, price=price, prev_close=prev_close, time=datetime.combine(day, datetime.min.time()),
                 source="test", limit_down=limits[0], limit_up=limits[1])


def test_no_limit_days_ignore_a_band_computed_without_the_listing_date(listed):
    q = quote(NEW, 75.00, 50.00, date(2026, 12, 2), limits=(40.00, 60.00))  # replay's band: wrong on day 2
    assert checks.limits(q) == (0.01, math.inf)
    assert checks.marketable_price(NEW, Side.BUY, q, 0.002) == 75.15
    assert checks.marketable_price(NEW, Side.SELL, q, 0.002) == 74.85
    checks.check_price(NEW, Side.BUY, 90.00, q)  # +80 %: no limit to break
    day6 = quote(NEW, 55.00, 50.00, date(2026, 12, 8), limits=(40.00, 60.00))
    assert checks.limits(day6) == (40.00, 60.00)
    with pytest.raises(OrderRejected) as info:
        checks.check_price(NEW, Side.BUY, 60.01, day6)
    assert info.value.code == "PRICE_OUT_OF_LIMITS"


def test_bond_ticks_and_limits():
    q = quote("113050.SH", 121.000, 120.000, date(2026, 12, 8))
    assert checks.limits(q) == (96.0, 144.0)
    checks.check_price("113050.SH", Side.BUY, 121.001, q)
    with pytest.raises(OrderRejected) as info:
        checks.check_price("113050.SH", Side.BUY, 121.0005, q)
    assert info.value.code == "INVALID_PRICE" and "0.001" in info.value.message


@pytest.mark.parametrize("code, volume, available, message", [
    ("113050.SH", 15, 25, "卖出数量必须是 10 张的整数倍，零头须一次全部卖出（可卖 25 张，委托 15 张）"),
    ("920001.BJ", 50, 150, "北交所卖出数量至少 100 股，不足部分须一次全部卖出（可卖 150 股，委托 50 股）"),
    ("600036.SH", 150, 300, "卖出数量必须是 100 股的整数倍，零股须一次全部卖出（可卖 300 股，委托 150 股）"),
])
def test_sell_lot_messages(code, volume, available, message):
    with pytest.raises(OrderRejected) as info:
        checks.check_sell_volume(code, volume, available)
    assert info.value.message == message


def test_buy_lot_refusals():
    with pytest.raises(OrderRejected) as info:
        checks.check_buy_volume("113050.SH", 5)
    assert info.value.message == "可转债买入数量必须是 10 张的整数倍（一手 10 张），收到 5 张"
    checks.check_buy_volume("920001.BJ", 101)
    checks.check_buy_volume("113050.SH", 30)
