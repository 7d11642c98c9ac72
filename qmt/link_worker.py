"""The link's life cycle, shared by the miniQMT back-end (easy_qmt_trader, qmt.reconcile) and the big-QMT back-end
(bigqmt.broker): the events worker's loop, closing (the worker stopped, the link dropped), the state and anomalies
the web page shows, whether to act as in session, and re-opening a dropped link with back-off."""
from __future__ import annotations

import logging
import threading
from typing import Callable, Optional, TypeVar

from qmt.link import LINK_DISCONNECTED

T = TypeVar("T")


def open_with_backoff(open_link: Callable[[], T], refused: type[Exception], stop: threading.Event,
                      first_delay: float, factor: Callable[[], float], cap: Callable[[], float],
                      on_refused: Callable[[int, Exception, float], None]) -> Optional[T]:
    """`open_link()` until it returns, waiting between attempts from `first_delay` growing by `factor()` up to
    `cap()` (both asked anew each time); `on_refused(attempt, error, next delay)` after each `refused` error. None
    when `stop` is set first."""
    delay, attempt = min(first_delay, cap()), 0
    while not stop.is_set():
        attempt += 1
        try:
            return open_link()
        except refused as exc:
            on_refused(attempt, exc, delay)
        if stop.wait(delay):
            break
        delay = min(delay * factor(), cap())
    return None


class LinkLifecycle:
    """Mixin of a live back-end. The host has `_closed`, `_stop`, `_events`, `_worker` (its events worker),
    `owns_db` and `_db`, `health` (qmt.link.LinkHealth), `_clock` and `_log`, its worker's `run_once` and `supervise`,
    and supplies `_stop_item()` (what wakes the worker to stop), `_close_timeout()`, `_drop_link()` (close the session
    or channel), `_probe_interval()`, `_closed_text` and `_worker_error_text`."""

    _log: logging.Logger
    _closed_text: str
    _worker_error_text: str

    def _run(self) -> None:
        """The events worker's loop: one queued event (or a reconnect), then supervision, until closed."""
        while not self._stop.is_set():
            try:
                self.run_once(timeout=min(0.5, self._probe_interval()))
                self.supervise()
            except Exception:  # one bad event must not end the worker; the operator sees it in the log
                self._log.exception(self._worker_error_text)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._events.put(self._stop_item())  # wakes the worker
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():  # (not when the worker closes)
            worker.join(self._close_timeout())
        self._drop_link()
        if self.owns_db:
            self._db.close()
        self.health.set_state(LINK_DISCONNECTED)
        self._log.info(self._closed_text)

    @property
    def link_state(self) -> str:
        """connected / unhealthy / reconnecting / closed (qmt.link): what the web layer shows."""
        return self.health.state

    def anomalies(self) -> list[dict]:
        """Recent anomalies (time, code, Chinese message), oldest first."""
        return self.health.anomalies()

    def _in_session(self) -> bool:
        try:
            return bool(self._clock.is_trading())
        except Exception:  # no calendar: probe anyway, it is cheap
            return True
