"""Issue 28 through the order pipeline (executor → sim broker → positions): a convertible bond and a T+0 fund
bought and sold on the same day, bond lots of 10 张, 北交所 lots from 100 then 1, with the positions agreeing
with the broker at every step."""
import pytest

from core.models import OrderRejected, OrderStatus
from trading_support import QuoteBoard, build_core, make_settings, replay_clock

BOND, BJ = "113050.SH", "920001.BJ"


@pytest.fixture
def core(tmp_path):
    clock = replay_clock("2024-02-08 10:00:00")
    quotes = QuoteBoard(clock)
    core = build_core(tmp_path / "sim_trading.db", make_settings(tmp_path), clock, quotes)
    core.quotes = quotes
    return core


def agree(core):
    ours = {p.stock_code: (p.volume, p.available) for p in core.positions.all()}
    broker = {p.stock_code: (p.volume, p.available) for p in core.sim.query_positions()}
    assert ours == broker
    return ours


def test_bond_bought_by_amount_and_sold_the_same_day(core):
    core.quotes.set(BOND, 123.456, 120.000)
    order = core.executor.buy_stock(BOND, amount=10_000)
    # order price 123.456 × 1.002 = 123.703 (tick 0.001); 10,000 / 123.703 = 80.8 → 80 张 (multiples of 10)
    assert (order.status, order.volume, order.price) == (OrderStatus.FILLED, 80, 123.703)
    assert agree(core) == {BOND: (80, 80)}  # T+0: sellable at once, in our book as at the broker
    sold = core.executor.sell_stock(BOND, 80)
    assert (sold.status, sold.volume, sold.price) == (OrderStatus.FILLED, 80, 123.209)  # × 0.998
    assert agree(core) == {}
    # buy 9,876.48 + 0.99 commission; sell at the quote 123.456: 9,876.48 − 0.99; nothing else
    assert core.sim.query_asset().cash == 999_998.02


def test_t0_fund_round_trip_and_t1_fund_waits(core):
    core.quotes.set("518880.SH", 5.000, 5.000)
    core.executor.buy_stock("518880.SH", volume=1000)
    assert agree(core) == {"518880.SH": (1000, 1000)}
    core.executor.sell_stock("518880.SH", 1000)
    assert agree(core) == {}
    core.quotes.set("510300.SH", 4.000, 4.000)
    core.executor.buy_stock("510300.SH", volume=1000)
    with pytest.raises(OrderRejected) as info:
        core.executor.sell_stock("510300.SH", 1000)
    assert info.value.code in ("T1_UNAVAILABLE", "INSUFFICIENT_AVAILABLE")
    assert agree(core) == {"510300.SH": (1000, 0)}


def test_bj_volumes(core):
    core.quotes.set(BJ, 10.00, 10.00)
    order = core.executor.buy_stock(BJ, amount=1_234)  # 10.02 × 123 = 1,232.46: any whole share from 100
    assert (order.volume, order.price) == (123, 10.02)
    with pytest.raises(OrderRejected) as info:
        core.executor.buy_stock(BJ, volume=99)
    assert info.value.message == "北交所买入数量至少 100 股，收到 99 股"
    assert agree(core) == {BJ: (123, 0)}
