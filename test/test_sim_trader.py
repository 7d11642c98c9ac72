"""The simulated broker: matching, fees, cash freezing, T+1, sessions, refusals, persistence, event delivery."""
import threading
from datetime import date, datetime

import pytest

from core.models import OrderRejected, OrderRequest, OrderStatus, Side
from sim_trader import SimTrader
from persistence.storage import Database
from trading_support import QuoteBoard, make_settings, replay_clock

CODE = "600036.SH"
START = 1_000_000.0


class Recorder:
    """A BrokerListener that writes down what it receives."""

    def __init__(self):
        self.events = []

    def on_order_update(self, order):
        self.events.append(("order", order.client_id, order.status, order.filled_volume))

    def on_fill(self, fill):
        self.events.append(("fill", fill.client_id, fill.volume, fill.price))


class Env:
    def __init__(self, tmp_path, moment="2024-02-08 10:00:00", **overrides):
        self.tmp_path = tmp_path
        self.clock = replay_clock(moment)
        self.quotes = QuoteBoard(self.clock)
        self.settings = make_settings(tmp_path, **overrides)
        self.recorder = Recorder()
        self.sim = self.open()

    def open(self, **options) -> SimTrader:
        sim = SimTrader(Database(self.tmp_path / "sim.db"), self.settings, self.clock, self.quotes, **options)
        sim.set_listener(self.recorder)
        return sim

    def book(self, sim=None):
        sim = sim or self.sim
        return sim.query_asset(), sim.query_positions(), sim.query_orders(), sim.query_trades()


def request(client_id, side, volume, price, code=CODE):
    return OrderRequest(client_id=client_id, stock_code=code, side=side, volume=volume, price=price)


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def test_marketable_buy_fills_at_the_quote_and_releases_the_unused_freeze(env):
    env.quotes.set(CODE, 10.00, 10.00)
    env.sim.place_order(request("C1", Side.BUY, 1000, 10.05))
    # frozen at placement: 10,050.00 + commission 5.00 (minimum) + transfer 0.10 = 10,055.10;
    # filled at the quote 10.00: 10,000.00 + 5.00 + 0.10 = 10,005.10, the other 50.00 goes back to cash
    asset = env.sim.query_asset()
    assert (asset.cash, asset.frozen_cash, asset.market_value) == (989_994.90, 0.0, 10_000.00)
    [fill] = env.sim.query_trades()
    assert (fill.fill_id, fill.order_id) == ("SIM20240208100000000001-1", "SIM20240208100000000001")
    assert (fill.price, fill.volume, fill.commission, fill.stamp_duty, fill.transfer_fee) == (
        10.00, 1000, 5.00, 0, 0.10)
    [position] = env.sim.query_positions()
    assert (position.volume, position.available, position.cost_price) == (1000, 0, 10.005)
    assert env.recorder.events == [("order", "C1", OrderStatus.OPEN, 0), ("fill", "C1", 1000, 10.00),
                                   ("order", "C1", OrderStatus.FILLED, 1000)]


def test_resting_buy_freezes_cash_with_fees_and_cancel_releases_it(env):
    env.quotes.set(CODE, 10.00, 10.00)
    env.sim.place_order(request("C1", Side.BUY, 1000, 9.90))
    asset = env.sim.query_asset()
    assert (asset.cash, asset.frozen_cash, asset.total_asset) == (990_094.90, 9_905.10, START)
    env.sim.cancel_order("SIM20240208100000000001")
    asset = env.sim.query_asset()
    assert (asset.cash, asset.frozen_cash) == (START, 0.0)
    assert env.recorder.events[-1] == ("order", "C1", OrderStatus.CANCELLED, 0)
    with pytest.raises(OrderRejected) as info:
        env.sim.cancel_order("C1")
    assert info.value.code == "ORDER_NOT_OPEN"


def test_resting_orders_fill_at_their_limit_when_a_later_quote_crosses(env):
    env.quotes.set(CODE, 10.00, 10.00)
    env.sim.place_order(request("C1", Side.BUY, 1000, 9.90))
    env.sim.on_quote(env.quotes.set(CODE, 9.95, 10.00))  # not yet
    assert env.sim.query_trades() == []
    env.sim.on_quote(env.quotes.set(CODE, 9.85, 10.00))  # a seller at 9.85 meets our bid 9.90 → trade at 9.90
    [fill] = env.sim.query_trades()
    assert (fill.price, fill.volume, fill.fees) == (9.90, 1000, 5.10)
    asset = env.sim.query_asset()
    assert (asset.cash, asset.frozen_cash) == (990_094.90, 0.0)


def test_partial_fills_charge_the_minimum_commission_once_per_order(env):
    sim = env.open(max_fill_volume=300)
    env.quotes.set(CODE, 10.00, 10.00)
    sim.place_order(request("C1", Side.BUY, 1000, 10.00))
    for _ in range(3):
        sim.on_quote(env.quotes.set(CODE, 10.00, 10.00))
    fills = sim.query_trades()
    assert [f.volume for f in fills] == [300, 300, 300, 100]
    assert [f.commission for f in fills] == [5.00, 0, 0, 0]
    assert [f.transfer_fee for f in fills] == [0.03, 0.03, 0.03, 0.01]
    assert len({f.fill_id for f in fills}) == 4
    asset = sim.query_asset()
    assert (asset.cash, asset.frozen_cash) == (START - 10_005.10, 0.0)
    [order] = sim.query_orders()
    assert (order.status, order.filled_volume, order.filled_amount) == (OrderStatus.FILLED, 1000, 10_000.0)


def test_t_plus_one_follows_the_trading_calendar(env):
    env.quotes.set(CODE, 10.00, 10.00)
    env.sim.place_order(request("B1", Side.BUY, 1000, 10.00))  # Thursday 2024-02-08, before Spring Festival
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("S1", Side.SELL, 1000, 10.00))
    assert info.value.code == "T1_UNAVAILABLE" and "下一交易日" in info.value.message
    env.clock.set(datetime(2024, 2, 18, 10, 0))  # Sunday, a make-up working day, exchange closed
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("S2", Side.SELL, 1000, 10.00))
    assert info.value.code == "T1_UNAVAILABLE"
    env.clock.set(datetime(2024, 2, 19, 10, 0))  # the next trading day
    env.quotes.set(CODE, 10.20, 10.00)
    env.sim.place_order(request("S3", Side.SELL, 1000, 10.20))
    # 10,200.00 − commission 5.00 − stamp duty 5.10 − transfer 0.10 = 10,189.80
    fill = env.sim.query_trades()[-1]
    assert (fill.commission, fill.stamp_duty, fill.transfer_fee) == (5.00, 5.10, 0.10)
    asset = env.sim.query_asset()
    assert asset.cash == 1_000_184.70  # 989,994.90 after the buy + 10,189.80
    assert env.sim.query_positions() == []


def test_closed_session_refused_unless_hours_are_ignored(tmp_path):
    env = Env(tmp_path, moment="2024-02-08 12:00:00", SIMULATION_IGNORE_TRADING_HOURS=False)
    env.quotes.set(CODE, 10.00, 10.00)
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("C1", Side.BUY, 100, 10.00))
    assert info.value.code == "MARKET_CLOSED" and "非交易时段" in info.value.message
    env.clock.set(datetime(2024, 2, 8, 13, 0))
    env.sim.place_order(request("C2", Side.BUY, 100, 9.90))
    env.clock.set(datetime(2024, 2, 8, 15, 30))
    env.sim.on_quote(env.quotes.set(CODE, 9.80, 10.00))  # after the close nothing matches
    assert env.sim.query_trades() == []


@pytest.mark.parametrize("side, volume, price, quote, code", [
    (Side.BUY, 100_000, 10.00, 10.00, "INSUFFICIENT_CASH"),
    (Side.BUY, 100, 11.01, 10.00, "PRICE_OUT_OF_LIMITS"),  # limit-up 11.00
    (Side.BUY, 100, 11.00, 11.00, "LIMIT_UP"),
    (Side.BUY, 150, 10.00, 10.00, "INVALID_VOLUME"),
    (Side.BUY, 100, 10.001, 10.00, "INVALID_PRICE"),
    (Side.SELL, 100, 10.00, 10.00, "NO_POSITION"),
])
def test_refusals_change_nothing_but_record_the_rejected_order(env, side, volume, price, quote, code):
    env.quotes.set(CODE, quote, 10.00)
    before = env.sim.query_asset(), env.sim.query_positions(), env.sim.query_trades()
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("C1", side, volume, price))
    assert info.value.code == code
    assert (env.sim.query_asset(), env.sim.query_positions(), env.sim.query_trades()) == before
    [order] = env.sim.query_orders()
    assert (order.client_id, order.status, order.reason) == ("C1", OrderStatus.REJECTED, info.value.message)
    assert env.recorder.events == []


def test_limit_down_sell_and_oversell_refused(env):
    env.quotes.set(CODE, 10.00, 10.00)
    env.sim.place_order(request("B1", Side.BUY, 300, 10.00))
    env.clock.set(datetime(2024, 2, 19, 10, 0))
    env.quotes.set(CODE, 9.00, 10.00)  # limit-down 9.00
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("S1", Side.SELL, 300, 9.00))
    assert info.value.code == "LIMIT_DOWN"
    env.quotes.set(CODE, 9.50, 10.00)
    env.sim.place_order(request("S2", Side.SELL, 200, 9.80))  # rests, freezes 200 shares
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("S3", Side.SELL, 200, 9.50))
    assert info.value.code == "INSUFFICIENT_AVAILABLE" and "未成交卖单" in info.value.message
    [position] = env.sim.query_positions()
    assert (position.volume, position.available) == (300, 100)
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("S2", Side.SELL, 100, 9.50))
    assert info.value.code == "DUPLICATE_ORDER"


def test_restart_restores_the_whole_book(env):
    env.quotes.set(CODE, 10.00, 10.00)
    env.sim.place_order(request("B1", Side.BUY, 1000, 10.00))
    env.sim.place_order(request("B2", Side.BUY, 500, 9.90))  # rests
    before = env.book()
    reopened = env.open()
    assert env.book(reopened) == before
    with pytest.raises(OrderRejected) as info:  # T+1 state survived
        reopened.place_order(request("S1", Side.SELL, 1000, 10.00))
    assert info.value.code == "T1_UNAVAILABLE"
    reopened.on_quote(env.quotes.set(CODE, 9.90, 10.00))  # the restored resting order still matches
    assert [f.client_id for f in reopened.query_trades()] == ["B1", "B2"]
    reopened.place_order(request("B3", Side.BUY, 100, 9.80))
    # the counter continued (the refused S1 took number 3)
    assert reopened.query_orders()[-1].order_id == "SIM20240208100000000004"
    assert reopened.query_asset().frozen_cash == 985.01  # 980.00 + commission 5.00 + transfer 0.01


def test_day_roll_expires_open_orders(env):
    env.quotes.set(CODE, 10.00, 10.00)
    env.sim.place_order(request("B1", Side.BUY, 1000, 9.90))
    env.clock.set(datetime(2024, 2, 19, 9, 0))
    [order] = env.sim.query_orders()  # the lazy roll happens on any call
    assert order.status is OrderStatus.CANCELLED and "自动撤销" in order.reason
    assert env.sim.query_asset().cash == START
    assert env.recorder.events[-1] == ("order", "B1", OrderStatus.CANCELLED, 0)
    env.sim.roll_day(date(2024, 2, 19))  # the explicit roll of the housekeeping thread is idempotent
    assert env.recorder.events[-1] == ("order", "B1", OrderStatus.CANCELLED, 0)


def test_listener_may_call_back_into_the_broker_without_deadlock(env):
    env.quotes.set(CODE, 10.00, 10.00)

    class PlacesOnFill(Recorder):
        def on_fill(self, fill):
            super().on_fill(fill)
            if fill.client_id == "C1":
                env.sim.place_order(request("C2", Side.BUY, 100, 10.00))

    listener = PlacesOnFill()
    env.sim.set_listener(listener)
    worker = threading.Thread(target=env.sim.place_order, args=(request("C1", Side.BUY, 100, 10.00),))
    worker.start()
    worker.join(timeout=5)
    assert not worker.is_alive()
    # the nested order's events come after the first order's, in order
    assert listener.events == [("order", "C1", OrderStatus.OPEN, 0), ("fill", "C1", 100, 10.00),
                               ("order", "C1", OrderStatus.FILLED, 100), ("order", "C2", OrderStatus.OPEN, 0),
                               ("fill", "C2", 100, 10.00), ("order", "C2", OrderStatus.FILLED, 100)]


# ---- issue 28: instruments (bonds, T+0 funds, 北交所, new listings) ------------------------------------------

BOND = "113050.SH"


def test_bond_round_trip_in_one_day_with_bond_fees_and_lots(env):
    env.quotes.set(BOND, 120.000, 119.000)
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("B0", Side.BUY, 15, 120.000, BOND))
    assert info.value.code == "INVALID_VOLUME" and "10 张" in info.value.message
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("B00", Side.BUY, 20, 120.0005, BOND))
    assert info.value.code == "INVALID_PRICE"
    env.sim.place_order(request("B1", Side.BUY, 20, 120.000, BOND))
    # 20 张 × 120.000 = 2,400.00; commission 万1 = 0.24, no minimum, no transfer fee
    [fill] = env.sim.query_trades()
    assert (fill.volume, fill.commission, fill.stamp_duty, fill.transfer_fee) == (20, 0.24, 0, 0)
    [position] = env.sim.query_positions()
    assert (position.volume, position.available, position.cost_price) == (20, 20, 120.012)  # T+0: sellable now
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("S0", Side.SELL, 15, 121.500, BOND))
    assert info.value.code == "INVALID_VOLUME"
    env.quotes.set(BOND, 121.500, 119.000)
    env.sim.place_order(request("S1", Side.SELL, 20, 121.500, BOND))
    # 2,430.00 − commission 0.24 (0.243), no stamp duty
    sell = env.sim.query_trades()[-1]
    assert (sell.price, sell.commission, sell.stamp_duty, sell.transfer_fee) == (121.5, 0.24, 0, 0)
    assert env.sim.query_asset().cash == 1_000_029.52  # − 2,400.24 + 2,429.76
    assert env.sim.query_positions() == []


def test_bond_limit_is_twenty_percent(env):
    env.quotes.set(BOND, 143.000, 120.000)
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("B1", Side.BUY, 10, 144.010, BOND))
    assert info.value.code == "PRICE_OUT_OF_LIMITS" and "96 ~ 144" in info.value.message


def test_t0_fund_round_trip_and_t1_fund_refused(env):
    env.quotes.set("511880.SH", 100.000, 100.000)
    env.sim.place_order(request("B1", Side.BUY, 100, 100.000, "511880.SH"))  # 10,000 + commission 5.00 (minimum)
    env.quotes.set("511880.SH", 100.010, 100.000)
    env.sim.place_order(request("S1", Side.SELL, 100, 100.010, "511880.SH"))  # 10,001.00 − 5.00, no stamp duty
    assert env.sim.query_asset().cash == 999_991.00
    env.quotes.set("510300.SH", 4.000, 4.000)
    env.sim.place_order(request("B2", Side.BUY, 1000, 4.000, "510300.SH"))
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("S2", Side.SELL, 1000, 4.000, "510300.SH"))
    assert info.value.code == "T1_UNAVAILABLE"


def test_bj_buys_100_then_any_share_and_stays_t1(env):
    code = "920001.BJ"
    env.quotes.set(code, 10.00, 10.00)
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("B0", Side.BUY, 99, 10.00, code))
    assert info.value.message == "北交所买入数量至少 100 股，收到 99 股"
    env.sim.place_order(request("B1", Side.BUY, 150, 10.00, code))
    [position] = env.sim.query_positions()
    assert (position.volume, position.available) == (150, 0)
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("S1", Side.SELL, 150, 10.00, code))
    assert info.value.code == "T1_UNAVAILABLE"
    with pytest.raises(OrderRejected) as info:
        env.sim.place_order(request("B2", Side.BUY, 100, 13.01, code))
    assert info.value.code == "PRICE_OUT_OF_LIMITS" and "7 ~ 13" in info.value.message  # ±30 %


def test_new_listing_trades_without_limit_for_five_days(env):
    import market_rules

    code = "688999.SH"
    before = market_rules.instrument_data()
    # listed Mon 2024-02-05: Thu 02-08 is day 4, 02-19 day 5 (Spring Festival), 02-20 day 6
    market_rules.use_instrument_data(before.with_listing_dates({code: date(2024, 2, 5)}))
    try:
        env.quotes.set(code, 45.00, 30.00)  # +50 % over the previous close
        env.sim.place_order(request("B1", Side.BUY, 200, 45.00, code))
        assert env.sim.query_positions()[0].volume == 200
        env.clock.set(datetime(2024, 2, 20, 10, 0))
        env.quotes.set(code, 45.00, 45.00)
        with pytest.raises(OrderRejected) as info:
            env.sim.place_order(request("B2", Side.BUY, 200, 54.01, code))
        assert info.value.code == "PRICE_OUT_OF_LIMITS" and "36 ~ 54" in info.value.message
    finally:
        market_rules.use_instrument_data(before)
