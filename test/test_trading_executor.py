"""The order pipeline against the simulated broker: exact fills and fees, pre-trade refusals that change
nothing, journal-before-send, exactly-once fills, restart and reconciliation, open-order timeouts."""
import sqlite3
from datetime import datetime

import pytest

from core.models import OrderRejected, OrderStatus, Rule, Side
from trading_executor import TradingExecutor
from trading_support import QuoteBoard, build_core, make_settings, replay_clock

CODE = "600036.SH"
DAY1 = "2024-02-08 10:00:00"  # Thursday before the Spring Festival holiday
DAY2 = datetime(2024, 2, 19, 10, 0)  # the next trading day


class Env:
    def __init__(self, tmp_path, **overrides):
        self.tmp_path = tmp_path
        self.clock = replay_clock(DAY1)
        self.quotes = QuoteBoard(self.clock)
        self.settings = make_settings(tmp_path, **overrides)
        self.core = self.open()

    def open(self, **sim_options):
        return build_core(self.tmp_path / "sim_trading.db", self.settings, self.clock, self.quotes, **sim_options)

    @property
    def ex(self):
        return self.core.executor

    def snapshot(self):
        c = self.core
        return (c.executor.account(), c.positions.all(), c.executor.list_orders(), c.executor.trade_records(),
                c.sim.query_orders(), c.sim.query_positions())

    def assert_positions_agree_with_broker(self):
        ours = {p.stock_code: (p.volume, p.available) for p in self.core.positions.all()}
        broker = {p.stock_code: (p.volume, p.available) for p in self.core.sim.query_positions()}
        assert ours == broker

    def next_day(self, price, prev_close):
        self.clock.set(DAY2)
        self.quotes.set(CODE, price, prev_close)


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def test_buy_20000_cny_then_t1_then_sell_next_trading_day(env):
    env.quotes.set(CODE, 12.34, 12.34, name="招商银行")
    order = env.ex.buy_stock("600036.SH", amount=20_000)
    assert (order.volume, order.price, order.status) == (1600, 12.36, OrderStatus.FILLED)  # 12.34 × 1.002 → 12.36
    [buy] = env.ex.trade_records()
    assert (buy["price"], buy["volume"], buy["amount"]) == (12.34, 1600, 19_744.00)
    assert (buy["commission"], buy["stamp_duty"], buy["transfer_fee"], buy["fees"]) == (5.92, 0.0, 0.20, 6.12)
    assert (buy["client_id"], buy["order_id"], buy["strategy"], buy["mode"], buy["stock_name"]) == (
        order.client_id, order.order_id, "manual", "simulation", "招商银行")
    position = env.core.positions.get(CODE)
    # cost_price = (19,744.00 + 6.12) / 1600 = 12.343825, kept exact
    assert (position.volume, position.available, position.cost_price, position.base_cost_price) == (
        1600, 0, 12.343825, 12.34)
    assert env.ex.account().cash == 980_249.88  # 1,000,000 − 19,750.12
    env.assert_positions_agree_with_broker()

    with pytest.raises(OrderRejected) as info:
        env.ex.sell_stock(CODE, 1600)
    assert info.value.code == "T1_UNAVAILABLE" and "今日买入的股份需下一交易日才能卖出" in info.value.message
    assert len(env.ex.list_orders()) == 1  # the refused sell was never journaled

    env.next_day(12.50, 12.40)
    assert env.core.positions.get(CODE).available == 1600
    sell = env.ex.sell_stock(CODE, 1600)
    assert (sell.price, sell.status) == (12.48, OrderStatus.FILLED)  # 12.50 × 0.998 = 12.475 → 12.48
    record = env.ex.trade_records()[-1]
    # 20,000.00 − commission 6.00 − stamp duty 10.00 − transfer 0.20; realized = 19,983.80 − 19,750.12
    assert (record["price"], record["amount"], record["fees"], record["realized_pnl"]) == (
        12.50, 20_000.00, 16.20, 233.68)
    assert (record["commission"], record["stamp_duty"], record["transfer_fee"]) == (6.00, 10.00, 0.20)
    asset = env.ex.account()
    assert (asset.cash, asset.frozen_cash, asset.total_asset) == (1_000_233.68, 0.0, 1_000_233.68)
    assert env.core.positions.get(CODE) is None
    env.assert_positions_agree_with_broker()


def test_limit_up_buy_limit_down_sell_and_odd_lots_change_nothing(env):
    env.quotes.set(CODE, 12.34, 12.34)
    env.ex.buy_stock(CODE, volume=1600)
    env.quotes.set(CODE, 13.57, 12.34)  # sealed at limit-up
    before = env.snapshot()
    with pytest.raises(OrderRejected) as info:
        env.ex.buy_stock(CODE, amount=20_000)
    assert info.value.code == "LIMIT_UP" and "涨停" in info.value.message
    assert env.snapshot() == before
    env.quotes.set(CODE, 12.34, 12.34)
    before = env.snapshot()
    with pytest.raises(OrderRejected) as info:
        env.ex.buy_stock(CODE, volume=150)
    assert info.value.code == "INVALID_VOLUME" and "100 股" in info.value.message
    assert env.snapshot() == before

    env.next_day(11.11, 12.34)  # sealed at limit-down
    before = env.snapshot()
    with pytest.raises(OrderRejected) as info:
        env.ex.sell_stock(CODE, 1600)
    assert info.value.code == "LIMIT_DOWN" and "跌停" in info.value.message
    assert env.snapshot() == before
    env.quotes.set(CODE, 11.50, 12.34)
    before = env.snapshot()
    with pytest.raises(OrderRejected) as info:
        env.ex.sell_stock(CODE, 150)
    assert info.value.code == "INVALID_VOLUME" and "零股须一次全部卖出" in info.value.message
    assert env.snapshot() == before


@pytest.mark.parametrize("overrides, call, code", [
    ({"ENABLE_ALLOW_BUY": False}, lambda ex: ex.buy_stock(CODE, amount=20_000), "BUY_DISABLED"),
    ({"MAX_ORDER_VALUE": 10_000.0}, lambda ex: ex.buy_stock(CODE, amount=20_000), "MAX_ORDER_VALUE"),
    ({"SIMULATION_BALANCE": 10_000.0}, lambda ex: ex.buy_stock(CODE, volume=900), "INSUFFICIENT_CASH"),
    ({"MAX_TOTAL_POSITION_RATIO": 0.05}, lambda ex: ex.buy_stock(CODE, amount=60_000), "POSITION_RATIO"),
    ({}, lambda ex: ex.buy_stock("12345", amount=20_000), "INVALID_CODE"),
    ({}, lambda ex: ex.buy_stock(CODE, amount=1_000), "AMOUNT_TOO_SMALL"),
    ({}, lambda ex: ex.buy_stock("000001.SZ", amount=20_000), "NO_QUOTE"),
    ({}, lambda ex: ex.buy_stock(CODE, volume=100, price=12.345), "INVALID_PRICE"),
    ({}, lambda ex: ex.buy_stock(CODE, volume=100, price=13.58), "PRICE_OUT_OF_LIMITS"),
    ({}, lambda ex: ex.sell_stock(CODE, 100), "NO_POSITION"),
    ({"ENABLE_ALLOW_SELL": False}, lambda ex: ex.sell_stock(CODE, 100), "SELL_DISABLED"),
])
def test_pre_trade_refusals_have_chinese_reasons_and_change_nothing(tmp_path, overrides, call, code):
    env = Env(tmp_path, **overrides)
    env.quotes.set(CODE, 12.34, 12.34)
    before = env.snapshot()
    with pytest.raises(OrderRejected) as info:
        call(env.ex)
    assert info.value.code == code
    assert any("\u4e00" <= ch <= "\u9fff" for ch in info.value.message)
    assert env.snapshot() == before


def test_daily_order_limit(tmp_path):
    env = Env(tmp_path, MAX_ORDERS_PER_DAY=1)
    env.quotes.set(CODE, 12.34, 12.34)
    env.ex.buy_stock(CODE, volume=100)
    with pytest.raises(OrderRejected) as info:
        env.ex.buy_stock(CODE, volume=100)
    assert info.value.code == "MAX_ORDERS" and "上限 1 笔" in info.value.message


def test_marketable_prices_are_capped_at_the_limits(env):
    env.quotes.set(CODE, 13.56, 12.34)  # 13.56 × 1.002 = 13.587 → capped at limit-up 13.57
    order = env.ex.buy_stock(CODE, volume=100)
    assert (order.price, env.ex.trade_records()[-1]["price"]) == (13.57, 13.56)
    env.next_day(11.12, 12.34)  # 11.12 × 0.998 = 11.098 → 11.10, floored at limit-down 11.11
    order = env.ex.sell_stock(CODE, 100)
    assert (order.price, env.ex.trade_records()[-1]["price"]) == (11.11, 11.12)


def test_daily_loss_limit_blocks_automatic_buys(tmp_path):
    env = Env(tmp_path, DAILY_LOSS_LIMIT_RATIO=0.001)
    env.quotes.set(CODE, 12.34, 12.34)
    env.quotes.set("000001.SZ", 10.00, 10.00)
    env.ex.buy_stock(CODE, volume=1600)
    env.next_day(12.34, 12.34)
    env.ex.check_open_orders()  # the day starts: equity 980,249.88 + 19,744.00 = 999,993.88
    env.quotes.set(CODE, 11.60, 12.34)  # −1,184.00 ≥ 0.1 % of the start equity
    with pytest.raises(OrderRejected) as info:
        env.ex.buy_stock("000001.SZ", amount=10_000, rule=Rule.MACD_BUY)
    assert info.value.code == "DAILY_LOSS_LIMIT" and "1184.00" in info.value.message
    assert env.ex.buy_stock("000001.SZ", amount=10_000, rule=Rule.MANUAL).status is OrderStatus.FILLED


def test_every_order_is_journaled_and_committed_before_it_is_sent(env):
    db_file = env.tmp_path / "sim_trading.db"
    sim = env.core.sim
    seen = []

    class JournalProbe:
        """Passes orders on to the sim broker after reading the journal through another connection."""
        mode = "simulation"

        def place_order(self, request):
            with sqlite3.connect(db_file) as conn:
                seen.append(conn.execute("SELECT status, side, volume, price FROM orders WHERE client_id=?",
                                         (request.client_id,)).fetchone())
            sim.place_order(request)

        def __getattr__(self, name):
            return getattr(sim, name)

    ex = TradingExecutor(env.core.db, JournalProbe(), env.core.positions, env.quotes, env.settings, env.clock)
    sim.set_listener(ex)
    env.quotes.set(CODE, 12.34, 12.34)
    order = ex.buy_stock(CODE, volume=200, price=12.30)
    assert seen == [("pending_submit", "buy", 200, 12.30)]
    [at_broker] = sim.query_orders()
    assert at_broker.client_id == order.client_id and len(order.client_id) <= 24  # the remark QMT carries
    assert ex.journal.get(order.client_id).status is OrderStatus.OPEN


def test_duplicate_fill_callback_books_once(env):
    got = []
    env.ex.add_fill_listener(lambda fill, rule: got.append((fill.fill_id, rule)))
    env.quotes.set(CODE, 12.34, 12.34)
    env.ex.buy_stock(CODE, volume=1600, rule=Rule.MACD_BUY, signal_id=42)
    [fill] = env.core.sim.query_trades()
    env.ex.on_fill(fill)
    env.ex.on_fill(fill)
    assert len(env.ex.trade_records()) == 1
    assert env.core.positions.get(CODE).volume == 1600
    assert got == [(fill.fill_id, Rule.MACD_BUY)]
    assert env.ex.trade_records()[0]["strategy"] == "macd_buy"


def test_restart_keeps_cash_positions_episode_and_open_orders(env):
    env.quotes.set(CODE, 12.34, 12.34)
    env.ex.buy_stock(CODE, amount=20_000, signal_id=42)
    env.core.positions.mark_profit_triggered(CODE)
    env.core.positions.mark_add_level_used(CODE, 1)
    env.core.positions.set_stop_loss_price(CODE, 11.17)
    resting = env.ex.buy_stock(CODE, volume=500, price=12.20)
    before = env.snapshot()

    env.core = env.open()  # new objects on the same db file, as after a restart
    assert env.snapshot() == before
    p = env.core.positions.get(CODE)
    assert (p.volume, p.available, p.cost_price, p.base_cost_price, p.open_date.isoformat()) == (
        1600, 0, 12.343825, 12.34, "2024-02-08")
    assert (p.profit_triggered, p.used_add_levels, p.stop_loss_price) == (True, (0, 1), 11.17)
    assert [o.client_id for o in env.ex.open_orders()] == [resting.client_id]
    assert env.ex.order_for_signal(42).status is OrderStatus.FILLED
    env.core.sim.on_quote(env.quotes.set(CODE, 12.20, 12.34))  # the restored order fills after the restart
    assert env.core.positions.get(CODE).volume == 2100 and env.ex.open_orders() == []
    env.assert_positions_agree_with_broker()


def test_recover_marks_unsent_orders_and_books_missing_fills(env):
    env.quotes.set(CODE, 12.34, 12.34)
    # crash right after journaling, before sending
    unsent = env.ex.journal.open_order(CODE, Side.BUY, 100, 12.40, Rule.MACD_BUY, 7)
    # crash after the broker filled, before the fill reached us (no listener: the events are lost)
    lost = env.ex.journal.open_order(CODE, Side.BUY, 1600, 12.40, Rule.MANUAL, None)
    env.core.sim.set_listener(None)
    env.core.sim.place_order(lost)

    env.core = env.open()
    entry = env.ex.journal.get(unsent.client_id)
    assert entry.status is OrderStatus.REJECTED and "未发出" in entry.reason
    assert unsent.client_id not in {o.client_id for o in env.core.sim.query_orders()}  # never re-sent
    entry = env.ex.journal.get(lost.client_id)
    assert (entry.status, entry.filled_volume, entry.order_id) == (OrderStatus.FILLED, 1600, "SIM20240208100000000001")
    [record] = env.ex.trade_records()
    assert (record["client_id"], record["volume"], record["fees"]) == (lost.client_id, 1600, 6.12)
    assert env.core.positions.get(CODE).cost_price == 12.343825
    assert env.ex.order_for_signal(7).status is OrderStatus.REJECTED


def test_recover_after_a_crash_between_position_and_trade_record(env):
    env.quotes.set(CODE, 12.34, 12.34)
    request = env.ex.journal.open_order(CODE, Side.BUY, 1600, 12.40, Rule.MANUAL, None)
    env.core.sim.set_listener(None)
    env.core.sim.place_order(request)
    [fill] = env.core.sim.query_trades()
    env.core.positions.apply_fill(fill, Rule.MANUAL)  # booked in positions, then the process died

    env.core = env.open()
    assert len(env.ex.trade_records()) == 1
    assert env.core.positions.get(CODE).volume == 1600  # not applied twice


def test_timed_out_sell_is_cancelled_and_repriced_at_most_max_times(env):
    env.quotes.set(CODE, 12.34, 12.34)
    env.ex.buy_stock(CODE, volume=1000)
    env.next_day(12.40, 12.34)
    first = env.ex.sell_stock(CODE, 1000, price=12.80, rule=Rule.TAKE_PROFIT, signal_id=9)
    env.clock.advance(59)
    env.ex.check_open_orders()
    assert [o.client_id for o in env.ex.open_orders()] == [first.client_id]  # not yet timed out
    prices = []
    for _ in range(3):
        env.clock.advance(61)
        env.ex.check_open_orders()
        [current] = env.ex.open_orders()
        prices.append(current.price)
        position = env.core.positions.get(CODE)
        assert (current.volume, env.core.positions.frozen(CODE), position.available) == (1000, 1000, 0)
    assert prices == [12.73, 12.66, 12.59]  # each × 0.995 rounded down to the tick
    assert env.ex.journal.get(first.client_id).status is OrderStatus.CANCELLED
    env.clock.advance(61)
    env.ex.check_open_orders()  # MAX_REORDER_TIMES (3) reached: the last order keeps working
    [last] = env.ex.open_orders()
    assert (last.price, last.client_id) == (12.59, current.client_id)
    assert env.ex.order_for_signal(9).client_id == last.client_id
    env.core.sim.on_quote(env.quotes.set(CODE, 12.60, 12.34))
    [_, record] = env.ex.trade_records()
    assert (record["price"], record["volume"], record["strategy"], record["reprice_count"]) == (
        12.59, 1000, "take_profit", 3)
    assert env.core.positions.get(CODE) is None
    env.assert_positions_agree_with_broker()


def test_reprice_of_a_partly_filled_sell_stops_at_limit_down(tmp_path):
    env = Env(tmp_path)
    env.core = env.open(max_fill_volume=300)
    env.quotes.set(CODE, 12.34, 12.34)
    env.ex.buy_stock(CODE, volume=1000)  # fills 300, 300, 300, 100 on successive quotes
    for _ in range(3):
        env.core.sim.on_quote(env.quotes.set(CODE, 12.34, 12.34))
    env.next_day(11.20, 12.34)  # limit-down 11.11
    first = env.ex.sell_stock(CODE, 1000, price=11.15)  # 300 fill at once at 11.20, 700 rest
    assert env.ex.journal.get(first.client_id).filled_volume == 300
    env.clock.advance(61)
    env.ex.check_open_orders()
    [second] = env.ex.open_orders()
    # 11.15 × 0.995 = 11.094 → 11.09 would cross limit-down: 11.11; only the unfilled 700 are re-placed
    assert (second.volume, second.price, second.filled_volume) == (700, 11.11, 300)
    assert env.core.positions.get(CODE).volume == 400
    env.assert_positions_agree_with_broker()


def test_timed_out_buy_is_cancelled(env):
    env.quotes.set(CODE, 12.40, 12.34)
    order = env.ex.buy_stock(CODE, volume=100, price=12.00)
    env.clock.advance(119)
    env.ex.check_open_orders()
    assert len(env.ex.open_orders()) == 1
    env.clock.advance(2)
    env.ex.check_open_orders()
    assert env.ex.open_orders() == [] and env.ex.journal.get(order.client_id).status is OrderStatus.CANCELLED
    assert len(env.ex.list_orders()) == 1  # buys are not re-placed
    assert env.ex.account().cash == 1_000_000.00


def test_cancel_by_client_or_broker_id_releases_shares(env):
    env.quotes.set(CODE, 12.34, 12.34)
    env.ex.buy_stock(CODE, volume=1000)
    env.next_day(12.40, 12.34)
    first = env.ex.sell_stock(CODE, 400, price=12.90)
    second = env.ex.sell_stock(CODE, 400, price=12.95)
    assert env.core.positions.get(CODE).available == 200
    env.ex.cancel_order(first.client_id)
    env.ex.cancel_order(second.order_id)
    assert env.core.positions.get(CODE).available == 1000
    env.assert_positions_agree_with_broker()
    with pytest.raises(OrderRejected) as info:
        env.ex.cancel_order(first.client_id)
    assert info.value.code == "ORDER_NOT_OPEN"
    with pytest.raises(OrderRejected) as info:
        env.ex.cancel_order("NOPE")
    assert info.value.code == "ORDER_NOT_FOUND"
    env.ex.sell_stock(CODE, 300, price=12.90)
    env.ex.buy_stock(CODE, volume=100, price=12.00)
    assert env.ex.cancel_all() == 2 and env.ex.open_orders() == []
    assert [r["status"] for r in env.ex.list_orders(status="cancelled")] == ["cancelled"] * 4


def test_broker_refusal_is_journaled_and_gives_the_shares_back(tmp_path):
    env = Env(tmp_path, SIMULATION_IGNORE_TRADING_HOURS=False)
    env.quotes.set(CODE, 12.34, 12.34)
    env.ex.buy_stock(CODE, volume=1000)
    env.clock.set(datetime(2024, 2, 19, 12, 0))  # lunch break: the broker refuses, our checks do not know
    env.quotes.set(CODE, 12.40, 12.34)
    with pytest.raises(OrderRejected) as info:
        env.ex.sell_stock(CODE, 1000)
    assert info.value.code == "MARKET_CLOSED"
    [entry] = env.ex.list_orders(status="rejected")
    assert (entry["side"], entry["reason"]) == ("sell", info.value.message)  # journaled before sending
    assert (env.core.positions.get(CODE).available, env.core.positions.frozen(CODE)) == (1000, 0)
    env.assert_positions_agree_with_broker()


def test_list_orders_filters_active_and_by_day(env):
    env.quotes.set(CODE, 12.34, 12.34)
    filled = env.ex.buy_stock(CODE, volume=100)
    env.next_day(12.40, 12.34)
    resting = env.ex.buy_stock(CODE, volume=100, price=12.00)
    assert [r["client_id"] for r in env.ex.list_orders(status="active")] == [resting.client_id]
    assert [r["client_id"] for r in env.ex.list_orders(day=DAY2.date())] == [resting.client_id]
    assert [r["client_id"] for r in env.ex.list_orders()] == [resting.client_id, filled.client_id]  # newest first
    assert [r["stock_code"] for r in env.ex.trade_records(start=DAY2.date())] == []
    assert len(env.ex.trade_records(code=CODE)) == 1


def test_failed_cancel_returns_the_order_to_working():
    """A refused cancel (exchanges refuse cancels 09:20–09:25) must not leave the order stuck as cancel-pending."""
    from core.order_journal import _may_move

    assert _may_move(OrderStatus.CANCEL_PENDING, OrderStatus.OPEN) is True
    assert _may_move(OrderStatus.CANCEL_PENDING, OrderStatus.PARTIALLY_FILLED) is True
    assert _may_move(OrderStatus.CANCEL_PENDING, OrderStatus.SUBMITTED) is False
    assert _may_move(OrderStatus.CANCELLED, OrderStatus.OPEN) is False


@pytest.mark.parametrize("day, sent", [("2026-12-08 10:00:00", True), ("2026-07-03 10:00:00", False)])
def test_st_stop_loss_six_percent_down_is_sent_since_the_band_widened(tmp_path, day, sent):
    """Issue 33: since 2026-07-06 a main-board *ST stock falls up to 10 %; −6 % is not 「已跌停」 any more."""
    env = Env(tmp_path)
    env.clock.set(datetime.fromisoformat(day) - (DAY2 - datetime.fromisoformat(DAY1)))
    env.quotes.set("600146.SH", 10.00, 10.00, name="*ST商赢")
    env.ex.buy_stock("600146.SH", volume=2000)
    env.clock.set(datetime.fromisoformat(day))
    env.quotes.set("600146.SH", 9.40, 10.00, name="*ST商赢")
    if sent:  # limit-down 9.00: the stop-loss goes out at 9.40 × 0.998 = 9.3812 → 9.38
        order = env.ex.sell_stock("600146.SH", 2000, rule=Rule.STOP_LOSS)
        assert (order.price, order.volume, order.status) == (9.38, 2000, OrderStatus.FILLED)
    else:  # before the change the band was ±5 %: 9.40 is below limit-down 9.50
        with pytest.raises(OrderRejected) as info:
            env.ex.sell_stock("600146.SH", 2000, rule=Rule.STOP_LOSS)
        assert info.value.code == "LIMIT_DOWN"
