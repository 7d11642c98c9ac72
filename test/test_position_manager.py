"""The position table: cost incl. fees, realized P&L, episodes, T+1, reservations, persistence, broker refresh."""
import threading
from datetime import date, datetime

import pytest

from core.models import BrokerPosition, Fill, Rule, Side
from position_manager import PositionManager
from persistence.storage import Database
from trading_support import make_settings, replay_clock

CODE = "600036.SH"


def fill(fill_id, side, volume, price, when, commission, stamp_duty=0.0, transfer_fee=0.0, code=CODE):
    return Fill(fill_id=fill_id, order_id="O" + fill_id, client_id="C" + fill_id, stock_code=code, side=side,
                price=price, volume=volume, time=datetime.fromisoformat(when), commission=commission,
                stamp_duty=stamp_duty, transfer_fee=transfer_fee)


BUY_1600 = fill("1", Side.BUY, 1600, 12.34, "2024-02-08 10:00:00", 5.92, 0, 0.20)


class Env:
    def __init__(self, tmp_path, mode="simulation"):
        self.tmp_path = tmp_path
        self.mode = mode
        self.clock = replay_clock("2024-02-08 10:00:00")
        self.settings = make_settings(tmp_path)
        self.pm = self.open()

    def open(self) -> PositionManager:
        return PositionManager(Database(self.tmp_path / "trading.db"), self.settings, self.clock, self.mode)


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def test_cost_price_includes_buy_fees_and_sells_keep_it(env):
    pm = env.pm
    booked = pm.book_fill(BUY_1600, Rule.MANUAL)
    p = booked.position
    # (19,744.00 + 5.92 + 0.20) / 1600 = 19,750.12 / 1600 = 12.343825 (exact, not rounded)
    assert (p.volume, p.available, p.cost_price, p.base_cost_price) == (1600, 0, 12.343825, 12.34)
    assert (p.open_date, p.highest_price, p.used_add_levels, booked.realized_pnl) == (
        date(2024, 2, 8), 12.34, (0,), None)
    assert pm.cost_amount(CODE) == 19_750.12
    env.clock.set(datetime(2024, 2, 19, 10, 0))
    p = pm.apply_fill(fill("2", Side.BUY, 1000, 11.50, "2024-02-19 10:00:00", 5.00, 0, 0.12), Rule.ADD_POSITION)
    # 19,750.12 + 11,505.12 = 31,255.24 over 2600 shares = 12.0212461…; the base stays the first buy
    assert (p.volume, p.available, p.base_cost_price) == (2600, 1600, 12.34)
    assert p.cost_price == pytest.approx(12.0212461538, abs=1e-9)
    booked = pm.book_fill(fill("3", Side.SELL, 1000, 12.60, "2024-02-19 10:30:00", 5.00, 6.30, 0.13), Rule.TAKE_PROFIT)
    # basis of 1000 of 2600 shares: 12,021.25; 12,600.00 − 11.43 fees − 12,021.25 = 567.32
    assert booked.realized_pnl == 567.32
    assert booked.position.volume == 1600
    assert booked.position.cost_price == p.cost_price  # a sell keeps cost_price
    booked = pm.book_fill(fill("4", Side.SELL, 1600, 12.00, "2024-02-19 11:00:00", 5.76, 9.60, 0.19), Rule.STOP_LOSS)
    assert booked.realized_pnl == -49.54  # 19,200.00 − 15.55 − 19,233.99 (the rest of the basis)
    assert booked.position.volume == 0 and pm.get(CODE) is None


def test_episode_state_survives_partial_sells_and_resets_when_flat(env):
    pm = env.pm
    pm.apply_fill(BUY_1600, Rule.MACD_BUY)
    pm.mark_profit_triggered(CODE)
    pm.mark_add_level_used(CODE, 2)
    pm.update_price(CODE, 13.20, datetime(2024, 2, 8, 14, 0))
    env.clock.set(datetime(2024, 2, 19, 10, 0))
    pm.apply_fill(fill("2", Side.SELL, 900, 13.10, "2024-02-19 10:00:00", 5.00, 5.90, 0.12), Rule.TAKE_PROFIT)
    p = pm.get(CODE)
    assert (p.volume, p.profit_triggered, p.used_add_levels, p.highest_price, p.open_date) == (
        700, True, (0, 2), 13.20, date(2024, 2, 8))
    pm.apply_fill(fill("3", Side.SELL, 700, 12.90, "2024-02-19 10:05:00", 5.00, 4.52, 0.09), Rule.DYNAMIC_STOP)
    assert pm.get(CODE) is None
    pm.apply_fill(fill("4", Side.BUY, 800, 12.50, "2024-02-19 10:10:00", 5.00, 0, 0.10), Rule.MACD_BUY)
    p = pm.get(CODE)
    assert (p.volume, p.base_cost_price, p.profit_triggered, p.used_add_levels, p.highest_price, p.open_date) == (
        800, 12.50, False, (0,), 12.50, date(2024, 2, 19))
    assert p.cost_price == 12.506375  # (10,000.00 + 5.10) / 800


def test_t_plus_one_release_only_on_a_trading_day(env):
    pm = env.pm
    pm.apply_fill(BUY_1600, Rule.MANUAL)
    pm.roll_day(date(2024, 2, 9))  # Spring Festival holiday: nothing becomes sellable
    assert pm.get(CODE).available == 0
    env.clock.set(datetime(2024, 2, 19, 9, 0))  # next trading day: released lazily on the first read
    assert pm.get(CODE).available == 1600
    reopened = env.open()
    assert reopened.get(CODE).available == 1600  # the release was persisted with the day


def test_reservations_follow_open_sell_orders(env):
    pm = env.pm
    pm.apply_fill(BUY_1600, Rule.MANUAL)
    env.clock.set(datetime(2024, 2, 19, 10, 0))
    pm.reserve(CODE, 1000)
    assert (pm.get(CODE).available, pm.frozen(CODE)) == (600, 1000)
    pm.apply_fill(fill("2", Side.SELL, 400, 12.50, "2024-02-19 10:01:00", 5.00, 2.50, 0.05), Rule.MANUAL)
    assert (pm.get(CODE).volume, pm.get(CODE).available, pm.frozen(CODE)) == (1200, 600, 600)
    pm.release(CODE, 600)  # the rest of the order was cancelled
    assert (pm.get(CODE).available, pm.frozen(CODE)) == (1200, 0)
    # a sell that was never reserved here (booked at recovery) comes out of `available` directly
    pm.apply_fill(fill("3", Side.SELL, 200, 12.50, "2024-02-19 10:02:00", 5.00, 1.25, 0.03), Rule.MANUAL)
    assert (pm.get(CODE).volume, pm.get(CODE).available) == (1000, 1000)


def test_a_fill_is_applied_once(env):
    pm = env.pm
    first = pm.book_fill(BUY_1600, Rule.MANUAL)
    version = pm.data_version
    again = pm.book_fill(BUY_1600, Rule.MANUAL)
    assert again.duplicate and not first.duplicate
    assert again.position == first.position and pm.data_version == version
    assert env.open().book_fill(BUY_1600, Rule.MANUAL).duplicate  # also after a restart


def test_rule_state_is_persisted_at_once_prices_at_sync(env):
    pm = env.pm
    pm.apply_fill(BUY_1600, Rule.MANUAL)
    pm.mark_profit_triggered(CODE)
    pm.set_stop_loss_price(CODE, 11.17)
    pm.mark_add_level_used(CODE, 1)
    pm.update_price(CODE, 13.00, datetime(2024, 2, 8, 10, 5), name="招商银行")
    p = env.open().get(CODE)  # no sync yet
    assert (p.profit_triggered, p.stop_loss_price, p.used_add_levels) == (True, 11.17, (0, 1))
    assert (p.highest_price, p.current_price) == (12.34, 12.34)
    assert pm.sync() == 1 and pm.sync() == 0
    pm.mark_profit_triggered(CODE, False)  # undone: the order for the signal was refused
    pm.mark_add_level_used(CODE, 1, False)
    p = env.open().get(CODE)
    assert (p.profit_triggered, p.used_add_levels) == (False, (0,))
    p = env.open().get(CODE)
    assert (p.highest_price, p.current_price, p.market_value, p.profit_ratio, p.stock_name) == (
        13.00, 13.00, 20_800.00, 5.32, "招商银行")  # 13.00 / 12.343825 − 1 = 5.3158 %
    assert p.last_update == datetime(2024, 2, 8, 10, 5)


def test_highest_price_only_rises_and_every_change_bumps_the_version(env):
    pm = env.pm
    pm.apply_fill(BUY_1600, Rule.MANUAL)
    version = pm.data_version
    pm.update_price(CODE, 12.80, datetime(2024, 2, 8, 10, 1))
    pm.update_price(CODE, 12.60, datetime(2024, 2, 8, 10, 2))
    p = pm.get(CODE)
    assert (p.highest_price, p.current_price, pm.data_version) == (12.80, 12.60, version + 2)
    pm.update_price(CODE, 12.60, datetime(2024, 2, 8, 10, 3))  # same price: no change to publish
    assert pm.data_version == version + 2
    assert pm.update_price("000001.SZ", 10.0, datetime(2024, 2, 8, 10, 3)) is None


def test_wait_for_change_wakes_on_change_and_times_out_without(env):
    pm = env.pm
    seen = pm.data_version
    assert pm.wait_for_change(seen, 0.01) == seen
    results = []
    started = threading.Event()

    def waiter():
        started.set()
        results.append(pm.wait_for_change(seen, 5.0))

    thread = threading.Thread(target=waiter)
    thread.start()
    started.wait(5)
    pm.apply_fill(BUY_1600, Rule.MANUAL)
    thread.join(5)
    assert not thread.is_alive() and results[0] > seen


def test_broker_refresh_simulation_keeps_our_cost(env):
    pm = env.pm
    pm.apply_fill(BUY_1600, Rule.MANUAL)
    pm.refresh_from_broker([BrokerPosition(CODE, 1600, 0, 12.30), BrokerPosition("000001.SZ", 500, 500, 10.0, 5100.0)])
    assert pm.get(CODE).cost_price == 12.343825
    other = pm.get("000001.SZ")
    assert (other.volume, other.available, other.cost_price, other.current_price, other.open_date) == (
        500, 500, 10.0, 10.2, date(2024, 2, 8))
    pm.refresh_from_broker([BrokerPosition("000001.SZ", 500, 500, 10.0)])  # the broker no longer holds 600036
    assert pm.get(CODE).volume == 1600  # one answer is not enough (issue 13): it must be confirmed
    pm.refresh_from_broker([BrokerPosition("000001.SZ", 500, 500, 10.0)])
    assert pm.get(CODE) is None and env.open().get(CODE) is None


def test_broker_refresh_live_is_authoritative_for_volume_available_cost(tmp_path):
    env = Env(tmp_path, mode="live")
    pm = env.pm
    pm.apply_fill(BUY_1600, Rule.MANUAL)
    pm.mark_profit_triggered(CODE)
    pm.refresh_from_broker([BrokerPosition(CODE, 1500, 1500, 12.351, stock_name="招商银行")])
    p = pm.get(CODE)
    assert (p.volume, p.available, p.cost_price, p.stock_name) == (1500, 1500, 12.351, "招商银行")
    assert (p.profit_triggered, p.base_cost_price, p.open_date) == (True, 12.34, date(2024, 2, 8))  # ours
    assert env.open().get(CODE).volume == 1500
