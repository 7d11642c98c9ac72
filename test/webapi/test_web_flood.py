"""Issue 25 item 14 against the real waitress server: 1,100 idle or slow loopback connections (more than
WEB_CONNECTION_LIMIT) leave the operator's health, pause and emergency stop answering within 1 s; a connection
that trickles a request slower than WEB_REQUEST_READ_TIMEOUT is closed."""
from __future__ import annotations

import resource
import socket
import time

import pytest

from web_test_support import Client, build_system, start_server

FLOOD = 1100
SLOW = 300  # of which send half a request and stop
ANSWER_WITHIN = 1.0


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def wait_until(condition, deadline_seconds: float) -> bool:
    """Poll `condition` (the server's own counters, read from another thread) until true or the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def open_flood(port: int) -> list[socket.socket]:
    sockets = []
    for index in range(FLOOD):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if index < SLOW:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sockets.append(sock)
    return sockets


def timed(call) -> tuple[float, object]:
    started = time.monotonic()
    reply = call()
    return time.monotonic() - started, reply


def test_1100_idle_and_slow_connections_leave_the_operator_answering_within_a_second(tmp_path):
    raise_fd_limit(4 * FLOOD)
    system = build_system(tmp_path)  # default limits: 1,000 connections, 30 s idle, 10 s to read a request
    system.watchdog.start()
    server = start_server(system)
    guarded = server._server
    flood: list[socket.socket] = []
    try:
        flood = open_flood(server.port)
        # every flood connection has been taken from the backlog; the table is full and made room
        assert wait_until(lambda: len(guarded.active_channels) + guarded.evicted >= FLOOD, 10.0)
        assert guarded.evicted >= FLOOD - system.settings.get("WEB_CONNECTION_LIMIT")
        health_seconds, health = timed(lambda: Client(server.port, timeout=5).get("/api/health"))
        pause_seconds, pause = timed(lambda: Client(server.port, timeout=5).post("/api/actions/pause"))
        stop_seconds, stop = timed(lambda: Client(server.port, timeout=5).post("/api/actions/emergency_stop"))
        assert (health.status, pause.status, stop.status) == (200, 200, 200)
        assert max(health_seconds, pause_seconds, stop_seconds) < ANSWER_WITHIN
        assert system.trading_state.snapshot()["state"] == "halted"
        refused = Client(server.port, token=None, timeout=5).post("/api/actions/emergency_stop")
        assert refused.status == 401  # the reserve is room to connect, not a way around the token
    finally:
        for sock in flood:
            sock.close()
        server.stop(2)
        system.close()


def read_response_head(sock: socket.socket) -> bytes:
    """The head of one response, its body read to the end too (Content-Length), so that nothing of this response
    is left in the socket for a later read to mistake for a sign of life."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n"


def trickle_until_closed(sock: socket.socket, piece: bytes, limit: float) -> float:
    """Send `piece` every 0.2 s until the server closes the connection; seconds it took (or `limit`)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            sock.sendall(piece)
            sock.settimeout(0.2)
            if sock.recv(1) == b"":
                break
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            break
    return time.monotonic() - started


def test_requests_trickled_slower_than_the_read_deadline_are_closed_and_kept_alive_ones_are_not(tmp_path):
    system = build_system(tmp_path, {"WEB_REQUEST_READ_TIMEOUT": 1.0})
    server = start_server(system)
    port = server.port
    kept = socket.create_connection(("127.0.0.1", port), timeout=5)
    slow = socket.create_connection(("127.0.0.1", port), timeout=5)
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)
    blank = None
    try:
        kept.sendall(f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert read_response_head(kept).startswith(b"HTTP/1.1 200")
        slow.sendall(b"GET /api/health HTTP/1.1\r\n")
        assert trickle_until_closed(slow, b"X", 5.0) < 3.0  # one header byte every 0.2 s: never idle, still closed
        blank = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert trickle_until_closed(blank, b"\r\n", 5.0) < 3.0  # blank lines are no request either
        silent.settimeout(3.0)
        assert silent.recv(1) == b""  # a connection that never sends a request is closed as well
        kept.settimeout(0.05)
        with pytest.raises(socket.timeout):
            kept.recv(1)  # kept alive between requests: only the idle timeout (30 s) applies to it
        kept.sendall(f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        kept.settimeout(5)
        assert read_response_head(kept).startswith(b"HTTP/1.1 200")
        assert server._server.read_deadline_closed == 3
    finally:
        for sock in (kept, slow, blank, silent):
            if sock is not None:
                sock.close()
        server.stop(2)
        system.close()
