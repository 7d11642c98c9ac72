"""The market feed's own clock, estimated from its quotes: the offset between the feed's timestamps and the local
market clock, per source, so that staleness is judged on the feed's time (a box clock minutes off the exchange
must not make every quote look stale, or every frozen quote look fresh). Alarms once when the skew is large.
A replay stamps its quotes on the replay clock itself: no estimate, skew 0."""
from __future__ import annotations

import logging
import statistics
import threading
from collections import deque
from datetime import datetime, timedelta
from typing import Callable, NamedTuple, Optional

from core.models import Quote

log = logging.getLogger(__name__)

# The freshest quote of each bucket of local time is one sample (latency and slow stocks only lower a quote's
# offset, so the bucket's maximum is the best view of the feed's "now"); the estimate is the median of the last
# SKEW_BUCKETS samples, so a few bogus ticks cannot move it and a clock step is followed within ~5 s of ticking
# (a step must be followed well within PROTECTION_DEADLINE: while it is not, every quote is refused as stale).
SKEW_BUCKET_SECONDS = 1.0
SKEW_BUCKETS = 9
_EPOCH = datetime(2000, 1, 1)
MAX_TRACKED_CODES = 20000  # bound on the per-code memory of the last seen tick time

AlarmListener = Callable[..., None]  # listener(message, **data)


class SourceOffset:
    """The running offset estimate (feed time − local time, seconds) of one source."""

    def __init__(self):
        self._maxima: deque[float] = deque(maxlen=SKEW_BUCKETS)
        self._bucket: Optional[int] = None
        self.estimate: Optional[float] = None

    def add(self, local: datetime, offset: float) -> None:
        bucket = int((local - _EPOCH).total_seconds() // SKEW_BUCKET_SECONDS)
        if bucket != self._bucket:
            self._bucket = bucket
            self._maxima.append(offset)
        elif offset > self._maxima[-1]:
            self._maxima[-1] = offset
        else:
            return
        self.estimate = statistics.median(self._maxima)


class FeedClock:
    """Estimates each source's clock from quotes whose tick time advanced (a new tick, not a re-sent one: a
    frozen feed yields no samples, so it cannot drag the estimate along and hide its own staleness)."""

    def __init__(self, settings, clock):
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}  # code -> its tick times seen (accepted or not)
        self._offsets: dict[str, SourceOffset] = {}
        self._latest_source: Optional[str] = None  # the source of the latest sample
        self._alarmed: dict[str, bool] = {}
        self._listeners: list[AlarmListener] = []

    def on_alarm(self, listener: AlarmListener) -> None:
        """`listener(message, **data)` once when a source's skew passes CLOCK_SKEW_ALARM_SECONDS (again only
        after it came back below); it runs in the publishing thread and must not block."""
        self._listeners.append(listener)

    def observe(self, quote: Quote) -> None:
        """Take a sample from a quote with usable prices, before its age is judged."""
        if self._clock.is_replay:
            return
        local = self._clock.now()
        with self._lock:
            seen = self._seen.get(quote.code)
            if seen is not None and not self._is_new_tick(quote, seen):
                return
            if seen is None and len(self._seen) >= MAX_TRACKED_CODES:
                self._seen.clear()
            stepped_back = seen is not None and quote.time < seen.last
            newest = seen.newest if stepped_back else max(seen.newest, quote.time) if seen is not None else quote.time
            self._seen[quote.code] = _Seen(quote.time, newest)
            if seen is None or stepped_back:
                return  # a first sighting, or a step back, may be an old tick re-sent: not a sample
            estimator = self._offsets.setdefault(quote.source, SourceOffset())
            before = estimator.estimate
            estimator.add(local, (quote.time - local).total_seconds())
            self._latest_source = quote.source
            message = self._alarm_transition(quote.source, estimator.estimate) if estimator.estimate != before else ""
        if message:
            self._raise_alarm(quote.source, message)

    def _is_new_tick(self, quote: Quote, seen: "_Seen") -> bool:
        """A tick newer than the code's last one is a sample. One more than QUOTE_STALE_SECONDS older is the feed's
        clock stepping back (e.g. miniQMT's clock set back): it restarts the code's sequence, so the ticks after it
        are samples again (a plain `newer than ever seen` rule would wait out the whole step, blind). A frozen feed
        re-sending its newest tick never yields one."""
        if quote.time > seen.last:
            return quote.time != seen.newest
        return quote.time < seen.last - timedelta(seconds=float(self._settings.get("QUOTE_STALE_SECONDS")))

    def skew(self, source: Optional[str] = None) -> float:
        """Estimated seconds the feed's clock is ahead of the local market clock (negative: the local clock is
        fast). `source` None: the source of the latest sample. 0 before any sample and under a replay."""
        with self._lock:
            estimator = self._offsets.get(source if source is not None else self._latest_source or "")
            return estimator.estimate if estimator is not None and estimator.estimate is not None else 0.0

    def applied_skew(self, source: Optional[str] = None) -> float:
        """The skew `now()` applies: the estimate, unless it exceeds CLOCK_SKEW_MAX_SECONDS (then the feed is
        not trusted to that extent and quotes are judged on the local clock: they go stale, the safe side)."""
        skew = self.skew(source)
        return skew if abs(skew) <= float(self._settings.get("CLOCK_SKEW_MAX_SECONDS")) else 0.0

    def now(self, source: Optional[str] = None) -> datetime:
        """The feed's estimated "now" (market time, naive)."""
        if self._clock.is_replay:
            return self._clock.now()
        skew = self.applied_skew(source)
        local = self._clock.now()
        return local + timedelta(seconds=skew) if skew else local

    def _alarm_transition(self, source: str, skew: float) -> str:
        """The alarm text when `source` just passed the threshold, else '' (called under the lock)."""
        threshold = float(self._settings.get("CLOCK_SKEW_ALARM_SECONDS"))
        alarmed = self._alarmed.get(source, False)
        if abs(skew) <= threshold:
            if alarmed:
                self._alarmed[source] = False
                log.info("本机时钟与行情（%s）时间的偏差已恢复到 %g 秒以内（当前 %+.1f 秒）", source, threshold, skew)
            return ""
        if alarmed:
            return ""
        self._alarmed[source] = True
        return skew_alarm_text(source, skew, float(self._settings.get("CLOCK_SKEW_MAX_SECONDS")))

    def _raise_alarm(self, source: str, message: str) -> None:
        log.error(message)
        skew = round(self.skew(source), 1)
        for listener in list(self._listeners):
            try:
                listener(message, source=source, skew_seconds=skew)
            except Exception:  # a faulty subscriber must not stop the feed
                log.exception("时钟偏差告警的订阅者出错")


class _Seen(NamedTuple):
    """A code's tick times: the last one seen, and the newest before any step back (never a sample again)."""

    last: datetime
    newest: datetime


def skew_alarm_text(source: str, skew: float, correctable: float) -> str:
    """The operator's line for a clock skew of `skew` seconds (feed minus local)."""
    direction = "快" if skew < 0 else "慢"
    head = f"本机时钟比行情（{source}）时间{direction}了约 {abs(skew):.0f} 秒"
    if abs(skew) > correctable:
        return (f"{head}，超过可校正的 {correctable:g} 秒：行情将按本机时钟判断为过期，规则无法使用行情。"
                "请立即校准本机时钟（Windows：设置 → 时间和语言 → 立即同步）或检查行情来源")
    return f"{head}，已改按行情自身的时间判断行情是否过期。请校准本机时钟（Windows：设置 → 时间和语言 → 立即同步）"
