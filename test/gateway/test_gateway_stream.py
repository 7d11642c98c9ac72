"""The gateway over loopback around the paper account (issue 30): orders, queries and the resumable event stream,
under a connection cut mid-stream, lost answers, 500 ms latency, a gateway restart and a daemon restart — no fill
lost or doubled, never a second order for one remark."""
from __future__ import annotations

import threading

import pytest

from core.models import OrderRejected, OrderStatus
from daemon_support import wait_until
from gateway.client import ClientTimings
from gateway.event_journal import EventJournal
from gateway.server import GatewayOptions, GatewayService
from gateway_support import CODE, Recorder, Rig, buy
from persistence.storage import Database
from qmt.broker_guard import OutcomeUnknown


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path)
    yield rig
    rig.close()


def test_an_order_through_the_gateway_is_acknowledged_and_its_events_stream_back(rig):
    recorder = Recorder()
    broker = rig.client(listener=recorder)
    assert broker.is_connected() and broker.mode == "live" and broker.account.account_id == ""

    broker.place_order(buy("C1"))

    assert recorder.wait_for(lambda r: len(r.fills) == 1)
    fill = recorder.fills[0]
    assert (fill.client_id, fill.stock_code, fill.volume, fill.price) == ("C1", CODE, 100, 40.0)
    assert recorder.wait_for(lambda r: any(o.status is OrderStatus.FILLED for o in r.orders))
    assert [(p.stock_code, p.volume) for p in broker.query_positions()] == [(CODE, 100)]
    assert [o.client_id for o in broker.query_orders()] == ["C1"]
    assert [f.fill_id for f in broker.query_trades()] == [fill.fill_id]
    assert broker.query_asset().total_asset == rig.sim.query_asset().total_asset
    assert broker.link_state == "connected"


def test_the_acknowledged_events_leave_the_gateway_journal(rig):
    recorder = Recorder()
    rig.client(listener=recorder)
    for n in range(3):
        rig.fill_once(f"A{n}")
    assert recorder.wait_for(lambda r: len(r.fills) == 3)
    journal = rig.gateway.app.service.journal
    wait_until(lambda: journal.kept_count() == 0, 5, "the next poll's acknowledgement")


def test_each_reader_gets_every_event_and_events_go_only_when_all_have_them(rig):
    daemon, dashboard = Recorder(), Recorder()
    rig.client("daemon.db", listener=daemon)
    board = rig.client("dashboard.db", listener=dashboard, reader="dashboard")
    for n in range(4):
        rig.fill_once(f"M{n}")
    assert daemon.wait_for(lambda r: len(r.fills) == 4) and dashboard.wait_for(lambda r: len(r.fills) == 4)
    assert sorted(daemon.fill_ids()) == sorted(dashboard.fill_ids())
    journal = rig.gateway.app.service.journal
    wait_until(lambda: journal.kept_count() == 0, 5, "both readers' acknowledgements")
    board.close()
    rig.fill_once("M4")  # the dashboard is away: the event waits for it, the daemon has it at once
    assert daemon.wait_for(lambda r: len(r.fills) == 5)
    wait_until(lambda: journal.acked_by("daemon") == journal.last_seq, 5, "the daemon's acknowledgement")
    assert journal.kept_count() >= 1 and journal.pruned_seq < journal.last_seq  # kept for the dashboard
    later = Recorder()
    rig.client("dashboard.db", listener=later, reader="dashboard")
    assert later.wait_for(lambda r: [f.client_id for f in r.fills] == ["M4"])


def test_a_rejected_order_gives_the_back_ends_reason_and_a_resent_copy_the_same_answer(rig):
    proxy = rig.with_proxy()
    broker = rig.client(listener=Recorder())
    proxy.drop_answers = 1  # the refusal's answer is lost: the resent copy must get the same refusal
    with pytest.raises(OrderRejected) as refused:
        broker.place_order(buy("R1", volume=150))  # not a whole lot
    direct = rig.sim.query_orders()[0].reason
    assert refused.value.message == direct and refused.value.code != "DUPLICATE_CLIENT_ID"
    assert len([o for o in rig.sim.query_orders() if o.client_id == "R1"]) == 1


def test_a_second_call_with_a_known_remark_is_refused_as_a_duplicate(rig):
    broker = rig.client(listener=Recorder())
    broker.place_order(buy("R2"))
    with pytest.raises(OrderRejected) as refused:
        broker.place_order(buy("R2"))
    assert refused.value.code == "DUPLICATE_CLIENT_ID" and "不会重复发送" in refused.value.message
    assert [o.client_id for o in rig.sim.query_orders()] == ["R2"]


def test_an_order_whose_answer_is_lost_is_retried_by_remark_and_placed_once(rig):
    proxy = rig.with_proxy()
    recorder = Recorder()
    broker = rig.client(listener=recorder)
    proxy.drop_answers = 1  # the order reaches the gateway; its answer is cut off on the way back

    broker.place_order(buy("L1"))  # the retry within the deadline gets the first outcome

    assert [o.client_id for o in rig.sim.query_orders()] == ["L1"]
    assert recorder.wait_for(lambda r: len(r.fills) == 1)
    assert len(rig.sim.query_trades()) == 1


def test_an_order_without_any_answer_is_unknown_and_never_placed_twice(rig):
    proxy = rig.with_proxy()
    broker = rig.client(listener=Recorder(), timings=ClientTimings(0.6, 0.2, 0.02, 0.2))
    proxy.drop_answers = 1000

    with pytest.raises(OutcomeUnknown):
        broker.place_order(buy("U1"))

    proxy.drop_answers = 0
    with pytest.raises(OrderRejected):
        broker.place_order(buy("U1"))  # a repeat with the same remark: refused, never a second order
    assert [o.client_id for o in rig.sim.query_orders()] == ["U1"]
    assert len(rig.sim.query_trades()) == 1


def test_connection_cuts_mid_stream_lose_and_double_no_fill(rig):
    proxy = rig.with_proxy()
    recorder = Recorder()
    broker = rig.client(listener=recorder)
    for n in range(40):
        rig.fill_once(f"S{n}")
        if n % 5 == 0:
            proxy.cut()  # open long-polls and kept-alive connections die mid-stream

    assert recorder.wait_for(lambda r: len(r.fills) >= 40, timeout=15)
    ids = recorder.fill_ids()
    assert sorted(ids) == sorted(f.fill_id for f in rig.sim.query_trades())
    assert len(ids) == len(set(ids)) == 40
    assert broker.is_connected()


def test_500_ms_latency_each_way_still_orders_once_and_streams_everything(rig):
    proxy = rig.with_proxy()
    recorder = Recorder()
    broker = rig.client(listener=recorder, timings=ClientTimings(4.0, 0.5, 0.05, 0.5))
    proxy.latency = 0.5

    broker.place_order(buy("D1"))
    rig.fill_once("D2")

    assert recorder.wait_for(lambda r: len(r.fills) == 2, timeout=15)
    assert sorted(f.client_id for f in recorder.fills) == ["D1", "D2"]
    assert [o.client_id for o in rig.sim.query_orders()].count("D1") == 1


def test_a_gateway_restart_keeps_the_unacknowledged_events_and_the_order_outcomes(rig):
    proxy = rig.with_proxy()
    recorder = Recorder()
    broker = rig.client(listener=recorder)
    broker.place_order(buy("G1"))
    assert recorder.wait_for(lambda r: len(r.fills) == 1)
    broker.close()  # the daemon is away while these fills are made
    for n in range(5):
        rig.fill_once(f"G{n + 2}")

    rig.stop_gateway()
    rig.start_gateway()  # same data directory; the proxy now points at the new port

    again = Recorder()
    broker = rig.client(listener=again)
    assert again.wait_for(lambda r: len(r.fills) == 5)
    assert sorted(f.client_id for f in again.fills) == ["G2", "G3", "G4", "G5", "G6"]
    with pytest.raises(OrderRejected):
        broker.place_order(buy("G1"))  # the remark survived the restart: not a second order
    assert [o.client_id for o in rig.sim.query_orders()].count("G1") == 1
    assert not again.wait_for(lambda r: len(r.fills) > 5, timeout=0.5)


def test_a_daemon_restart_resumes_after_the_last_acknowledged_event(rig):
    first = Recorder()
    broker = rig.client(listener=first)
    for n in range(5):
        rig.fill_once(f"P{n}")
    assert first.wait_for(lambda r: len(r.fills) == 5)
    broker.close()
    for n in range(5, 8):
        rig.fill_once(f"P{n}")

    second = Recorder()
    rig.client(listener=second)  # same daemon database: same resume position

    assert second.wait_for(lambda r: len(r.fills) == 3)
    assert sorted(f.client_id for f in second.fills) == ["P5", "P6", "P7"]
    assert set(first.fill_ids()).isdisjoint(second.fill_ids())


def test_a_gateway_down_makes_the_link_reconnecting_and_its_return_resumes(rig):
    proxy = rig.with_proxy()
    recorder = Recorder()
    broker = rig.client(listener=recorder)
    upstream = proxy.upstream
    proxy.upstream = 1  # nothing listens there: the gateway is unreachable
    proxy.cut()
    wait_until(lambda: broker.link_state == "reconnecting", 5, "the lost gateway noticed")
    assert not broker.is_connected()
    assert any(a["code"] == "QMT_DISCONNECTED" for a in broker.anomalies())

    proxy.upstream = upstream
    rig.fill_once("B1")
    assert recorder.wait_for(lambda r: len(r.fills) == 1, timeout=5)
    assert broker.is_connected() and broker.reconnects == 1


def test_a_remark_the_gateway_began_sending_before_it_stopped_is_unknown_and_not_sent_again(tmp_path, rig):
    journal = rig.gateway.app.service.journal
    journal.begin_order("K1", {"client_id": "K1"}, attempt="first")  # as if the gateway died inside the send
    service = rig.gateway.app.service
    body = {"client_id": "K1", "stock_code": CODE, "side": "buy", "volume": 100, "price": 40.0}
    answer = service.place_order({**body, "attempt": "first"})  # the client's resend of that very call
    assert (answer["outcome"], answer["code"]) == ("unknown", "ORDER_OUTCOME_UNKNOWN")
    with pytest.raises(OrderRejected):
        service.place_order({**body, "attempt": "second"})
    assert rig.sim.query_orders() == []


def test_a_retry_arriving_while_the_first_attempt_is_still_sending_waits_for_its_outcome(tmp_path):
    release = threading.Event()
    placed = []

    class SlowBackend:
        mode = "live"

        def set_listener(self, listener):
            pass

        def is_connected(self):
            return True

        def place_order(self, request):
            placed.append(request.client_id)
            release.wait(5)

    service = GatewayService(SlowBackend(), EventJournal(Database(tmp_path / "g.db")), GatewayOptions(order_wait=5))
    body = {"client_id": "W1", "stock_code": CODE, "side": "buy", "volume": 100, "price": 40.0, "attempt": "a1"}
    answers = []
    first = threading.Thread(target=lambda: answers.append(service.place_order(body)))
    first.start()
    second = threading.Thread(target=lambda: answers.append(service.place_order(body)))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert placed == ["W1"]
    assert sorted(a["outcome"] for a in answers) == ["accepted", "accepted"]
    assert sorted(a["replayed"] for a in answers) == [False, True]


def test_the_daemon_selects_the_gateway_with_broker_remote(rig, tmp_path):
    from brokers.select import connect_live_broker
    from core.models import BrokerUnavailable
    from gateway.client import RemoteBroker
    from gateway_support import TOKEN
    from trading_support import make_settings

    daemon_dir = tmp_path / "daemon"
    daemon_dir.mkdir()
    unset = make_settings(daemon_dir, ENABLE_SIMULATION_MODE=False, BROKER="remote")
    with pytest.raises(BrokerUnavailable) as missing:
        connect_live_broker(unset, daemon_dir)
    assert "BROKER_URL" in missing.value.message and "BROKER_TOKEN" in missing.value.message

    settings = make_settings(daemon_dir, ENABLE_SIMULATION_MODE=False, BROKER="remote",
                             BROKER_URL=f"http://127.0.0.1:{rig.gateway.port}", BROKER_TOKEN=TOKEN)
    broker = connect_live_broker(settings, daemon_dir)
    try:
        assert isinstance(broker, RemoteBroker) and broker.is_connected() and broker.reader == "daemon"
        assert broker.query_asset().cash == rig.sim.query_asset().cash
    finally:
        broker.close()
