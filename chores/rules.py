"""Pure rules of the idle-cash chores: which offerings to subscribe and how many, the cash a reverse repo may lend
and at which code and rate, the allotments (中签) among the broker's positions and when they must be paid.
No I/O, no clock: the facts come in as arguments."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Iterable, Mapping, Optional, Sequence

# ---- reverse repo 国债逆回购: ../shared/reference/instrument_rules.md §6 (compiled 2026-12-07)
# Since 2022-05-16 both exchanges take 1,000 CNY face or multiples (SH was 100,000), price = the annualised rate in
# percent with a 0.005 tick (SZ was 0.001) [S, 32]; the volume is in 张 of 100 CNY, multiples of 10 张, and lending
# is a SELL (order_stock(acc, '204001.SH', STOCK_SELL, int(cash // 1000) * 10, FIX_PRICE, rate)) [S, 33].
REPO_FACE_PER_UNIT = 100  # CNY per 张
REPO_LOT_UNITS = 10  # 10 张 = the 1,000 CNY minimum and step (since 2022-05-16)
REPO_STEP_CASH = REPO_FACE_PER_UNIT * REPO_LOT_UNITS
REPO_RATE_TICK = Decimal("0.005")  # since 2022-05-16 on both exchanges
# tenor in days per code, §6 table; codes other than 204001 / 131810 are tagged [U] there (verify on a live miniQMT)
REPO_TENOR_DAYS = {
    "204001.SH": 1, "204002.SH": 2, "204003.SH": 3, "204004.SH": 4, "204007.SH": 7, "204014.SH": 14,
    "204028.SH": 28, "204091.SH": 91, "204182.SH": 182,
    "131810.SZ": 1, "131811.SZ": 2, "131800.SZ": 3, "131809.SZ": 4, "131801.SZ": 7, "131802.SZ": 14,
    "131803.SZ": 28, "131805.SZ": 91, "131806.SZ": 182,
}

# ---- new share / new bond subscription 新股/新债申购: instrument_rules.md §7 (compiled 2026-12-07)
# xttrader.query_new_purchase_limit(acc) → {'KCB': n, 'SH': n, 'SZ': n} shares, no BJ key [V, 20]; SH shares subscribe
# under separate codes (730/780/732xxx main board, 787xxx STAR), SZ shares under their own code [S, 11]; codes come
# from query_ipo_data(), never derived. Bonds need no market value, 10–10,000 张 [V, 20]. Payment by the end of T+2
# (brokers say 16:00) [S, 37]; BSE subscriptions need the full cash prepaid (since 2023) [S, 38], so they are not
# subscribed automatically.
STAR_SUBSCRIPTION_PREFIX = "787"
PAYMENT_TRADING_DAYS = 2  # T+2
KINDS = ("stock", "bond")


@dataclass(frozen=True)
class Offering:
    """One row of xttrader.query_ipo_data(): today's new share or new bond."""

    code: str  # the subscription code (SH shares: 730/732/780/787xxx; SZ: the stock's own code)
    name: str
    kind: str  # 'stock' | 'bond' | whatever else the broker says, lower case
    min_volume: int
    max_volume: int
    purchase_date: str  # YYYYMMDD
    issue_price: float


@dataclass(frozen=True)
class SubscriptionPlan:
    offering: Offering
    volume: int  # 0 = skipped, `reason` says why
    reason: str = ""

    @property
    def amount(self) -> float:
        return round(self.volume * self.offering.issue_price, 2)


@dataclass(frozen=True)
class RepoAmount:
    """What a reverse repo may lend now, and what was kept back (CNY)."""

    cash: float
    keep_cash: float
    open_buys: float  # open buy orders' need not yet frozen by the broker
    planned_buys: float
    payments_due: float
    amount: int  # multiple of REPO_STEP_CASH, 0 = nothing to lend

    @property
    def volume(self) -> int:
        """张 of 100 CNY."""
        return self.amount // REPO_FACE_PER_UNIT


@dataclass(frozen=True)
class Allotment:
    """A subscription that won (中签): the position of its code (or name) appeared at the broker."""

    subscription_day: date
    code: str
    name: str
    volume: int
    price: float
    due_day: date  # the payment is due by the end of this trading day (T+2)

    @property
    def amount(self) -> float:
        return round(self.volume * self.price, 2)


def parse_offerings(raw: Mapping[str, Mapping]) -> list[Offering]:
    """xttrader.query_ipo_data()'s {code: {name, type, minPurchaseNum, maxPurchaseNum, purchaseDate, issuePrice}}."""
    return [Offering(str(code), str(row.get("name", "")), str(row.get("type", "")).lower(),
                     int(row.get("minPurchaseNum") or 0), int(row.get("maxPurchaseNum") or 0),
                     str(row.get("purchaseDate", "")), float(row.get("issuePrice") or 0.0))
            for code, row in sorted(raw.items())]


def quota_key(code: str) -> Optional[str]:
    """The key of query_new_purchase_limit's answer that limits a share subscription under `code`."""
    if code.endswith(".SH"):
        return "KCB" if code.startswith(STAR_SUBSCRIPTION_PREFIX) else "SH"
    if code.endswith(".SZ"):
        return "SZ"
    return None  # .BJ and anything else: no quota key


def plan_subscriptions(offerings: Sequence[Offering], quota: Mapping[str, int], day: date, kinds: Iterable[str],
                       exclude: Iterable[str]) -> list[SubscriptionPlan]:
    """Every offering of `day` with the volume to subscribe: shares min(quota, maxPurchaseNum) rounded down to the
    minimum unit (each offering has the whole quota: the market value counts for each issue); bonds the maximum
    (no market value needed). A skipped one carries the reason."""
    wanted = {k.strip().lower() for k in kinds}
    excluded = {e.strip() for e in exclude if e.strip()}
    return [_plan(offering, quota, day, wanted, excluded) for offering in offerings]


def _plan(offering: Offering, quota: Mapping[str, int], day: date, kinds: set[str],
          excluded: set[str]) -> SubscriptionPlan:
    def skip(reason: str) -> SubscriptionPlan:
        return SubscriptionPlan(offering, 0, reason)

    if offering.code in excluded or offering.name in excluded:
        return skip("在排除名单中（IPO_SUBSCRIBE_EXCLUDE）")
    if offering.kind not in KINDS:
        return skip(f"券商给出的品种「{offering.kind}」不是新股或新债，不自动申购")
    if offering.kind not in kinds:
        return skip(f"品种{'新股' if offering.kind == 'stock' else '新债'}未选择（IPO_SUBSCRIBE_KINDS）")
    if offering.purchase_date and offering.purchase_date != day.strftime("%Y%m%d"):
        return skip(f"申购日是 {offering.purchase_date}，不是今天")
    if offering.code.endswith(".BJ"):
        return skip("北交所新股须全额预缴资金，不自动申购")
    if not offering.issue_price > 0 or offering.max_volume <= 0:
        return skip("券商未给出发行价或申购上限")
    if offering.kind == "bond":
        return SubscriptionPlan(offering, offering.max_volume)
    key = quota_key(offering.code)
    limit = int(quota.get(key, 0)) if key else 0
    volume = min(limit, offering.max_volume)
    unit = max(1, offering.min_volume)
    volume -= volume % unit
    if volume < max(1, offering.min_volume):
        return skip(f"申购额度不足（{key or '该市场'}额度 {limit} 股，最少申购 {offering.min_volume} 股）")
    return SubscriptionPlan(offering, volume)


def repo_amount(cash: float, keep_cash: float, open_buy_need: float, frozen_cash: float, planned_buys: float,
                payments_due: float) -> RepoAmount:
    """The cash a reverse repo may lend: available cash less REPO_KEEP_CASH, the part of the open buy orders' need
    the broker has not frozen yet (the available cash already excludes what it froze), tomorrow's planned buys and
    the allotment payments still due; rounded down to the 1,000 CNY step."""
    open_buys = round(max(0.0, open_buy_need - frozen_cash), 2)
    spare = cash - keep_cash - open_buys - planned_buys - payments_due
    amount = int(spare // REPO_STEP_CASH) * REPO_STEP_CASH if spare >= REPO_STEP_CASH else 0
    return RepoAmount(round(cash, 2), round(keep_cash, 2), open_buys, round(planned_buys, 2),
                      round(payments_due, 2), amount)


def choose_repo(rates: Mapping[str, Optional[float]], preference: Sequence[str]) -> Optional[tuple[str, float]]:
    """The code with the best bid rate among `preference` (ties go to the earlier one) and the rate to lend at:
    the bid rounded down to the 0.005 tick, so the sell meets the best bid. None when no code has a bid."""
    best: Optional[tuple[str, float]] = None
    for code in preference:
        rate = rates.get(code)
        if rate is None or not rate > 0:
            continue
        on_tick = float((Decimal(str(rate)) / REPO_RATE_TICK).to_integral_value(ROUND_DOWN) * REPO_RATE_TICK)
        if on_tick > 0 and (best is None or on_tick > best[1]):
            best = (code, on_tick)
    return best


def unknown_repo_codes(codes: Iterable[str]) -> list[str]:
    return [c for c in codes if c not in REPO_TENOR_DAYS]


def planned_buy_cash(signals: Iterable, watch_tasks: Iterable) -> float:
    """The cash the next day's planned buys need, as the daemon knows them at the repo time: buy signals still
    queued (pending or executing: their amount, else volume × observed price) and the buy action of every active
    watch task (its amount). Not counted, because nothing decides them before the next day: MACD entries (from the
    next completed bar), add levels and grid buys not yet triggered."""
    total = 0.0
    for signal in signals:
        if getattr(signal.side, "value", signal.side) == "buy":
            total += signal.amount or signal.volume * signal.observed_price
    for task in watch_tasks:
        action = task.action
        if getattr(action.type, "value", action.type) == "buy" and action.amount:
            total += float(action.amount)
    return round(total, 2)


def payment_day(subscription_day: date, is_trading_day) -> date:
    """T+2: the second trading day after the subscription day (`is_trading_day(day) -> bool`)."""
    day, counted = subscription_day, 0
    while counted < PAYMENT_TRADING_DAYS:
        day += timedelta(days=1)
        if is_trading_day(day):
            counted += 1
    return day


def find_allotments(subscriptions: Iterable[tuple[date, str, str, float]], positions: Iterable,
                    known: set[tuple[date, str]], is_trading_day) -> list[Allotment]:
    """New allotments: a broker position whose code or name is that of a subscription (day, code, name, price) not
    yet known to have won. Brokers show a won share under its subscription code or its name until it lists [U]."""
    held = [p for p in positions if p.volume > 0]
    found = []
    for day, code, name, price in subscriptions:
        if (day, code) in known:
            continue
        match = next((p for p in held if p.stock_code == code or (name and p.stock_name == name)), None)
        if match is not None:
            found.append(Allotment(day, code, name, int(match.volume), price, payment_day(day, is_trading_day)))
    return found


def repo_days(day: date, tenor: int, is_trading_day) -> int:
    """Calendar days the lent cash is occupied (interest days): from the first settlement day (the next trading
    day) to the maturity settlement day, `tenor` calendar days on, moved to a trading day — so a Thursday 1-day
    repo earns Friday to Monday (3 days), one before a holiday earns the holiday (§6 [S, 34, 35])."""
    start = _next_trading(day, is_trading_day)
    end = start + timedelta(days=tenor - 1)
    end = _next_trading(end, is_trading_day)
    return (end - start).days


def repo_interest(amount: float, rate: float, days: int) -> float:
    """amount × rate % × days / 365 (§6; the divisor is [U]: a 2016 note says 360), before the commission."""
    return round(amount * rate / 100 * days / 365, 2)


def _next_trading(day: date, is_trading_day) -> date:
    day += timedelta(days=1)
    while not is_trading_day(day):
        day += timedelta(days=1)
    return day
