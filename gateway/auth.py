"""Who may talk to the gateway (issue 30): HMAC-SHA256 request signing with a shared token, a time window and a
nonce cache against replays, an allow-list of client addresses; and the signing of answers, so a client never
acts on an event or an order outcome someone on the path made up. Chosen over mutual TLS because it needs only the
standard library and one secret on each side (no certificate authority to run on a Windows box); it authenticates
and protects integrity, not confidentiality — across an untrusted network run it inside a VPN or an SSH tunnel.

Canonical request: METHOD \\n PATH?QUERY \\n TIMESTAMP \\n NONCE \\n SHA256(BODY); answer: "answer" \\n NONCE \\n
STATUS \\n SHA256(BODY). The token itself never travels and is never logged."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

HEADER_TIMESTAMP = "X-Gateway-Timestamp"
HEADER_NONCE = "X-Gateway-Nonce"
HEADER_SIGNATURE = "X-Gateway-Signature"
NONCE_MAX_LENGTH = 64


def request_signature(token: str, method: str, target: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = "\n".join((method.upper(), target, timestamp, nonce, hashlib.sha256(body).hexdigest()))
    return hmac.new(token.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def answer_signature(token: str, nonce: str, status: int, body: bytes) -> str:
    message = "\n".join(("answer", nonce, str(status), hashlib.sha256(body).hexdigest()))
    return hmac.new(token.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_headers(token: str, method: str, target: str, body: bytes, now: float) -> dict[str, str]:
    """The three headers a client adds to one request (a fresh nonce each time, so a resend is a new request)."""
    timestamp, nonce = f"{now:.3f}", secrets.token_hex(16)
    return {HEADER_TIMESTAMP: timestamp, HEADER_NONCE: nonce,
            HEADER_SIGNATURE: request_signature(token, method, target, timestamp, nonce, body)}


def answer_is_genuine(token: str, nonce: str, status: int, body: bytes, signature: Optional[str]) -> bool:
    return bool(signature) and hmac.compare_digest(answer_signature(token, nonce, status, body), signature)


class AuthRefused(Exception):
    """A request the gateway refuses: HTTP status, machine code and a Chinese message (no detail that helps guessing)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class AuthPolicy:
    token: str
    allowed: tuple  # ipaddress networks
    window: float  # seconds a timestamp may differ from the gateway's clock, either way

    @classmethod
    def build(cls, token: str, allowed_clients: Iterable[str], window: float) -> "AuthPolicy":
        """`allowed_clients`: addresses or networks ("127.0.0.1", "192.168.1.0/24"). Raises ValueError."""
        if not token:
            raise ValueError("网关令牌为空")
        networks = tuple(ipaddress.ip_network(str(item).strip(), strict=False) for item in allowed_clients)
        return cls(token, networks, float(window))

    def address_allowed(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allowed)


class RequestAuthenticator:
    """Checks one request: address, timestamp window, signature (constant time), then the nonce (recorded only for a
    genuine request, so strangers cannot fill the cache). Thread-safe."""

    def __init__(self, policy: AuthPolicy, wall: Callable[[], float] = time.time):
        self.policy = policy
        self._wall = wall
        self._lock = threading.Lock()
        self._nonces: dict[str, float] = {}  # nonce -> wall time after which it may be forgotten
        self._next_prune = 0.0

    def check(self, address: str, method: str, target: str, headers: dict[str, str], body: bytes) -> str:
        """Returns the request's nonce (the answer is signed with it); raises AuthRefused."""
        if not self.policy.address_allowed(address):
            raise AuthRefused(403, "ADDRESS_NOT_ALLOWED", f"客户端地址 {address} 不在网关的允许列表中")
        timestamp, nonce = headers.get(HEADER_TIMESTAMP, ""), headers.get(HEADER_NONCE, "")
        signature = headers.get(HEADER_SIGNATURE, "")
        if not (timestamp and nonce and signature) or len(nonce) > NONCE_MAX_LENGTH:
            raise AuthRefused(401, "AUTH_MISSING", "请求未签名：缺少时间戳、随机数或签名")
        try:
            sent_at = float(timestamp)
        except ValueError:
            raise AuthRefused(401, "AUTH_BAD_TIMESTAMP", "请求时间戳格式错误") from None
        now = self._wall()
        if abs(now - sent_at) > self.policy.window:
            raise AuthRefused(401, "AUTH_STALE", f"请求时间与网关时钟相差超过 {self.policy.window:g} 秒（请校准两台机器的时钟）")
        expected = request_signature(self.policy.token, method, target, timestamp, nonce, body)
        if not hmac.compare_digest(expected, signature):
            raise AuthRefused(401, "AUTH_BAD_SIGNATURE", "签名错误：令牌不正确或请求被改动")
        self._remember(nonce, now)
        return nonce

    def _remember(self, nonce: str, now: float) -> None:
        with self._lock:
            if now >= self._next_prune:
                self._nonces = {n: until for n, until in self._nonces.items() if until > now}
                self._next_prune = now + self.policy.window
            if nonce in self._nonces:
                raise AuthRefused(401, "AUTH_REPLAY", "重复的请求（随机数已用过），已拒绝")
            # kept for two windows: a copy is refused until its timestamp has left the window anyway
            self._nonces[nonce] = now + 2 * self.policy.window
