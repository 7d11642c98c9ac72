"""SimTrader.apply_corporate_action (issue 28 §2): bonus shares, the pre-tax cash dividend, the cost basis,
once per event across a restart, and the account's equity continuous at the reference price."""
from __future__ import annotations

from datetime import date, datetime

from core.models import OrderRequest, Side
from market.ex_rights import CorporateAction
from persistence.storage import Database
from sim_trader import SimTrader
from trading_support import QuoteBoard, make_settings, replay_clock

CODE = "000661.SZ"
EVENT = CorporateAction(CODE, date(2020, 6, 9), cash_per_share=1.0, shares_per_share=1.0)


def test_bonus_shares_cash_and_cost_once_with_continuous_equity(tmp_path):
    clock = replay_clock("2020-06-08 10:00:00")
    quotes = QuoteBoard(clock)
    settings = make_settings(tmp_path)
    sim = SimTrader(Database(tmp_path / "sim.db"), settings, clock, quotes)
    quotes.set(CODE, 666.46, 660.00)
    sim.place_order(OrderRequest(client_id="c1", stock_code=CODE, side=Side.BUY, volume=100, price=666.46))
    before = sim.query_asset()
    [held] = sim.query_positions()
    assert (held.volume, held.cost_price) == (100, 666.667)  # 66,646.00 + 19.99 commission + 0.67 transfer fee

    clock.set(datetime(2020, 6, 9, 9, 15))
    quotes.set(CODE, 332.73, 332.73)  # the reference price: (666.46 − 1.00) ÷ 2
    change = sim.apply_corporate_action(EVENT)
    assert (change.volume_before, change.volume_after, change.cash_credit, change.cost_amount_after) == (
        100, 200, 100.0, 66_566.66)
    after = sim.query_asset()
    [held] = sim.query_positions()
    assert (held.volume, held.available, held.cost_price) == (200, 200, 332.833)  # bonus shares listed on the ex-date
    assert after.cash == round(before.cash + 100.00, 2)
    assert after.total_asset == round(before.total_asset - 100 * 666.46 + 200 * 332.73 + 100.00, 2)
    assert abs(after.total_asset - before.total_asset) <= 0.01  # continuous up to the reference's rounding

    assert sim.apply_corporate_action(EVENT) is None
    again = SimTrader(Database(tmp_path / "sim.db"), settings, clock, quotes)
    assert again.apply_corporate_action(EVENT) is None
    assert (again.query_positions()[0].volume, again.query_asset().cash) == (200, after.cash)
    assert sim.apply_corporate_action(CorporateAction("600000.SH", date(2020, 6, 9), 0.5)) is None  # not held
