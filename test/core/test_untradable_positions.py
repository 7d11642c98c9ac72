"""Issue 28: a position the daemon cannot trade by rules (an unknown instrument in a live account, e.g. a reverse
repo 204001.SH) is shown with its reason, never dropped, never crashes a broker sync, and the rules, the monitor
and the protection sentinel leave it alone."""
from datetime import datetime

import pytest

import strategy
from core.models import BrokerPosition, Position, Quote
from protection.sentinel import Facts, ProtectionState, judge_position
from web_test_support import Client, build_system, ok, start_server

REPO = "204001.SH"


@pytest.fixture
def system(tmp_path):
    system = build_system(tmp_path)
    yield system
    system.close()


def test_unknown_instrument_is_shown_with_its_reason_and_not_acted_on(system):
    held = BrokerPosition(REPO, volume=1000, available=1000, cost_price=100.0, market_value=100_000.0,
                          stock_name="GC001")
    system.positions.refresh_from_broker([held])  # a live account's sync: no crash, kept
    position = system.positions.get(REPO)
    assert (position.volume, position.available, position.stock_name) == (1000, 1000, "GC001")
    # a price far below its cost: a stock would hit its stop-loss; this one is left alone
    system.data.hub.publish(Quote(code=REPO, price=1.5, prev_close=1.6, time=system.clock.now(), source="test"))
    assert system.monitor.run_once() == []
    assert system.signals.pending() == []
    assert strategy.trigger_prices(position, strategy.RuleParams.from_settings(system.settings)) is strategy.NO_TRIGGERS
    system.step()  # the data thread's watchlist skips the code (reported once), the monitor skips the position
    assert system.positions.get(REPO).volume == 1000
    server = start_server(system)
    try:
        client = Client(server.port)
        rows = ok(client.get("/api/positions"))["positions"]
        [row] = [r for r in rows if r["stock_code"] == REPO]
        assert row["untradable_reason"].startswith("上海国债逆回购（204001.SH）不在本程序按规则交易的品种内")
        assert row["trigger_prices"]["stop_loss_price"] is None and row["next_add"] is None
        assert (row["volume"], row["available"], row["stock_name"]) == (1000, 1000, "GC001")
        assert ok(client.get(f"/api/positions/{REPO}"))["untradable_reason"] == row["untradable_reason"]
    finally:
        server.stop()


def test_tradable_position_has_an_empty_reason_and_its_triggers(system):
    system.positions.refresh_from_broker([BrokerPosition("600036.SH", 1000, 1000, 10.0, 10_000.0)])
    server = start_server(system)
    try:
        row = ok(Client(server.port).get("/api/positions/600036.SH"))
        assert row["untradable_reason"] == "" and row["trigger_prices"]["stop_loss_price"] == 9.05
    finally:
        server.stop()


def test_sentinel_explains_instead_of_alarming():
    position = Position(stock_code=REPO, volume=1000, available=1000, cost_price=100.0)
    now = datetime(2026, 12, 8, 10, 0)
    facts = Facts(now=now, session="continuous", feed_now={}, stale_seconds=10.0, positions=[position], quotes={},
                  open_sells={}, params={})
    judgement = judge_position(position, facts)
    assert judgement.state is ProtectionState.EXPLAINED and "上海国债逆回购" in judgement.reason
