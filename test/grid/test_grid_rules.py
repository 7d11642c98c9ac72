"""Grid rules as tables: levels on the tick, callback tracking, lot sizing within the caps, the grid's own
average-cost P&L, the decision at a price and every end condition (pure functions, exact numbers)."""
from datetime import datetime

import pytest

import config
import grid.rules as g
from core.models import Side

CODE = "600036.SH"
T0 = datetime(2025, 9, 30, 10, 0, 0)
DEFAULT = g.GridParams.from_settings(config.DEFAULTS)  # step 2 %, 5000/grid, cap 20000, tp 8 %, sl -10 %
WITH_CALLBACK = g.GridParams.from_settings(config.DEFAULTS, {"GRID_CALLBACK_RATIO": 0.01})


def state(reference=10.0, low=None, high=None, book=g.GridBook(), last_fill=None):
    return g.GridState(reference, g.GridWatch(low, high), book, last_fill)


@pytest.mark.parametrize("code, reference, step, buy, sell", [
    (CODE, 10.00, 0.02, 9.80, 10.20),
    (CODE, 9.80, 0.02, 9.60, 10.00),   # 9.604 down to the tick, 9.996 up to the tick
    (CODE, 5.00, 0.02, 4.90, 5.10),    # 5.0 × 1.02 is 5.1000000000000005 in floats: still 5.10
    (CODE, 12.34, 0.03, 11.96, 12.72),  # 11.9698 → 11.96, 12.7102 → 12.72
    ("510300.SH", 3.456, 0.02, 3.386, 3.526),  # ETF tick 0.001
])
def test_levels_round_to_the_first_tick_beyond_the_step(code, reference, step, buy, sell):
    params = g.GridParams.from_settings(config.DEFAULTS, {"GRID_STEP_RATIO": step})
    assert g.levels(code, reference, params) == g.GridLevels(reference, buy, sell)


def test_callback_buy_waits_for_the_rebound_from_the_low():
    grid = g.levels(CODE, 10.0, WITH_CALLBACK)
    watch = g.GridWatch()
    rows = []
    for price in (9.85, 9.80, 9.75, 9.70, 9.76, 9.79, 9.80):
        watch = g.track(watch, grid, price)
        rows.append((price, watch.low, g.rebound_price(CODE, watch, WITH_CALLBACK),
                     g.buy_holds(CODE, grid, watch, price, WITH_CALLBACK)))
    assert rows == [
        (9.85, None, None, False),
        (9.80, 9.80, 9.90, False),  # armed; 9.80 × 1.01 = 9.898 → 9.90
        (9.75, 9.75, 9.85, False),  # 9.8475 → 9.85
        (9.70, 9.70, 9.80, False),  # 9.797 → 9.80
        (9.76, 9.70, 9.80, False),
        (9.79, 9.70, 9.80, False),
        (9.80, 9.70, 9.80, True),   # rebounded 1 % from the low
    ]
    # without callback the same path buys at the first tick at or below the level
    assert [g.buy_holds(CODE, grid, g.GridWatch(), p, DEFAULT) for p in (9.81, 9.80, 9.70)] == [False, True, True]


def test_callback_sell_waits_for_the_pullback_and_a_dip_back_to_the_reference_disarms():
    grid = g.levels(CODE, 10.0, WITH_CALLBACK)
    watch = g.GridWatch()
    rows = []
    for price in (10.19, 10.20, 10.40, 10.30, 10.29):
        watch = g.track(watch, grid, price)
        rows.append((price, watch.high, g.pullback_price(CODE, watch, WITH_CALLBACK),
                     g.sell_holds(CODE, grid, watch, price, WITH_CALLBACK)))
    assert rows == [
        (10.19, None, None, False),
        (10.20, 10.20, 10.09, False),  # 10.098 → 10.09
        (10.40, 10.40, 10.29, False),  # 10.296 → 10.29
        (10.30, 10.40, 10.29, False),
        (10.29, 10.40, 10.29, True),
    ]
    assert g.track(watch, grid, 10.00) == g.GridWatch(None, None)  # back at the last fill: the rise is over
    dipped = g.track(g.GridWatch(), grid, 9.70)
    assert g.track(dipped, grid, 10.00) == g.GridWatch(None, None)


def test_book_average_cost_realized_and_unrealized():
    book = g.GridBook()
    book = g.apply_fill(book, Side.BUY, 9.80, 500, 5.05)
    assert (book.net_volume, book.open_cost, g.cents(book.realized_pnl), book.invested) == (500, 4900.0, -5.05, 4900.0)
    assert g.pnl(book, 10.00) == g.GridPnl(-5.05, 100.0, 94.95)
    book = g.apply_fill(book, Side.SELL, 10.00, 500, 7.55)
    assert (book.net_volume, book.open_cost, g.cents(book.realized_pnl)) == (0, 0.0, 87.40)
    book = g.apply_fill(book, Side.SELL, 10.20, 500, 7.60)  # base shares: the grid is now net short
    assert (book.net_volume, book.open_cost, book.sold_short, book.invested) == (-500, -5100.0, 5100.0, 0.0)
    assert g.pnl(book, 10.00) == g.GridPnl(79.80, 100.0, 179.80)
    book = g.apply_fill(book, Side.BUY, 9.90, 800, 5.00)  # buys back 500 (+150.00), then 300 long at 9.90
    assert (book.net_volume, g.cents(book.open_cost), g.cents(book.realized_pnl)) == (300, 2970.0, 224.80)
    assert g.pnl(book, 9.80) == g.GridPnl(224.80, -30.0, 194.80)
    assert (book.buy_count, book.sell_count, book.bought_volume, book.sold_volume, g.cents(book.fees)) == \
        (2, 2, 1300, 1000, 25.20)


@pytest.mark.parametrize("book, price, expected", [
    (g.GridBook(), 9.80, 500),                                         # 5000 at the 10.00 reference
    (g.GridBook(net_volume=1700, open_cost=17000.0), 9.80, 300),       # 3000 left: 306 shares → 300
    (g.GridBook(net_volume=1900, open_cost=19500.0), 9.80, 0),         # 500 left: not one lot
    (g.GridBook(net_volume=-500, open_cost=-5100.0), 9.80, 500),       # buying back base shares is free
    (g.GridBook(net_volume=-200, open_cost=-2040.0, ), 9.80, 500),
])
def test_buy_volume_respects_lots_and_the_investment_cap(book, price, expected):
    assert g.buy_volume(CODE, state(book=book), price, DEFAULT) == expected


@pytest.mark.parametrize("book, sellable, expected", [
    (g.GridBook(), 1000, 500),
    (g.GridBook(), 300, 300),    # only what is available (net of open sell orders)
    (g.GridBook(), 50, 0),       # no odd lots from the grid
    (g.GridBook(net_volume=-1800, open_cost=-18000.0), 5000, 100),  # 2000 of room at 10.20: 196 → 100
    (g.GridBook(net_volume=500, open_cost=4900.0), 5000, 500),
])
def test_sell_volume_respects_available_lots_and_the_cap(book, sellable, expected):
    assert g.sell_volume(CODE, state(book=book), 10.20, sellable, DEFAULT) == expected


def test_star_market_sizes_from_200_shares():
    star = "688981.SH"
    assert g.buy_volume(star, state(reference=20.0), 19.60, DEFAULT) == 250
    assert g.sell_volume(star, state(reference=20.0), 20.40, 199, DEFAULT) == 0
    assert g.sell_volume(star, state(reference=20.0), 20.40, 230, DEFAULT) == 230


def test_decide_buy_sell_nothing_and_cooldown():
    cooldown = 60.0
    assert g.decide(CODE, state(), 9.80, 1000, DEFAULT, T0, cooldown) == g.GridOrder(Side.BUY, 500, 9.80)
    assert g.decide(CODE, state(), 9.81, 1000, DEFAULT, T0, cooldown) is None
    assert g.decide(CODE, state(), 10.19, 1000, DEFAULT, T0, cooldown) is None
    assert g.decide(CODE, state(), 10.25, 1000, DEFAULT, T0, cooldown) == g.GridOrder(Side.SELL, 500, 10.20)
    assert g.decide(CODE, state(), 10.25, 0, DEFAULT, T0, cooldown) is None  # T+1: nothing available
    recent = state(last_fill=datetime(2025, 9, 30, 9, 59, 30))
    assert g.decide(CODE, recent, 9.50, 1000, DEFAULT, T0, cooldown) is None
    assert g.decide(CODE, recent, 9.50, 1000, DEFAULT, datetime(2025, 9, 30, 10, 0, 30), cooldown) == \
        g.GridOrder(Side.BUY, 500, 9.80)
    armed = state(low=9.70)
    assert g.decide(CODE, armed, 9.80, 1000, WITH_CALLBACK, T0, cooldown) == g.GridOrder(Side.BUY, 500, 9.80)


def test_still_valid_rechecks_condition_and_size():
    assert g.still_valid(CODE, state(), Side.BUY, 500, 9.80, 0, DEFAULT) == ""
    assert g.still_valid(CODE, state(), Side.BUY, 500, 9.85, 0, DEFAULT) == \
        "600036.SH 网格买入条件在现价 9.850 已不成立（买入价 9.800）"
    assert g.still_valid(CODE, state(), Side.SELL, 500, 10.20, 400, DEFAULT) == \
        "600036.SH 可卖数量不足（可用 400 股），网格卖出 500 股不再执行"
    full = state(book=g.GridBook(net_volume=1900, open_cost=19500.0))
    assert g.still_valid(CODE, full, Side.BUY, 500, 9.80, 0, DEFAULT) == \
        "600036.SH 网格买入 500 股将超过网格最大投入 20000.00 元"


@pytest.mark.parametrize("book, price, days, volume, expected", [
    (g.GridBook(), 10.00, 0, 0, g.GridEndReason.POSITION_GONE),
    (g.GridBook(net_volume=2000, open_cost=20000.0), 9.00, 0, 3000, g.GridEndReason.STOP_LOSS),    # −2000.00
    (g.GridBook(net_volume=2000, open_cost=20000.0), 9.01, 0, 3000, None),                          # −1980.00
    (g.GridBook(net_volume=500, open_cost=5000.0, realized_pnl=1500.0), 10.20, 0, 3000,
     g.GridEndReason.TARGET_PROFIT),                                                 # 1500 + 100 = 8 % of 20000
    (g.GridBook(net_volume=500, open_cost=5000.0, realized_pnl=1500.0), 10.19, 0, 3000, None),     # 1595.00
    (g.GridBook(), 11.50, 0, 3000, None),              # exactly 15 % away: not beyond
    (g.GridBook(), 11.51, 0, 3000, g.GridEndReason.DEVIATION),
    (g.GridBook(), 8.49, 0, 3000, g.GridEndReason.DEVIATION),
    (g.GridBook(), 10.00, 29, 3000, None),
    (g.GridBook(), 10.00, 30, 3000, g.GridEndReason.EXPIRED),
])
def test_end_reasons(book, price, days, volume, expected):
    assert g.end_reason(book, DEFAULT, 10.00, price, days, volume) is expected


def test_params_from_settings_and_overrides_are_checked():
    assert DEFAULT == g.GridParams(0.02, 5000.0, 0.0, 20000.0, 0.08, -0.10, 30, 0.15)
    custom = g.GridParams.from_settings(config.DEFAULTS, {"GRID_STEP_RATIO": 0.03, "GRID_MAX_HOLD_DAYS": 5})
    assert (custom.step_ratio, custom.max_hold_days, custom.buy_amount) == (0.03, 5, 5000.0)
    with pytest.raises(g.GridParamError) as refused:
        g.GridParams.from_settings(config.DEFAULTS, {"GRID_STEP_RATIO": 0.9, "GRID_FOO": 1})
    assert set(refused.value.errors) == {"GRID_STEP_RATIO", "GRID_FOO"}
    with pytest.raises(g.GridParamError) as too_big:
        g.GridParams.from_settings(config.DEFAULTS, {"GRID_BUY_AMOUNT": 30000})
    assert too_big.value.errors == {"GRID_BUY_AMOUNT": "每格买入金额不能大于网格最大投入"}
    assert g.GridEndReason.MANUAL.status is g.GridStatus.STOPPED
    assert g.GridEndReason.EXPIRED.status is g.GridStatus.FINISHED


@pytest.mark.parametrize("code, center, expected", [
    ("600036.SH", 51.23, 5123.0),  # one lot of 100
    ("600036.SH", 50.00, 5000.0),
    ("688981.SH", 45.01, 9002.0),  # STAR: 200 shares at least
    ("600036.SH", 17.671, 1768.0),  # rounded up to the yuan
])
def test_smallest_grid_amount_buys_exactly_one_lot_at_the_centre(code, center, expected):
    import market_rules

    assert g.min_grid_amount(code, center) == expected
    assert market_rules.buy_volume_for_amount(code, expected, center) == market_rules.min_buy_volume(code)
    assert market_rules.buy_volume_for_amount(code, expected - 1, center) == 0


def test_grid_pnl_parts_explain_a_loss_after_profitable_sells():
    """Three sells of base shares above the centre, then the price rises further: no round trip closed yet,
    the sold shares would cost more to buy back (unrealised loss), and fees — the three parts add up."""
    from grid_trading import pnl_explanations

    book = g.GridBook()
    for price in (10.2, 10.4, 10.6):
        book = g.apply_fill(book, Side.SELL, price, 500, 5.0 + 2.6)
    result = g.pnl(book, 11.0)
    round_trip = g.cents(book.realized_pnl + book.fees)
    assert (round_trip, result.unrealized, g.cents(book.fees), result.total) == (0.0, -900.0, 22.8, -922.8)
    assert g.cents(round_trip + result.unrealized - book.fees) == result.total
    notes = pnl_explanations(book, 11.0)
    assert notes["unrealized"].startswith("网格多卖出的 1500 股底仓（均价 10.400）按现价 11 买回的浮动盈亏")
    assert notes["fees"] == "网格全部 3 笔成交的佣金、印花税和过户费"
    book = g.apply_fill(book, Side.BUY, 10.0, 1500, 5.0)  # bought back below: the round trips close
    assert g.cents(book.realized_pnl + book.fees) == 600.0 and g.pnl(book, 11.0).unrealized == 0.0
