"""The gateway's quote feed as a market source of the daemon (market.source_base.MarketSource): each step asks the
gateway for the newest quote of every watched code (the gateway keeps only the newest: quotes may be dropped, never
an old one after a newer one) and hands on those it has not handed on before. Quotes only; daily bars come from the
daemon's own bar store."""
from __future__ import annotations

import logging
from typing import Optional, Sequence

from core.models import DataUnavailable, Quote
from gateway import wire
from gateway.client import GatewayUnreachable, Transport
from market.source_base import Publish, SourceStep, idle_wait

log = logging.getLogger(__name__)


class RemoteQuoteSource:
    name = "remote"
    label = "远程网关行情（qmt_gateway）"

    def __init__(self, settings, clock, transport: Transport):
        self._settings = settings
        self._clock = clock
        self._transport = transport
        self._publish: Optional[Publish] = None
        self._watch: list[str] = []
        self._subscribed: list[str] = []
        self._seen: dict[str, object] = {}  # code -> time of the last quote handed on
        self._names: dict[str, str] = {}
        self.connected = False

    @classmethod
    def from_settings(cls, settings, clock) -> "RemoteQuoteSource":
        return cls(settings, clock, Transport(str(settings.get("BROKER_URL")), str(settings.get("BROKER_TOKEN"))))

    def start(self, publish: Publish) -> None:
        """Raises DataUnavailable when the gateway does not answer."""
        self._publish = publish
        self._get("/health")
        self.connected = True

    def set_watchlist(self, codes: Sequence[str]) -> None:
        self._watch = list(dict.fromkeys(codes))

    def run_once(self) -> SourceStep:
        step = SourceStep(wait=idle_wait(self._settings, self._clock))
        watch = list(self._watch)
        if not watch:
            return step
        try:
            if watch != self._subscribed:
                self._post("/subscribe", {"codes": watch})
                self._subscribed = watch
            step.quotes = self._fresh([wire.quote_from_json(q) for q in self._get("/quotes?codes=" + ",".join(watch))])
            self.connected = True
        except DataUnavailable as exc:
            self.connected = False
            self._subscribed = []  # a restarted gateway has forgotten the subscription
            step.errors.append(exc.message)
        return step

    def stock_name(self, code: str) -> str:
        return self._names.get(code, "")

    def close(self) -> None:
        self._transport.close()
        self.connected = False

    def _fresh(self, quotes: list[Quote]) -> list[Quote]:
        fresh = []
        for quote in quotes:
            last = self._seen.get(quote.code)
            if last is not None and quote.time is not None and quote.time <= last:
                continue  # already handed on (or older than what was)
            self._seen[quote.code] = quote.time
            if quote.name:
                self._names[quote.code] = quote.name
            fresh.append(quote)
        return fresh

    def _get(self, path: str):
        return self._request("GET", path, None)

    def _post(self, path: str, body: dict):
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body):
        timeout = float(self._settings.get("GATEWAY_REQUEST_TIMEOUT"))
        try:
            status, payload = self._transport.request(method, path, body, timeout=timeout)
        except GatewayUnreachable as exc:
            raise DataUnavailable("GATEWAY_UNREACHABLE", f"网关行情不可用：无法连接网关 {self._transport.url}（{exc.reason}）") from None
        if status != 200:
            message = payload.get("message", "") if isinstance(payload, dict) else ""
            raise DataUnavailable("GATEWAY_REFUSED", f"网关行情不可用：HTTP {status} {message}")
        return payload
