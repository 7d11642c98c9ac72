"""position_manager on an ex-date (issue 28 §2): the day roll takes the day's events before any read of the
new day (levels × factor, bonus shares), once, with its marker in the same transaction; a failing source does
not stop the roll (T+1 release)."""
from __future__ import annotations

from datetime import date, datetime

from core.models import Rule
from market.ex_rights import CorporateAction
from persistence.storage import Database
from position_manager import PositionManager
from test_position_manager import BUY_1600, CODE, Env

EVENT = CorporateAction(CODE, date(2024, 2, 19), cash_per_share=0.5, shares_per_share=0.3)


def test_the_day_roll_adjusts_levels_once_before_the_new_day_is_read(tmp_path):
    env = Env(tmp_path)
    env.pm.book_fill(BUY_1600, Rule.MANUAL)
    env.pm.update_price(CODE, 12.50, env.clock.now())
    env.pm.set_stop_loss_price(CODE, 11.17)
    asked = []

    def source(codes, after, through):
        asked.append((codes, after, through))
        return [EVENT] if after < EVENT.ex_date <= through else []

    env.pm.set_ex_rights_source(source)
    env.clock.set(datetime(2024, 2, 19, 9, 15))  # Spring Festival in between: the next trading day
    p = env.pm.get(CODE)
    assert asked == [([CODE], date(2024, 2, 8), date(2024, 2, 19))]
    # factor = (12.50 − 0.50) ÷ 1.3 ÷ 12.50 = 0.738461538
    assert (p.volume, p.available, p.highest_price, p.base_cost_price, p.stop_loss_price, p.current_price) == (
        2080, 2080, 9.230769, 9.112615, 8.248615, 9.230769)
    assert p.cost_price == round(12.343825 * 0.738461538, 9)
    assert env.pm.ex_rights_adjustment(EVENT)["volume"] == [1600, 2080]
    assert env.pm.apply_ex_rights(EVENT) is None  # once
    reopened = PositionManager(Database(tmp_path / "trading.db"), env.settings, env.clock, "simulation")
    assert reopened.get(CODE) == p  # persisted with its marker
    assert reopened.apply_ex_rights(EVENT) is None


def test_a_failing_source_does_not_stop_the_roll(tmp_path):
    env = Env(tmp_path)
    env.pm.book_fill(BUY_1600, Rule.MANUAL)

    def broken(codes, after, through):
        raise OSError("miniQMT 未响应")

    env.pm.set_ex_rights_source(broken)
    env.clock.set(datetime(2024, 2, 19, 9, 15))
    p = env.pm.get(CODE)
    assert (p.volume, p.available, p.highest_price) == (1600, 1600, 12.34)  # T+1 released, nothing adjusted
    assert env.pm.apply_ex_rights(EVENT) is not None  # the keeper's later call still applies it


def test_live_keeps_its_adjusted_cost_until_the_broker_has_adjusted_its_own(tmp_path):
    """The broker's cost is authoritative in live mode, but a broker that shows the cost of before the event
    on the ex-date would put the stop-loss (cost × 0.905) back above the gapped price."""
    from core.models import BrokerPosition

    env = Env(tmp_path, mode="live")
    env.pm.refresh_from_broker([BrokerPosition(CODE, 1600, 1600, 12.35, market_value=20_000.0)])
    env.pm.update_price(CODE, 12.50, env.clock.now())
    env.pm.set_ex_rights_source(lambda codes, after, through: [EVENT] if after < EVENT.ex_date <= through else [])
    env.clock.set(datetime(2024, 2, 19, 9, 15))
    adjusted = env.pm.get(CODE).cost_price
    assert adjusted == round(12.35 * 0.738461538, 9)
    env.pm.refresh_from_broker([BrokerPosition(CODE, 2080, 2080, 12.35)])  # not adjusted yet
    assert (env.pm.get(CODE).volume, env.pm.get(CODE).cost_price) == (2080, adjusted)
    reopened = PositionManager(Database(tmp_path / "trading.db"), env.settings, env.clock, "live")
    reopened.refresh_from_broker([BrokerPosition(CODE, 2080, 2080, 12.35)])  # a restart remembers the event
    assert reopened.get(CODE).cost_price == adjusted
    reopened.refresh_from_broker([BrokerPosition(CODE, 2080, 2080, 9.115)])  # (12.35 − 0.50) ÷ 1.3: adjusted
    assert reopened.get(CODE).cost_price == 9.115
    env.clock.set(datetime(2024, 2, 20, 9, 15))
    reopened.refresh_from_broker([BrokerPosition(CODE, 2080, 2080, 9.2)])
    assert reopened.get(CODE).cost_price == 9.2  # the next day the broker is authoritative again
