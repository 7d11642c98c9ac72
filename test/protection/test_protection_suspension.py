"""A suspended stock (停牌) is an explained block, not 「无法判断：行情过期」 all day: the market data says so (a replay
without the stock's bar today; miniQMT's security status in the tick) through DataManager.is_suspended, and the
protection sentinel reads that fact."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

import strategy
from data_manager import build_data_manager
from data_test_support import make_settings, no_network, xt_stand_in  # noqa: F401 (fixtures)
from protection.sentinel import Cause, DaemonFacts, ProtectionSentinel, ProtectionState, judge_position
from test_data_xtquant import manager, service, tick  # noqa: F401 (fixtures)
from test_protection_sentinel import CODE, NOW, Scene, facts, quote

STALE_QUOTE = quote(9.04, at=NOW - timedelta(seconds=31))  # QUOTE_STALE_SECONDS 30 in the facts table
SUSPENDED_REASON = f"停牌：{CODE} 停牌中，行情停止更新，无法卖出"


@pytest.mark.parametrize("given, state, cause", [
    (facts(q=STALE_QUOTE), ProtectionState.FAILURE, Cause.QUOTE_STALE),
    (replace(facts(q=STALE_QUOTE), suspended=frozenset({CODE})), ProtectionState.EXPLAINED, None),
    (replace(facts(q=None), suspended=frozenset({CODE})), ProtectionState.EXPLAINED, None),  # no quote all day
    (replace(facts(), suspended=frozenset({CODE})), ProtectionState.FAILURE, Cause.NO_SELL),  # it trades: the word
], ids=["stale", "stale-suspended", "no-quote-suspended", "fresh-quotes-outweigh-the-flag"])
def test_a_suspension_explains_only_quotes_that_stopped(given, state, cause):
    judgement = judge_position(given.positions[0], given)
    assert (judgement.state, judgement.cause) == (state, cause)
    if state is ProtectionState.EXPLAINED:
        assert judgement.reason == SUSPENDED_REASON


def test_the_sentinel_shows_a_suspended_holding_as_explained_all_day(tmp_path):
    scene = Scene(tmp_path)
    scene.price(9.04, 10.00)  # below the stop, then the stock is suspended: no quote after 10:00:00
    suspended = {CODE}
    facts_of = DaemonFacts(scene.core.positions, scene.hub, scene.core.executor.journal, scene.core.sim,
                           scene.core.state, scene.settings, scene.clock,
                           lambda code: strategy.RuleParams.from_settings(scene.settings),
                           suspended=lambda code: code in suspended)
    sentinel = ProtectionSentinel(facts_of.read, scene.events, scene.settings, scene.clock, now=scene.time)
    scene.clock.set(datetime(2024, 2, 19, 14, 0))
    scene.time.value = 100.0
    sentinel.run_once()
    scene.time.value = 200.0
    report = sentinel.run_once()
    assert report.ok and [(v.state, v.reason) for v in report.verdicts] == [(ProtectionState.EXPLAINED,
                                                                             SUSPENDED_REASON)]
    assert scene.published() == []
    suspended.clear()  # the data no longer says 停牌 but no quote comes: a failure after the deadline
    scene.time.value = 300.0
    sentinel.run_once()
    scene.time.value = 315.0
    assert [v.cause for v in sentinel.run_once().failures] == [Cause.QUOTE_STALE]


def test_a_replay_without_the_stocks_bar_today_says_suspended(tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    rows = {"600036.SH": ["2026-07-01,10,10,10,10,1000", "2026-07-02,10,10,10,10,1000", "2026-07-03,10,10,10,10,1000"],
            "000001.SZ": ["2026-07-01,12,12,12,12,1000", "2026-07-03,12,12,12,12,1000"],  # no bar on 07-02
            "600519.SH": ["2026-07-03,1500,1500,1500,1500,1000"]}  # listed on 07-03
    for code, lines in rows.items():
        (folder / f"{code}.csv").write_text("date,open,high,low,close,volume\n" + "\n".join(lines) + "\n",
                                            encoding="utf-8")
    settings = make_settings(tmp_path, REPLAY_DATA_DIR=str(folder), REPLAY_TICKS_PER_DAY=4,
                             REPLAY_START_DATE="2026-07-02")
    data, clock = build_data_manager(settings, tmp_path / "data")
    data.set_watchlist(list(rows))
    data.run_once()
    assert clock.now().date() == date(2026, 7, 2)
    assert {code: data.is_suspended(code) for code in rows} == {"600036.SH": False, "000001.SZ": True,
                                                                "600519.SH": False}
    while clock.now().date() == date(2026, 7, 2):
        data.run_once()
    assert data.is_suspended("000001") is False  # trades again on 07-03


def test_miniqmt_security_status_says_suspended_while_it_is_recent(manager, service):  # noqa: F811
    manager.run_once()
    assert manager.is_suspended("600000.SH") is False  # status absent: trading
    service.suspend("600000.SH")  # 20 暂停交易至闭市
    manager.run_once()
    assert (manager.is_suspended("600000"), manager.is_suspended("000001.SZ")) == (True, False)
    manager.moment["now"] += timedelta(seconds=31)  # no poll since: the word is older than QUOTE_STALE_SECONDS
    assert manager.is_suspended("600000.SH") is False
    service.ticks["600000.SH"] = tick(13.9, when=manager.moment["now"], openInt=13)  # 13 连续交易: resumed
    manager.run_once()
    assert manager.is_suspended("600000.SH") is False
    service.suspend("600000.SH", status=17)  # 17 临时停牌, reported by a push
    service.push("600000.SH", service.ticks["600000.SH"])
    version = manager.hub.version
    service.push("000001.SZ", dict(service.ticks["000001.SZ"], time=service.ticks["600000.SH"]["time"]))
    manager.hub.wait_for_update(version, timeout=5)  # pushes are handled in order: the 600000 one came first
    assert manager.is_suspended("600000.SH") is True
