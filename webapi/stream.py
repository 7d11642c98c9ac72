"""Server-sent events for the positions table: a snapshot when a client connects, a new one whenever the
position manager's `data_version` changes (woken by its condition, not by polling), a heartbeat otherwise;
and the event bus's events (watch alerts, fills, state changes…) as `bus` frames, each stream on its own
bounded subscription."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterator

from webapi.views import to_json

log = logging.getLogger(__name__)

RETRY_MILLISECONDS = 2000  # the browser reconnects after this long when the stream breaks
BUS_QUEUE_SIZE = 200  # events kept for one slow stream client before the oldest are dropped


class VersionedCache:
    """A payload built once per (positions data_version, settings change) and shared by every request and
    every stream: with 200 positions building the table costs ~15 ms, encoding the cached one ~3 ms.
    Callers must not modify the returned payload."""

    def __init__(self, positions: Any, settings: Any, build: Callable[[int], dict]):
        self._positions = positions
        self._build = build
        self._lock = threading.Lock()  # guards the fields below, held only to read or swap them
        self._build_lock = threading.Lock()  # one builder (or encoder) at a time
        self._settings_changes = 0
        self._key: tuple[int, int] | None = None
        self._payload: dict = {}
        self._encoded: tuple[tuple[int, int] | None, bytes] = (None, b"")
        settings.subscribe(self._settings_changed)

    def get(self) -> tuple[int, dict]:
        """(data_version, payload). One request builds a stale payload; the others arriving meanwhile wait for
        it instead of building the same (under 50 clients, every thread rebuilt it after each fill)."""
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        with self._build_lock:
            fresh = self._fresh()
            if fresh is not None:
                return fresh
            version = self._positions.data_version  # read first: a change after it gives a newer key later
            with self._lock:
                key = (version, self._settings_changes)
            payload = self._build(version)
            with self._lock:
                self._key, self._payload = key, payload
            return version, payload

    def encoded(self, encode: Callable[[dict], bytes]) -> tuple[str, bytes]:
        """(ETag, encoded response body) of the current payload, encoded once per key: an unchanged snapshot
        costs a request neither building nor encoding (and a client holding the ETag gets a 304)."""
        self.get()
        key, body = self._current_encoding()
        if body is None:
            with self._build_lock:
                key, body = self._current_encoding()
                if body is None:
                    with self._lock:
                        payload = self._payload
                    body = encode(payload)
                    with self._lock:
                        self._encoded = (key, body)
        return f'"{key[0]}-{key[1]}"', body

    def _fresh(self) -> tuple[int, dict] | None:
        version = self._positions.data_version
        with self._lock:
            if (version, self._settings_changes) == self._key:
                return version, self._payload
        return None

    def _current_encoding(self) -> tuple[tuple[int, int], bytes | None]:
        """The payload's key and its encoded body, None when not encoded yet."""
        with self._lock:
            cached_key, body = self._encoded
            return self._key, (body if cached_key == self._key else None)

    def _settings_changed(self, changed: dict) -> None:  # rule parameters move the trigger prices
        with self._lock:
            self._settings_changes += 1

    def invalidate(self) -> None:
        """Rebuild on the next read (per-stock parameters moved a stock's trigger prices)."""
        self._settings_changed({})


class PositionStream:
    """One client's stream (of positions by default). `snapshot()` returns (data_version, payload). The wait is
    cut into slices of `check_seconds` so that server shutdown and a vanished client end the stream promptly;
    bursts of changes are coalesced to at most one snapshot per `min_gap_seconds`."""

    def __init__(self, positions: Any, snapshot: Callable[[], tuple[int, dict]], heartbeat: Callable[[], dict],
                 heartbeat_seconds: Callable[[], float], stop: threading.Event,
                 disconnected: Callable[[], bool] = lambda: False, check_seconds: float = 0.5,
                 min_gap_seconds: float = 0.05, monotonic: Callable[[], float] = time.monotonic,
                 event: str = "positions", bus: Any = None):
        """`event` names the frames (another versioned source than positions, e.g. log lines); `bus`: an
        core.events.EventBus whose events are forwarded (within one `check_seconds` slice)."""
        self._bus = bus
        self._positions = positions
        self._event = event
        self._snapshot = snapshot
        self._heartbeat = heartbeat
        self._heartbeat_seconds = heartbeat_seconds
        self._stop = stop
        self._disconnected = disconnected
        self._check_seconds = check_seconds
        self._min_gap = min_gap_seconds
        self._monotonic = monotonic

    def frames(self) -> Iterator[bytes]:
        subscription = self._bus.subscribe(maxsize=BUS_QUEUE_SIZE) if self._bus is not None else None
        try:
            yield f"retry: {RETRY_MILLISECONDS}\n\n".encode()
            seen, frame = self._snapshot_frame()
            yield frame
            last_sent = last_beat = self._monotonic()
            while not self._stop.is_set() and not self._disconnected():
                beat_due = self._heartbeat_seconds() - (self._monotonic() - last_beat)
                if beat_due <= 0:
                    yield event_frame("heartbeat", self._heartbeat())
                    last_beat = self._monotonic()
                    continue
                version = self._positions.wait_for_change(seen, min(self._check_seconds, beat_due))
                for event in subscription.drain() if subscription is not None else ():
                    yield event_frame("bus", event.to_dict())
                if version == seen:
                    continue
                gap = self._min_gap - (self._monotonic() - last_sent)
                if gap > 0 and self._stop.wait(gap):
                    break
                seen, frame = self._snapshot_frame()
                yield frame
                last_sent = last_beat = self._monotonic()
        except GeneratorExit:
            raise
        except Exception as exc:  # the client sees the reason and reconnects; the log keeps the details
            log.exception("实时推送（%s）出错", self._event)
            yield event_frame("error", {"message": f"实时推送出错：{exc.__class__.__name__}，将自动重连"})
        finally:
            if subscription is not None:
                self._bus.unsubscribe(subscription)

    def _snapshot_frame(self) -> tuple[int, bytes]:
        version, payload = self._snapshot()
        return version, event_frame(self._event, payload, event_id=version)


class StreamBody:
    """The response body of one stream: its frames, and `close()` (called by the server when the response
    ends, also when the client left before the first frame) gives the stream slot back exactly once."""

    def __init__(self, frames: Iterator[bytes], release: Callable[[], None]):
        self._frames = frames
        self._release = release
        self._released = False
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        return self._frames

    def close(self) -> None:
        close_frames = getattr(self._frames, "close", None)
        if close_frames is not None:
            close_frames()
        with self._lock:
            if self._released:
                return
            self._released = True
        self._release()


def event_frame(event: str, payload: Any, event_id: Any = None) -> bytes:
    data = to_json(payload)
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode("utf-8")
