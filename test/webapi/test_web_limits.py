"""Web server limits (issue 21 item 4) against the real waitress server: 200 idle connections (and 50 that
sent half a request) do not lock out /api/health or the emergency stop; idle connections are closed after
WEB_IDLE_TIMEOUT; one client cannot take every live-stream slot; the positions snapshot carries an ETag and
answers 304 while unchanged; waitress's per-request queue warning becomes one rate-limited line."""
from __future__ import annotations

import logging
import socket
import time

from webapi.limits import QueueDepthFilter, StreamSlots
from web_test_support import Client, SseClient, build_system, start_server


def test_200_idle_connections_leave_health_and_emergency_stop_answering(tmp_path):
    system = build_system(tmp_path, {"WEB_IDLE_TIMEOUT": 5.0})
    system.watchdog.start()
    server = start_server(system)
    idle: list[socket.socket] = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        for _ in range(50):  # slow clients: half a request, never finished
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            idle.append(sock)
        client = Client(server.port, timeout=5)
        started = time.monotonic()
        health = client.get("/api/health")
        assert health.status == 200 and time.monotonic() - started < 1.0
        started = time.monotonic()
        stop = client.post("/api/actions/emergency_stop")
        assert stop.status == 200 and time.monotonic() - started < 1.0
        assert system.trading_state.snapshot()["state"] == "halted"
        # idle ones are closed after WEB_IDLE_TIMEOUT (cleanup runs every WEB_IDLE_TIMEOUT / 2)
        idle[0].settimeout(15)
        assert idle[0].recv(1) == b""
    finally:
        for sock in idle:
            sock.close()
        server.stop(2)
        system.close()


def test_one_client_cannot_take_every_stream_slot(tmp_path):
    system = build_system(tmp_path, {"WEB_SSE_PER_CLIENT": 2})
    server = start_server(system, threads=12)  # 8 stream slots in all
    streams = []
    try:
        streams = [SseClient(server.port), SseClient(server.port)]
        assert all(s.status == 200 for s in streams)
        refused = Client(server.port).get("/api/positions/stream")
        assert refused.status == 429 and "同一客户端最多 2 个" in refused.json["message"]
        assert Client(server.port).get("/api/health").status == 200
    finally:
        for s in streams:
            s.close()
        server.stop(2)
        system.close()


def end_serving_loop(server) -> None:
    """Fault: waitress's loop ends without WebServer.stop() (its socket map emptied in its own thread)."""
    raw = server._server

    def close_everything() -> None:
        for channel in list(raw._map.values()):
            if channel is not raw.trigger:
                channel.handle_close()
        raw.trigger.close()
    raw.trigger.pull_trigger(close_everything)


def test_a_web_server_whose_loop_ended_serves_again_on_the_same_port_until_stopped(tmp_path):
    system = build_system(tmp_path)
    server = start_server(system)
    port = server.port
    try:
        assert Client(port, timeout=5).get("/api/health").status == 200
        end_serving_loop(server)
        deadline = time.monotonic() + 5
        while server.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not server.is_alive()
        server.keep_serving()  # what the watchdog's "web" worker calls every THREAD_CHECK_INTERVAL
        assert server.is_alive() and server.port == port
        assert Client(port, timeout=5).get("/api/health").status == 200
        server.keep_serving()  # alive: nothing to do
        server.stop(2)
        server.keep_serving()  # a deliberate stop is not undone
        assert not server.is_alive()
    finally:
        server.stop(2)
        system.close()


def test_stream_slots_count_per_client_and_in_total():
    slots = StreamSlots(3, lambda: 2)
    assert slots.acquire("a") == "" and slots.acquire("a") == ""
    assert "同一客户端最多 2 个" in slots.acquire("a")
    assert slots.acquire("b") == ""
    assert "已达上限" in slots.acquire("c")
    slots.release("a")
    assert slots.acquire("c") == ""


def test_positions_snapshot_has_an_etag_and_answers_304_while_unchanged(tmp_path):
    system = build_system(tmp_path)
    system.executor.buy_stock("600036.SH", amount=30000)
    server = start_server(system)
    try:
        client = Client(server.port)
        first = client.get("/api/positions")
        etag = first.headers["etag"]
        assert first.status == 200 and etag and first.headers["cache-control"] == "no-cache"
        again = client.get("/api/positions", headers={"If-None-Match": etag})
        assert again.status == 304 and again.body == b"" and again.headers["etag"] == etag
        system.step()  # a new quote moves the positions: a new version
        changed = client.get("/api/positions", headers={"If-None-Match": etag})
        assert changed.status == 200 and changed.headers["etag"] != etag
        assert changed.json["data"]["data_version"] == system.positions.data_version
    finally:
        server.stop(2)
        system.close()


def test_queue_depth_warnings_become_one_line_per_interval():
    now = [0.0]
    filt = QueueDepthFilter(60.0, now=lambda: now[0])
    logger = logging.getLogger("test.queue")

    def record(depth):
        return logger.makeRecord("waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is %d",
                                 (depth,), None)
    passed = []
    for i in range(14691):
        now[0] = i * 0.004  # 14,691 in one minute
        rec = record(1 + i % 7)
        if filt.filter(rec):
            passed.append(rec.getMessage())
    assert len(passed) == 1
    assert passed[0].startswith("Web 请求排队：1 次请求需等待空闲线程")
    now[0] = 61.0
    rec = record(3)
    assert filt.filter(rec) and rec.getMessage() == "Web 请求排队：14691 次请求需等待空闲线程（最深 7 个），60 秒内只记录一次"
