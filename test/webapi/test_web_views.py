"""Pure JSON shapes of the API: today's P&L, serialisation, moving averages, CSV export."""
import json
import math
from datetime import date, datetime

import pytest

from core.models import Order, OrderStatus, Position, Quote, Rule, Side, Signal, SignalStatus
from webapi.views import (jsonable, order_view, position_view, signal_view, today_pnl, trade_records_csv,
                       with_moving_averages, with_today)


def quote(code, price, prev_close):
    return Quote(code=code, price=price, prev_close=prev_close, time=datetime(2024, 3, 1, 10, 0), source="test")


def record(code, side, price, volume, fees):
    return {"stock_code": code, "side": side, "price": price, "volume": volume,
            "amount": round(price * volume, 2), "fees": fees}


def test_today_pnl_of_overnight_holding_with_a_buy_and_a_partial_sell():
    # 600036: 1000 held overnight (prev close 10.00), bought 500 @ 10.20 (fee 5.00), sold 300 @ 10.50 (fee 6.63)
    # now 1200 @ 10.40: 12480 - 10000 - 5100 + 3150 - 11.63 = 518.37
    positions = [Position("600036.SH", volume=1200, available=700, current_price=10.40)]
    records = [record("600036.SH", "buy", 10.20, 500, 5.00), record("600036.SH", "sell", 10.50, 300, 6.63)]
    quotes = {"600036.SH": quote("600036.SH", 10.40, 10.00)}
    assert today_pnl(positions, records, quotes.get) == 518.37


def test_today_pnl_counts_stocks_sold_out_today_and_new_buys():
    # 000001 sold out: 1000 overnight @ prev close 12.00, sold @ 12.30 with fees 17.84 → 282.16
    # 300750 bought today 200 @ 150.00 (fee 9.00), now 151.00 → 200 - 9 = 191.00
    positions = [Position("300750.SZ", volume=200, available=0, current_price=151.00)]
    records = [record("000001.SZ", "sell", 12.30, 1000, 17.84), record("300750.SZ", "buy", 150.00, 200, 9.00)]
    quotes = {"000001.SZ": quote("000001.SZ", 12.35, 12.00), "300750.SZ": quote("300750.SZ", 151.0, 149.0)}
    assert today_pnl(positions, records, quotes.get) == 473.16


def test_today_pnl_is_unknown_without_previous_close_of_an_overnight_holding():
    positions = [Position("600036.SH", volume=1000, available=1000, current_price=10.40)]
    assert today_pnl(positions, [], lambda code: None) is None


def test_today_pnl_fees_from_parts_when_total_missing():
    positions = [Position("600036.SH", volume=100, available=0, current_price=10.00)]
    records = [{"stock_code": "600036.SH", "side": "buy", "price": 10.0, "volume": 100, "amount": 1000.0,
                "commission": 5.0, "stamp_duty": 0.0, "transfer_fee": 0.01}]
    assert today_pnl(positions, records, lambda code: None) == -5.01


def test_jsonable_handles_dates_enums_nan_and_dataclasses():
    order = Order("C1", "600036.SH", Side.BUY, 100, 10.5, OrderStatus.OPEN, time=datetime(2024, 3, 1, 9, 31, 5))
    value = jsonable({"order": order, "day": date(2024, 3, 1), "nan": math.nan, "inf": math.inf, "t": (1, 2)})
    assert value == {"order": {"client_id": "C1", "stock_code": "600036.SH", "side": "buy", "volume": 100,
                               "price": 10.5, "status": "open", "order_id": "", "filled_volume": 0,
                               "filled_amount": 0.0, "time": "2024-03-01T09:31:05", "reason": ""},
                     "day": "2024-03-01", "nan": None, "inf": None, "t": [1, 2]}
    json.dumps(value, allow_nan=False)


def test_order_and_signal_views_carry_chinese_labels():
    order = order_view({"stock_code": "600036.SH", "side": "sell", "status": "partially_filled", "rule": "stop_loss"})
    assert (order["side_label"], order["status_label"], order["rule_label"]) == ("卖出", "部分成交", "止损")
    assert order_view({"side": "x", "status": None})["status_label"] is None
    signal = Signal("600036.SH", Rule.ADD_POSITION, 200, 9.3, 9.29, datetime(2024, 3, 1, 10, 0), id=7,
                    status=SignalStatus.REJECTED, reason="条件已不成立")
    view = signal_view(signal)
    assert (view["side"], view["side_label"], view["rule_label"], view["status_label"]) == ("buy", "买入", "补仓", "已拒绝")
    assert view["created_at"] == "2024-03-01T10:00:00"


class Triggers:
    stop_loss_price = 9.0456
    take_profit_price = 10.6012
    dynamic_stop_price = None
    next_add_price = 9.3099
    next_add_index = 1


def test_position_view_has_every_column_pnl_and_trigger_prices():
    position = Position("600036.SH", "招商银行", volume=1000, available=1000, cost_price=10.0, current_price=10.25,
                        used_add_levels=(0,), open_date=date(2024, 2, 1))
    view = position_view(position, Triggers())
    assert view["profit_amount"] == 250.0
    assert view["open_date"] == "2024-02-01"
    assert view["used_add_levels"] == [0]
    # as they fire: downward triggers rounded down to the tick, the upward take-profit rounded up
    assert view["trigger_prices"] == {"stop_loss_price": 9.04, "take_profit_price": 10.61, "dynamic_stop_price": None,
                                      "next_add_price": 9.30, "next_add_index": 1}
    assert view["trigger_prices_exact"]["stop_loss_price"] == 9.0456


def test_today_bar_is_appended_from_the_quote_only_when_missing():
    bars = [{"date": "2024-02-29", "open": 10, "high": 10.5, "low": 9.9, "close": 10.2, "volume": 1000}]
    q = Quote("600036.SH", 10.35, 10.2, datetime(2024, 3, 1, 10, 0), "test", open=10.25, high=10.4, low=10.1,
              volume=500.0)
    result = with_today(bars, q, date(2024, 3, 1))
    assert result[-1] == {"date": "2024-03-01", "open": 10.25, "high": 10.4, "low": 10.1, "close": 10.35,
                          "volume": 500.0, "partial": True}
    assert with_today(result, q, date(2024, 3, 1)) == result
    assert with_today(bars, q, date(2024, 3, 4)) == bars  # yesterday's quote is not today's bar


def test_moving_averages_are_means_of_last_closes():
    bars = [{"close": c} for c in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]]
    with_moving_averages(bars, windows=(3, 10))
    assert [b["ma3"] for b in bars[:4]] == [None, None, 2.0, 3.0]
    assert bars[11]["ma3"] == 11.0
    assert bars[8]["ma10"] is None and bars[9]["ma10"] == 5.5 and bars[11]["ma10"] == 7.5


def test_moving_averages_keep_values_already_present():
    bars = [{"close": 1, "ma3": 99.0}, {"close": 2, "ma3": 98.0}, {"close": 3, "ma3": 97.0}]
    with_moving_averages(bars, windows=(3,))
    assert [b["ma3"] for b in bars] == [99.0, 98.0, 97.0]


def test_csv_export_has_bom_chinese_headers_and_labels():
    text = trade_records_csv([{"trade_time": "2024-03-01T10:00:00", "stock_code": "600036.SH", "side": "buy",
                               "price": 10.5, "volume": 100, "amount": 1050.0, "fees": 5.01, "rule": "manual",
                               "mode": "simulation"}])
    assert text.startswith("\ufeff成交时间,股票代码,")
    row = text.splitlines()[1].split(",")
    assert row[:7] == ["2024-03-01T10:00:00", "600036.SH", "", "买入", "10.5", "100", "1050.0"]
    assert "手动" in row and "模拟" in row


@pytest.mark.parametrize("moment, limits", [(datetime(2026, 7, 3, 10, 0), (9.5, 10.5)),
                                            (datetime(2026, 7, 6, 10, 0), (9.0, 11.0))])
def test_intraday_chart_draws_the_st_band_of_the_day(moment, limits):
    """Issue 33: a source without limits in its quotes: the chart's lines follow the ST band by date."""
    from webapi.intraday import IntradayBuffer

    buffer = IntradayBuffer()
    buffer.on_quote(Quote("600146.SH", 9.4, 10.0, moment, "test", name="*ST商赢"))
    series = buffer.series("600146.SH")
    assert (series["limit_down"], series["limit_up"]) == limits
