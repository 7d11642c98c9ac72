"""The supervisor's page in Debian's chromium: the 「账户总览」 view lists every account with its process and
trading state and the totals, draws the equity curves, halts one account from its row, and the account
switcher makes the existing pages talk to the selected account through the supervisor. Beside the two simulated
accounts runs one live account on the miniQMT counterpart (see test_accounts_process.py)."""
import pytest

from accounts_support import both_running, launch_supervisor
from daemon_support import wait_until
from test_accounts_process import WITH_COUNTERPART, live_account
from browser_support import chromium, confirm, open_tab, real_problems, require_browser, shot


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory):
    require_browser()
    root = tmp_path_factory.mktemp("accounts_browser")
    accounts = [{"id": "sim1", "name": "模拟一", "overrides": {"STOP_LOSS_RATIO": -0.05}},
                {"id": "sim2", "name": "模拟二", "overrides": {"STOP_LOSS_RATIO": -0.095}}, live_account(root)]
    sup = launch_supervisor(root, accounts, ["--replay-speed", "5"], {"REPLAY_TICKS_PER_DAY": 20},
                            entry=WITH_COUNTERPART)
    wait_until(lambda: both_running(sup, 3), 120, "all three accounts running")
    yield sup
    sup.stop_quietly()


@pytest.fixture(scope="module")
def page(supervisor):
    with chromium() as browser:
        context, tab = open_tab(browser, width=1366, height=900)
        yield tab
        context.close()


def test_overview_lists_every_account_with_totals_and_equity_curves(supervisor, page):
    page.goto(f"http://127.0.0.1:{supervisor.port}/#accounts")
    rows = page.locator("#accounts-body tr")
    rows.nth(2).wait_for()
    assert rows.count() == 3
    assert "模拟一（sim1）" in rows.nth(0).inner_text() and "模拟二（sim2）" in rows.nth(1).inner_text()
    page.wait_for_function("document.querySelectorAll('#accounts-body .account-state')[2].textContent === '运行中'")
    live = page.locator("#accounts-body tr[data-account=live1] td")
    assert live.nth(0).inner_text().startswith("实盘账户（live1）") and live.nth(1).inner_text() == "实盘"
    page.wait_for_function("document.querySelectorAll('#accounts-body tr[data-account=live1] td')[8].textContent"
                           " === '已连接'")
    assert page.inner_text("#accounts-totals").count("3 / 3") == 1  # 运行中账户
    page.wait_for_function("document.querySelectorAll('#accounts-chart polyline').length >= 2", timeout=60_000)
    assert page.locator("#accounts-chart polyline[data-account=sim1]").count() == 1
    # the return view: every curve starts on the dashed 0 % line, whatever the account's size
    starts = page.evaluate("""() => Array.from(document.querySelectorAll('#accounts-chart polyline')).map(
        l => Number(l.getAttribute('points').split(' ')[0].split(',')[1]))""")
    zero = float(page.get_attribute("#accounts-chart line.zero-line", "y1"))
    assert starts and all(abs(y - zero) < 0.11 for y in starts), (starts, zero)
    assert page.inner_text("#accounts-chart .legend-item[data-account=sim1]").startswith("模拟一：")
    assert "%" in page.inner_text("#accounts-chart .legend-item[data-account=sim1]")
    page.select_option("#accounts-chart-view", "asset")  # the absolute view stays available
    assert page.locator("#accounts-chart line.zero-line").count() == 0
    assert "%" not in page.inner_text("#accounts-chart .legend-item[data-account=sim1]").split("（")[0]
    page.select_option("#accounts-chart-view", "return")
    # the switcher names the accounts as the owner does
    assert [page.inner_text(f"#account-switch option[value={i}]") for i in ("sim1", "sim2", "live1")] == [
        "模拟一", "模拟二", "实盘账户"]
    shot(page, "accounts_01_overview")
    assert real_problems(page) == []


def test_emergency_stop_from_one_row_halts_only_that_account(supervisor, page):
    page.goto(f"http://127.0.0.1:{supervisor.port}/#accounts")
    row = page.locator("#accounts-body tr[data-account=sim2]")
    row.locator("button", has_text="紧急停止").click()
    confirm(page)
    page.wait_for_function("document.querySelector('#accounts-msg').textContent.includes('紧急停止：成功 1 个账户')")
    assert supervisor.data("/api/accounts/sim2/trading-state")["state"] == "halted"
    assert supervisor.data("/api/accounts/sim1/trading-state")["state"] == "running"
    assert supervisor.data("/api/accounts/live1/trading-state")["state"] == "running"
    page.wait_for_function(
        "document.querySelector('#accounts-body tr[data-account=sim2] .trading-state').textContent === '紧急停止'")
    shot(page, "accounts_02_sim2_halted")


def test_the_switcher_points_every_page_at_the_selected_account(supervisor, page):
    page.goto(f"http://127.0.0.1:{supervisor.port}/#overview")
    calls = []
    page.on("request", lambda r: calls.append(r.url) if "/api/" in r.url else None)
    page.select_option("#account-switch", "sim2")
    page.wait_for_load_state()
    page.wait_for_function("document.querySelector('#mode-badge').textContent === '模拟交易'")
    page.wait_for_function("document.querySelector('#acc-total').textContent !== '--'")
    assert any("/api/accounts/sim2/status" in url for url in calls), calls
    assert not any(url.endswith("/api/status") for url in calls)
    assert page.input_value("#account-switch") == "sim2"
    shot(page, "accounts_03_switched_to_sim2")
    assert real_problems(page) == []


def test_the_switcher_shows_the_live_account_as_live(supervisor, page):
    page.goto(f"http://127.0.0.1:{supervisor.port}/#overview")
    page.select_option("#account-switch", "live1")
    page.wait_for_load_state()
    page.wait_for_function("document.querySelector('#mode-badge').textContent === '实盘交易'")
    page.wait_for_function("document.querySelector('#acc-total').textContent !== '--'")
    assert page.inner_text("#acc-total").replace(",", "").startswith("200000")
    shot(page, "accounts_04_switched_to_live1")
    assert real_problems(page) == []
