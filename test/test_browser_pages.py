"""The trader's all-day page in Debian's chromium against the real server and worker threads replaying real daily
bars (../shared/data): the K-line's crosshair read-out, zoom, live rule levels and MACD crosses at the bars the
backtest's MACD entries follow; the 分时 line growing with new quotes; the 收益 page equal to /api/performance
and to the backtest summary functions on the same trades; a log line logged after the 日志 page opened; and no
element wider than the screen on any page at 390×844 and 1366×768. Screenshots go to test-artifacts/."""
import logging
import re
from datetime import date
from pathlib import Path

import pytest

import config
import core.perf_stats as perf_stats
from backtest import run_backtest
from backtesting.engine import EngineResult, EquityPoint
from backtesting.report import summarize
from browser_support import (ARTIFACTS, TIMEOUT_MS, chromium, open_tab, real_problems, require_browser,
                             serve, start_workers)
from webapi.performance import fills_from_records
from web_test_support import TOKEN, Client, build_system

DAILY = Path(__file__).resolve().parents[2] / "shared" / "data" / "daily"
CODE = "600036.SH"
VIEWPORTS = ((390, 844), (1366, 768))

OVERFLOW_JS = """() => {
  const vw = document.documentElement.clientWidth, bad = [];
  if (document.documentElement.scrollWidth > vw) bad.push('page scrollWidth ' + document.documentElement.scrollWidth);
  const scrolls = el => { for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const ox = getComputedStyle(p).overflowX; if (ox === 'auto' || ox === 'scroll' || ox === 'hidden') return true; }
    return false; };
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height || scrolls(el)) continue;
    if (r.right > vw + 0.5 || r.left < -0.5) {
      bad.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + '.' + el.className + ' ' +
               Math.round(r.left) + '..' + Math.round(r.right));
    }
  }
  return bad.slice(0, 15);
}"""


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Replay of the real daily bars from 2024-06-03 (a tick every 0.25 s), one closed episode and two
    recorded daily closes before the worker threads start."""
    require_browser()
    if not DAILY.is_dir():
        pytest.fail(f"真实行情数据目录不存在：{DAILY}")
    system = build_system(tmp_path_factory.mktemp("pages"), pool=[CODE, "000001.SZ"], overrides={
        "REPLAY_DATA_DIR": str(DAILY), "REPLAY_START_DATE": "2024-06-03", "REPLAY_TICKS_PER_DAY": 240,
        "REPLAY_SECONDS_PER_DAY": 60.0, "SSE_HEARTBEAT_SECONDS": 2.0})
    system.executor.buy_stock(CODE, amount=30000)
    system.executor.buy_stock("000001.SZ", amount=20000)
    first_day = system.clock.today()
    system.next_day()
    system.ctx.snapshots.record(first_day, system.executor.account())
    system.executor.sell_stock("000001.SZ", system.positions.get("000001.SZ").available)
    system.executor.sell_stock(CODE, system.positions.get(CODE).available // 200 * 100)  # partial: still held
    start_workers(system)
    yield from serve(system)


@pytest.fixture(scope="module")
def browser(market):
    with chromium() as launched:
        yield launched


def open_page(browser, width=1366, height=768):
    return open_tab(browser, width, height)


@pytest.fixture
def page(browser):
    context, tab = open_page(browser)
    yield tab
    context.close()


def api(server, path):
    client = Client(server.port)
    try:
        reply = client.get(path)
        assert reply.status == 200, reply.text
        return reply.json["data"]
    finally:
        client.close()


def open_chart(page, server):
    page.goto(server.url + "/#positions")
    page.locator(f"tr[data-code='{CODE}'] button", has_text="图表").click()
    page.wait_for_function(f"window.QmtChart.current && QmtChart.current.code() === '{CODE}'"
                           " && QmtChart.current.lastBar() !== null")


def test_kline_readout_zoom_live_levels_and_macd_crosses(market, page):
    system, server = market
    open_chart(page, server)
    box = page.locator("#chart").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.3)
    page.wait_for_function("/^\\d{4}-\\d{2}-\\d{2}/.test(document.querySelector('#chart-readout').textContent)"
                           " && !document.querySelector('#chart-readout').textContent.includes('今日')")
    readout = page.inner_text("#chart-readout")
    day = readout[:10]
    bars = {b["date"][:10]: b for b in api(server, f"/api/data/history/{CODE}")["bars"]}
    bar = bars[day]
    for label, key in (("开", "open"), ("高", "high"), ("低", "low"), ("收", "close")):
        assert f"{label} {bar[key]:.2f}" in readout
    assert re.search(r"涨跌 [+-]?\d+\.\d{2}%", readout) and f"量 {round(bar['volume'] / 100):,} 手" in readout

    before = page.evaluate("QmtChart.current.visibleRange()")
    page.mouse.wheel(0, -600)
    page.wait_for_function(f"(r => r.to - r.from < {before['to'] - before['from'] - 1})(QmtChart.current.visibleRange())")
    zoomed = page.evaluate("QmtChart.current.visibleRange()")
    page.mouse.wheel(0, 900)
    page.wait_for_function(f"(r => r.to - r.from > {zoomed['to'] - zoomed['from'] + 1})(QmtChart.current.visibleRange())")
    right_edge = page.evaluate("QmtChart.current.visibleRange().to")
    page.mouse.down()  # drag to the right: older bars come into view
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.3, steps=8)
    page.mouse.up()
    page.wait_for_function(f"QmtChart.current.visibleRange().to < {right_edge - 1}")

    # the rule levels equal the position's trigger prices and move with them (a change of the stop-loss ratio)
    def levels_match():
        triggers = api(server, f"/api/positions/{CODE}")["trigger_prices"]
        shown = page.evaluate("QmtChart.current.levelPrices()")
        return shown.get("stop_loss_price") == triggers["stop_loss_price"] and shown
    page.wait_for_function("QmtChart.current.levelPrices().cost > 0")
    assert levels_match()
    old_stop = page.evaluate("QmtChart.current.levelPrices().stop_loss_price")
    system.settings.update({"STOP_LOSS_RATIO": -0.05})
    try:
        page.wait_for_function(f"QmtChart.current.levelPrices().stop_loss_price > {old_stop}")
        assert levels_match()
    finally:
        system.settings.update({"STOP_LOSS_RATIO": -0.095})

    # MACD pane: crosses marked at the signal bars of the backtest's MACD entries on the same bars
    crosses = page.evaluate("QmtChart.current.crosses()")
    golden = {c["date"] for c in crosses if c["kind"] == "golden"}
    assert {c["kind"] for c in crosses} == {"golden", "death"}
    last_day = date.fromisoformat(max(bars))
    run = run_backtest(DAILY, {**config.DEFAULTS, "ENABLE_MA_FILTER": False}, codes=[CODE], end=last_day, plot=False)
    days = sorted(bars)
    signal_bars = {days[days.index(t.day.isoformat()) - 1] for t in run.result.trades if t.rule.value == "macd_buy"}
    assert len(signal_bars) >= 5 and signal_bars <= golden
    page.screenshot(path=str(ARTIFACTS / "pages_kline_1366.png"))
    assert real_problems(page) == []


def test_intraday_line_grows_with_new_quotes(market, page):
    system, server = market
    open_chart(page, server)
    page.click("#chart-mode-m")
    page.wait_for_function("QmtChart.currentIntraday && QmtChart.currentIntraday.pointCount() > 0")
    count = page.evaluate("QmtChart.currentIntraday.pointCount()")
    page.wait_for_function(f"QmtChart.currentIntraday.pointCount() > {count}", timeout=15_000)
    # today's K-line bar is the unfinished bar of the live price
    page.wait_for_function("(b => b.partial && b.date === QmtChart.currentIntraday.date()"
                           " && b.close === QmtChart.currentIntraday.lastPrice())(QmtChart.current.lastBar())")
    head = page.inner_text("#intraday-head")
    series = api(server, f"/api/data/intraday/{CODE}")
    assert f"昨收 {series['prev_close']:.2f}" in head and f"涨停 {series['limit_up']:.2f}" in head
    levels = page.evaluate("QmtChart.currentIntraday.levelPrices()")
    assert (levels["prev"], levels["up"], levels["down"]) == (series["prev_close"], series["limit_up"],
                                                              series["limit_down"])
    # issue 26 item 13: the price range includes the limit lines (a line off the scale is not drawn at all)
    page.wait_for_function("(r => r && r.from <= QmtChart.currentIntraday.levelPrices().down &&"
                           " r.to >= QmtChart.currentIntraday.levelPrices().up)"
                           "(QmtChart.currentIntraday.visiblePriceRange())")
    page.screenshot(path=str(ARTIFACTS / "pages_intraday_1366.png"))
    assert real_problems(page) == []


def test_performance_page_equals_the_api_and_the_backtest_summary(market, page):
    system, server = market
    with page.expect_response(lambda r: r.url.endswith("/api/performance")) as answer:
        page.goto(server.url + "/#performance")
    report = answer.value.json()["data"]
    page.wait_for_function("document.querySelector('#perf-fees_paid') !== null")
    s = report["summary"]
    assert page.inner_text("#perf-total_return") == f"{s['total_return'] * 100:.2f}%"
    assert page.inner_text("#perf-max_drawdown") == f"{s['max_drawdown'] * 100:.2f}%"
    assert page.inner_text("#perf-fees_paid") == f"{s['fees_paid']:,.2f}"
    assert page.inner_text("#perf-realized_pnl") == f"{s['realized_pnl']:+,.2f}"
    # issue 26 item 11: every sell's realised P&L, the partial sell of a stock still held included; the closed
    # episodes' figures are labelled as the episode statistics (周期统计)
    sells = [r for r in system.executor.trade_records() if r["side"] == "sell"]
    assert len(sells) == 2 and s["realized_pnl"] == round(sum(r["realized_pnl"] for r in sells), 2)
    closed_sell = next(r for r in sells if r["stock_code"] == "000001.SZ")
    assert s["episode_realized_pnl"] != s["realized_pnl"]
    assert page.inner_text("#perf-episode_realized_pnl") == f"{s['episode_realized_pnl']:+,.2f}"
    assert s["episode_realized_pnl"] == round(closed_sell["realized_pnl"], 2)
    labels = page.locator("#perf-cards .label").all_inner_texts()
    assert "已实现盈亏（全部卖出）" in labels and "周期统计：胜率" in labels
    # item 13: the equity axis with thousands separators, the drawdown axis never 「−0.0%」
    assert page.evaluate("[QmtPerformance.axisMoney(999589.25), QmtPerformance.axisPct(-0.004),"
                         " QmtPerformance.axisPct(-0.04), QmtPerformance.axisPct(-0)]") == [
        "999,589.25", "0.00%", "-0.04%", "0.00%"]
    assert page.inner_text("#perf-win_rate") == f"{s['win_rate'] * 100:.2f}%"
    assert page.inner_text("#perf-closed_episodes") == f"{s['closed_episodes']}（盈利 {s['winning_episodes']}）"
    assert page.locator("#perf-rules-body tr").count() == len(report["rules"])
    assert page.locator("#perf-episodes-body tr").count() == 1

    records = system.executor.trade_records()
    fills = fills_from_records(records)
    closed, _ = perf_stats.episodes_from_fills(fills)
    points = [EquityPoint(date.fromisoformat(p["date"]), p["total_asset"], 0.0) for p in report["equity"]]
    expected = summarize(EngineResult(s["initial_capital"], [], points, closed, [], perf_stats.fees_paid(fills)),
                         stocks=2)
    for key in ("total_return", "annualized_return", "max_drawdown", "sharpe", "closed_episodes",
                "winning_episodes", "win_rate", "fees_paid"):
        assert s[key] == getattr(expected, key), key
    assert len(report["equity"]) == 2 and report["equity"][-1]["partial"] is True
    page.screenshot(path=str(ARTIFACTS / "pages_performance_1366.png"), full_page=True)
    assert real_problems(page) == []


def test_log_page_shows_a_line_logged_after_it_opened_with_secrets_masked(market, page):
    system, server = market
    page.goto(server.url + "/#logs")
    page.wait_for_function("document.querySelector('#logs-state').textContent.includes('实时')")
    logging.getLogger("test.browser").warning("网页日志测试 %s 令牌 %s", "L-7391", TOKEN)
    line = page.locator(".log-line", has_text="L-7391")
    line.wait_for()
    assert "令牌 ******" in line.inner_text() and TOKEN not in page.inner_text("#logs-box")
    assert "警告" in line.inner_text()
    page.select_option("#logs-form select[name=level]", "ERROR")
    page.wait_for_function("!document.querySelector('#logs-box').textContent.includes('L-7391')")
    page.select_option("#logs-form select[name=level]", "")
    page.fill("#logs-form input[name=q]", "l-7391")
    page.wait_for_function("document.querySelectorAll('#logs-box .log-line').length === 1")
    assert real_problems(page) == []


@pytest.mark.parametrize("width, height", VIEWPORTS)
def test_every_page_fits_the_screen(market, browser, width, height):
    system, server = market
    context, page = open_page(browser, width, height)
    logging.getLogger("test.layout").warning("版面测试：一条很长的日志行，" + "用来检查窄屏下日志不会撑宽页面。" * 8)
    try:
        page.goto(server.url + "/")
        names = page.eval_on_selector_all("#tabs a", "links => links.map(a => a.getAttribute('data-tab'))")
        assert {"performance", "logs", "positions", "config"} <= set(names)
        for name in names:
            page.goto(f"{server.url}/#{name}")
            page.locator(f"#tab-{name}").wait_for(state="visible")
            if name == "positions":
                page.locator(f"tr[data-code='{CODE}'] button", has_text="图表").click()
                page.wait_for_function("window.QmtChart.current && QmtChart.current.lastBar() !== null")
            elif name == "config":
                page.locator("#cfg-STOP_LOSS_RATIO").wait_for(state="attached")
            elif name == "performance":
                page.locator("#perf-fees_paid").wait_for()
            elif name == "logs":
                page.locator("#logs-box .log-line").first.wait_for()
            page.wait_for_function("!document.querySelector('#tab-' + location.hash.slice(1)).textContent"
                                   ".includes('加载中')")
            assert page.evaluate(OVERFLOW_JS) == [], f"{name} @ {width}px"
            page.screenshot(path=str(ARTIFACTS / f"pages_{width}_{name}.png"), full_page=True)
        assert real_problems(page) == []
    finally:
        context.close()


def test_new_pages_obey_the_content_security_policy(market, browser):
    """Without bypassing the CSP (no inline style or script): charts, 分时, 收益 and 日志 work with no console error."""
    system, server = market
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    problems = []
    try:
        tab = context.new_page()
        tab.on("pageerror", lambda exc: problems.append(str(exc)))
        tab.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        tab.goto(server.url + "/#positions")
        tab.locator(f"tr[data-code='{CODE}'] button", has_text="图表").click(timeout=TIMEOUT_MS)
        tab.locator("#chart canvas").first.wait_for(timeout=TIMEOUT_MS)
        tab.click("#chart-mode-m")
        tab.locator("#intraday canvas").first.wait_for(timeout=TIMEOUT_MS)
        tab.goto(server.url + "/#performance")
        tab.locator("#perf-equity canvas").first.wait_for(timeout=TIMEOUT_MS)
        tab.goto(server.url + "/#logs")
        tab.locator("#logs-state", has_text="实时").wait_for(timeout=TIMEOUT_MS)
    finally:
        context.close()
    assert problems == []


def test_a_typed_token_is_checked_at_once(market, page):
    """A page that got no token (opened from another machine) asks for one; a wrong one is refused on entry."""
    system, server = market

    def without_token(route):
        response = route.fetch()
        route.fulfill(response=response, body=response.text().replace(TOKEN, ""))
    page.route(server.url + "/", without_token)
    page.goto(server.url + "/")
    page.locator("#token-bar").wait_for(state="visible")
    page.fill("#token-input", "wrong-token-0123456789")
    page.click("#token-save")
    page.wait_for_function("document.querySelector('#token-msg').textContent.includes('令牌错误')")
    assert page.locator("#token-bar").is_visible()
    page.fill("#token-input", TOKEN)
    page.click("#token-save")
    page.locator("#token-bar").wait_for(state="hidden")
    assert "令牌正确" in page.inner_text("#global-msg")
