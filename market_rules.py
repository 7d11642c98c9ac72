"""A-share market facts: codes and boards, price limits and ticks, lots, fees, sessions and the trading
calendar. Pure functions; the only module state is the lazily built calendar table (a HaltTracker is state
its caller holds)."""
from __future__ import annotations

import logging
import math
import re
import threading
from functools import lru_cache
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

log = logging.getLogger(__name__)


class Board(str, Enum):
    """The instrument kind a code belongs to: a stock board, ETFs/LOFs, or convertible bonds (issue 28)."""

    MAIN = "main"
    CHINEXT = "chinext"
    STAR = "star"
    ETF = "etf"
    BJ = "bj"  # Beijing Stock Exchange 北交所
    BOND = "bond"  # convertible bonds 可转债

    @property
    def label(self) -> str:
        return {"main": "主板", "chinext": "创业板", "star": "科创板", "etf": "ETF", "bj": "北交所",
                "bond": "可转债"}[self.value]


_EXCHANGE_BY_PREFIX = {
    # prefix: (exchange, board)
    "600": ("SH", Board.MAIN), "601": ("SH", Board.MAIN), "603": ("SH", Board.MAIN), "605": ("SH", Board.MAIN),
    "688": ("SH", Board.STAR), "689": ("SH", Board.STAR),
    "000": ("SZ", Board.MAIN), "001": ("SZ", Board.MAIN), "002": ("SZ", Board.MAIN), "003": ("SZ", Board.MAIN),
    "300": ("SZ", Board.CHINEXT), "301": ("SZ", Board.CHINEXT),
    "51": ("SH", Board.ETF), "56": ("SH", Board.ETF), "58": ("SH", Board.ETF),
    "15": ("SZ", Board.ETF), "16": ("SZ", Board.ETF),
    # ---- issue 28 (shared/reference/instrument_rules.md §0, §3, §4; checked 2026-12-08):
    # 北交所: 920xxx for every BSE stock since 2025-10-09 (new listings since 2024-04-22); the old 43/83/87/88
    # codes were retired that day [S, 13], so they are not accepted (history under them needs an old→new map).
    "920": ("BJ", Board.BJ),
    # Convertible bonds: SH 110/111/113, 118 (STAR issuers); SZ 123 (ChiNext issuers), 127, 128 [S, 10, 11].
    # Exchangeable bonds (SH 132, SZ 120) and reverse repo (204/1318) are NOT included: see UNTRADABLE_KINDS.
    "110": ("SH", Board.BOND), "111": ("SH", Board.BOND), "113": ("SH", Board.BOND), "118": ("SH", Board.BOND),
    "123": ("SZ", Board.BOND), "127": ("SZ", Board.BOND), "128": ("SZ", Board.BOND),
}

# Codes a real account may hold that the daemon does not trade by its rules: shown with this reason, never
# acted on (issue 28). Prefix → what it is (instrument_rules.md §0, §3, §6).
UNTRADABLE_KINDS = {
    "204": "上海国债逆回购", "1318": "深圳国债逆回购", "132": "上海可交换债", "120": "深圳可交换债",
    "43": "北交所旧代码（2025-10-09 起已改为 920 开头）", "83": "北交所旧代码（2025-10-09 起已改为 920 开头）",
    "87": "北交所旧代码（2025-10-09 起已改为 920 开头）", "88": "北交所旧代码（2025-10-09 起已改为 920 开头）",
    "50": "上海 LOF/封闭式基金", "900": "上海 B 股", "200": "深圳 B 股",
}

_CODE_PATTERN = re.compile(r"^(?:(SH|SZ|BJ))?(\d{6})(?:\.(SH|SZ|BJ))?$")

# Normal daily band by kind. Stocks: DESIGN §5. BSE ±30 % [S, 23]; convertible bonds ±20 % of the previous
# close from day 2, SSE/SZSE 《可转换公司债券交易实施细则》 (SZSE 深证上〔2022〕719号), effective 2022-08-01
# [V, 24, 25]; ETFs ±10 % (ChiNext/STAR-index ETFs ±20 % — live takes the exchange's own UpStopPrice).
LIMIT_PCT = {Board.MAIN: Decimal("0.10"), Board.CHINEXT: Decimal("0.20"), Board.STAR: Decimal("0.20"),
             Board.ETF: Decimal("0.10"), Board.BJ: Decimal("0.30"), Board.BOND: Decimal("0.20")}

# Convertible bonds, first listing day: valid range +57.3 % / −43.3 % of the issue price (the day's reference),
# same rule as above [V, 25; S, 12, 26]. Before 2022-08-01 CBs had no daily band (only halts): no limit then.
BOND_FIRST_DAY_UP = Decimal("0.573")
BOND_FIRST_DAY_DOWN = Decimal("0.433")
BOND_RULES_SINCE = date(2022, 8, 1)

# New listings without a price limit (registration system, instrument_rules.md §2 [V, 5, 6]): the first 5
# trading days on STAR since 2019-07-22, ChiNext since 2020-08-24 (深证上〔2020〕515号) and the SH/SZ main board
# since the first registration listing on 2023-04-10; BSE only the first day [S, 23]. A board's listings before
# its date followed the approval rules: day 1 +44 % / −36 %, then the normal band [S, 6].
NEW_LISTING_FREE_DAYS = {Board.STAR: 5, Board.CHINEXT: 5, Board.MAIN: 5, Board.BJ: 1}
REGISTRATION_SINCE = {Board.STAR: date(2019, 7, 22), Board.CHINEXT: date(2020, 8, 24), Board.MAIN: date(2023, 4, 10),
                      Board.BJ: date(2021, 11, 15)}
APPROVAL_FIRST_DAY_UP = Decimal("0.44")
APPROVAL_FIRST_DAY_DOWN = Decimal("0.36")

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
BJ_MIN_BUY = 100  # BSE: at least 100 shares, then any whole share [S, 23]
BOND_LOT = 10  # convertible bonds: 1 手 = 10 张, orders in multiples of 10 张 on both exchanges [S, 25]


@dataclass(frozen=True)
class LotRule:
    """Order sizes of a kind: buy at least `minimum`, in steps of `step`; a sell is the same or the whole
    remainder at once (an odd lot)."""

    minimum: int
    step: int


LOT_RULES = {Board.MAIN: LotRule(LOT, LOT), Board.CHINEXT: LotRule(LOT, LOT), Board.ETF: LotRule(LOT, LOT),
             Board.STAR: LotRule(STAR_MIN_BUY, 1), Board.BJ: LotRule(BJ_MIN_BUY, 1),
             Board.BOND: LotRule(BOND_LOT, BOND_LOT)}


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
    """0.01 CNY for stocks; 0.001 for ETFs/LOFs [S, 18] and convertible bonds [V, 24]."""
    return Decimal("0.001") if board(code) in (Board.ETF, Board.BOND) else Decimal("0.01")


def lot_rule(code: str) -> LotRule:
    return LOT_RULES[board(code)]


def volume_unit(code: str) -> str:
    """What one unit of volume is called: 张 for bonds, 股 (shares or fund units) otherwise."""
    return "张" if board(code) is Board.BOND else "股"


# ---- instrument data: the T+0 list and listing dates (issue 28) ---------------------------------------

DEFAULT_T0_TABLE = Path(__file__).resolve().parent / "market" / "t0_etfs.csv"


@dataclass(frozen=True)
class InstrumentData:
    """Facts that come from data, not from the code: which funds trade T+0 (`t0_codes`, from the maintained
    table market/t0_etfs.csv or T0_ETF_FILE; xtdata documents no T+0 field, instrument_rules.md §5) and the
    listing dates of new listings (`listing_dates`: xtdata OpenDate live, LISTING_DATES_FILE offline). A code
    without a known listing date is treated as an established listing (its normal band)."""

    t0_codes: frozenset = frozenset()
    listing_dates: Mapping[str, date] = field(default_factory=dict)

    def with_listing_dates(self, dates: Mapping[str, date]) -> "InstrumentData":
        return InstrumentData(self.t0_codes, {**self.listing_dates, **{c: _as_date(d) for c, d in dates.items()}})


_instrument_data: Optional[InstrumentData] = None
_instrument_lock = threading.Lock()


def use_instrument_data(data: InstrumentData) -> None:
    """Install the process's instrument data (composition does, from the configured files), so the live
    checks, the sim account, replay, the chart and the backtest use the same facts."""
    global _instrument_data
    _instrument_data = data


def instrument_data() -> InstrumentData:
    """The installed data; at first use without one, the shipped T+0 table and no listing dates."""
    global _instrument_data
    if _instrument_data is None:
        with _instrument_lock:
            if _instrument_data is None:
                _instrument_data = InstrumentData(read_t0_table(DEFAULT_T0_TABLE))
    return _instrument_data


def note_listing_dates(dates: Mapping[str, Any]) -> None:
    """Add listing dates learnt at run time (e.g. xtdata instrument detail OpenDate)."""
    global _instrument_data
    with _instrument_lock:
        current = _instrument_data or InstrumentData(read_t0_table(DEFAULT_T0_TABLE))
        _instrument_data = current.with_listing_dates(dates)


def instrument_data_from_config(config: Any) -> InstrumentData:
    """From T0_ETF_FILE (empty: the shipped table) and LISTING_DATES_FILE (empty: none); ValueError with a
    Chinese message naming the file when one cannot be read."""
    t0_file = str(_param(config, "T0_ETF_FILE") or "").strip() or DEFAULT_T0_TABLE
    listing_file = str(_param(config, "LISTING_DATES_FILE") or "").strip()
    try:
        t0_codes = read_t0_table(t0_file)
        listing = read_listing_dates(listing_file) if listing_file else {}
    except OSError as exc:
        raise ValueError(f"品种数据文件 {exc.filename} 无法读取（参数 T0_ETF_FILE / LISTING_DATES_FILE）") from None
    return InstrumentData(t0_codes, listing)


def read_t0_table(path: Any) -> frozenset:
    """Codes of a T+0 table: CSV with a `code` column (`#` lines are comments: source and date)."""
    import csv

    lines = [line for line in Path(path).read_text(encoding="utf-8-sig").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    codes = set()
    for row in csv.DictReader(lines):
        try:
            codes.add(normalize_code(str(row.get("code") or "")))
        except ValueError as exc:
            raise ValueError(f"T+0 品种表 {path} 的一行无效（{exc}）") from None
    return frozenset(codes)


def read_listing_dates(path: Any) -> dict[str, date]:
    """LISTING_DATES_FILE: CSV `code,listing_date` (YYYY-MM-DD; `#` lines are comments)."""
    import csv

    lines = [line for line in Path(path).read_text(encoding="utf-8-sig").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    dates = {}
    for row in csv.DictReader(lines):
        try:
            dates[normalize_code(str(row.get("code") or ""))] = date.fromisoformat(str(row.get("listing_date")).strip())
        except ValueError as exc:
            raise ValueError(f"上市日期文件 {path} 的一行无效（{row}）：{exc}") from None
    return dates


def listing_date_of_detail(detail: Optional[Mapping[str, Any]]) -> Optional[date]:
    """The listing date in an xtdata instrument detail (`OpenDate`, e.g. 20261201 or "20261201"); None when
    absent or not a date (instrument_rules.md §0, xtquant_api.md)."""
    text = str((detail or {}).get("OpenDate") or "").strip()[:8]
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def is_t0(code: str, data: Optional[InstrumentData] = None) -> bool:
    """Shares bought today can be sold today: convertible bonds [V, 24] and the T+0 funds of the table (bond,
    gold, cross-border/QDII, money-market, commodity ETFs [S, 30, 31]); everything else is T+1."""
    kind = board(code)
    if kind is Board.BOND:
        return True
    return kind is Board.ETF and code in (data or instrument_data()).t0_codes


def listing_day_number(code: str, day: Optional[date], data: Optional[InstrumentData] = None,
                       calendar: Optional["TradingCalendar"] = None) -> Optional[int]:
    """1 on the listing day, 2 the next trading day, …; None when the listing date is unknown (or `day` is)."""
    if day is None:
        return None
    listed = (data or instrument_data()).listing_dates.get(code)
    day = _as_date(day)
    if listed is None or day < listed:
        return None
    if (day - listed).days > 40:  # far past any no-limit window: no need to count trading days
        return 1 + (day - listed).days
    return 1 + (calendar or DEFAULT_CALENDAR).trading_days_between(listed, day)


def day_limits(code: str, prev_close: float, is_st: bool = False, day: Optional[date] = None,
               rule: Optional[StLimitRule] = None, listing_day: Optional[int] = None,
               data: Optional[InstrumentData] = None) -> Optional[tuple[float, float]]:
    """(limit_down, limit_up) on trading day `day`, or None on a day without a price limit (a new listing's
    first days; a convertible bond before 2022-08-01). `listing_day` = the day's number since listing (1 =
    listing day); None looks it up in the instrument data, and an unknown listing date means an established
    listing (its normal band)."""
    _check_prev_close(code, prev_close)
    kind = board(code)
    if listing_day is None:
        listing_day = listing_day_number(code, day, data)
    if kind is Board.BOND:
        if day is not None and _as_date(day) < BOND_RULES_SINCE:
            return None
        if listing_day == 1:
            return _band(code, prev_close, BOND_FIRST_DAY_DOWN, BOND_FIRST_DAY_UP)
    elif listing_day is not None and kind in NEW_LISTING_FREE_DAYS:
        registered = day is None or _as_date(day) >= REGISTRATION_SINCE[kind]
        if registered and listing_day <= NEW_LISTING_FREE_DAYS[kind]:
            return None
        if not registered and listing_day == 1:
            return _band(code, prev_close, APPROVAL_FIRST_DAY_DOWN, APPROVAL_FIRST_DAY_UP)
    return price_limits(code, prev_close, is_st, day, rule)


def listing_rule_applies(code: str, day: Optional[date], data: Optional[InstrumentData] = None) -> bool:
    """Whether `day` is one of the listing days with their own limits (none, or a CB's first-day range), as
    far as the instrument data knows: these take `day_limits`, not an exchange band carried by a quote that
    was computed without the listing date."""
    number = listing_day_number(code, day, data)
    if number is None:
        return False
    kind = board(code)
    return number <= (1 if kind is Board.BOND else NEW_LISTING_FREE_DAYS.get(kind, 0))


# ---- intraday temporary halts 盘中临时停牌 (issue 28 §1) -----------------------------------------------
# New listings on their no-limit days (registration system: STAR, ChiNext, SH/SZ main board days 1–5; BSE IPO
# day 1): the first trade at or beyond ±30 %, then ±60 %, of **the day's open** halts trading 10 minutes (each
# level once per direction, so at most 2 halts per direction) — SSE 《科创板股票交易特别规定》 (2019-07-22),
# SZSE 《创业板交易特别规定》 (2020-08-24), SSE/SZSE main-board registration listings (2023-04-10), BSE
# 《交易规则》 IPO day 1 (instrument_rules.md §2 [S, 7, 15], §3 [S, 23]; checked 2026-12-08).
# Convertible bonds, first listing day: ±20 % of the issue price halts 30 minutes, ±30 % halts to 14:57 —
# SSE/SZSE 《可转换公司债券交易实施细则》 (深证上〔2022〕719号), effective 2022-08-01 (instrument_rules.md §4
# [V, 25; S, 12, 26]). Both: a halt reaching 14:57 resumes at 14:57; orders and cancels are accepted during the
# halt, nothing matches until it ends. Minutes are wall-clock minutes (a halt over lunch simply ends in it).
HALT_RESUME_AT = time(14, 57)


@dataclass(frozen=True)
class HaltLevel:
    """A move of `pct` from the base halts `minutes` minutes (None: until HALT_RESUME_AT)."""

    pct: Decimal
    minutes: Optional[int]


@dataclass(frozen=True)
class HaltRule:
    """The day's halt levels, lowest first, and what they are measured from: "open" (the day's open) or
    "issue" (a bond's issue price: the listing day's reference price, i.e. the quote's previous close)."""

    levels: tuple[HaltLevel, ...]
    base: str


NEW_LISTING_HALTS = HaltRule((HaltLevel(Decimal("0.30"), 10), HaltLevel(Decimal("0.60"), 10)), "open")
BOND_FIRST_DAY_HALTS = HaltRule((HaltLevel(Decimal("0.20"), 30), HaltLevel(Decimal("0.30"), None)), "issue")


def halt_rule(code: str, day: Optional[date], data: Optional[InstrumentData] = None) -> Optional[HaltRule]:
    """The temporary-halt rule of `code` on `day`, or None on a day without one (as far as the instrument
    data knows the listing date: an unknown one means an established listing, no halts)."""
    number = listing_day_number(code, day, data)
    if number is None:
        return None
    kind = board(code)
    if kind is Board.BOND:
        return BOND_FIRST_DAY_HALTS if number == 1 and _as_date(day) >= BOND_RULES_SINCE else None
    if kind in NEW_LISTING_FREE_DAYS and _as_date(day) >= REGISTRATION_SINCE[kind] \
            and number <= NEW_LISTING_FREE_DAYS[kind]:
        return NEW_LISTING_HALTS
    return None


@dataclass(frozen=True)
class HaltState:
    """One code's halts on one day, kept by the caller: the base price, the levels already triggered
    (("up"|"down", level index)) and the end of the current or last halt."""

    code: str
    day: date
    rule: HaltRule
    base: float
    triggered: frozenset = frozenset()
    halted_until: Optional[datetime] = None

    def is_halted(self, moment: datetime) -> bool:
        return self.halted_until is not None and moment < self.halted_until

    def thresholds(self, direction: str) -> list[float]:
        """The prices (rounded half-up to the tick) at which each level triggers in `direction`."""
        tick, base = tick_size(self.code), Decimal(str(self.base))
        sign = 1 if direction == "up" else -1
        return [float((base * (1 + sign * level.pct)).quantize(tick, rounding=ROUND_HALF_UP))
                for level in self.rule.levels]


def start_halt_state(code: str, day: date, open_price: Optional[float], prev_close: Optional[float],
                     data: Optional[InstrumentData] = None) -> Optional[HaltState]:
    """The day's empty state, or None when `code` has no halts on `day` or the base price is unknown
    (`open_price` for new listings, `prev_close` = the issue price for a bond's first day)."""
    rule = halt_rule(code, day, data)
    if rule is None:
        return None
    base = open_price if rule.base == "open" else prev_close
    if not base or base <= 0:
        return None
    return HaltState(code, _as_date(day), rule, float(base))


def advance_halt(state: HaltState, price: float, moment: datetime) -> HaltState:
    """The state after a trade at `price` at `moment`: reaching an untriggered level starts a halt (when it
    jumps over several, the highest counts and the lower ones are spent too); during a halt nothing changes.
    A halt is cut at HALT_RESUME_AT; a level reached at or after it halts nothing."""
    if state.is_halted(moment) or price <= 0:
        return state
    for direction in ("up", "down"):
        reached = [index for index, threshold in enumerate(state.thresholds(direction))
                   if (price >= threshold if direction == "up" else price <= threshold)
                   and (direction, index) not in state.triggered]
        if reached:
            top = state.rule.levels[max(reached)]
            resume = datetime.combine(moment.date(), HALT_RESUME_AT)
            until = resume if top.minutes is None else min(moment + timedelta(minutes=top.minutes), resume)
            spent = {(direction, index) for index in range(max(reached) + 1)}
            return replace(state, triggered=state.triggered | spent, halted_until=max(until, moment))
    return state


class HaltTracker:
    """Today's HaltState per code, advanced by the trades a caller sees (the sim account's quotes, the
    protection sentinel's newest quotes). Not thread-safe: the caller serialises access. The base is the
    quote's open, else the first price seen today (a quote feed without an open field)."""

    def __init__(self, data: Optional[InstrumentData] = None):
        self._data = data
        self._day: Optional[date] = None
        self._states: dict[str, Optional[HaltState]] = {}

    def observe(self, code: str, price: float, open_price: Optional[float], prev_close: Optional[float],
                moment: datetime) -> tuple[bool, bool]:
        """Advance `code` by a trade at `price` at `moment`: (halted before it, halted after it)."""
        if self._day != moment.date():
            self._day, self._states = moment.date(), {}
        if code not in self._states:
            try:
                self._states[code] = start_halt_state(code, moment.date(), open_price or price, prev_close,
                                                      self._data)
            except ValueError:  # a code outside the known kinds: no halts it could follow
                self._states[code] = None
        state = self._states[code]
        if state is None:
            return False, False
        advanced = self._states[code] = advance_halt(state, price, moment)
        return state.is_halted(moment), advanced.is_halted(moment)

    def state(self, code: str, day: date) -> Optional[HaltState]:
        """The state of `code` on `day` (None: no halts that day, or none seen yet)."""
        return self._states.get(code) if self._day == _as_date(day) else None

    def halted_message(self, code: str, moment: datetime) -> str:
        """halt_message while `code` is halted at `moment`, else ''."""
        state = self.state(code, moment.date())
        return halt_message(state) if state is not None and state.is_halted(moment) else ""


def halt_message(state: HaltState) -> str:
    """Why orders of `state.code` do not match now (user-facing)."""
    return f"{state.code} 盘中临时停牌，{state.halted_until:%H:%M} 复牌；停牌期间可委托、撤单，但不会成交"


def price_limits(code: str, prev_close: float, is_st: bool = False, day: Optional[date] = None,
                 rule: Optional[StLimitRule] = None) -> tuple[float, float]:
    """The normal band (limit_down, limit_up) on trading day `day`: prev close × (1 ∓ pct), rounded half-up
    to the tick. A main-board ST stock takes the ST band of that day (`rule`, else the installed one). New
    listings' no-limit days are `day_limits`' business."""
    _check_prev_close(code, prev_close)
    the_board = board(code)
    if is_st and the_board is Board.MAIN:
        pct = (rule or _st_rule).pct_on(day)
    else:
        pct = LIMIT_PCT[the_board]
    return _band(code, prev_close, pct, pct)


def _band(code: str, prev_close: float, down_pct: Decimal, up_pct: Decimal) -> tuple[float, float]:
    tick = tick_size(code)
    base = Decimal(str(prev_close))
    up = (base * (1 + up_pct)).quantize(tick, rounding=ROUND_HALF_UP)
    down = max((base * (1 - down_pct)).quantize(tick, rounding=ROUND_HALF_UP), tick)
    return float(down), float(up)


def _check_prev_close(code: str, prev_close: float) -> None:
    if not prev_close or prev_close <= 0 or math.isnan(prev_close):
        raise ValueError(f"{code} 昨收价无效：{prev_close}")


@lru_cache(maxsize=4096)
def untradable_reason(code: str) -> str:
    """'' when the daemon trades `code` by its rules; otherwise why not, for a position it can only show
    (an unknown instrument in a live account: repo, exchangeable bonds, B shares, old BSE codes …)."""
    try:
        normalize_code(code)
        return ""
    except ValueError:
        pass
    digits = str(code).strip().upper().split(".")[0][-6:]
    for width in (4, 3, 2):
        kind = UNTRADABLE_KINDS.get(digits[:width])
        if kind:
            return f"{kind}（{code}）不在本程序按规则交易的品种内：只显示，不自动止损、止盈、补仓或网格"
    return f"未知品种（{code}）：不在本程序按规则交易的品种内，只显示，不自动止损、止盈、补仓或网格"


def is_st_name(name: Optional[str]) -> bool:
    """ST / *ST (risk warning) from the security's name, as the exchanges print it."""
    return "ST" in (name or "").upper()


def round_price(code: str, price: float) -> float:
    """Round half-up to the code's tick (0.01, or 0.001 for ETFs and convertible bonds)."""
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
    return _round_to_lots(lot_rule(code), shares)


def min_buy_volume(code: str) -> int:
    """The smallest buy: one lot of 100; STAR 200 shares; BSE 100 shares; convertible bonds 10 张."""
    return lot_rule(code).minimum


def is_valid_buy_volume(code: str, volume: int) -> bool:
    if not _is_whole(volume) or volume <= 0:
        return False
    rule = lot_rule(code)
    return volume >= rule.minimum and volume % rule.step == 0


def is_valid_sell_volume(code: str, volume: int, available: int) -> bool:
    """Whole lots (STAR ≥ 200 and BSE ≥ 100 shares then any; bonds multiples of 10 张), or exactly everything
    available (an odd remainder goes at once)."""
    if not _is_whole(volume) or volume <= 0 or volume > available:
        return False
    if volume == available:
        return True
    rule = lot_rule(code)
    return volume >= rule.minimum and volume % rule.step == 0


def sell_volume_for_ratio(code: str, available: int, ratio: float) -> int:
    """`ratio` of `available` rounded down to a valid sell volume; everything when that rounds to 0."""
    if available <= 0:
        return 0
    volume = _round_to_lots(lot_rule(code), int(available * ratio))
    if volume <= 0 or not is_valid_sell_volume(code, volume, available):
        return available
    return volume


def buy_lot_message(code: str, volume: Any) -> str:
    """Why `volume` is not a valid buy of `code`, in words a person understands."""
    rule, kind, unit = lot_rule(code), board(code), volume_unit(code)
    if kind is Board.BOND:
        return f"可转债买入数量必须是 {rule.step} 张的整数倍（一手 {rule.step} 张），收到 {volume} 张"
    if rule.step == 1:
        return f"{kind.label}买入数量至少 {rule.minimum} {unit}，收到 {volume} {unit}"
    return f"买入数量必须是 {rule.step} {unit}的整数倍（一手 {rule.step} {unit}），收到 {volume} {unit}"


def _round_to_lots(rule: LotRule, volume: int) -> int:
    """Largest valid order volume ≤ `volume` (0 when below the minimum)."""
    rounded = volume // rule.step * rule.step
    return rounded if rounded >= rule.minimum else 0


def fees(code: str, side: str, price: float, volume: int, config: Any) -> dict[str, float]:
    """Commission (with minimum), stamp duty (sells of shares only), transfer fee (shares only); each rounded
    half-up to 0.01. Convertible bonds pay no stamp duty and no transfer fee and have their own broker
    commission (BOND_COMMISSION_RATE, BOND_MIN_COMMISSION); ETFs pay neither stamp duty nor transfer fee
    (instrument_rules.md §1, §4, §5: stamp duty 0.05 % on share sells since 2023-08-28, transfer fee 0.001 %
    since 2022-04-29 [S, 18]). A code outside the rules gets zero fees instead of an error, so a fill of one
    (a repo, an IPO subscription, a manual trade in the client) never breaks the booking of a broker push."""
    side_value = getattr(side, "value", side)
    amount = Decimal(str(price)) * Decimal(int(volume))
    if untradable_reason(code):
        # an instrument outside the rules (a repo loan, a B share …) filled in a live account: its fees follow
        # tables the rules do not hold; zero here, and the broker's reported commission replaces it (issue 28)
        return {"commission": 0.0, "stamp_duty": 0.0, "transfer_fee": 0.0, "total": 0.0}
    kind = board(code)
    if kind is Board.BOND:
        rate_key, minimum_key = "BOND_COMMISSION_RATE", "BOND_MIN_COMMISSION"
    else:
        rate_key, minimum_key = "COMMISSION_RATE", "MIN_COMMISSION"
    commission = max(amount * Decimal(str(_param(config, rate_key))), Decimal(str(_param(config, minimum_key))))
    is_share = kind not in (Board.ETF, Board.BOND)
    stamp = amount * Decimal(str(_param(config, "STAMP_DUTY_RATE"))) if side_value == "sell" and is_share else 0
    transfer = amount * Decimal(str(_param(config, "TRANSFER_FEE_RATE"))) if is_share else 0
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
    raise ValueError(f"不支持的股票代码「{original}」：仅支持沪深主板、创业板、科创板、北交所（920 开头）股票、ETF 和可转债")


def _exchange_label(exchange: str) -> str:
    return {"SH": "上海证券交易所(.SH)", "SZ": "深圳证券交易所(.SZ)", "BJ": "北京证券交易所(.BJ)"}[exchange]


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
