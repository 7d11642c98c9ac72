"""Market data behind one interface: DataManager runs the chosen source (xtquant, mootdx, replay or the
synthetic 「演示行情」), publishes its quotes through the QuoteHub and keeps daily bars and indicators in
market.db; `build_data_manager` picks the source per DATA_SOURCE."""
from __future__ import annotations

import bisect

import logging
import sqlite3
import threading
from collections import deque
from datetime import date, datetime
from pathlib import Path
from typing import Callable, Iterable, Optional

import pandas as pd

import market_rules
import qmt.xtquant_import as xtquant_import
from market import ex_rights
from market.adjusted_bars import ForwardAdjustedBars
from market.bar_store import BarStore, DailyBar
from indicator_calculator import IndicatorCalculator
from market.clock import Clock, RealClock, ReplayClock
from core.models import DataUnavailable, Quote
from market.quote_hub import QuoteHub
from market.replay_feeds import CsvBarFolder, TdxBarFolder, is_tdx_tree
from market.replay_source import ReplayPace, ReplayProgress, ReplaySource, replay_days, resume_index
from market.source_base import MarketSource, SourceStep
from persistence.storage import Database
from market.synthetic_market import SyntheticMarket

log = logging.getLogger(__name__)

MARKET_DB_NAME = "market.db"
RECENT_ERRORS = 20  # data problems kept for status()
MAX_REMEMBERED_MESSAGES = 1000  # bound on the log de-duplication memory

__all__ = ["DataManager", "QuoteHub", "build_data_manager"]


MAX_REQUESTED_CODES = 100  # codes asked about on demand that stay subscribed (the oldest are dropped)


class DataManager:
    """The data thread's unit of work (`run_once`) and the read side every other module uses."""

    def __init__(self, settings, clock: Clock, hub: QuoteHub, bar_store: BarStore, source: MarketSource,
                 indicators: Optional[IndicatorCalculator] = None):
        self._settings = settings
        self._clock = clock
        self.hub = hub
        self.bar_store = bar_store
        self._bars = bar_store
        self._source = source
        self.indicators = indicators
        self._lock = threading.Lock()
        self._watch: list[str] = []
        self._requested: list[str] = []  # codes a person asked about (buy form, chart, API), quoted on demand
        self._wanted: list[str] = []  # the watchlist as last given by the data thread
        self._started = False
        self._last_error = ""
        self._last_error_time: Optional[datetime] = None
        self._recent_errors: deque[str] = deque(maxlen=RECENT_ERRORS)
        self._reported_missing: frozenset[str] = frozenset()
        self._reported_invalid: set[str] = set()
        self._logged_at: dict[str, datetime] = {}
        self.first_quote_at: Optional[datetime] = None  # market time of the first accepted quote: "ready"
        self._stepped = False  # the source has completed a step
        # bars whose write to market.db failed (a full disk): written again at every step until it succeeds
        self._unwritten_history: dict[str, list[DailyBar]] = {}
        self._unwritten_bars: dict[tuple[str, date], DailyBar] = {}
        self.source_name = source.name
        self.source_label = source.label

    # ---- lifecycle
    def start(self) -> None:
        """Connect the source (raises DataUnavailable; `run_once` retries sources that can reconnect)."""
        self._started = True
        try:
            self._source.start(self._publish)
        except DataUnavailable as exc:
            self._record_error(exc.message)
            raise

    def close(self) -> None:
        self._source.close()

    # ---- watchlist and reads
    def set_watchlist(self, codes: Iterable[str]) -> None:
        """Codes to quote (positions + stock pool). Invalid codes are reported and skipped."""
        valid = []
        for code in codes:
            try:
                valid.append(market_rules.normalize_code(code))
            except ValueError as exc:
                if code not in self._reported_invalid:  # the data thread re-sends the list every second
                    self._reported_invalid.add(code)
                    self._record_error(str(exc))
        with self._lock:
            self._wanted = valid
            watch = list(dict.fromkeys(valid + self._requested))
            if watch == self._watch:
                return
            self._watch = watch
        self._source.set_watchlist(watch)

    def request_quote(self, code: str) -> Quote | None:
        """The quote of any valid code a person asks about: subscribed on demand (kept in the watchlist from
        now on) and, where the source can answer at once (replay), quoted immediately. None when no quote can
        be had yet; `quote_unavailable_reason` then says why."""
        code = market_rules.normalize_code(code)
        quote = self.hub.latest(code)
        if quote is not None:
            return quote
        with self._lock:
            if code not in self._requested:
                self._requested.append(code)
                del self._requested[:-MAX_REQUESTED_CODES]  # a bound on what page visits can add
            wanted = list(self._wanted)
        self.set_watchlist(wanted)
        quote_now = getattr(self._source, "quote_now", None)
        if quote_now is not None:
            now = quote_now(code)
            if now is not None:
                self._publish(now)
        return self.hub.latest(code)

    def lacks_code(self, code: str) -> bool:
        """True when the source knows it has no data at all for `code` (a replay folder without its bars); a
        live source cannot tell, so False."""
        has_code = getattr(self._source, "has_code", None)
        return has_code is not None and not has_code(market_rules.normalize_code(code))

    def is_suspended(self, code: str) -> bool:
        """True when the market data says `code` is suspended (停牌) now: a replay without its bar today, a
        live feed's security status; a source that cannot tell (mootdx) says False."""
        suspended = getattr(self._source, "is_suspended", None)
        return bool(suspended(market_rules.normalize_code(code))) if suspended is not None else False

    def quote_unavailable_reason(self, code: str) -> str:
        """Why `request_quote` found nothing, precisely, in Chinese."""
        code = market_rules.normalize_code(code)
        has_code = getattr(self._source, "has_code", None)
        if has_code is not None and not has_code(code):
            return f"{self.source_label}中没有 {code} 的日线数据，无法提供它的行情"
        if has_code is not None:
            return f"{code} 今天在{self.source_label}中没有行情（停牌或当天无数据）"
        return f"已订阅 {code} 的行情，{self.source_label}尚未推送第一笔，请稍后再试"

    def watchlist(self) -> list[str]:
        with self._lock:
            return list(self._watch)

    def get_latest_data(self, code: str) -> Quote | None:
        """The current validated quote, or None (missing, stale, or the code is not valid)."""
        try:
            return self.hub.latest(market_rules.normalize_code(code))
        except ValueError:
            return None

    def get_history(self, code: str, start: date | None = None, end: date | None = None,
                    with_indicators: bool = False) -> pd.DataFrame:
        """Daily bars (date, open, high, low, close, volume), ascending; with MACD/MA columns if asked."""
        code = market_rules.normalize_code(code)
        bars = self._bars.get_history(code, start, end)
        if not with_indicators or self.indicators is None:
            return bars
        values = self.indicators.rows(code, start, end)
        return bars.merge(values, on="date", how="left")

    def stock_name(self, code: str) -> str:
        return self._source.stock_name(code)

    # ---- the data thread
    def run_once(self) -> float:
        """One step of the source: store replaced/finished bars first (so indicators are current when the
        quotes arrive), then publish quotes. Returns real seconds to wait before the next call."""
        if not self._started:
            try:
                self.start()
            except DataUnavailable:
                return float(self._settings.get("MONITOR_INTERVAL"))
        try:
            step = self._source.run_once()
        except DataUnavailable as exc:
            self._record_error(exc.message)
            return float(self._settings.get("MONITOR_INTERVAL"))
        except sqlite3.Error as exc:  # market.db failed (reported to the storage guard): retry, never die
            self._record_error(f"行情数据库 {MARKET_DB_NAME} 读写失败（{exc}），稍后重试")
            return float(self._settings.get("MONITOR_INTERVAL"))
        self._apply(step)
        self._stepped = True
        return step.wait

    @property
    def ready(self) -> bool:
        """The source has delivered its first quotes (or, with nothing to watch, has completed a step)."""
        return self.first_quote_at is not None or (self._stepped and not self.watchlist())

    def status(self) -> dict:
        latest = [q for q in (self.hub.last_seen(c) for c in self.watchlist()) if q is not None]
        last_quote_time = max((q.time for q in latest), default=None)
        error, error_time = self._last_error, self._last_error_time
        if self.hub.last_error_time and (error_time is None or self.hub.last_error_time > error_time):
            error, error_time = self.hub.last_error, self.hub.last_error_time
        replay_day = getattr(self._source, "current_day", None)
        return {
            "source": self.source_name,
            "label": self.source_label,
            "connected": bool(self._source.connected),
            "last_error": error,
            "last_error_time": error_time.isoformat(timespec="seconds") if error_time else None,
            "recent_errors": list(self._recent_errors),
            "last_quote_time": last_quote_time.isoformat(timespec="seconds") if last_quote_time else None,
            "rejected_quotes": self.hub.rejected,
            "clock_skew_seconds": round(self.hub.clock_skew(), 1),  # feed time minus the local market clock
            "watchlist": len(self.watchlist()),
            "replay_day": replay_day.isoformat() if isinstance(replay_day, date) else None,
        }

    # ---- internals
    def _apply(self, step: SourceStep) -> None:
        self._unwritten_history.update(step.history)
        self._unwritten_bars.update(((bar.code, bar.day), bar) for bar in step.bars)
        self._write_bars()
        for quote in step.quotes:
            self._publish(quote)
        for message in step.errors:
            self._record_error(message)
        self._check_missing_quotes()

    def _write_bars(self) -> None:
        """Store the step's bars (and any left over from failed writes). A failed write of market.db (a full
        disk: the storage guard has been told by the database) must not stop the quotes, which need no disk:
        the bars stay queued and are written at a later step."""
        stamp = self._clock.now().isoformat(timespec="seconds")
        try:
            for code in list(self._unwritten_history):
                self._bars.replace(code, self._unwritten_history[code], self.source_name, stamp)
                del self._unwritten_history[code]
            if self._unwritten_bars:
                self._bars.upsert(list(self._unwritten_bars.values()), self.source_name, stamp)
                self._unwritten_bars.clear()
        except sqlite3.Error as exc:
            self._record_error(f"日线写入行情数据库 {MARKET_DB_NAME} 失败（{exc}），稍后重写；行情照常推送")

    def _publish(self, quote: Quote) -> bool:
        rejected_before = self.hub.rejected
        accepted = self.hub.publish(quote)
        if accepted and self.first_quote_at is None:
            self.first_quote_at = quote.time
        if not accepted and self.hub.rejected != rejected_before:  # refused (the hub has logged why)
            with self._lock:
                self._recent_errors.append(f"{self._clock.now():%Y-%m-%d %H:%M:%S} {self.hub.last_error}")
        return accepted

    def _check_missing_quotes(self) -> None:
        """During trading, report (once per change) watched codes without a fresh quote."""
        if not self._clock.is_trading():
            return
        missing = frozenset(c for c in self.watchlist() if self.hub.latest(c) is None)
        if missing and missing != self._reported_missing:
            self._record_error(f"以下股票没有有效行情（停牌、过期或数据源无数据）：{'、'.join(sorted(missing))}")
        self._reported_missing = missing

    def _record_error(self, message: str) -> None:
        """Remember the problem for status(); log it, but the same message at most once per UPDATE_INTERVAL
        (a source that is down says so at every poll)."""
        now = self._clock.now()
        with self._lock:
            self._last_error, self._last_error_time = message, now
            logged = self._logged_at.get(message)
            repeat = logged is not None and (now - logged).total_seconds() < float(self._settings.get("UPDATE_INTERVAL"))
            if not repeat:
                if len(self._logged_at) > MAX_REMEMBERED_MESSAGES:
                    self._logged_at.clear()
                self._logged_at[message] = now
                self._recent_errors.append(f"{now:%Y-%m-%d %H:%M:%S} {message}")
        if not repeat:
            log.warning("行情数据问题：%s", message)


# ---- composition ------------------------------------------------------------------------------------------

def build_data_manager(settings, data_dir: Path, calendar=None,
                       account_guard: Optional[Callable[[str], Optional[date]]] = None) -> tuple[DataManager, Clock]:
    """Choose the source per DATA_SOURCE: 'auto' = xtquant if it imports and connects, else mootdx if
    MOOTDX_SERVER is set, else replay of REPLAY_DATA_DIR, else the synthetic market. Replay sources come with
    the ReplayClock they drive; live sources with a RealClock. No network unless xtquant/MOOTDX_SERVER.
    `account_guard(source_name)` runs before a replay starts: it may refuse the account's market, and returns
    the account's last trading day, after which the replay resumes (time never runs backwards)."""
    db = Database(Path(data_dir) / MARKET_DB_NAME)
    bar_store = BarStore(db)
    events = _file_events(settings)
    # raw bars + known events: the indicators read forward-adjusted closes (no false cross on an ex-date, issue 28)
    indicators = IndicatorCalculator(ForwardAdjustedBars(bar_store, events) if events else bar_store, db)
    bar_store.subscribe(indicators.update)
    choice = settings.get("DATA_SOURCE")
    calendar = calendar or market_rules.DEFAULT_CALENDAR

    if choice == "auto" and settings.get("BROKER") == "remote" and not settings.get("ENABLE_SIMULATION_MODE"):
        from gateway.quote_source import RemoteQuoteSource  # issue 30: the gateway's miniQMT quotes

        clock = RealClock(calendar)
        manager = DataManager(settings, clock, QuoteHub(settings, clock), bar_store,
                              RemoteQuoteSource.from_settings(settings, clock), indicators)
        if _started(manager, keep_on_failure=True):
            return manager, clock
    if choice == "auto" and not xtquant_import.data_native_available():  # Linux, macOS: no miniQMT here
        log.info("%s", xtquant_import.unavailable_note("mootdx 行情" if settings.get("MOOTDX_SERVER") else "回放行情"))
    elif choice in ("auto", "xtquant"):
        from market.xtquant_source import XtQuantSource

        clock = RealClock(calendar)
        manager = DataManager(settings, clock, QuoteHub(settings, clock), bar_store,
                              XtQuantSource(settings, clock, bar_store), indicators)
        if _started(manager, keep_on_failure=choice == "xtquant"):
            return manager, clock
    if choice == "mootdx" or (choice == "auto" and settings.get("MOOTDX_SERVER")):
        from market.mootdx_source import MootdxSource

        clock = RealClock(calendar)
        manager = DataManager(settings, clock, QuoteHub(settings, clock), bar_store,
                              MootdxSource(settings, clock, bar_store, Path(data_dir)), indicators)
        if _started(manager, keep_on_failure=choice == "mootdx"):
            return manager, clock
    return _replay_manager(settings, bar_store, indicators, calendar, account_guard, events)


def _started(manager: DataManager, keep_on_failure: bool) -> bool:
    """Start the manager's source. An explicitly chosen source is kept even when it is down (it reports the
    problem and retries); under 'auto' a failed source gives way to the next one."""
    try:
        manager.start()
        log.info("行情来源：%s", manager.source_label)
        return True
    except DataUnavailable as exc:
        if keep_on_failure:
            log.error("指定的行情来源 %s 暂不可用，将持续重试：%s", manager.source_label, exc.message)
            return True
        log.info("行情来源 %s 不可用（%s），尝试下一个", manager.source_label, exc.message)
        return False


def _file_events(settings) -> dict:
    """The ex-rights events of EX_RIGHTS_EVENTS_FILE per code (a replay's reference prices and the indicators'
    forward adjustment, issue 28 §2); none when unset or unreadable (the ex-rights keeper then refuses the
    start, naming the bad line)."""
    path = str(settings.get("EX_RIGHTS_EVENTS_FILE") or "")
    if not path:
        return {}
    try:
        return ex_rights.events_by_code(ex_rights.parse_events(Path(path).read_text(encoding="utf-8-sig"), path))
    except (OSError, ValueError) as exc:
        log.error("除权除息文件 %s 无法读取（%s），除权日前收盘价与技术指标不按除权调整", path, exc)
        return {}


def _replay_pace(settings, progress: ReplayProgress, days: list, start_index: int) -> Optional[ReplayPace]:
    """REPLAY_CLOCK_ORIGIN (set by the account supervisor) aligns this replay with its siblings'."""
    origin = float(settings.get("REPLAY_CLOCK_ORIGIN") or 0.0)
    if origin <= 0 or start_index >= len(days):
        return None
    origin_day = progress.pace_origin_day(origin, days[start_index])
    return ReplayPace(origin, bisect.bisect_left(days, origin_day))


def _replay_manager(settings, bar_store: BarStore, indicators: IndicatorCalculator, calendar,
                    account_guard: Optional[Callable[[str], Optional[date]]] = None,
                    events: Optional[dict] = None) -> tuple[DataManager, Clock]:
    folder = str(settings.get("REPLAY_DATA_DIR") or "")
    if folder:
        path = Path(folder)
        if not path.is_dir():
            raise DataUnavailable("REPLAY_DIR_MISSING", f"回放数据目录不存在：{path}")
        feed = TdxBarFolder(path) if is_tdx_tree(path) else CsvBarFolder(path)
    else:
        feed = SyntheticMarket(int(settings.get("SYNTHETIC_SEED")), calendar)
    last_trade = account_guard(feed.source_name) if account_guard is not None else None
    days, start_index = replay_days(feed, str(settings.get("REPLAY_START_DATE") or ""))
    if not days:
        raise DataUnavailable("REPLAY_EMPTY", f"回放数据目录中没有可用的日线：{folder}")
    progress = ReplayProgress(bar_store.db, f"{feed.label}|{settings.get('REPLAY_START_DATE')}")
    start_index = resume_index(days, start_index, max(filter(None, (progress.latest_of_data_set(feed.label),
                                                                    last_trade)), default=None))
    pace = _replay_pace(settings, progress, days, start_index)
    if start_index >= len(days):
        raise DataUnavailable("REPLAY_FINISHED", f"回放数据已全部播放完毕（{feed.label}），"
                                                 f"如需重新开始请换一个数据目录（--data-dir）")
    clock = ReplayClock(ReplaySource.start_moment(days, start_index), calendar)
    source = ReplaySource(settings, clock, feed, days, start_index, on_day_start=progress.record, pace=pace,
                          events=events)
    manager = DataManager(settings, clock, QuoteHub(settings, clock), bar_store, source, indicators)
    manager.start()
    log.info("行情来源：%s，从 %s 开始回放", source.label, days[start_index])
    return manager, clock
