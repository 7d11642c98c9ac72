"""The overview's 「申购与逆回购」 panel in Debian's chromium (issue 28 §3): a simulated account reads, in Chinese, that
the chores run only on a live account; the day's records show as rows; no script or console error."""
from __future__ import annotations

import pytest

from browser_support import chromium, open_tab, real_problems, require_browser, serve, shot
from chores.composition import build_chores
from chores.jobs import SIMULATION_NOTE
from chores.store import REPO, SKIPPED, ChoreRecord
from web_test_support import build_system


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    require_browser()
    system = build_system(tmp_path_factory.mktemp("browser_chores"))
    system.ctx.chores = build_chores(system.settings, system.dbs[1], system.clock, system.executor, system.broker,
                                     system.events, system.signals, system.watch_store, live=False)
    yield from serve(system)


def test_the_overview_says_the_chores_run_only_live_and_lists_the_days_records(daemon):
    system, server = daemon
    with chromium() as browser:
        context, page = open_tab(browser)
        page.goto(server.url + "/")
        note = page.locator("#chores-note")
        note.wait_for(state="visible")
        assert note.inner_text() == SIMULATION_NOTE
        assert page.inner_text("#chores-state").startswith("新股新债申购：未开启（每个交易日 10:00")
        assert page.inner_text("#chores-body") == "今日没有申购、中签或逆回购记录"
        system.ctx.chores.store.record(ChoreRecord(REPO, system.clock.today(), "", "", 0, 0.0, 0.0, SKIPPED,
                                                   "可出借资金不足 1000 元"))
        page.goto(server.url + "/#positions")
        page.goto(server.url + "/#overview")
        page.locator('#chores-body tr[data-kind="repo"]').wait_for()
        assert page.inner_text('#chores-body tr[data-kind="repo"]').split("\t") == \
            ["逆回购", "", "", "0 张", "0%", "0.00", "未出借", "可出借资金不足 1000 元"]
        shot(page, "chores_overview")
        assert real_problems(page) == []
        context.close()
