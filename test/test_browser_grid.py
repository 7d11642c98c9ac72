"""Issue 9 in the browser: a grid session on a replayed stock trades through the real monitor, signal queue,
strategy runner and sim broker; its fills appear in the grid panel and in the trade records page."""
import pytest

from browser_support import attach_grid, chromium, plain_page, publish_tick, require_browser, serve, shot
from web_test_support import build_system

CODE = "600036.SH"


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    require_browser()
    system = build_system(tmp_path_factory.mktemp("browser_grid"), overrides={
        "ENABLE_AUTO_TRADING": True, "ENABLE_GRID_TRADING": True, "ENABLE_MACD_BUY": False,
        "ENABLE_ADD_POSITION": False, "GRID_COOLDOWN_SECONDS": 0.0, "GRID_BUY_AMOUNT": 12000.0}, pool=[CODE])
    attach_grid(system)
    yield from serve(system)


def publish(system, price: float) -> None:
    """One replayed tick of the stock at `price`, then one monitor pass and one strategy pass."""
    publish_tick(system, CODE, price)
    for _ in range(2):
        system.monitor.run_once()
        system.runner.run_once()


def test_grid_fills_show_in_the_panel_and_the_trade_records(system):
    system, server = system
    system.executor.buy_stock(CODE, amount=30000)  # the base position the grid trades around
    system.next_day()  # T+1: the base shares become sellable
    center = system.data.hub.latest(CODE).price
    session = system.ctx.grid.start_session(CODE, center_price=center)
    buy_at, sell_at = session.next_buy_price, session.next_sell_price
    publish(system, buy_at)  # one step below the centre: grid buy
    publish(system, sell_at)  # one step above the last fill (buy_at × 1.02): grid sell of base shares
    trades = system.ctx.grid.trades(session.id)
    assert [(t.side.value if hasattr(t.side, "value") else t.side, t.price) for t in trades] == [
        ("buy", buy_at), ("sell", sell_at)]

    with chromium() as browser:
        page = plain_page(browser)
        page.goto(server.url + "/#grid")
        row = page.locator(f"tr[data-grid='{session.id}']")
        row.wait_for()
        assert "1 / 1" in row.inner_text()  # buy count / sell count
        row.locator("button", has_text="成交").click()
        fills = page.locator("#grid-trades-body tr[data-grid-fill]")
        fills.nth(1).wait_for()
        assert fills.count() == 2
        first, second = fills.nth(0).inner_text(), fills.nth(1).inner_text()
        assert "买入" in first and f"{buy_at:.2f}" in first
        assert "卖出" in second and f"{sell_at:.2f}" in second
        shot(page, "12_grid_fills")

        page.goto(server.url + "/#trades")
        page.locator("#trades-body tr", has_text="网格买入").wait_for()
        page.locator("#trades-body tr", has_text="网格卖出").wait_for()
        shot(page, "13_grid_trade_records")
