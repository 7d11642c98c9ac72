"""Who may use the gateway (issue 30): signed requests only, no replays, a time window, an allow-list of client
addresses, a read-only mode that refuses orders, answers a client can verify, and a token that never reaches a log."""
from __future__ import annotations

import http.client
import logging
import time

import pytest

from core.models import BrokerUnavailable, OrderRejected
from gateway import wire
from gateway.auth import (HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, AuthPolicy, AuthRefused,
                          RequestAuthenticator, signed_headers)
from gateway_support import TOKEN, Recorder, Rig, buy


@pytest.fixture
def rig(tmp_path):
    rig = Rig(tmp_path)
    yield rig
    rig.close()


def raw(port: int, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, wire.loads(response.read())
    finally:
        conn.close()


def test_a_wrong_token_is_refused_and_the_client_says_why(rig):
    status, answer = raw(rig.gateway.port, "GET", "/hello",
                         signed_headers("not-the-token-0000000000", "GET", "/hello", b"", time.time()))
    assert (status, answer["code"]) == (401, "AUTH_BAD_SIGNATURE")
    broker = rig.client(token="not-the-token-0000000000", connect=False)
    with pytest.raises(BrokerUnavailable) as refused:
        broker.connect()
    assert refused.value.code == "AUTH_BAD_SIGNATURE" and "签名错误" in refused.value.message


def test_an_unsigned_request_is_refused(rig):
    status, answer = raw(rig.gateway.port, "GET", "/positions", {})
    assert (status, answer["code"]) == (401, "AUTH_MISSING")


def test_a_replayed_request_is_refused_even_with_a_valid_signature(rig):
    body = wire.dumps(wire.request_to_json(buy("RP1")))
    headers = signed_headers(TOKEN, "POST", "/orders", body, time.time())
    first = raw(rig.gateway.port, "POST", "/orders", headers, body)
    second = raw(rig.gateway.port, "POST", "/orders", headers, body)
    assert first[0] == 200 and first[1]["outcome"] == "accepted"
    assert (second[0], second[1]["code"]) == (401, "AUTH_REPLAY")
    assert [o.client_id for o in rig.sim.query_orders()] == ["RP1"]


def test_an_old_timestamp_is_refused(rig):
    headers = signed_headers(TOKEN, "GET", "/positions", b"", time.time() - 31)  # the window is 30 s
    status, answer = raw(rig.gateway.port, "GET", "/positions", headers)
    assert (status, answer["code"]) == (401, "AUTH_STALE")
    assert "30 秒" in answer["message"]


def test_a_tampered_body_fails_the_signature(rig):
    body = wire.dumps(wire.request_to_json(buy("T1", volume=100)))
    headers = signed_headers(TOKEN, "POST", "/orders", body, time.time())
    tampered = body.replace(b'"volume":100', b'"volume":900')
    status, answer = raw(rig.gateway.port, "POST", "/orders", headers, tampered)
    assert (status, answer["code"]) == (401, "AUTH_BAD_SIGNATURE")
    assert rig.sim.query_orders() == []


def test_an_address_outside_the_allow_list_is_refused(tmp_path):
    rig = Rig(tmp_path, settings_overrides={"GATEWAY_ALLOWED_CLIENTS": ["10.1.2.3", "192.168.0.0/16"]})
    try:
        broker = rig.client(connect=False)
        with pytest.raises(BrokerUnavailable) as refused:
            broker.connect()
        assert refused.value.code == "ADDRESS_NOT_ALLOWED" and "127.0.0.1" in refused.value.message
    finally:
        rig.close()


def test_read_only_mode_serves_queries_and_events_but_refuses_orders_and_cancels(tmp_path):
    rig = Rig(tmp_path, settings_overrides={"GATEWAY_READ_ONLY": True})
    try:
        recorder = Recorder()
        broker = rig.client(listener=recorder)
        rig.fill_once("RO1")  # someone else's order on the account: a dashboard still sees it
        assert recorder.wait_for(lambda r: len(r.fills) == 1)
        assert [p.volume for p in broker.query_positions()] == [100]
        with pytest.raises(OrderRejected) as refused:
            broker.place_order(buy("RO2"))
        assert refused.value.code == "READ_ONLY" and "只读" in refused.value.message
        with pytest.raises(BrokerUnavailable) as cancel_refused:
            broker.cancel_order("RO1")
        assert cancel_refused.value.code == "READ_ONLY"
        assert [o.client_id for o in rig.sim.query_orders()] == ["RO1"]
    finally:
        rig.close()


def test_the_token_never_reaches_a_log_line(rig, caplog):
    caplog.set_level(logging.DEBUG)
    recorder = Recorder()
    broker = rig.client(listener=recorder)
    broker.place_order(buy("N1"))
    assert recorder.wait_for(lambda r: len(r.fills) == 1)
    with pytest.raises(BrokerUnavailable):
        rig.client(token="wrong-token-wrong-token-000", connect=False).connect()
    assert caplog.records
    assert not any(TOKEN in record.getMessage() or "wrong-token-wrong-token-000" in record.getMessage()
                   for record in caplog.records)


# ---- the authenticator alone, on a clock the test moves
class Wall:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def signed(method: str, target: str, at: float, token: str = TOKEN, body: bytes = b"") -> dict:
    return signed_headers(token, method, target, body, at)


def test_the_time_window_is_symmetric_and_inclusive_at_30_seconds():
    wall = Wall()
    auth = RequestAuthenticator(AuthPolicy.build(TOKEN, ["127.0.0.1"], 30), wall)
    assert auth.check("127.0.0.1", "GET", "/a", signed("GET", "/a", wall.now - 30), b"")
    assert auth.check("127.0.0.1", "GET", "/a", signed("GET", "/a", wall.now + 30), b"")
    for skew in (-30.01, 30.01):
        with pytest.raises(AuthRefused) as refused:
            auth.check("127.0.0.1", "GET", "/a", signed("GET", "/a", wall.now + skew), b"")
        assert refused.value.code == "AUTH_STALE"


def test_a_nonce_is_refused_as_long_as_its_timestamp_could_pass():
    wall = Wall()
    auth = RequestAuthenticator(AuthPolicy.build(TOKEN, ["127.0.0.1"], 30), wall)
    headers = signed("GET", "/a", wall.now)
    auth.check("127.0.0.1", "GET", "/a", headers, b"")
    wall.now += 29
    with pytest.raises(AuthRefused) as refused:
        auth.check("127.0.0.1", "GET", "/a", headers, b"")
    assert refused.value.code == "AUTH_REPLAY"
    wall.now += 2  # 31 s after signing: the copy is now simply too old
    with pytest.raises(AuthRefused) as refused:
        auth.check("127.0.0.1", "GET", "/a", headers, b"")
    assert refused.value.code == "AUTH_STALE"


def test_a_forged_request_does_not_use_up_a_nonce():
    wall = Wall()
    auth = RequestAuthenticator(AuthPolicy.build(TOKEN, ["127.0.0.1"], 30), wall)
    genuine = signed("GET", "/a", wall.now)
    forged = dict(genuine, **{HEADER_SIGNATURE: "0" * 64})
    with pytest.raises(AuthRefused):
        auth.check("127.0.0.1", "GET", "/a", forged, b"")
    assert auth.check("127.0.0.1", "GET", "/a", genuine, b"") == genuine[HEADER_NONCE]


@pytest.mark.parametrize("address, allowed", [
    ("127.0.0.1", True), ("192.168.1.77", True), ("192.168.2.1", False), ("::ffff:127.0.0.1", True),
    ("::1", False), ("not-an-ip", False),
])
def test_the_allow_list_takes_addresses_and_networks(address, allowed):
    policy = AuthPolicy.build(TOKEN, ["127.0.0.1", "192.168.1.0/24"], 30)
    assert policy.address_allowed(address) is allowed


def test_a_policy_needs_a_token():
    with pytest.raises(ValueError):
        AuthPolicy.build("", ["127.0.0.1"], 30)


def test_the_timestamp_header_must_be_a_number():
    wall = Wall()
    auth = RequestAuthenticator(AuthPolicy.build(TOKEN, ["127.0.0.1"], 30), wall)
    headers = dict(signed("GET", "/a", wall.now), **{HEADER_TIMESTAMP: "yesterday"})
    with pytest.raises(AuthRefused) as refused:
        auth.check("127.0.0.1", "GET", "/a", headers, b"")
    assert refused.value.code == "AUTH_BAD_TIMESTAMP"
