"""The API behind the page's 收益, 日志 and chart views against the real server and components: performance
figures equal the shared statistics (and the backtest summary's) on the same trades, the log tail is masked and
live, the 分时 line follows the quotes, MACD crosses are marked with the rule's own test, and a token is
checked at once."""
import logging
from datetime import date

import pytest

import core.perf_stats as perf_stats
from jobs.account_snapshots import AccountSnapshots
from backtesting.engine import EngineResult, EquityPoint
from backtesting.report import summarize
from indicator_calculator import cross_between
from core.models import Asset
from webapi.performance import fills_from_records
from web_test_support import TOKEN, Client, SseClient, build_system, data_of, start_server


class FixedAccount:
    def __init__(self):
        self.total = 1_000_000.0

    def __call__(self) -> Asset:
        return Asset(self.total - 50_000.0, 0.0, 50_000.0, self.total)


def test_performance_figures_equal_the_shared_statistics_and_the_backtest_summary(system, client):
    system.executor.buy_stock("600036.SH", amount=30000)
    system.executor.buy_stock("000001.SZ", amount=20000)
    system.next_day()
    held = system.positions.get("600036.SH")
    system.executor.sell_stock("600036.SH", held.available)  # one closed episode
    account = FixedAccount()
    system.ctx.snapshots = AccountSnapshots(system.dbs[1], system.clock)
    today = system.clock.today()
    yesterday = system.clock.calendar.previous_trading_day(today)
    days = [system.clock.calendar.previous_trading_day(yesterday), yesterday, today]
    for day, total in zip(days, (1_010_000.0, 990_000.0, 1_020_000.0)):
        account.total = total
        system.ctx.snapshots.record(day, account())
    report = data_of(client.get("/api/performance"))
    assert [p["total_asset"] for p in report["equity"]] == [1_010_000.0, 990_000.0, 1_020_000.0]
    assert [p["pnl"] for p in report["equity"]] == [10_000.0, -20_000.0, 30_000.0]
    assert [p["drawdown"] for p in report["equity"]] == [0.0, 0.019802, 0.0]
    summary = report["summary"]
    assert (summary["total_return"], summary["max_drawdown"], summary["sharpe"]) == (0.02, 0.019802, 3.327)
    points = [EquityPoint(day, total, 0.0) for day, total in zip(days, (1_010_000.0, 990_000.0, 1_020_000.0))]
    records = system.executor.trade_records()
    fills = fills_from_records(records)
    closed, _ = perf_stats.episodes_from_fills(fills)
    backtest = summarize(EngineResult(1_000_000.0, [], points, closed, [], perf_stats.fees_paid(fills)), stocks=2)
    for key in ("total_return", "annualized_return", "max_drawdown", "sharpe", "closed_episodes",
                "winning_episodes", "win_rate", "fees_paid"):
        assert summary[key] == getattr(backtest, key), key
    assert summary["trade_count"] == len(records) == 3
    assert summary["fees_paid"] == round(sum(r["fees"] for r in records), 2)
    assert summary["closed_episodes"] == 1 and summary["open_episodes"] == 1
    buy, sell = [r for r in records if r["stock_code"] == "600036.SH"]
    profit = round(sell["amount"] - sell["fees"] - buy["amount"] - buy["fees"], 2)
    assert report["episodes"][0]["profit"] == profit == summary["episode_realized_pnl"] == summary["realized_pnl"]
    assert report["per_stock"] == [{"stock_code": "600036.SH", "episodes": 1, "wins": int(profit > 0),
                                    "realized_pnl": profit}]
    assert {r["label"]: r["fills"] for r in report["rules"]} == {"手动": 3}
    assert not any(p["partial"] for p in report["equity"][:-1])


def test_realized_pnl_counts_partial_sells_and_episode_figures_do_not(system, client):
    system.executor.buy_stock("600036.SH", amount=40000)
    system.next_day()
    held = system.positions.get("600036.SH")
    system.executor.sell_stock("600036.SH", held.available // 200 * 100)  # a partial sell: the episode stays open
    records = system.executor.trade_records()
    sell = next(r for r in records if r["side"] == "sell")
    assert sell["realized_pnl"] is not None and sell["realized_pnl"] != 0
    summary = data_of(client.get("/api/performance"))["summary"]
    assert summary["realized_pnl"] == round(sell["realized_pnl"], 2)
    assert (summary["episode_realized_pnl"], summary["closed_episodes"], summary["open_episodes"]) == (0.0, 0, 1)


def test_today_so_far_extends_the_recorded_closes(system, client):
    system.ctx.snapshots = AccountSnapshots(system.dbs[1], system.clock)
    system.ctx.snapshots.record(system.clock.calendar.previous_trading_day(system.clock.today()), FixedAccount()())
    equity = data_of(client.get("/api/performance"))["equity"]
    assert [p["partial"] for p in equity] == [False, True]
    assert equity[-1]["total_asset"] == round(system.executor.account().total_asset, 2)
    assert equity[-1]["pnl"] == round(equity[-1]["total_asset"] - 1_000_000.0, 2)


def test_log_page_lines_are_masked_filtered_and_live(system, client):
    log = logging.getLogger("test.pages")
    log.setLevel(logging.INFO)  # the root logger of a test run passes warnings only
    first = data_of(client.get("/api/logs"))["version"]
    log.warning("令牌 %s 不应出现在网页日志", TOKEN)
    log.info("普通信息 abc")
    lines = data_of(client.get(f"/api/logs?after={first}&level=WARNING"))["lines"]
    assert [line["message"] for line in lines] == ["令牌 ****** 不应出现在网页日志"]
    found = data_of(client.get(f"/api/logs?after={first}&q=ABC"))["lines"]
    assert [(line["level"], line["message"]) for line in found] == [("INFO", "普通信息 abc")]
    version = data_of(client.get("/api/logs"))["version"]
    stream = SseClient(client.port, path=f"/api/logs/stream?after={version}")
    try:
        event, data = stream.next_event()
        assert event == "logs" and data["lines"] == []
        log.error("页面打开后记录的一行 %s", "xyz")
        event, data = stream.wait_for(lambda e, d: e == "logs" and d["lines"])
        assert [line["message"] for line in data["lines"]] == ["页面打开后记录的一行 xyz"]
        assert data["lines"][0]["seq"] == version + 1
    finally:
        stream.close()
    assert client.get("/api/logs?level=LOUD").status == 400


def test_intraday_line_follows_the_quotes(system, client):
    code = "600036.SH"
    first = data_of(client.get(f"/api/data/intraday/{code}"))
    quote = system.data.get_latest_data(code)
    assert first["prev_close"] == quote.prev_close and first["points"][-1]["price"] == quote.price
    assert first["limit_up"] > quote.prev_close > first["limit_down"]
    count = len(first["points"])
    system.step(3)
    later = data_of(client.get(f"/api/data/intraday/{code}"))
    assert len(later["points"]) == count + 3
    assert later["points"][-1]["price"] == system.data.get_latest_data(code).price
    assert client.get("/api/data/intraday/601398.SH").status == 404


def test_history_marks_macd_crosses_with_the_rules_test(system, client):
    bars = data_of(client.get("/api/data/history/600036.SH"))["bars"]
    crosses = [(b["date"], b["macd_cross"]) for b in bars if b.get("macd_cross")]
    expected = [(b["date"], cross_between(a.get("macd_hist"), b.get("macd_hist"))) for a, b in zip(bars, bars[1:])]
    assert crosses == [item for item in expected if item[1]] and crosses


def test_a_wrong_token_is_told_at_once(client):
    assert client.post("/api/auth/check").status == 200
    reply = client.post("/api/auth/check", token="wrong-token-0123456789")
    assert reply.status == 401 and reply.json["message"] == "API 令牌错误"

