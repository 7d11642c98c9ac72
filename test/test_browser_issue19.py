"""The 「系统诊断」 and 「委托文件」 pages in Debian's chromium against the real server and components: the
diagnostics table shows every check with its level, an uploaded GBK order file is executed and its per-line
results are listed, a dry-run upload orders nothing; no CSP violation on the way."""
import pytest

from browser_support import TIMEOUT_MS, chromium, require_browser
from doctor.cli import daemon_diagnostics
from orderfiles.intake import OrderFileIntake
from orderfiles.store import OrderFileStore
from orderfiles.worker import OrderFileWorker
from web_test_support import build_system, start_server
from daemon.workers import Watchdog


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    require_browser()
    root = tmp_path_factory.mktemp("issue19")
    system = build_system(root)
    system.ctx.order_files = OrderFileIntake(OrderFileStore(system.dbs[1], system.clock), system.executor,
                                             system.positions, system.settings, root / "inbox", hub=system.data.hub)
    system.ctx.diagnostics = daemon_diagnostics(system.settings, root / "data", root / "logs", system.broker,
                                                system.data.hub, system.clock)
    watchdog = Watchdog(system.settings)  # the order-file thread executes queued uploads (issue 26)
    watchdog.add(OrderFileWorker(system.ctx.order_files, system.settings))
    watchdog.start()
    server = start_server(system)
    yield system, server, root
    server.stop()
    watchdog.stop(5.0)
    system.close()


@pytest.fixture(scope="module")
def page(served):
    with chromium() as browser:
        tab = browser.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.csp_errors = []
        tab.on("console", lambda m: tab.csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
        yield tab


def test_diagnostics_page_lists_every_check(served, page):
    _, server, _ = served
    page.goto(f"{server.url}/#diagnostics")
    page.wait_for_selector("#diagnostics-body tr[data-key='python']")
    assert page.locator("#tab-diagnostics").is_visible()
    assert page.locator("#tab-overview").is_hidden()
    assert page.locator("#tabs a[data-tab='diagnostics']").get_attribute("class") == "active"
    keys = page.eval_on_selector_all("#diagnostics-body tr", "rows => rows.map(r => r.dataset.key)")
    for key in ("python", "dependency:pandas", "talib_c", "broker", "data_dir", "port", "clock", "config",
                "database:sim_trading.db", "log_dir"):
        assert key in keys
    assert page.locator("#diagnostics-body tr[data-key='port'] td").nth(0).inner_text() == "正常"
    assert "项检查" in page.locator("#diagnostics-msg").inner_text()
    # switching to an app.js tab and back works
    page.click("#tabs a[data-tab='orders']")
    page.wait_for_function("() => !document.getElementById('tab-orders').hidden")
    assert page.locator("#tab-diagnostics").is_hidden()
    assert page.csp_errors == []


def test_order_file_upload_is_executed_and_listed(served, page, tmp_path):
    system, server, _ = served
    page.goto(f"{server.url}/#order-files")
    page.wait_for_selector("#order-file-form")
    csv_file = tmp_path / "指令.csv"
    csv_file.write_bytes("证券代码,方向,数量,备注\n600036.SH,买,100,网页-1\n600036.SH,买,50,网页-2\n".encode("gbk"))
    page.set_input_files("#order-file-input", str(csv_file))
    page.click("#order-file-form button[type='submit']")
    page.wait_for_function("() => document.getElementById('order-files-msg').textContent.includes('完成')")
    assert "1 行成功，1 行失败" in page.locator("#order-files-msg").inner_text()
    lines = page.locator("#order-file-lines tr")
    assert lines.count() == 2
    assert lines.nth(0).locator("td").nth(4).inner_text() == "已委托"
    assert lines.nth(1).locator("td").nth(4).inner_text() == "失败"
    assert "交易单位" in lines.nth(1).locator("td").nth(6).inner_text()
    page.wait_for_selector("#order-files-body tr")
    assert page.locator("#order-files-body tr").nth(0).locator("td").nth(2).inner_text() == "指令.csv"
    orders = system.dbs[1].query("SELECT stock_code, volume, rule FROM orders")
    assert [tuple(r) for r in orders] == [("600036.SH", 100, "order_file")]

    dry = tmp_path / "check.csv"
    dry.write_bytes("stock_code,side,volume\n000001.SZ,buy,100\n".encode("utf-8"))
    page.set_input_files("#order-file-input", str(dry))
    page.check("#order-file-dry-run")
    page.click("#order-file-form button[type='submit']")
    page.wait_for_function("() => document.getElementById('order-files-msg').textContent.includes('校验完成')")
    assert page.locator("#order-file-lines tr").nth(0).locator("td").nth(4).inner_text() == "校验通过"
    assert len(system.dbs[1].query("SELECT 1 FROM orders")) == 1
    assert page.csp_errors == []
