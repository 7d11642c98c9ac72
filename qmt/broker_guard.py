"""Every broker call with a deadline: a call runs in its own thread and the caller waits at most
BROKER_CALL_TIMEOUT seconds (or until shutdown). A call that overruns raises BrokerCallTimeout (an order sent
that way is unknown, never re-sent), and while it is still outstanding the broker counts as hung: new calls
fail at once instead of piling up behind it. Lets the executor, the web page and shutdown never freeze on a
broker that stopped answering (xtquant's synchronous calls can block forever)."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from core.models import BrokerUnavailable, TradingError

log = logging.getLogger(__name__)

# Broker methods that talk to the broker and so may hang; everything else (mode, set_listener, …) passes through.
GUARDED_CALLS = frozenset({"connect", "place_order", "cancel_order", "query_asset", "query_positions",
                           "query_orders", "query_trades"})
STOP_CHECK_SECONDS = 0.05  # how often a waiting caller looks at the shutdown flag
STEP_MARGIN_SECONDS = 10.0
CLOSE_SECONDS = 1.0  # shutdown gives the broker's own close this long, then leaves it behind


def broker_step_seconds(settings) -> float:
    """The declared longest step of a worker that calls the broker: one call may run into the deadline (after
    which the broker counts as hung and further calls fail at once), plus room for the rest of the step."""
    return 2 * float(settings.get("BROKER_CALL_TIMEOUT")) + STEP_MARGIN_SECONDS


class OutcomeUnknown(TradingError):
    """An order may or may not have reached the broker (issue 25): it is 「结果未知」 until reconciled by its
    remark, and no repeat of it is sent meanwhile. Not an OrderRejected: the API answers 409, never 500."""


class BrokerCallTimeout(OutcomeUnknown):
    """The broker did not answer within the deadline; what the call did is unknown."""


@dataclass(eq=False)
class _Call:
    name: str
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: Optional[BaseException] = None
    overdue: bool = False

    def run(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        try:
            self.result = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the waiting caller (if it still waits)
            self.error = exc
        finally:
            self.done.set()


class BrokerGuard:
    """Wraps a core.models.Broker with the same interface. `timeout()` is read per call (a live setting);
    `on_hung(name, seconds)` / `on_recovered(name, seconds)` let the daemon publish events."""

    def __init__(self, broker: Any, timeout: Callable[[], float], now: Callable[[], float] = time.monotonic,
                 on_hung: Callable[[str, float], None] = lambda name, seconds: None,
                 on_recovered: Callable[[str, float], None] = lambda name, seconds: None):
        self._broker = broker
        self._timeout = timeout
        self._now = now
        self._on_hung = on_hung
        self._on_recovered = on_recovered
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()
        self._stopping = threading.Event()

    @property
    def inner(self) -> Any:
        return self._broker

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._broker, name)
        if name in GUARDED_CALLS and callable(attr):
            return lambda *args, **kwargs: self.call(name, attr, *args, **kwargs)
        return attr

    def hung_call(self) -> Optional[tuple[str, float]]:
        """(method, seconds outstanding) of the oldest call past its deadline that has not returned, or None."""
        now = self._now()
        with self._lock:
            overdue = [c for c in self._calls if c.overdue]
        if not overdue:
            return None
        oldest = min(overdue, key=lambda c: c.started)
        return oldest.name, now - oldest.started

    def call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._stopping.is_set():
            raise BrokerUnavailable("BROKER_STOPPING", "程序正在退出，不再调用券商接口")
        hung = self.hung_call()
        if hung is not None:
            raise BrokerUnavailable("BROKER_HUNG", f"券商接口调用 {hung[0]} 已 {hung[1]:.0f} 秒未返回，"
                                                   "暂不发送新请求（等其返回，或检查 miniQMT 客户端）")
        call = _Call(name, self._now())
        with self._lock:
            self._calls.add(call)
        thread = threading.Thread(target=self._run, args=(call, fn, args, kwargs), name=f"broker-{name}",
                                  daemon=True)
        thread.start()
        timeout = float(self._timeout())
        deadline = call.started + timeout
        while not call.done.is_set():
            remaining = deadline - self._now()
            if remaining <= 0 or self._stopping.is_set():
                break
            call.done.wait(min(remaining, STOP_CHECK_SECONDS))
        with self._lock:
            call.overdue = call in self._calls  # not yet returned (a call that just finished is not overdue)
        if call.overdue:
            if self._stopping.is_set():  # it may have reached the broker: unknown, like a timeout
                raise BrokerCallTimeout("BROKER_STOPPING", f"程序正在退出，不再等待券商接口 {name} 返回，结果未知")
            log.error("券商接口调用 %s 超过 %g 秒未返回，结果未知", name, timeout)
            self._on_hung(name, timeout)
            raise BrokerCallTimeout("BROKER_TIMEOUT", f"券商接口 {name} 超过 {timeout:g} 秒未返回，结果未知"
                                                      "（委托不会自动重发，将与券商核对）")
        if call.error is not None:
            raise call.error
        return call.result

    def stop(self, grace: float = 0.0) -> None:
        """Shutdown: calls in flight may answer within `grace` seconds; then every waiting caller returns
        (its call counts as unknown) and no new call starts."""
        deadline = self._now() + grace
        while grace > 0 and self._now() < deadline:
            with self._lock:
                pending = [c for c in self._calls if not c.overdue]
            if not pending:
                break
            pending[0].done.wait(min(STOP_CHECK_SECONDS, max(0.0, deadline - self._now())))
        self._stopping.set()

    def close(self) -> None:
        """The broker's own close, waited for at most CLOSE_SECONDS (a hung client must not hold the exit)."""
        self._stopping.set()
        closer = threading.Thread(target=self._broker.close, name="broker-close", daemon=True)
        closer.start()
        closer.join(CLOSE_SECONDS)
        if closer.is_alive():
            log.error("券商接口关闭超过 %g 秒未返回，已放弃等待", CLOSE_SECONDS)

    def _run(self, call: _Call, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        call.run(fn, args, kwargs)
        with self._lock:
            self._calls.discard(call)
            overdue = call.overdue
        if overdue:
            seconds = self._now() - call.started
            log.warning("券商接口调用 %s 在 %.1f 秒后才返回", call.name, seconds)
            self._on_recovered(call.name, seconds)
