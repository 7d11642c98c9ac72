"""Issue 28 on the page: a held instrument the rules leave alone (a reverse repo in a live account) is a row of
the positions table with its reason, no rule prices and no sell buttons."""
import pytest

from browser_support import chromium, open_tab, real_problems, require_browser, serve, shot
from core.models import BrokerPosition
from web_test_support import build_system

REPO = "204001.SH"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    require_browser()
    system = build_system(tmp_path_factory.mktemp("instruments"))
    system.positions.refresh_from_broker([BrokerPosition(REPO, 1000, 1000, 100.0, 100_000.0, "GC001")])
    yield from serve(system)


def test_untradable_position_row_shows_the_reason(daemon):
    system, server = daemon
    with chromium() as browser:
        context, page = open_tab(browser)
        page.goto(server.url + "/#positions")
        row = page.locator(f"tr[data-code='{REPO}']")
        row.wait_for()
        cells = row.locator("td")
        assert cells.nth(2).inner_text() == "1,000" and cells.nth(10).inner_text() == "--"
        assert cells.nth(13).inner_text() == "不按规则交易"
        assert row.get_attribute("title").startswith("上海国债逆回购（204001.SH）")
        assert row.get_attribute("data-untradable") == "true"
        assert row.locator("button[data-action='sell-all']").is_disabled()
        shot(page, "issue28_untradable_position")
        assert real_problems(page) == []
        context.close()
