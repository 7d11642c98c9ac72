"""Issue 32: backtest results that do not depend on processing order. The two decided cases the engine missed
(the cap valuation during the opens, a refused add level retried at later evaluation points) on the real days
that showed them, and metamorphic relations over random settings on the 240 real stocks of ../shared/data/full:
the same trades when the files come in another order, when codes are renamed consistently, and — with cash and
the cap out of the way — when the universe is split in two and the halves are run separately."""
from __future__ import annotations

import random
from dataclasses import replace
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

import config
from backtesting.data import load_bars
from backtesting.engine import BacktestEngine
from backtesting.market import MarketData
from data_test_support import shared_data
from core.models import Rule, Side

START, END = date(2020, 3, 2), date(2021, 6, 30)  # long enough for entries, exits and adds; short enough for CI


@pytest.fixture(scope="module")
def full_stocks():
    return load_bars(shared_data("full", "daily")).stocks


def run(stocks, **overrides):
    values = {**config.DEFAULTS, **overrides}
    return BacktestEngine(stocks, values, START, END).run()


def trades_of(result, code=None, month=""):
    return [(str(t.day), t.stock_code, t.side.value, t.price, t.volume, t.amount, t.fees, t.rule.value)
            for t in result.trades if (code is None or t.stock_code == code) and str(t.day).startswith(month)]


# ---- the two causes, on the real days that showed them ---------------------------------------------------

def test_cap_values_every_holding_at_its_previous_close_during_the_opens(full_stocks):
    """2021-05-06, ENABLE_MA_FILTER=false: 000538.SZ opens at 64.41 below its 0.93 level 64.53. At the 04-30
    closes the holdings leave room for the 300-share add (19,323.00 + 5.99 fees); valued at the 04-29 closes
    (holdings later in code order not yet opened) they did not, and the add slipped to 05-07 at 63.60."""
    result = BacktestEngine(full_stocks, {**config.DEFAULTS, "ENABLE_MA_FILTER": False}).run()
    adds = [t for t in trades_of(result, "000538.SZ", "2021-05") if t[7] == Rule.ADD_POSITION.value]
    assert adds[0] == ("2021-05-06", "000538.SZ", "buy", 64.41, 300, 19_323.00, 5.99, "add_position")


@pytest.mark.parametrize("overrides, code, expected", [
    # the 0.93 add (1,200 shares) is refused at the 16.20 open; room frees later that day and the path
    # (O 16.20 → H 16.55 → L 15.87 → C 16.20) crosses the 0.88 level at 15.98: the 0.93 add fills there
    ({"STOP_LOSS_RATIO": -0.15}, "600346.SH",
     ("2020-09-09", "600346.SH", "buy", 15.98, 1200, 19_176.00, 5.94, "add_position")),
    # refused at the 24.33 open; O → H 25.13 → L 23.32: the 0.95 level (26.44 × 0.95 = 25.118) is crossed
    # at 25.11, where the 0.97 add (700 shares) fills
    ({"BUY_GRID_LEVELS": [1.0, 0.97, 0.95]}, "002568.SZ",
     ("2020-07-27", "002568.SZ", "buy", 25.11, 700, 17_577.00, 5.45, "add_position")),
])
def test_a_refused_add_level_is_retried_at_later_crossings_the_same_day(full_stocks, overrides, code, expected):
    result = BacktestEngine(full_stocks, {**config.DEFAULTS, **overrides}).run()
    adds = [t for t in trades_of(result, code, expected[0][:7]) if t[7] == Rule.ADD_POSITION.value]
    assert adds[0] == expected


# ---- metamorphic relations over random settings ----------------------------------------------------------

SETTINGS = st.fixed_dictionaries({
    "STOP_LOSS_RATIO": st.sampled_from([-0.05, -0.095, -0.15]),
    "INITIAL_TAKE_PROFIT_RATIO": st.sampled_from([0.04, 0.06, 0.10]),
    "BUY_GRID_LEVELS": st.sampled_from([[1.0, 0.93, 0.88], [1.0, 0.97, 0.95], [1.0, 0.95]]),
    "POSITION_UNIT": st.sampled_from([10_000.0, 20_000.0, 40_000.0]),
    "SIMULATION_BALANCE": st.sampled_from([200_000.0, 1_000_000.0]),
    "ENABLE_MA_FILTER": st.booleans(),
    "ENABLE_MACD_SELL": st.booleans(),
})
SLOW_EXAMPLES = hypothesis_settings(max_examples=12, deadline=None, derandomize=True,
                                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                           HealthCheck.too_slow])


def renamed(stocks):
    """Every code renamed within its own 3-digit prefix, keeping the code order (600000 → 600001, …): the
    board, lot, tick and limits stay; only the names change."""
    by_prefix: dict[str, list[str]] = {}
    for code in sorted(bars.code for bars in stocks):
        by_prefix.setdefault(code[:3], []).append(code)
    mapping = {code: f"{code[:3]}{index + 1:03d}{code[6:]}"
               for codes in by_prefix.values() for index, code in enumerate(codes)}
    return [replace(bars, code=mapping[bars.code]) for bars in stocks], mapping


def valid_settings(values):
    values = {**config.DEFAULTS, **values}
    if values["POSITION_UNIT"] > values["MAX_POSITION_VALUE"]:
        values["MAX_POSITION_VALUE"] = values["POSITION_UNIT"] * 2.5
    assert config.validate(values).ok, config.validate(values).errors
    return values


@pytest.mark.slow
@SLOW_EXAMPLES
@given(values=SETTINGS, seed=st.integers(0, 2**16))
def test_same_trades_for_any_file_order_and_consistent_renaming(full_stocks, values, seed):
    values = valid_settings(values)
    base = BacktestEngine(full_stocks, values, START, END).run()
    shuffled = list(full_stocks)
    random.Random(seed).shuffle(shuffled)
    again = BacktestEngine(MarketData.from_stocks(shuffled), values, START, END).run()
    assert again.trades == base.trades and again.equity == base.equity
    stocks, mapping = renamed(full_stocks)
    result = BacktestEngine(stocks, values, START, END).run()
    assert [replace(t, stock_code=mapping[t.stock_code]) for t in base.trades] == result.trades
    assert result.equity == base.equity


@pytest.mark.slow
@SLOW_EXAMPLES
@given(values=SETTINGS, seed=st.integers(0, 2**16))
def test_with_cash_and_cap_out_of_the_way_the_halves_add_up_to_the_whole(full_stocks, values, seed):
    values = valid_settings({**values, "SIMULATION_BALANCE": 1e10})
    whole = BacktestEngine(full_stocks, values, START, END).run()
    stocks = list(full_stocks)
    random.Random(seed).shuffle(stocks)
    halves = [BacktestEngine(part, values, START, END).run() for part in (stocks[::2], stocks[1::2])]
    key = lambda t: (t.day, t.stock_code, t.side is Side.BUY, t.rule.value)  # noqa: E731
    assert sorted(whole.trades, key=key) == sorted(halves[0].trades + halves[1].trades, key=key)
    assert whole.trades  # the relation is not vacuous
