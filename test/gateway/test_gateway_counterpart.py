"""The real `qmt_gateway` process (gateway/cli.py) around the real easy_qmt_trader and xttrader.py on the simulated
miniQMT (test/gateway/gateway_with_counterpart.py): the daemon's RemoteBroker orders, gets the fills and quotes, a
lost answer is never a second order at the counter, and a miniQMT restart is reconnected by the gateway itself while
the daemon sees the link go and come back."""
from __future__ import annotations

import pytest

from daemon_support import wait_until
from core.models import OrderRejected
from gateway.client import ClientTimings, GatewayCursor, RemoteBroker, Transport
from gateway_support import CODE, TOKEN, FaultProxy, GatewayProcess, Recorder, buy
from persistence.storage import Database

TIMINGS = ClientTimings(request_timeout=3.0, probe_interval=0.3, reconnect_first_delay=0.05, reconnect_max_delay=0.3)
START_SECONDS = 60.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    process = GatewayProcess(tmp_path_factory.mktemp("gateway-process"))
    try:
        process.wait_started(START_SECONDS)
        yield process
    finally:
        process.stop()


@pytest.fixture
def connect(gateway, tmp_path):
    made = []

    def make(port=None, listener=None) -> RemoteBroker:
        db = Database(tmp_path / f"daemon-{len(made)}.db")
        broker = RemoteBroker(Transport(f"http://127.0.0.1:{port or gateway.port}", TOKEN), GatewayCursor(db), TIMINGS)
        broker.owns_db, broker._db = True, db
        broker.set_listener(listener or Recorder())
        broker.connect()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


def remarks_at_the_counter(gateway) -> list[str]:
    return [o["remark"] for o in gateway.counterpart.book()["orders"]]


def test_an_order_its_fill_and_the_quotes_over_the_real_miniqmt_path(gateway, connect):
    recorder = Recorder()
    broker = connect(listener=recorder)
    assert broker.account.account_id == "8800123456" and broker.account.masked_id == "88******56"

    broker.place_order(buy("Q1", price=40.2))
    assert recorder.wait_for(lambda r: any(o.order_id for o in r.orders if o.client_id == "Q1"))
    gateway.counterpart.send("fill", code=CODE)

    assert recorder.wait_for(lambda r: [f.client_id for f in r.fills] == ["Q1"])
    assert (recorder.fills[0].volume, recorder.fills[0].price) == (100, 40.2)
    assert {p.stock_code: p.volume for p in broker.query_positions()}.get(CODE) == 100
    broker.subscribe_quotes([CODE])
    quotes = wait_until(lambda: broker.latest_quotes([CODE]), 10, "a quote through the gateway")
    assert quotes[0].code == CODE and quotes[0].source == "xtquant" and quotes[0].price > 0


def test_a_lost_answer_is_one_order_at_the_counter(gateway, connect):
    proxy = FaultProxy(gateway.port)
    try:
        broker = connect(port=proxy.port)
        proxy.drop_answers = 1
        broker.place_order(buy("Q2", price=40.0))
        assert remarks_at_the_counter(gateway).count("Q2") == 1
        with pytest.raises(OrderRejected):
            broker.place_order(buy("Q2", price=40.0))  # a repeat of the remark: refused, not sent
        assert remarks_at_the_counter(gateway).count("Q2") == 1
    finally:
        proxy.close()


def test_a_miniqmt_restart_is_reconnected_by_the_gateway_and_seen_by_the_daemon(gateway, connect):
    broker = connect()
    assert broker.link_state == "connected"
    gateway.counterpart.send("restart")

    wait_until(lambda: any(a["code"] == "QMT_DISCONNECTED" and a["message"].startswith("（网关）")
                           for a in broker.anomalies()), 15, "the gateway's QMT_DISCONNECTED anomaly")
    wait_until(lambda: broker.is_connected(), 20, "the gateway's own reconnect to miniQMT")
    broker.place_order(buy("Q3", price=40.0))
    assert "Q3" in remarks_at_the_counter(gateway)
