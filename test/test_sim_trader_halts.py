"""Issue 28 §1: the simulated account during intraday temporary halts 盘中临时停牌 — orders and cancels are
accepted, nothing matches until the halt ends, then resting orders fill on the next quote."""
from dataclasses import replace
from datetime import date, datetime

import pytest

import market_rules
from core.models import OrderRequest, OrderStatus, Side
from persistence.storage import Database
from sim_trader import SimTrader
from trading_support import QuoteBoard, make_settings, replay_clock

STAR_NEW, BOND_NEW = "688999.SH", "113999.SH"
DAY = date(2024, 2, 8)  # Thu: the STAR listing's day 4 (listed Mon 02-05), the bond's listing day


@pytest.fixture
def env(tmp_path):
    before = market_rules.instrument_data()
    market_rules.use_instrument_data(before.with_listing_dates({STAR_NEW: date(2024, 2, 5), BOND_NEW: DAY}))
    clock = replay_clock("2024-02-08 09:30:00")
    quotes = QuoteBoard(clock)
    sim = SimTrader(Database(tmp_path / "sim.db"), make_settings(tmp_path), clock, quotes)
    yield clock, quotes, sim
    market_rules.use_instrument_data(before)


def tick(env, hh, mm, code, price, prev_close, open_price=None):
    """Move the clock to hh:mm and deliver a quote (with the day's open when given)."""
    clock, quotes, sim = env
    clock.set(datetime(2024, 2, 8, hh, mm))
    quote = quotes.set(code, price, prev_close)
    sim.on_quote(replace(quote, open=open_price) if open_price else quote)


def buy(env, client_id, code, volume, price):
    env[2].place_order(OrderRequest(client_id=client_id, stock_code=code, side=Side.BUY, volume=volume, price=price))


def status(env, client_id):
    [order] = [o for o in env[2].query_orders() if o.client_id == client_id]
    return order.status, order.filled_volume


def test_new_listing_orders_rest_during_the_halt_and_fill_after_it(env):
    sim = env[2]
    tick(env, 9, 30, STAR_NEW, 50.00, 45.00, open_price=50.00)
    tick(env, 10, 0, STAR_NEW, 65.00, 45.00)  # +30 % of the open: halted until 10:10
    assert sim.halt_state(STAR_NEW).halted_until == datetime(2024, 2, 8, 10, 10)
    buy(env, "B1", STAR_NEW, 200, 66.00)  # marketable against 65.00, but the code is halted
    assert status(env, "B1") == (OrderStatus.OPEN, 0)
    buy(env, "B2", STAR_NEW, 300, 66.00)
    sim.cancel_order("B2")  # cancels are accepted during a halt
    assert status(env, "B2") == (OrderStatus.CANCELLED, 0)
    tick(env, 10, 9, STAR_NEW, 64.00, 45.00)
    assert sim.query_trades() == []
    tick(env, 10, 10, STAR_NEW, 64.50, 45.00)  # resumed: the resting order meets the trade at its limit
    [fill] = sim.query_trades()
    assert (fill.client_id, fill.price, fill.volume, fill.time) == ("B1", 66.00, 200, datetime(2024, 2, 8, 10, 10))
    tick(env, 10, 20, STAR_NEW, 80.00, 45.00)  # +60 %: the second halt, until 10:30
    buy(env, "B3", STAR_NEW, 200, 81.00)
    tick(env, 10, 29, STAR_NEW, 79.00, 45.00)
    assert status(env, "B3") == (OrderStatus.OPEN, 0)
    tick(env, 10, 30, STAR_NEW, 79.50, 45.00)
    assert status(env, "B3") == (OrderStatus.FILLED, 200)
    assert sim.query_trades()[-1].price == 81.00


def test_bond_first_day_halts_30_minutes_then_to_1457(env):
    sim = env[2]
    tick(env, 9, 30, BOND_NEW, 110.000, 100.000, open_price=110.000)  # issue price 100.000 is the base
    tick(env, 9, 40, BOND_NEW, 120.000, 100.000)  # +20 %: halted 30 minutes, until 10:10
    buy(env, "B1", BOND_NEW, 10, 121.000)
    tick(env, 10, 9, BOND_NEW, 119.000, 100.000)
    assert status(env, "B1") == (OrderStatus.OPEN, 0)
    tick(env, 10, 10, BOND_NEW, 119.500, 100.000)
    assert status(env, "B1") == (OrderStatus.FILLED, 10)
    tick(env, 10, 30, BOND_NEW, 130.000, 100.000)  # +30 %: halted until 14:57
    assert sim.halt_state(BOND_NEW).halted_until == datetime(2024, 2, 8, 14, 57)
    buy(env, "B2", BOND_NEW, 20, 131.000)
    tick(env, 14, 56, BOND_NEW, 129.000, 100.000)
    assert status(env, "B2") == (OrderStatus.OPEN, 0)
    tick(env, 14, 57, BOND_NEW, 129.500, 100.000)
    assert status(env, "B2") == (OrderStatus.FILLED, 20)
    assert [(f.price, f.volume) for f in sim.query_trades()] == [(121.000, 10), (131.000, 20)]


def test_an_established_listing_is_never_halted(env):
    sim = env[2]
    tick(env, 9, 30, "600036.SH", 10.00, 10.00, open_price=10.00)
    assert sim.halt_state("600036.SH") is None
