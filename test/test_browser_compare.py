"""Issue 20 in the browser: the 「回测对比」 page shows the latest `backtest.py compare` result of the daemon's data
dir (cost per cause, then every trade), served by the real waitress server; before a result exists the API
answers an empty state (no error, no 404) that tells the command to run."""
import io

import pytest

import backtest
from browser_support import chromium, plain_page, require_browser, shot
from test_backtest_compare import EXPIRED, POOL, REJECTED, STOP_E1, scripted_account
from test_backtest_scenarios import PREFIX, QUIET_E, write_bars
from web_test_support import Client, build_system, start_server


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_browser()
    root = tmp_path_factory.mktemp("browser_compare")
    system = build_system(root)
    system.ctx.data_dir = root / "account"
    server = start_server(system)
    yield root, system, server
    server.stop()
    system.close()


def test_compare_page_shows_causes_and_trades(served):
    root, system, server = served
    client = Client(server.port)
    missing = client.request("GET", "/api/backtest/compare")
    assert missing.status == 200 and missing.json["data"]["available"] is False
    assert missing.json["data"]["message"].startswith("还没有回测对比结果：在命令行运行 python backtest.py compare")
    with chromium() as browser:
        page = plain_page(browser)
        problems = []
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.goto(server.url + "/#compare")
        page.locator("#compare-summary-body tr.empty", has_text="还没有回测对比结果").wait_for()
        assert page.locator("#compare-msg").is_hidden() and problems == []  # no red box, no 404

    scripted_account(root / "account")
    for code in POOL:
        write_bars(root / "bars", code, PREFIX + [QUIET_E, STOP_E1 if code == EXPIRED else QUIET_E])
    assert backtest.main(["compare", "--account", str(root / "account"), "--data", str(root / "bars")],
                         io.StringIO(), io.StringIO()) == 0
    reply = client.request("GET", "/api/backtest/compare")
    assert reply.status == 200 and len(reply.json["data"]["rows"]) == 10 and reply.json["data"]["available"]

    with chromium() as browser:
        page = plain_page(browser)
        page.goto(server.url + "/#compare")
        matched = page.locator("#compare-summary-body tr[data-cause='matched']")
        matched.wait_for()
        assert matched.inner_text().split("\t") == ["一致", "1", "20,020.00", "20.00"]
        assert page.locator("#compare-summary-body tr").count() == 10
        rejected = page.locator("#compare-rows-body tr", has_text=REJECTED)
        assert "账户缺少：信号被拒绝" in rejected.inner_text() and "可用资金不足" in rejected.inner_text()
        assert page.locator("#compare-rows-body tr[data-kind='extra']").count() == 3
        assert page.inner_text("#compare-starting") == ("回测起点：现金 1,000,000.00 元（来源：参数 SIMULATION_BALANCE，"
                                                        "账户没有初始资金记录），持仓 无")
        shot(page, "20_backtest_compare")
