"""market/ex_rights.py: the exchanges' reference price, factors, adjusted levels and holdings, the events file,
and events derived from the real raw vs qfq series in ../shared/data/full (skipped when absent)."""
from __future__ import annotations

from datetime import date

import pytest

from data_test_support import shared_data
from market import ex_rights as ex
from market.ex_rights import CorporateAction


def action(**fields) -> CorporateAction:
    return CorporateAction("600036.SH", date(2024, 7, 11), **fields)


@pytest.mark.parametrize("fields, prev_close, reference, factor", [
    ({"cash_per_share": 0.2, "shares_per_share": 0.3}, 10.0, 7.538461538, 0.753846154),  # the reference's 10派2送3
    ({"cash_per_share": 1.0, "shares_per_share": 1.0}, 666.46, 332.73, 0.499249767),  # 10派10转10
    ({"cash_per_share": 0.5}, 20.0, 19.5, 0.975),
    ({"rights_per_share": 0.3, "rights_price": 5.0}, 10.0, 8.846153846, 0.884615385),  # 10配3 at 5.00
])
def test_reference_price_and_factor(fields, prev_close, reference, factor):
    event = action(**fields)
    assert ex.reference_price(prev_close, event) == pytest.approx(reference, abs=1e-9)
    assert ex.price_factor(event, prev_close) == factor


def test_explicit_factor_wins_and_missing_close_is_an_error():
    assert ex.price_factor(action(cash_per_share=1.0, factor=0.9), 10.0) == 0.9
    with pytest.raises(ValueError):
        ex.price_factor(action(cash_per_share=1.0))


def test_limit_reference_is_the_rounded_reference_price():
    assert ex.limit_reference("600036.SH", 10.0, action(cash_per_share=0.2, shares_per_share=0.3)) == 7.54
    assert ex.limit_reference("510300.SH", 10.0, action(cash_per_share=0.2, shares_per_share=0.3)) == 7.538
    assert ex.limit_reference("600036.SH", 10.0, None) == 10.0


def test_adjust_level():
    assert ex.adjust_level(12.34, 0.5) == 6.17
    assert ex.adjust_level(10.07, 0.753846154) == 7.591231
    assert ex.adjust_level(0.0, 0.5) == 0.0
    assert ex.adjust_level(None, 0.5) is None


def test_holding_change_adds_whole_bonus_shares_pays_cash_and_lowers_cost():
    change = ex.holding_change(1_050, 21_010.50, action(cash_per_share=0.2, shares_per_share=0.35))
    assert (change.volume_after, change.bonus_shares, change.cash_credit, change.cost_amount_after) == \
        (1_417, 367, 210.0, 20_800.5)
    rights = ex.holding_change(1_000, 10_000.0, action(rights_per_share=0.3, rights_price=5.0))
    assert (rights.volume_after, rights.cash_credit, rights.cost_amount_after) == (1_000, 0.0, 10_000.0)


def test_equity_is_continuous_at_the_reference_price():
    event = action(cash_per_share=0.2, shares_per_share=0.3)
    change = ex.holding_change(1_000, 9_000.0, event)
    before = 1_000 * 10.0
    after = change.volume_after * ex.reference_price(10.0, event) + change.cash_credit
    assert after == pytest.approx(before, abs=1e-6)


def test_cumulative_factors_forward_adjust():
    days = [date(2024, 7, 9), date(2024, 7, 10), date(2024, 7, 11), date(2024, 7, 12)]
    closes = [10.2, 10.0, 7.6, 7.7]
    factors = ex.cumulative_factors(days, [action(cash_per_share=0.2, shares_per_share=0.3)], closes)
    assert factors == [0.753846154, 0.753846154, 1.0, 1.0]


def test_events_file_round_trip_and_errors():
    text = ("# 回放用除权除息事件\n"
            "code,ex_date,cash_per_share,shares_per_share\n"
            "600036.SH,2024-07-11,1.972,0\n"
            "sz000661,2020-06-09,1.0,1.0\n")
    events = ex.parse_events(text)
    assert events == [CorporateAction("000661.SZ", date(2020, 6, 9), 1.0, 1.0),
                      CorporateAction("600036.SH", date(2024, 7, 11), 1.972, 0.0)]
    assert ex.parse_events(ex.format_events(events)) == events
    assert ex.parse_events("# empty\n") == []
    with pytest.raises(ex.EventsFileError, match="第3行：600036.SH 2024-07-11 重复"):
        ex.parse_events("code,ex_date,cash_per_share,shares_per_share\n600036.SH,2024-07-11,1,0\n"
                        "600036.SH,2024-07-11,1,0\n")
    with pytest.raises(ex.EventsFileError, match="第2行：除权除息日无效"):
        ex.parse_events("code,ex_date,cash_per_share,shares_per_share\n600036.SH,2024/07/11,1,0\n")
    with pytest.raises(ex.EventsFileError, match="缺少列 shares_per_share"):
        ex.parse_events("code,ex_date,cash_per_share\n600036.SH,2024-07-11,1\n")
    with pytest.raises(ex.EventsFileError, match="没有任何分红"):
        ex.parse_events("code,ex_date,cash_per_share,shares_per_share\n600036.SH,2024-07-11,0,0\n")


def test_events_between_takes_a_missed_ex_date_at_the_next_bar():
    events = [action(cash_per_share=1.0), CorporateAction("600036.SH", date(2024, 7, 20), 0.5)]
    assert ex.events_between(events, date(2024, 7, 10), date(2024, 7, 12)) == events[:1]
    assert ex.events_between(events, date(2024, 7, 11), date(2024, 7, 19)) == []
    assert ex.events_between(events, None, date(2024, 7, 20)) == events


def test_describe():
    assert action(cash_per_share=0.2, shares_per_share=0.3).describe() == "每10股派2元送转3股"
    assert action(factor=0.9).describe() == "除权因子"


def load_pair(code: str):
    import pandas as pd

    raw = pd.read_csv(shared_data("full", "daily_raw_ohlc", f"{code}.csv"))
    adjusted = pd.read_csv(shared_data("full", "daily", f"{code}.csv"))
    merged = raw.merge(adjusted, on="date", suffixes=("_r", "_a"))
    days = [date.fromisoformat(d) for d in merged["date"]]
    columns = ("open", "high", "low", "close")
    return (days, {c: merged[f"{c}_r"].tolist() for c in columns}, {c: merged[f"{c}_a"].tolist() for c in columns})


def test_derived_events_of_a_real_bonus_share_stock():
    """长春高新 000661.SZ: 2019 annual 10派10转10 went ex on 2020-06-09 (close 666.46 the day before)."""
    days, raw, adjusted = load_pair("000661.SZ")
    events = ex.derive_events("000661.SZ", days, raw, adjusted)
    assert [(e.ex_date, e.shares_per_share) for e in events] == [
        (date(2020, 6, 9), 1.0), (date(2021, 5, 19), 0.0), (date(2022, 6, 9), 0.0)]
    first = events[0]
    assert first.factor == 0.499253344
    assert first.cash_per_share == 0.9952  # the notice says 1.00: the qfq rounding leaves a few fen
    assert ex.limit_reference("000661.SZ", 666.46, first) == 332.73


def test_derived_factors_rebuild_the_qfq_series_within_its_rounding():
    for code in ("000661.SZ", "002709.SZ", "600519.SH"):
        days, raw, adjusted = load_pair(code)
        events = ex.derive_events(code, days, raw, adjusted)
        factors = ex.cumulative_factors(days, events, raw["close"])
        scale = adjusted["close"][-1] / raw["close"][-1]  # the qfq reference lies after the raw data ends
        worst = max(abs(r * f * scale - q) for r, f, q in zip(raw["close"], factors, adjusted["close"]))
        assert worst < 0.03, code
