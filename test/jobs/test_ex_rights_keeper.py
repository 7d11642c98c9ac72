"""The daemon on an ex-date (issue 28 §2): the position's levels (highest, cost, first-buy price), the sim
account (bonus shares, cash dividend), watch-task price thresholds are adjusted before the open, once — a
restart does not apply them again; the adjustment is logged, journaled and published; a held stock that gaps
beyond its limit with no known event raises an alarm. Real SQLite files, the real trading core."""
from __future__ import annotations

from datetime import date, datetime

import pytest

import strategy
from core.events import EventBus, EventKind
from core.models import Quote, Rule
from jobs.ex_rights import ExRightsKeeper, FileEventSource
from persistence.storage import Database
from position_manager import PositionManager
from sim_trader import SimTrader
from trading_support import QuoteBoard, build_core, make_settings, replay_clock
from watch.requests import parse_task
from watch.store import WatchStore

CODE = "000661.SZ"  # 长春高新: 2019 annual 10派10转10, ex-date 2020-06-09, close the day before 666.46
EVENTS = "code,ex_date,cash_per_share,shares_per_share\n000661.SZ,2020-06-09,1.0,1.0\n"
FACTOR = 0.499249767  # (666.46 − 1.00) ÷ (1 + 1) ÷ 666.46


class Env:
    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        (tmp_path / "events.csv").write_text(EVENTS, encoding="utf-8")
        self.clock = replay_clock("2020-06-08 10:00:00")
        self.quotes = QuoteBoard(self.clock)
        self.settings = make_settings(tmp_path, EX_RIGHTS_EVENTS_FILE=str(tmp_path / "events.csv"))
        self.core = build_core(tmp_path / "sim_trading.db", self.settings, self.clock, self.quotes)
        self.bus = EventBus(self.clock)
        self.published = self.bus.subscribe()
        self.watch = WatchStore(self.core.db, self.clock)
        self.keeper = self.keeper_for(self.core.positions, self.core.sim)

    def keeper_for(self, positions, sim) -> ExRightsKeeper:
        keeper = ExRightsKeeper(self.core.db, self.clock, self.bus, FileEventSource(self.tmp_path / "events.csv"),
                                positions, last_quote=self.quotes, sim=sim, watch_store=self.watch,
                                settings=self.settings)
        positions.set_ex_rights_source(keeper.source_for_positions)
        return keeper

    def hold_near_trailing_stop(self) -> None:
        self.quotes.set(CODE, 620.00, 615.00)
        self.core.executor.buy_stock(CODE, volume=100, price=620.00)
        self.core.positions.set_rule_state(CODE, highest_price=680.0, profit_triggered=True)
        self.quotes.set(CODE, 666.46, 615.00)  # the close before the ex-date
        self.core.positions.update_price(CODE, 666.46, self.clock.now())
        self.watch.add(parse_task({"stock_code": CODE, "conditions": [{"type": "price_below", "value": 600},
                                                                      {"type": "in_zone", "low": 550, "high": 620}]},
                                  date(2020, 6, 8)))

    def open_ex_date(self, price: float = 333.00) -> Quote:
        self.clock.set(datetime(2020, 6, 9, 9, 30))
        quote = self.quotes.set(CODE, price, 666.46)
        self.keeper.on_quote(quote)
        return quote


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


def test_levels_are_adjusted_before_the_open_and_no_trailing_stop_fires(env):
    env.hold_near_trailing_stop()
    before = env.core.positions.get(CODE)
    cash_before = env.core.sim.query_asset().cash
    params = strategy.RuleParams.from_settings(env.settings)
    assert strategy.trigger_prices(before, params).dynamic_stop_price == 652.8  # 680 × 0.96: 2 % under the close
    unadjusted = before.copy(available=before.volume)  # as it stands on the ex-date (T+1 released)
    assert [a.rule for a in strategy.evaluate(unadjusted, 333.00, params)] == [Rule.STOP_LOSS]  # the gap

    env.open_ex_date()

    after = env.core.positions.get(CODE)
    assert (after.volume, after.available) == (200, 200)
    assert after.highest_price == 339.489842  # 680 × 0.499249767
    assert after.base_cost_price == 309.534856  # 620 × 0.499249767
    assert after.cost_price == pytest.approx(before.cost_price * FACTOR, abs=1e-6)
    assert strategy.evaluate(after, 333.00, params) == []  # no exit on the gap
    assert strategy.trigger_prices(after, params).dynamic_stop_price == 325.91024832  # 339.489842 × 0.96
    account = {p.stock_code: p for p in env.core.sim.query_positions()}[CODE]
    assert account.volume == 200
    assert env.core.sim.query_asset().cash == round(cash_before + 100.00, 2)  # 100 shares × 1.00 pre-tax
    task = env.watch.all(CODE)[0]
    assert task.describe() == "价格≤ 299.55且进入区间 [274.587, 309.535]"

    [row] = env.keeper.journal()
    assert (row["stock_code"], row["ex_date"], row["factor"], row["status"]) == (CODE, "2020-06-09", FACTOR, "applied")
    assert row["message"].startswith("除权除息 000661.SZ 2020-06-09（每10股派10元送转10股）：因子 0.499250，"
                                     "最高价 680.000 → 339.490")
    assert "持股 100 → 200 股" in row["message"] and "现金红利 100.00 元入账" in row["message"]
    assert "盯盘任务 #1「价格≤ 600且进入区间 [550, 620]」→「价格≤ 299.55且进入区间 [274.587, 309.535]」" in row["message"]
    events = [e for e in env.published.drain() if e.kind is EventKind.EX_RIGHTS]
    assert [(e.stock_code, e.message) for e in events] == [(CODE, row["message"])]


def test_a_restart_does_not_apply_the_event_twice(env):
    env.hold_near_trailing_stop()
    env.open_ex_date()
    cash = env.core.sim.query_asset().cash
    positions = PositionManager(Database(env.tmp_path / "sim_trading.db"), env.settings, env.clock, "simulation")
    sim = SimTrader(Database(env.tmp_path / "sim_trading.db"), env.settings, env.clock, env.quotes)
    keeper = env.keeper_for(positions, sim)
    assert keeper.apply_day(date(2020, 6, 9)) == "2020-06-09 无除权除息事件"
    assert keeper.apply(keeper._source.events([CODE], None, date(2020, 6, 9))[0]) is None
    assert (positions.get(CODE).volume, positions.get(CODE).highest_price) == (200, 339.489842)
    assert (sim.query_positions()[0].volume, sim.query_asset().cash) == (200, cash)
    assert env.watch.all(CODE)[0].describe() == "价格≤ 299.55且进入区间 [274.587, 309.535]"
    assert len(keeper.journal()) == 1


def test_a_pending_event_is_finished_after_a_crash_without_repeating_the_done_parts(env):
    """The journal row is 'pending' and the position table had adjusted itself at its roll when the process
    died: the next run finishes the sim account and the watch task, and leaves the position as it is."""
    env.hold_near_trailing_stop()
    env.clock.set(datetime(2020, 6, 9, 9, 30))
    assert env.core.positions.get(CODE).volume == 200  # adjusted at the position table's own day roll
    env.core.db.execute("INSERT INTO ex_rights_events(key, stock_code, ex_date, description, factor, status,"
                        " recorded_at) VALUES('000661.SZ:2020-06-09', ?, '2020-06-09', '', ?, 'pending', '')",
                        (CODE, FACTOR))
    cash = env.core.sim.query_asset().cash
    env.keeper.on_quote(env.quotes.set(CODE, 333.00, 666.46))
    assert env.core.positions.get(CODE).highest_price == 339.489842
    assert env.core.sim.query_asset().cash == round(cash + 100.00, 2)
    assert [r["status"] for r in env.keeper.journal()] == ["applied"]


def test_a_gap_beyond_the_limit_without_an_event_raises_an_alarm(env):
    (env.tmp_path / "events.csv").write_text("code,ex_date,cash_per_share,shares_per_share\n", encoding="utf-8")
    env.keeper = env.keeper_for(env.core.positions, env.core.sim)
    env.hold_near_trailing_stop()
    env.open_ex_date(price=333.00)
    [alarm] = [e for e in env.published.drain() if e.kind is EventKind.ALARM]
    assert alarm.stock_code == CODE
    assert alarm.message.startswith("【除权数据缺失？】000661.SZ 开盘 333.000 较前收 666.460 变动 -50.03%")
    assert env.core.positions.get(CODE).highest_price == 680.0  # nothing known: nothing adjusted


def test_an_open_inside_the_band_raises_no_alarm(env):
    (env.tmp_path / "events.csv").write_text("code,ex_date,cash_per_share,shares_per_share\n", encoding="utf-8")
    env.keeper = env.keeper_for(env.core.positions, env.core.sim)
    env.hold_near_trailing_stop()
    env.open_ex_date(price=600.00)  # −9.97 %: inside the ±10 % band
    assert [e for e in env.published.drain() if e.kind is EventKind.ALARM] == []


class StandInXtdata:
    """xtdata.get_divid_factors as reference/xtquant_api.md §8 describes it (a DataFrame per code)."""

    def __init__(self, frames):
        self.frames = frames
        self.asked = []

    def get_divid_factors(self, code, start, end):
        import pandas as pd

        self.asked.append((code, start, end))
        rows = self.frames.get(code, [])
        return pd.DataFrame([r for _, r in rows], index=[d for d, _ in rows])


class StandInMootdx:
    def __init__(self, frames):
        self.frames = frames

    def xdxr(self, symbol):
        import pandas as pd

        return pd.DataFrame(self.frames.get(symbol, []))


def test_xtdata_source_reads_the_dividend_factors():
    from jobs.ex_rights import XtdataEventSource
    from market.ex_rights import CorporateAction

    xtdata = StandInXtdata({CODE: [
        ("20200609", {"interest": 1.0, "stockBonus": 0.0, "stockGift": 1.0, "allotNum": 0.0, "allotPrice": 0.0,
                      "dr": 2.003}),
        ("20190611", {"interest": 0.5, "stockBonus": 0.0, "stockGift": 0.0, "allotNum": 0.0, "allotPrice": 0.0,
                      "dr": 1.001})]})
    source = XtdataEventSource(lambda: xtdata)
    assert source.events([CODE], date(2020, 6, 8), date(2020, 6, 9)) == [
        CorporateAction(CODE, date(2020, 6, 9), 1.0, 1.0, 0.0, 0.0)]
    assert xtdata.asked == [(CODE, "20200608", "20200609")]


def test_mootdx_source_reads_xdxr_per_ten_shares():
    from jobs.ex_rights import MootdxEventSource
    from market.ex_rights import CorporateAction

    client = StandInMootdx({"000661": [
        {"year": 2020, "month": 6, "day": 9, "category": 1, "fenhong": 10.0, "songzhuangu": 10.0, "peigu": 0.0,
         "peigujia": 0.0},
        {"year": 2020, "month": 6, "day": 9, "category": 5, "fenhong": 0.0, "songzhuangu": 0.0, "peigu": 0.0,
         "peigujia": 0.0}]})  # category 5: a share-capital change, not a distribution
    assert MootdxEventSource(lambda: client).events([CODE], date(2020, 6, 8), date(2020, 6, 9)) == [
        CorporateAction(CODE, date(2020, 6, 9), 1.0, 1.0, 0.0, 0.0)]
    assert MootdxEventSource(lambda: client).events([CODE], date(2020, 6, 9), date(2020, 6, 10)) == []


def test_previous_close_of_a_stock_not_held():
    from jobs.ex_rights import previous_close

    before = Quote(CODE, 666.46, 680.39, datetime(2020, 6, 8, 15, 0), "test")
    on_the_day = Quote(CODE, 333.00, 666.46, datetime(2020, 6, 9, 9, 30), "test")
    assert previous_close(before, date(2020, 6, 9)) == 666.46
    assert previous_close(on_the_day, date(2020, 6, 9)) == 666.46
    assert previous_close(None, date(2020, 6, 9)) is None


def test_a_watch_task_on_a_stock_not_held_takes_the_factor_of_its_previous_close(env):
    env.watch.add(parse_task({"stock_code": CODE, "conditions": [{"type": "price_above", "value": 700}]},
                             date(2020, 6, 8)))
    env.quotes.set(CODE, 666.46, 680.39)
    env.open_ex_date()
    assert env.watch.all(CODE)[0].conditions[0].value == 349.474837  # 700 × 0.499249767
    assert env.core.positions.get(CODE) is None


class HungSource:
    """A live data client that never answers (xtdata is known to hang): released at the end of the test."""

    def __init__(self):
        import threading

        self.release = threading.Event()
        self.calls = 0

    def events(self, codes, after, through):
        self.calls += 1
        self.release.wait(30)
        return []


def test_a_hung_live_source_costs_the_quote_path_one_deadline_then_fails_fast_with_an_alarm(tmp_path):
    import time

    from jobs.ex_rights import DeadlineSource

    env = Env(tmp_path)
    env.hold_near_trailing_stop()
    hung = HungSource()
    env.keeper = ExRightsKeeper(env.core.db, env.clock, env.bus, DeadlineSource(hung, 0.3), env.core.positions,
                                last_quote=env.quotes, settings=env.settings)
    try:
        started = time.monotonic()
        env.open_ex_date()  # the day's first quote asks the source: one deadline, then the feed goes on
        first = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="上一次查询仍未返回"):
            env.keeper._source.events([CODE], date(2020, 6, 8), date(2020, 6, 9))
        again = time.monotonic() - started
    finally:
        hung.release.set()
    assert 0.3 <= first < 2.0 and again < 0.1 and hung.calls == 1
    alarms = [e for e in env.published.drain() if e.kind is EventKind.ALARM]
    assert any("除权除息调整未完成" in e.message for e in alarms)
