"""The gateway's quote feed (issue 30): the newest quote per code wins on the gateway, and the daemon's
RemoteQuoteSource hands each new quote on once, never an older one after a newer one, subscribing what it watches."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from core.models import Quote
from gateway.client import Transport
from gateway.quote_source import RemoteQuoteSource
from gateway_support import CODE, TOKEN, Rig

OTHER = "000001.SZ"
T0 = datetime(2026, 12, 8, 10, 0, 0)


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path)
    yield rig
    rig.close()


def quote(code: str, price: float, seconds: int) -> Quote:
    return Quote(code=code, price=price, prev_close=40.0, time=T0 + timedelta(seconds=seconds), source="xtquant",
                 name="招商银行" if code == CODE else "平安银行")


def source_for(rig: Rig, port: int = 0) -> RemoteQuoteSource:
    source = RemoteQuoteSource(rig.settings, rig.clock, Transport(f"http://127.0.0.1:{port or rig.gateway.port}", TOKEN))
    source.start(lambda q: True)
    return source


def test_each_new_quote_is_handed_on_once_and_an_older_one_never(rig):
    service = rig.gateway.app.service
    source = source_for(rig)
    source.set_watchlist([CODE, OTHER])
    assert source.run_once().quotes == []
    assert service.quotes.wanted == {CODE, OTHER}  # the subscription reached the gateway's feed

    service.publish_quote(quote(CODE, 40.10, 1))
    service.publish_quote(quote(CODE, 40.20, 2))  # the newest wins: 40.10 is never seen
    service.publish_quote(quote(OTHER, 12.00, 1))
    first = source.run_once().quotes
    assert sorted((q.code, q.price) for q in first) == [(OTHER, 12.00), (CODE, 40.20)]
    assert source.run_once().quotes == []  # nothing new, nothing repeated

    assert service.publish_quote(quote(CODE, 39.00, 1)) is False  # late and older: dropped on the gateway
    assert source.run_once().quotes == []
    service.publish_quote(quote(CODE, 40.30, 3))
    assert [(q.code, q.price) for q in source.run_once().quotes] == [(CODE, 40.30)]
    assert source.stock_name(CODE) == "招商银行"
    source.close()


def test_a_lost_gateway_is_an_error_of_the_step_and_the_feed_resumes(rig):
    proxy = rig.with_proxy()
    source = source_for(rig, proxy.port)
    source.set_watchlist([CODE])
    rig.gateway.app.service.publish_quote(quote(CODE, 40.10, 1))
    assert [q.price for q in source.run_once().quotes] == [40.10]

    upstream, proxy.upstream = proxy.upstream, 1  # nothing listens there
    proxy.cut()
    step = source.run_once()
    assert step.quotes == [] and not source.connected and "网关行情不可用" in step.errors[0]

    proxy.upstream = upstream
    rig.gateway.app.service.publish_quote(quote(CODE, 40.20, 2))
    assert [q.price for q in source.run_once().quotes] == [40.20] and source.connected
    source.close()


def test_a_live_daemon_on_the_remote_broker_takes_its_quotes_from_the_gateway(rig, tmp_path):
    from data_manager import build_data_manager
    from trading_support import make_settings

    daemon_dir = tmp_path / "daemon"
    daemon_dir.mkdir()
    settings = make_settings(daemon_dir, ENABLE_SIMULATION_MODE=False, BROKER="remote",
                             BROKER_URL=f"http://127.0.0.1:{rig.gateway.port}", BROKER_TOKEN=TOKEN)
    manager, clock = build_data_manager(settings, daemon_dir)
    try:
        assert (manager.source_name, clock.is_replay) == ("remote", False)
        assert manager.status()["connected"] is True
    finally:
        manager.close()
        manager.bar_store.db.close()
