"""A-share market facts: codes and boards, price limits and ticks, lots, fees, sessions and the trading
calendar. Pure functions; the only state is the lazily built calendar table."""
from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum
from typing import Any, Iterable, Mapping, Optional

log = logging.getLogger(__name__)


class Board(str, Enum):
    MAIN = "main"
    CHINEXT = "chinext"
    STAR = "star"
    ETF = "etf"

    @property
    def label(self) -> str:
        return {"main": "主板", "chinext": "创业板", "star": "科创板", "etf": "ETF"}[self.value]


_EXCHANGE_BY_PREFIX = {
    # prefix: (exchange, board)
    "600": ("SH", Board.MAIN), "601": ("SH", Board.MAIN), "603": ("SH", Board.MAIN), "605": ("SH", Board.MAIN),
    "688": ("SH", Board.STAR), "689": ("SH", Board.STAR),
    "000": ("SZ", Board.MAIN), "001": ("SZ", Board.MAIN), "002": ("SZ", Board.MAIN), "003": ("SZ", Board.MAIN),
    "300": ("SZ", Board.CHINEXT), "301": ("SZ", Board.CHINEXT),
    "51": ("SH", Board.ETF), "56": ("SH", Board.ETF), "58": ("SH", Board.ETF),
    "15": ("SZ", Board.ETF), "16": ("SZ", Board.ETF),
}

_CODE_PATTERN = re.compile(r"^(?:(SH|SZ))?(\d{6})(?:\.(SH|SZ))?$")

LIMIT_PCT = {Board.MAIN: Decimal("0.10"), Board.CHINEXT: Decimal("0.20"), Board.STAR: Decimal("0.20"),
             Board.ETF: Decimal("0.10")}

# ST/*ST (风险警示) on the main board, by trading day: ±10 % from 2026-07-06, ±5 % through 2026-07-03.
# SSE 《交易规则（2026年修订）》 上证发〔2026〕41号 and SZSE 《交易规则（2026年修订）》 深证上〔2026〕551号, both
# published 2026-04-24, effective 2026-07-06 (shared/reference/instrument_rules.md §2, checked 2026-12-07).
# ChiNext and STAR ST keep their board's ±20 %. The date and both bands are config.py parameters
# (ST_LIMIT_CHANGE_DATE, ST_LIMIT_PCT_BEFORE, ST_LIMIT_PCT); these are their defaults.
ST_LIMIT_CHANGE_DATE = date(2026, 7, 6)
ST_LIMIT_PCT_BEFORE = Decimal("0.05")
ST_LIMIT_PCT = Decimal("0.10")
LOT = 100
STAR_MIN_BUY = 200  # STAR: at least 200 shares, then any whole number


@dataclass(frozen=True)
class StLimitRule:
    """The main-board ST band as a rule by date: `pct_before` for trading days before `change_date`,
    `pct_from` from it on. A day of None means a current trading day (the newest band)."""

    change_date: date = ST_LIMIT_CHANGE_DATE
    pct_before: Decimal = ST_LIMIT_PCT_BEFORE
    pct_from: Decimal = ST_LIMIT_PCT

    def pct_on(self, day: Optional[date]) -> Decimal:
        if day is not None and _as_date(day) < self.change_date:
            return self.pct_before
        return self.pct_from

    @classmethod
    def from_config(cls, config: Any) -> "StLimitRule":
        """From ST_LIMIT_CHANGE_DATE / ST_LIMIT_PCT_BEFORE / ST_LIMIT_PCT of a config mapping or object."""
        return cls(_as_date(_param(config, "ST_LIMIT_CHANGE_DATE")),
                   Decimal(str(_param(config, "ST_LIMIT_PCT_BEFORE"))), Decimal(str(_param(config, "ST_LIMIT_PCT"))))


_st_rule = StLimitRule()


def use_st_rule(rule: StLimitRule) -> None:
    """Install the configured ST rule for this process (composition does, from the effective settings), so the
    live checks, the sim account, replay and the chart all apply the same band."""
    global _st_rule
    _st_rule = rule


def st_rule() -> StLimitRule:
    return _st_rule


def normalize_code(text: str) -> str:
    """`600036`, `sh600036`, `600036.SH` → `600036.SH`; ValueError with a Chinese message otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"股票代码必须是文本，收到：{text!r}")
    cleaned = text.strip().upper()
    match = _CODE_PATTERN.match(cleaned)
    if not match:
        raise ValueError(f"无效的股票代码「{text}」：应为6位数字，可带交易所，如 600036、sh600036、600036.SH")
    prefix_exchange, digits, suffix_exchange = match.groups()
    if prefix_exchange and suffix_exchange:
        raise ValueError(f"无效的股票代码「{text}」：交易所只能写一次")
    exchange, _ = _lookup(digits, text)
    given = prefix_exchange or suffix_exchange
    if given and given != exchange:
        raise ValueError(f"股票代码「{text}」与交易所不符：{digits} 属于{_exchange_label(exchange)}")
    return f"{digits}.{exchange}"


def board(code: str) -> Board:
    """Board of a normalized (or normalizable) code."""
    return _lookup(_digits(code), code)[1]


def tick_size(code: str) -> Decimal:
    return Decimal("0.001") if board(code) is Board.ETF else Decimal("0.01")


def price_limits(code: str, prev_close: float, is_st: bool = False, day: Optional[date] = None,
                 rule: Optional[StLimitRule] = None) -> tuple[float, float]:
    """(limit_down, limit_up) on trading day `day`: prev close × (1 ∓ pct), rounded half-up to the tick. A
    main-board ST stock takes the ST band of that day (`rule`, else the installed one)."""
    if not prev_close or prev_close <= 0 or math.isnan(prev_close):
        raise ValueError(f"{code} 昨收价无效：{prev_close}")
    the_board = board(code)
    if is_st and the_board is Board.MAIN:
        pct = (rule or _st_rule).pct_on(day)
    else:
        pct = LIMIT_PCT[the_board]
    tick = tick_size(code)
    base = Decimal(str(prev_close))
    up = (base * (1 + pct)).quantize(tick, rounding=ROUND_HALF_UP)
    down = max((base * (1 - pct)).quantize(tick, rounding=ROUND_HALF_UP), tick)
    return float(down), float(up)


def is_st_name(name: Optional[str]) -> bool:
    """ST / *ST (risk warning) from the security's name, as the exchanges print it."""
    return "ST" in (name or "").upper()


def round_price(code: str, price: float) -> float:
    """Round half-up to the code's tick (0.01, or 0.001 for ETFs)."""
    return float(Decimal(str(price)).quantize(tick_size(code), rounding=ROUND_HALF_UP))


def round_price_up(code: str, price: float) -> float:
    """Smallest tick ≥ price: where an upward trigger first fills (DESIGN §7)."""
    tick = tick_size(code)
    return float((Decimal(str(price)) / tick).to_integral_value(rounding="ROUND_CEILING") * tick)


def round_price_down(code: str, price: float) -> float:
    """Largest tick ≤ price: where a downward trigger first fills (DESIGN §7)."""
    tick = tick_size(code)
    return float((Decimal(str(price)) / tick).to_integral_value(rounding="ROUND_FLOOR") * tick)


def buy_volume_for_amount(code: str, amount: float, price: float) -> int:
    """Largest valid buy volume whose gross value (price × volume) fits in `amount`; 0 if none."""
    if price <= 0 or amount <= 0:
        return 0
    shares = int(Decimal(str(amount)) // Decimal(str(price)))
    if board(code) is Board.STAR:
        return shares if shares >= STAR_MIN_BUY else 0
    return shares // LOT * LOT


def min_buy_volume(code: str) -> int:
    """The smallest buy: one lot of 100, on STAR 200 shares."""
    return STAR_MIN_BUY if board(code) is Board.STAR else LOT


def is_valid_buy_volume(code: str, volume: int) -> bool:
    if not _is_whole(volume) or volume <= 0:
        return False
    if board(code) is Board.STAR:
        return volume >= STAR_MIN_BUY
    return volume % LOT == 0


def is_valid_sell_volume(code: str, volume: int, available: int) -> bool:
    """Lots of 100 (STAR: ≥ 200 shares), or exactly everything available (an odd remainder goes at once)."""
    if not _is_whole(volume) or volume <= 0 or volume > available:
        return False
    if volume == available:
        return True
    if board(code) is Board.STAR:
        return volume >= STAR_MIN_BUY
    return volume % LOT == 0


def sell_volume_for_ratio(code: str, available: int, ratio: float) -> int:
    """`ratio` of `available` rounded down to a valid sell volume; everything when that rounds to 0."""
    if available <= 0:
        return 0
    wanted = int(available * ratio)
    if board(code) is Board.STAR:
        volume = wanted if wanted >= STAR_MIN_BUY else 0
    else:
        volume = wanted // LOT * LOT
    if volume <= 0 or not is_valid_sell_volume(code, volume, available):
        return available
    return volume


def fees(code: str, side: str, price: float, volume: int, config: Any) -> dict[str, float]:
    """Commission (with minimum), stamp duty (sells only), transfer fee; each rounded half-up to 0.01."""
    side_value = getattr(side, "value", side)
    amount = Decimal(str(price)) * Decimal(int(volume))
    commission = max(amount * Decimal(str(_param(config, "COMMISSION_RATE"))),
                     Decimal(str(_param(config, "MIN_COMMISSION"))))
    is_etf = board(code) is Board.ETF  # ETFs pay neither stamp duty nor transfer fee
    stamp = amount * Decimal(str(_param(config, "STAMP_DUTY_RATE"))) if side_value == "sell" and not is_etf else 0
    transfer = amount * Decimal(str(_param(config, "TRANSFER_FEE_RATE"))) if not is_etf else 0
    parts = {"commission": _cents(commission), "stamp_duty": _cents(Decimal(stamp)),
             "transfer_fee": _cents(Decimal(transfer))}
    parts["total"] = round(sum(parts.values()), 2)
    return parts


# ---- sessions and calendar -------------------------------------------------------------------------

CALL_AUCTION_START = time(9, 15)
CALL_AUCTION_END = time(9, 25)
PRE_OPEN_START = time(9, 0)
MORNING_OPEN = time(9, 30)
MORNING_CLOSE = time(11, 30)
AFTERNOON_OPEN = time(13, 0)
CLOSING_AUCTION_START = time(14, 57)
MARKET_CLOSE = time(15, 0)

TRADING_SESSIONS = ("call_auction", "continuous", "closing_auction")


class TradingCalendar:
    """XSHG trading days from exchange_calendars, the owner's holiday file (`add_holidays`: listed days are
    closed, and weekdays up to the end of the file's last year are known) and, in live mode, the broker's own
    calendar (`add_broker_days`). Past all of them, days are estimated as weekdays (warned once)."""

    def __init__(self, calendar_name: str = "XSHG"):
        self._name = calendar_name
        self._lock = threading.Lock()
        self._sessions: Optional[frozenset[date]] = None
        self._first: Optional[date] = None
        self._last: Optional[date] = None
        self._broker_days: set[date] = set()
        self._broker_last: Optional[date] = None
        self._holidays: frozenset[date] = frozenset()
        self._holidays_last: Optional[date] = None
        self._estimated_warning = ""
        self.expiry_warning = ""  # set at start-up by `check_expiry`

    def is_trading_day(self, day: date) -> bool:
        day = _as_date(day)
        self._load()
        if day in self._holidays:
            return False
        if self._first <= day <= self._last:
            return day in self._sessions
        if self._broker_last and day <= self._broker_last:
            return day in self._broker_days
        if self._holidays_last and day <= self._holidays_last:
            return day.weekday() < 5
        self._warn_fallback()
        return day.weekday() < 5

    @property
    def fallback_warning(self) -> str:
        """What the status shows: the weekday estimate once it was used, else the start-up expiry warning."""
        return self._estimated_warning or self.expiry_warning

    @property
    def last_table_day(self) -> date:
        """The last day exchange_calendars' table knows."""
        self._load()
        return self._last

    @property
    def known_through(self) -> date:
        """The last day that is known rather than estimated: the table, the broker's calendar or the owner's
        holiday file, whichever reaches furthest."""
        self._load()
        return max(d for d in (self._last, self._broker_last, self._holidays_last) if d is not None)

    def next_trading_day(self, day: date) -> date:
        candidate = _as_date(day) + timedelta(days=1)
        while not self.is_trading_day(candidate):
            candidate += timedelta(days=1)
        return candidate

    def previous_trading_day(self, day: date) -> date:
        candidate = _as_date(day) - timedelta(days=1)
        while not self.is_trading_day(candidate):
            candidate -= timedelta(days=1)
        return candidate

    def trading_days_between(self, start: date, end: date) -> int:
        """Number of trading days d with start < d <= end."""
        count, day = 0, _as_date(start)
        end = _as_date(end)
        while day < end:
            day += timedelta(days=1)
            count += self.is_trading_day(day)
        return count

    def add_broker_days(self, days: Iterable[date]) -> None:
        """Extend the calendar with the broker's trading days (xtdata.get_trading_calendar) in live mode."""
        days = {_as_date(d) for d in days}
        if days:
            with self._lock:
                self._broker_days |= days
                self._broker_last = max(self._broker_days)

    def add_holidays(self, days: Iterable[date]) -> None:
        """The owner's official holidays (HOLIDAYS_FILE): each is closed, and every weekday through the end of
        the last year listed counts as known (a trading day unless listed)."""
        days = frozenset(_as_date(d) for d in days)
        if days:
            with self._lock:
                self._holidays = self._holidays | days
                self._holidays_last = date(max(d.year for d in self._holidays), 12, 31)

    def check_expiry(self, today: date, warn_days: int) -> str:
        """The start-up warning when the known days end within `warn_days` days of `today` ('' otherwise);
        kept for the status until the next start."""
        last = self.known_through
        left = (last - _as_date(today)).days
        self.expiry_warning = "" if left > warn_days else (
            f"交易日历只覆盖到 {last}（还剩 {max(left, 0)} 天），之后的节假日将按工作日估算。"
            f"请升级 exchange_calendars，或在节假日文件（参数 HOLIDAYS_FILE）中加入交易所公布的休市日")
        return self.expiry_warning

    def _load(self) -> None:
        if self._sessions is not None:
            return
        with self._lock:
            if self._sessions is not None:
                return
            import exchange_calendars  # imported lazily: it is slow and only needed for dates

            calendar = exchange_calendars.get_calendar(self._name)
            sessions = frozenset(ts.date() for ts in calendar.sessions)
            self._first, self._last = calendar.first_session.date(), calendar.last_session.date()
            self._sessions = sessions

    def _warn_fallback(self) -> None:
        if not self._estimated_warning:
            self._estimated_warning = (f"交易日历只覆盖到 {self.known_through}，之后按工作日估算（节假日可能误判），"
                                       f"请升级 exchange_calendars、使用券商日历，或在节假日文件（参数 HOLIDAYS_FILE）"
                                       f"中加入交易所公布的休市日")
            log.warning(self._estimated_warning)


def read_holidays_file(path: Any) -> list[date]:
    """HOLIDAYS_FILE: one YYYY-MM-DD per line; `#` starts a comment, blank lines are ignored. A line that is
    not a date raises ValueError naming the file and the line (the daemon refuses to start on it)."""
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"节假日文件 {path} 不存在（参数 HOLIDAYS_FILE）") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"节假日文件 {path} 无法读取（{getattr(exc, 'strerror', None) or '不是 UTF-8 文本'}）") from None
    days = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry):
            raise ValueError(f"节假日文件 {path} 第 {number} 行「{entry[:40]}」不是 YYYY-MM-DD 格式的日期")
        try:
            days.append(date.fromisoformat(entry))
        except ValueError:
            raise ValueError(f"节假日文件 {path} 第 {number} 行「{entry}」不是有效日期") from None
    return days


def configure_calendar(calendar: "TradingCalendar", holidays_file: str, today: date, warn_days: int) -> str:
    """Start-up: the owner's holidays into `calendar` (ValueError on a bad file), then the expiry warning
    ('' when the known days reach further than `warn_days` days past `today`)."""
    if str(holidays_file or "").strip():
        calendar.add_holidays(read_holidays_file(str(holidays_file).strip()))
    return calendar.check_expiry(today, warn_days)


DEFAULT_CALENDAR = TradingCalendar()


def is_trading_day(day: date, calendar: Optional[TradingCalendar] = None) -> bool:
    return (calendar or DEFAULT_CALENDAR).is_trading_day(day)


def session_at(moment: datetime, calendar: Optional[TradingCalendar] = None) -> str:
    """'pre_open' | 'call_auction' | 'continuous' | 'lunch_break' | 'closing_auction' | 'closed' (market time)."""
    if not is_trading_day(moment.date(), calendar):
        return "closed"
    now = moment.time()
    if now < PRE_OPEN_START or now >= MARKET_CLOSE:
        return "closed"
    if now < CALL_AUCTION_START:
        return "pre_open"
    if now < CALL_AUCTION_END:
        return "call_auction"
    if now < MORNING_OPEN:
        return "pre_open"  # 09:25–09:30: orders queue, nothing matches
    if now < MORNING_CLOSE:
        return "continuous"
    if now < AFTERNOON_OPEN:
        return "lunch_break"
    if now < CLOSING_AUCTION_START:
        return "continuous"
    return "closing_auction"


def is_trading_session(moment: datetime, calendar: Optional[TradingCalendar] = None) -> bool:
    return session_at(moment, calendar) in TRADING_SESSIONS


def next_session_start(moment: datetime, calendar: Optional[TradingCalendar] = None) -> datetime:
    """`moment` itself while the market trades; otherwise the next start of trading (09:15 call auction,
    09:30 after the auction pause, or 13:00 after lunch)."""
    session = session_at(moment, calendar)
    if session in TRADING_SESSIONS:
        return moment
    day, now = moment.date(), moment.time()
    if session != "closed" or (is_trading_day(day, calendar) and now < PRE_OPEN_START):
        for start in (CALL_AUCTION_START, MORNING_OPEN, AFTERNOON_OPEN):
            if now < start:
                return datetime.combine(day, start)
    next_day = (calendar or DEFAULT_CALENDAR).next_trading_day(day)
    return datetime.combine(next_day, CALL_AUCTION_START)


def calendar_warning(calendar: Optional[TradingCalendar] = None) -> str:
    """Non-empty once the calendar had to fall back to weekdays (shown in the status)."""
    return (calendar or DEFAULT_CALENDAR).fallback_warning


# ---- helpers ---------------------------------------------------------------------------------------

def _digits(code: str) -> str:
    match = _CODE_PATTERN.match(str(code).strip().upper())
    if not match:
        raise ValueError(f"无效的股票代码「{code}」")
    return match.group(2)


def _lookup(digits: str, original: str) -> tuple[str, Board]:
    for prefix in (digits[:3], digits[:2]):
        if prefix in _EXCHANGE_BY_PREFIX:
            return _EXCHANGE_BY_PREFIX[prefix]
    raise ValueError(f"不支持的股票代码「{original}」：仅支持沪深主板、创业板、科创板股票和ETF")


def _exchange_label(exchange: str) -> str:
    return "上海证券交易所(.SH)" if exchange == "SH" else "深圳证券交易所(.SZ)"


def _is_whole(volume: Any) -> bool:
    if isinstance(volume, bool):
        return False
    if isinstance(volume, int):
        return True
    return isinstance(volume, float) and volume.is_integer()


def _cents(value: Decimal) -> float:
    return float(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _param(config: Any, key: str) -> Any:
    if isinstance(config, Mapping):
        return config[key]
    getter = getattr(config, "get", None)
    if callable(getter):
        return getter(key)
    return getattr(config, key)


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
