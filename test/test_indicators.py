"""Indicators against an independent pandas computation on a real series, stored incrementally in
stock_indicators, and the MACD cross / MA alignment answers on the last completed bar."""
import csv
from datetime import date

import numpy as np
import pandas as pd
import pytest

from market.bar_store import BarStore, DailyBar
from data_test_support import shared_data
from indicator_calculator import (DEATH, GOLDEN, IndicatorCalculator, IndicatorRow, compute_indicators,
                                  cross_between, is_ma_aligned)
from persistence.storage import Database

CODE = "600000.SH"


def load_real_bars(code=CODE):
    path = shared_data("daily", f"{code}.csv")
    with open(path, newline="") as handle:
        return [DailyBar(code, date.fromisoformat(r["date"]), float(r["open"]), float(r["high"]), float(r["low"]),
                         float(r["close"]), float(r["volume"])) for r in csv.DictReader(handle)]


def reference_macd(closes: pd.Series):
    """MACD(12,26,9) with pandas ewm, seeded like TA-Lib: TA-Lib starts both price EMAs at index slow-1 = 25,
    each seeded with the simple mean of its own period's closes ending there (the fast EMA's seed is the mean
    of closes[14..25], not of closes[0..11]); the signal EMA starts at index 33 seeded with the mean of
    DIF[25..33]. Before index 33 TA-Lib outputs NaN."""
    def seeded_ema(values: pd.Series, period: int, seed_index: int) -> pd.Series:
        tail = values.iloc[seed_index:].copy()
        tail.iloc[0] = values.iloc[seed_index - period + 1: seed_index + 1].mean()
        return tail.ewm(alpha=2 / (period + 1), adjust=False).mean().reindex(values.index)

    dif = seeded_ema(closes, 12, 25) - seeded_ema(closes, 26, 25)
    dea = seeded_ema(dif, 9, 33)
    dif[:33] = np.nan
    return dif, dea, dif - dea


@pytest.fixture
def stores(tmp_path):
    db = Database(tmp_path / "market.db")
    bar_store = BarStore(db)
    calculator = IndicatorCalculator(bar_store)
    bar_store.subscribe(calculator.update)
    return bar_store, calculator


def test_macd_and_ma_match_independent_pandas_computation_to_1e9():
    bars = load_real_bars()
    closes = pd.Series([b.close for b in bars])
    values = compute_indicators(closes.to_numpy())
    dif, dea, hist = reference_macd(closes)
    # same warm-up (first 33 values NaN), then every value of the 1400+ days agrees within 1e-9
    for ours, theirs in ((values.macd_dif, dif), (values.macd_dea, dea), (values.macd_hist, hist)):
        assert ours.isna().tolist() == theirs.isna().tolist()
        assert ours.isna().sum() == 33
        assert np.nanmax(np.abs(ours.to_numpy() - theirs.to_numpy())) < 1e-9
    for period in (5, 10, 20, 30, 60):
        ours, theirs = values[f"ma{period}"], closes.rolling(period).mean()
        assert ours.isna().sum() == period - 1 == theirs.isna().sum()
        assert np.nanmax(np.abs(ours.to_numpy() - theirs.to_numpy())) < 1e-9


def test_stored_indicators_equal_computed_and_update_incrementally(stores):
    bar_store, calculator = stores
    bars = load_real_bars()
    bar_store.upsert(bars[:100])
    for bar in bars[100:110]:
        bar_store.upsert([bar])  # each new bar triggers one incremental update (one row written)
        assert calculator.update(CODE) == 0  # nothing left to do afterwards
    stored = calculator.rows(CODE)
    expected = compute_indicators(np.array([b.close for b in bars[:110]]))
    assert len(stored) == 110
    assert stored["date"].tolist() == [b.day for b in bars[:110]]
    for column in ("macd_dif", "macd_dea", "macd_hist", "ma10", "ma60"):
        assert np.allclose(stored[column].to_numpy(), expected[column].to_numpy(), atol=1e-12, equal_nan=True)


def test_replaced_history_rewrites_every_row(stores):
    bar_store, calculator = stores
    bars = load_real_bars()[:80]
    bar_store.upsert(bars)
    halved = [DailyBar(b.code, b.day, b.open / 2, b.high / 2, b.low / 2, b.close / 2, b.volume) for b in bars]
    bar_store.replace(CODE, halved)  # e.g. a re-adjustment after an ex-right day
    stored = calculator.rows(CODE)
    expected = compute_indicators(np.array([b.close for b in halved]))
    assert np.allclose(stored["macd_dif"].to_numpy(), expected["macd_dif"].to_numpy(), atol=1e-12, equal_nan=True)
    assert stored["ma10"].iloc[-1] == pytest.approx(np.mean([b.close for b in halved[-10:]]), abs=1e-12)


def test_crosses_on_the_last_completed_bar_match_independent_computation(stores):
    bar_store, calculator = stores
    bars = load_real_bars()
    bar_store.upsert(bars)
    closes = pd.Series([b.close for b in bars])
    _, _, hist = reference_macd(closes)
    days = [b.day for b in bars]
    golden = [days[i] for i in range(1, len(days)) if hist[i - 1] <= 0 < hist[i]]
    death = [days[i] for i in range(1, len(days)) if hist[i - 1] >= 0 > hist[i]]
    # dates checked by hand against the histogram (e.g. 2020-03-26 -0.00799, 2020-03-27 +0.00582)
    assert golden[:2] == [date(2020, 3, 27), date(2020, 5, 28)]
    assert death[:2] == [date(2020, 3, 17), date(2020, 5, 22)]
    # asked on the next trading day, the cross bar is the last completed one; asked on the cross day itself,
    # that bar is not complete yet
    found = {GOLDEN: [], DEATH: []}
    for i in range(1, len(days) - 1):
        cross = calculator.macd_cross(CODE, days[i + 1])
        if cross:
            found[cross].append(days[i])
    assert found[GOLDEN] == [d for d in golden if d != days[-1]] and len(found[GOLDEN]) >= 56
    assert found[DEATH] == [d for d in death if d != days[-1]] and len(found[DEATH]) >= 57
    assert calculator.macd_cross(CODE, date(2020, 3, 30)) == GOLDEN
    assert calculator.macd_cross(CODE, date(2020, 3, 27)) is None
    assert calculator.macd_cross(CODE, date(2020, 3, 18)) == DEATH


def test_ma_alignment_on_known_dates(stores):
    bar_store, calculator = stores
    bars = load_real_bars()
    bar_store.upsert(bars)
    closes = pd.Series([b.close for b in bars])
    ma = {p: closes.rolling(p).mean() for p in (10, 20, 30, 60)}
    aligned = (ma[10] > ma[20]) & (ma[20] > ma[30]) & (ma[30] > ma[60])
    days = [b.day for b in bars]
    first = days[int(np.argmax(aligned.to_numpy()))]
    assert first == date(2020, 6, 3)
    assert calculator.ma_aligned(CODE, date(2020, 6, 4)) is True  # 06-03 is the last completed bar
    assert calculator.ma_aligned(CODE, date(2020, 6, 3)) is False  # 06-02 was not aligned yet
    # the first golden cross with aligned averages (the MACD entry with ENABLE_MA_FILTER)
    assert calculator.macd_cross(CODE, date(2021, 3, 16)) == GOLDEN
    assert calculator.ma_aligned(CODE, date(2021, 3, 16)) is True


@pytest.mark.parametrize("previous, last, expected", [
    (-0.01, 0.02, GOLDEN), (0.0, 0.01, GOLDEN), (0.01, -0.02, DEATH), (0.0, -0.01, DEATH),
    (0.01, 0.02, None), (-0.01, -0.02, None), (0.0, 0.0, None), (float("nan"), 0.1, None), (None, 0.1, None),
])
def test_cross_rule(previous, last, expected):
    assert cross_between(previous, last) == expected


def test_alignment_needs_every_average():
    row = IndicatorRow(CODE, date(2025, 1, 2), None, None, None, 10.0, 9.0, 8.0, 7.0, None)
    assert is_ma_aligned(row) is False
    assert is_ma_aligned(IndicatorRow(CODE, date(2025, 1, 2), None, None, None, None, 9.0, 8.0, 7.0, 6.0)) is True
    assert is_ma_aligned(IndicatorRow(CODE, date(2025, 1, 2), None, None, None, None, 9.0, 8.0, 8.0, 6.0)) is False


def test_macd_decision_combines_cross_and_filter(stores):
    bar_store, calculator = stores
    bar_store.upsert(load_real_bars())
    assert calculator.macd_decision(CODE, date(2021, 3, 16), ma_filter=True) == "buy"  # golden + aligned
    assert calculator.ma_aligned(CODE, date(2020, 3, 30)) is False
    assert calculator.macd_decision(CODE, date(2020, 3, 30), ma_filter=True) is None  # golden, not aligned
    assert calculator.macd_decision(CODE, date(2020, 3, 30), ma_filter=False) == "buy"
    assert calculator.macd_decision(CODE, date(2020, 3, 18), ma_filter=True) == "sell"
    assert calculator.macd_decision(CODE, date(2020, 3, 19), ma_filter=False) is None
