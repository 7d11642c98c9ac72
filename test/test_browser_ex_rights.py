"""The 「除权除息」 tab in Debian's chromium against the real server (issue 28 §2): the journal of GET /api/ex_rights
as a table (date, stock, plan, factor, status, old → new levels), and the hint when no source is configured."""
from __future__ import annotations

from browser_support import chromium, open_tab, real_problems, require_browser, shot
from jobs.ex_rights import ExRightsKeeper, FileEventSource
from market.ex_rights import CorporateAction
from web_test_support import build_system, start_server

CODE = "600036.SH"


def test_the_tab_lists_the_adjustments(tmp_path):
    require_browser()
    events = tmp_path / "events.csv"
    events.write_text("code,ex_date,cash_per_share,shares_per_share\n", encoding="utf-8")
    system = build_system(tmp_path)
    server = start_server(system)
    try:
        with chromium() as browser:
            context, tab = open_tab(browser)
            tab.goto(f"http://127.0.0.1:{server.port}/#ex_rights")
            tab.wait_for_function("document.querySelector('#ex-rights-msg').textContent.includes('未配置')")

            system.executor.buy_stock(CODE, volume=100)
            assert system.positions.get(CODE).volume == 100
            keeper = ExRightsKeeper(system.dbs[1], system.clock, system.events, FileEventSource(events),
                                    system.positions, last_quote=system.data.hub.last_seen, sim=system.broker,
                                    watch_store=system.watch_store, settings=system.settings)
            system.ctx.ex_rights = keeper
            today = system.clock.today()
            keeper.apply(CorporateAction(CODE, today, cash_per_share=0.5, shares_per_share=0.3, factor=0.75))
            tab.reload()
            tab.wait_for_selector("#ex-rights-body tr")
            cells = tab.locator("#ex-rights-body tr td").all_inner_texts()
            assert cells[:5] == [today.isoformat(), CODE, "每10股派5元送转3股", "0.750000", "已调整"]
            assert cells[5].startswith(f"除权除息 {CODE} {today}（每10股派5元送转3股）：因子 0.750000，最高价 ")
            assert "持股 100 → 130 股" in cells[5]
            shot(tab, "ex_rights_tab")
            assert real_problems(tab) == []
            context.close()
    finally:
        server.stop()
        system.close()
