"""Market data from miniQMT through the real `xtquant.xtdata` (imported lazily, without xtquant's network
update check): pushed and polled ticks, instrument details (name, limit prices), and daily bars."""
from __future__ import annotations

import logging
import math
import threading
import time
from datetime import date, datetime, timedelta
from typing import Any, Callable, Optional, Sequence

import market_rules
from market.bar_store import BarStore, DailyBar
from market.clock import MARKET_TZ
from core.models import DataUnavailable, Quote
from qmt.session import bounded_call
from market.source_base import Publish, SourceStep, idle_wait
from qmt.xtquant_import import import_xtquant

log = logging.getLogger(__name__)

BAR_FIELDS = ["time", "open", "high", "low", "close", "volume"]
XT_VOLUME_UNIT = 100  # xtdata reports stock volumes in lots of 100 shares (ticks also carry `pvolume` in shares)
DIVIDEND_TYPE = "front"  # forward-adjusted bars, so MACD does not see ex-dividend gaps
CALENDAR_DAYS_PER_TRADING_DAY = 1.5  # to turn HISTORY_DAYS into a start date with room for holidays
# A stock's security status rides in its tick's `openInt` (xtdata's data dictionary 「证券状态」; get_instrument_detail's
# InstrumentStatus is 0 on a normal day and on the first day of a suspension alike): 17 临时停牌, 20 暂停交易至闭市.
SUSPENDED_STATUSES = frozenset({17, 20})


def load_xtdata():
    """The real xtdata module; DataUnavailable where its native part cannot load (anything but Windows)."""
    xtdata = import_xtquant("xtdata")
    xtdata.enable_hello = False  # no banner on connect
    return xtdata


class XtQuantSource:
    name = "xtquant"
    label = "miniQMT 实时行情（xtquant）"

    def __init__(self, settings, clock, bar_store: BarStore, loader: Callable[[], Any] = load_xtdata):
        self._settings = settings
        self._clock = clock
        self._bars = bar_store
        self._loader = loader
        self._xt = None
        self._publish: Optional[Publish] = None
        self._lock = threading.Lock()
        self._watch: list[str] = []
        self._subscription: Optional[int] = None
        self._details: dict[str, tuple[date, dict]] = {}
        self._next_bar_update: Optional[datetime] = None
        self._push_errors: list[str] = []
        self._client_seen: Any = None  # the xtdata client our subscription lives on
        self._subscribed_at = 0.0  # time.monotonic() of the last subscription
        self._last_push: dict[str, tuple[float, datetime]] = {}  # code -> (monotonic, tick time) of its last push
        self._polled_since: dict[str, datetime] = {}  # code -> tick time of the first poll after subscribing
        self._suspended_seen: dict[str, datetime] = {}  # code -> market time a poll or push last said 停牌
        self.connected = False

    def start(self, publish: Publish) -> None:
        self._publish = publish
        self._connect()

    def set_watchlist(self, codes: Sequence[str]) -> None:
        watch = list(dict.fromkeys(codes))
        with self._lock:
            if watch == self._watch:
                return
            added = [code for code in watch if code not in self._watch]
            self._watch = watch
            self._next_bar_update = None  # new codes want their bars now
        if self.connected:
            self._subscribe()
            self._publish_now(added)

    def _publish_now(self, codes: list[str]) -> None:
        """A code just subscribed (e.g. a position that just appeared) is quoted at once: a push for it may have
        gone out before the subscription, and the next poll is up to MONITOR_INTERVAL away."""
        if not codes or self._publish is None:
            return
        errors: list[str] = []
        try:
            quotes = self._poll_quotes(codes, errors)
        except Exception as exc:  # xtdata raises bare Exceptions when miniQMT goes away; the next step retries
            log.warning("订阅新股票后立即取行情失败：%s", exc)
            return
        for message in errors:
            self._push_error(message)
        for quote in quotes:
            self._publish(quote)

    def is_suspended(self, code: str) -> bool:
        """A poll or push said the stock is suspended within QUOTE_STALE_SECONDS (an old word proves nothing)."""
        seen = self._suspended_seen.get(code)
        limit = float(self._settings.get("QUOTE_STALE_SECONDS"))
        return seen is not None and (self._clock.now() - seen).total_seconds() <= limit

    def _note_status(self, code: str, tick: dict) -> None:
        if tick_suspended(tick):
            self._suspended_seen[code] = self._clock.now()
        else:
            self._suspended_seen.pop(code, None)

    def stock_name(self, code: str) -> str:
        detail = self._detail(code) if self.connected else None
        return str(detail.get("InstrumentName") or "") if detail else ""

    def run_once(self) -> SourceStep:
        step = SourceStep(wait=idle_wait(self._settings, self._clock))
        with self._lock:
            step.errors, self._push_errors = self._push_errors, []
            watch = list(self._watch)
        try:
            if not self.connected:
                self._connect()
                self._subscribe()
            if watch:
                step.quotes = self._poll_quotes(watch, step.errors)
                self._check_subscription(step.quotes)
            if self._bars_due():
                self._update_bars(watch, step)
        except DataUnavailable as exc:
            step.errors.append(exc.message)
        except Exception as exc:  # xtdata raises bare Exceptions when miniQMT goes away
            self.connected = False
            step.errors.append(f"miniQMT 行情服务异常，稍后重连：{exc}")
        return step

    def close(self) -> None:
        if self._xt is not None and self._subscription:
            try:
                self._xt.unsubscribe_quote(self._subscription)
            except Exception as exc:
                log.warning("退订 miniQMT 行情失败：%s", exc)
        self._subscription = None
        self.connected = False

    # ---- connection and push
    def _connect(self) -> None:
        if self._xt is None:
            self._xt = self._loader()
        try:
            self._xt.connect()
        except Exception as exc:
            self.connected = False
            raise DataUnavailable("XT_CONNECT_FAILED", f"无法连接 miniQMT 行情服务（请确认 miniQMT 已启动并登录）：{exc}") from exc
        self.connected = True
        log.info("已连接 miniQMT 行情服务")
        self._load_broker_calendar()

    def _load_broker_calendar(self) -> None:
        """miniQMT's trading calendar (trading days plus its holiday table) extends the market calendar past
        the end of exchange_calendars' table, so a live session never has to guess holidays from weekdays."""
        start = (self._clock.today() - timedelta(days=30)).strftime("%Y%m%d")
        try:
            days = self._xt.get_trading_calendar("SH", start_time=start)
        except Exception as exc:  # an old client without holiday data: the weekday fallback stays, warned
            log.warning("无法从 miniQMT 读取交易日历（%s），继续使用 exchange_calendars", exc)
            return
        self._clock.calendar.add_broker_days(date(int(d[:4]), int(d[4:6]), int(d[6:8])) for d in days)

    def _subscribe(self) -> None:
        with self._lock:
            watch = list(self._watch)
        if self._subscription:
            self._xt.unsubscribe_quote(self._subscription)
            self._subscription = None
        if not watch:
            return
        seq = self._xt.subscribe_whole_quote(watch, self._on_push)
        self._client_seen = self._xt.get_client()
        self._subscribed_at = time.monotonic()
        self._polled_since = {}
        if not seq or seq < 0:
            self._push_error(f"订阅 miniQMT 实时行情失败（返回 {seq}），改为每 {self._settings.get('MONITOR_INTERVAL')} 秒轮询")
            return
        self._subscription = seq

    def _check_subscription(self, polled: list[Quote]) -> None:
        """xtdata's get_client() silently replaces a client whose miniQMT restarted, and the push subscription
        dies with the old one (issue 13). Resubscribe when the client object changed, or when polling shows a
        newer tick for a subscribed code than both its last push and the first poll after subscribing, while it
        has not been pushed for PUSH_SILENCE_SECONDS (a suspended stock that never ticks is left alone)."""
        if not self._subscription:
            return
        reason = ""
        if self._xt.get_client() is not self._client_seen:
            reason = "miniQMT 行情连接已更换（可能重启过）"
        else:
            silence, now = float(self._settings.get("PUSH_SILENCE_SECONDS")), time.monotonic()
            for quote in polled:
                pushed_at, pushed_time = self._last_push.get(quote.code, (self._subscribed_at, None))
                since = self._polled_since.setdefault(quote.code, quote.time)
                reference = max(since, pushed_time) if pushed_time else since
                if now - pushed_at > silence and quote.time > reference:
                    reason = f"{quote.code} 已 {now - pushed_at:.0f} 秒没有推送而轮询有新行情"
                    break
        if reason:
            log.warning("%s，实时推送订阅可能已丢失，重新订阅", reason)
            self._subscription = None  # the old one died with its client: nothing to unsubscribe
            self._subscribe()

    def _on_push(self, datas: dict) -> None:
        """xtdata's callback thread: {code: tick} for the subscribed codes. Only cached details are used here:
        a synchronous xtquant call from inside its own callback can deadlock (as it does in xttrader)."""
        for code, tick in datas.items():
            self._note_status(code, tick)
            cached = self._details.get(code)
            try:
                quote = tick_to_quote(code, tick, cached[1] if cached else None, self.name)
            except DataUnavailable as exc:
                self._push_error(exc.message)
                continue
            self._last_push[code] = (time.monotonic(), quote.time)
            if self._publish is not None:
                self._publish(quote)

    def _push_error(self, message: str) -> None:
        with self._lock:
            self._push_errors.append(message)

    # ---- polling
    def _poll_quotes(self, watch: list[str], errors: list[str]) -> list[Quote]:
        ticks = self._xt.get_full_tick(watch)
        quotes = []
        for code in watch:
            tick = ticks.get(code)
            if not tick:
                errors.append(f"miniQMT 没有返回 {code} 的行情")
                continue
            self._note_status(code, tick)
            try:
                quotes.append(tick_to_quote(code, tick, self._detail(code), self.name))
            except DataUnavailable as exc:
                errors.append(exc.message)
        return quotes

    def _detail(self, code: str) -> Optional[dict]:
        """Instrument details (name, today's limit prices), fetched once per market day."""
        today = self._clock.today()
        cached = self._details.get(code)
        if cached and cached[0] == today:
            return cached[1]
        detail = self._xt.get_instrument_detail(code)
        if detail:
            self._details[code] = (today, detail)
            listed = market_rules.listing_date_of_detail(detail)  # issue 28: a new listing's no-limit days
            if listed is not None and market_rules.instrument_data().listing_dates.get(code) != listed:
                market_rules.note_listing_dates({code: listed})
        return detail

    # ---- daily bars
    def _bars_due(self) -> bool:
        now = self._clock.now()
        return self._next_bar_update is None or now >= self._next_bar_update

    def _update_bars(self, watch: list[str], step: SourceStep) -> None:
        self._next_bar_update = self._clock.now() + timedelta(seconds=float(self._settings.get("UPDATE_INTERVAL")))
        for code in watch:
            last = self._bars.last_bar(code)
            start = last.day if last else self._history_start()
            try:
                bars = self._fetch_bars(code, start, step.errors)
            except Exception as exc:  # one code's failed download must not skip the others (issue 13)
                step.errors.append(f"下载 {code} 日线失败：{getattr(exc, 'message', exc)}")
                continue
            if last and bars and bars[0].day == last.day and abs(bars[0].close - last.close) > 1e-6:
                # The stored close changed: an ex-right day re-adjusted the forward-adjusted history.
                log.info("%s 复权价格变化，重新载入 %d 天日线", code, int(self._settings.get("HISTORY_DAYS")))
                step.history[code] = self._fetch_bars(code, self._history_start(), step.errors)
            elif bars:
                step.bars.extend(bars)

    def _history_start(self) -> date:
        days = int(int(self._settings.get("HISTORY_DAYS")) * CALENDAR_DAYS_PER_TRADING_DAY)
        return self._clock.today() - timedelta(days=days)

    def _fetch_bars(self, code: str, start: date, errors: list[str]) -> list[DailyBar]:
        start_text = start.strftime("%Y%m%d")
        # download_history_data2 (used when miniQMT reports a download API version) waits without a deadline
        bounded_call(lambda: self._xt.download_history_data(code, "1d", start_text, ""),
                     float(self._settings.get("DOWNLOAD_DEADLINE")), f"下载 {code} 日线", error=DataUnavailable)
        data = self._xt.get_market_data_ex(BAR_FIELDS, [code], period="1d", start_time=start_text, end_time="",
                                           count=-1, dividend_type=DIVIDEND_TYPE, fill_data=False)
        frame = data.get(code) if data else None
        if frame is None or frame.empty:
            errors.append(f"miniQMT 没有返回 {code} 自 {start} 起的日线")
            return []
        return frame_to_bars(code, frame, self._last_complete_day(), errors)

    def _last_complete_day(self) -> date:
        """Today's bar is complete only after the close."""
        now = self._clock.now()
        if now.time() >= market_rules.MARKET_CLOSE:
            return now.date()
        return now.date() - timedelta(days=1)


# ---- conversions (pure) ---------------------------------------------------------------------------------

def tick_to_quote(code: str, tick: dict, detail: Optional[dict], source: str) -> Quote:
    """A validated Quote from an xtdata tick dict; DataUnavailable (Chinese) for a tick no rule may use."""
    price = _number(tick.get("lastPrice"))
    prev_close = _number(tick.get("lastClose")) or _number((detail or {}).get("PreClose"))
    if not price or price <= 0:
        raise DataUnavailable("BAD_TICK", f"miniQMT 行情 {code} 的现价无效（{tick.get('lastPrice')}），未采用")
    if not prev_close or prev_close <= 0:
        raise DataUnavailable("BAD_TICK", f"miniQMT 行情 {code} 缺少昨收价，未采用")
    stamp = tick.get("time")
    if not stamp:
        raise DataUnavailable("BAD_TICK", f"miniQMT 行情 {code} 缺少时间，未采用")
    name = str((detail or {}).get("InstrumentName") or "")
    limit_up = _number((detail or {}).get("UpStopPrice"))
    limit_down = _number((detail or {}).get("DownStopPrice"))
    if not limit_up or not limit_down or limit_up <= 0 or limit_down <= 0:
        limit_down, limit_up = market_rules.price_limits(code, prev_close, market_rules.is_st_name(name),
                                                         ms_to_market_time(stamp).date())
    volume = _number(tick.get("pvolume"))
    if volume is None:
        lots = _number(tick.get("volume"))
        volume = lots * XT_VOLUME_UNIT if lots is not None else None
    return Quote(code=code, price=price, prev_close=prev_close, time=ms_to_market_time(stamp), source=source,
                 limit_up=limit_up, limit_down=limit_down, open=_positive(tick.get("open")),
                 high=_positive(tick.get("high")), low=_positive(tick.get("low")), volume=volume,
                 bid1=_first_positive(tick.get("bidPrice")), ask1=_first_positive(tick.get("askPrice")), name=name)


def tick_suspended(tick: dict) -> bool:
    """The tick's security status says the stock does not trade now (停牌)."""
    status = _number(tick.get("openInt"))
    return status is not None and int(status) in SUSPENDED_STATUSES


def frame_to_bars(code: str, frame, last_complete: date, errors: list[str]) -> list[DailyBar]:
    """Bars from a get_market_data_ex frame (time in ms, volume in lots), up to `last_complete`."""
    bars = []
    for row in frame.itertuples(index=False):
        day = ms_to_market_time(row.time).date()
        if day > last_complete:
            continue
        bar = DailyBar(code, day, float(row.open), float(row.high), float(row.low), float(row.close),
                       float(row.volume) * XT_VOLUME_UNIT)
        problem = bar.problem()
        if problem:
            errors.append(f"miniQMT 日线数据无效，已跳过：{problem}")
            continue
        bars.append(bar)
    return bars


def ms_to_market_time(milliseconds: float) -> datetime:
    """xtdata timestamps are epoch milliseconds; market time is Beijing time (naive)."""
    return datetime.fromtimestamp(float(milliseconds) / 1000, MARKET_TZ).replace(tzinfo=None)


def _number(value) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _positive(value) -> Optional[float]:
    number = _number(value)
    return number if number and number > 0 else None


def _first_positive(values) -> Optional[float]:
    if not values:
        return None
    return _positive(values[0])
