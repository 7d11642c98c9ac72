"""Issue 28 §2 on real data: the backtest on UNADJUSTED bars + ex-rights events trades like the backtest on
forward-adjusted (qfq) bars (same dates, sides, rules), and a holding near its trailing stop crosses a 10转10
ex-date without a false exit. Raw OHLC from ../shared/data/full/daily_raw_ohlc (volume taken from daily/, which
Tushare does not adjust), qfq from daily/, events derived from the pair; skipped when the data is absent."""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

import config
from backtesting.data import derive_events_from_folders, load_bars, load_events
from backtesting.engine import BacktestEngine, StartingState
from core.models import DataUnavailable, Position
from data_test_support import shared_data
from market import ex_rights

# The stocks with the largest bonus-share ex-dates of 2020-01-02..2022-12-20 (factor jumps below 0.67).
BONUS_STOCKS = ("000661.SZ", "002709.SZ", "603659.SH", "000708.SZ", "002414.SZ", "002714.SZ", "600061.SH",
                "002493.SZ")
RAW_END = "2022-12-20"
# Large positions so that lot rounding (100 shares at raw vs qfq prices) does not change which sells happen.
SETTINGS = {**config.DEFAULTS, "POSITION_UNIT": 200_000, "MAX_POSITION_VALUE": 500_000,
            "SIMULATION_BALANCE": 10_000_000}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    import pandas as pd

    raw_source, adjusted_source = shared_data("full", "daily_raw_ohlc"), shared_data("full", "daily")
    base = tmp_path_factory.mktemp("ex_rights")
    raw_dir, adjusted_dir = base / "raw", base / "qfq"
    raw_dir.mkdir()
    adjusted_dir.mkdir()
    for code in BONUS_STOCKS:
        adjusted = pd.read_csv(adjusted_source / f"{code}.csv", dtype={"date": str})
        adjusted = adjusted[adjusted["date"] <= RAW_END]
        raw = pd.read_csv(raw_source / f"{code}.csv", dtype={"date": str})
        raw = raw.merge(adjusted[["date", "volume"]], on="date")  # same dates: 2020-01-02..2022-12-20
        assert len(raw) == len(adjusted), code
        raw.to_csv(raw_dir / f"{code}.csv", index=False)
        adjusted.to_csv(adjusted_dir / f"{code}.csv", index=False)
    return raw_dir, adjusted_dir


def trade_keys(result) -> list[tuple]:
    return [(t.day, t.stock_code, t.side.value, t.rule.value) for t in result.trades]


def test_raw_bars_with_events_trade_like_adjusted_bars(folders):
    raw_dir, adjusted_dir = folders
    events = derive_events_from_folders(raw_dir, adjusted_dir)
    assert sorted(events) == sorted(BONUS_STOCKS)
    adjusted = BacktestEngine(load_bars(adjusted_dir).stocks, SETTINGS).run()
    raw = BacktestEngine(load_bars(raw_dir).stocks, SETTINGS, events=events).run()
    unaware = BacktestEngine(load_bars(raw_dir).stocks, SETTINGS).run()
    assert len(adjusted.trades) == 112
    assert trade_keys(raw) == trade_keys(adjusted)
    assert trade_keys(unaware) != trade_keys(adjusted)  # without the events the gaps change the trading


def test_events_file_replays_the_same_as_derived_events(folders, tmp_path):
    raw_dir, adjusted_dir = folders
    derived = derive_events_from_folders(raw_dir, adjusted_dir, ["000661.SZ", "002709.SZ"])
    file = tmp_path / "events.csv"
    file.write_text(ex_rights.format_events(a for actions in derived.values() for a in actions), encoding="utf-8")
    assert load_events(file) == derived
    (tmp_path / "bad.csv").write_text("code,ex_date,cash_per_share,shares_per_share\n600036.SH,x,1,0\n")
    with pytest.raises(DataUnavailable, match="第2行：除权除息日无效"):
        load_events(tmp_path / "bad.csv")


def held_through_ex_date(folder: Path, events, scale: float):
    """长春高新 held since 2020-06-08 after its first take-profit: cost 620, highest 680 (raw prices, × scale for
    qfq), so the trailing stop sits at 680 × 0.96 = 652.80, 2 % under the 666.46 close before the 2020-06-09
    ex-date of 10派10转10 (raw open 333.00)."""
    position = Position("000661.SZ", volume=1_000, available=1_000, cost_price=620.0 * scale,
                        base_cost_price=620.0 * scale, open_date=date(2020, 6, 8), profit_triggered=True,
                        highest_price=680.0 * scale, used_add_levels=(0,))
    settings = {**SETTINGS, "ENABLE_MACD_BUY": False}
    return BacktestEngine(load_bars(folder, ["000661.SZ"]).stocks, settings, start=date(2020, 6, 9),
                          end=date(2020, 12, 31), events=events,
                          starting=StartingState(100_000.0, (position,))).run()


def test_no_false_exit_on_a_bonus_share_ex_date(folders):
    import pandas as pd

    raw_dir, adjusted_dir = folders
    events = derive_events_from_folders(raw_dir, adjusted_dir, ["000661.SZ"])
    raw_close = pd.read_csv(raw_dir / "000661.SZ.csv").set_index("date")["close"]
    adjusted_close = pd.read_csv(adjusted_dir / "000661.SZ.csv").set_index("date")["close"]
    scale = adjusted_close["2020-06-08"] / raw_close["2020-06-08"]  # the qfq constant before the ex-date

    raw = held_through_ex_date(raw_dir, events, 1.0)
    adjusted = held_through_ex_date(adjusted_dir, None, scale)
    unaware = held_through_ex_date(raw_dir, None, 1.0)

    assert [(t.day, t.side.value, t.rule.value, t.price, t.volume) for t in raw.trades] == [
        (date(2020, 8, 24), "sell", "dynamic_take_profit", 436.47, 2_000)]  # 1,000 + 1,000 bonus shares
    assert trade_keys(raw) == trade_keys(adjusted)
    # Without the event the gap is a loss: limit-down (from 666.46) refuses the sell on the ex-date, and the
    # stop-loss sells at the next open.
    assert [(t.day, t.rule.value, t.price) for t in unaware.trades] == [(date(2020, 6, 10), "stop_loss", 335.08)]
    # Equity is continuous: 100,000 + 1,000 × 666.46 before; after the ex-date's close 2,000 × 334.80 and the
    # cash dividend 1,000 × 0.9952.
    assert raw.equity[0].cash == 100_995.2
    assert raw.equity[0].total == 770_595.2


def test_command_line_takes_an_events_file(folders, tmp_path):
    import csv
    import io

    import backtest

    raw_dir, adjusted_dir = folders
    events = tmp_path / "events.csv"
    derived = derive_events_from_folders(raw_dir, adjusted_dir, ["000661.SZ", "002709.SZ"])
    events.write_text(ex_rights.format_events(a for actions in derived.values() for a in actions), encoding="utf-8")
    common = ["--codes", "000661.SZ", "002709.SZ", "--no-plot", "--no-cache", "--workers", "1",
              "--set", "POSITION_UNIT=200000", "--set", "MAX_POSITION_VALUE=500000", "--set", "SIMULATION_BALANCE=10000000"]
    out = io.StringIO()
    assert backtest.main(["--data", str(raw_dir), "--events", str(events), "--out", str(tmp_path / "raw"), *common],
                         stdout=out, stderr=io.StringIO()) == 0
    assert backtest.main(["--data", str(adjusted_dir), "--out", str(tmp_path / "qfq"), *common],
                         stdout=out, stderr=io.StringIO()) == 0

    def trades(folder):
        with open(folder / "trades.csv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return [tuple(row[key] for key in ("date", "stock_code", "side", "rule")) for row in rows]

    assert trades(tmp_path / "raw") == trades(tmp_path / "qfq")
    assert len(trades(tmp_path / "raw")) > 10
    errors = io.StringIO()
    assert backtest.main(["--data", str(raw_dir), "--events", str(tmp_path / "missing.csv"), "--out",
                          str(tmp_path / "x"), *common], stdout=io.StringIO(), stderr=errors) == 2
    assert "无法读取除权除息文件" in errors.getvalue()
