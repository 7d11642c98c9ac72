"""Loopback receivers for the notification tests and benchmark: a JSON webhook (records each body with its
arrival time), a receiver that accepts connections and never answers (a hung service), and an aiosmtpd
SMTP server that keeps every message."""
from __future__ import annotations

import json
import socket
import threading
import time
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


class WebhookReceiver:
    def __init__(self, status: int = 200, port: int = 0):
        self.bodies: list[dict] = []
        self.arrivals: list[float] = []
        self.status = status
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._cond:
                    receiver.bodies.append(body)
                    receiver.arrivals.append(time.perf_counter())
                    receiver._cond.notify_all()
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self._server.server_port}/hook"

    def wait_for(self, count: int, timeout: float) -> list[dict]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.bodies) >= count, timeout)
            return list(self.bodies)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HangingReceiver:
    """Accepts TCP connections and never answers (a service that hangs)."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self._sock.close()


class SmtpReceiver:
    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self._cond = threading.Condition()
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd naming)
                with receiver._cond:
                    receiver.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                              message_from_bytes(envelope.content)))
                    receiver._cond.notify_all()
                return "250 OK"

        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def url(self, to: str = "owner@example.com", sender: str = "bot@example.com") -> str:
        return f"mailto://127.0.0.1:{self.port}?from={sender}&to={to}"

    def wait_for(self, count: int, timeout: float) -> list:
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def close(self) -> None:
        self._controller.stop()


def subject(message) -> str:
    return str(make_header(decode_header(message["Subject"])))


def text_of(message) -> str:
    parts = message.walk() if message.is_multipart() else [message]
    for part in parts:
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    return ""


def announcements(bodies: list[dict]) -> list[tuple[str, str]]:
    """(title label, first line) of every message a webhook received, a digest's lines counted one by one: what
    the owner was told, whether a burst window put it in a message of its own or in a digest."""
    told = []
    for body in bodies:
        if body["title"].startswith("miniQMT【汇总"):
            for line in body["message"].splitlines():
                if not line.startswith(" "):  # a continuation line of the message above
                    label, _, text = line.partition("【")[2].partition("】 ")
                    told.append((label, text))
        else:
            told.append((body["title"].partition("【")[2].partition("】")[0], body["message"].splitlines()[0]))
    return told


def first(items: list, predicate) -> Optional[object]:
    return next((item for item in items if predicate(item)), None)
