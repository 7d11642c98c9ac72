"""Ex-rights days for the daemon (issue 28 §2): where the events come from (the events file of a replay, live
xtdata dividend data), the journal of the events applied (table `ex_rights_events`), applying an event before
the open to every holder of the daemon's own prices (positions, the sim account, grid sessions, watch tasks),
the operator's log line and event, and the alarm for a held stock that gaps beyond its limit with no event.
The arithmetic is market/ex_rights.py's; each holder applies an event once by its own marker."""
from __future__ import annotations

import json
import logging
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Callable, Iterable, Optional, Protocol

import market_rules
from core.events import EventBus, EventKind
from core.models import Quote
from market import ex_rights
from market.ex_rights import CorporateAction
from persistence.storage import Database, migrate

log = logging.getLogger(__name__)

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS ex_rights_events (
        key TEXT PRIMARY KEY, stock_code TEXT NOT NULL, ex_date TEXT NOT NULL, description TEXT NOT NULL,
        factor REAL NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}', message TEXT NOT NULL DEFAULT '',
        recorded_at TEXT NOT NULL, applied_at TEXT);
    CREATE INDEX IF NOT EXISTS idx_ex_rights_events_day ON ex_rights_events(ex_date);
    CREATE TABLE IF NOT EXISTS ex_rights_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)
    """,
)
PENDING, APPLIED = "pending", "applied"
GAP_TOLERANCE = 1e-6  # a price exactly at the limit is inside the band


class EventSource(Protocol):
    def events(self, codes: Iterable[str], after: Optional[date], through: date) -> list[CorporateAction]:
        """The events of `codes` with after < ex_date ≤ through."""


class FileEventSource:
    """The events file of a replay (market/ex_rights.py's CSV), read once at start."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ex_rights.EventsFileError(f"无法读取除权除息文件 {self.path}：{exc}") from None
        self._by_code = ex_rights.events_by_code(ex_rights.parse_events(text, str(self.path)))

    def events(self, codes: Iterable[str], after: Optional[date], through: date) -> list[CorporateAction]:
        found = []
        for code in codes:
            found += ex_rights.events_between(self._by_code.get(code, ()), after, through)
        return found


class XtdataEventSource:
    """Live: xtdata.get_divid_factors(code, start, end) (reference/xtquant_api.md §8: columns interest = cash
    per share pre-tax, stockBonus 送股 and stockGift 转增 per share, allotNum/allotPrice the rights issue; the
    index is taken as the ex-date, [U] until checked on a live miniQMT). The factor is computed from the
    previous close, not from `dr`, whose meaning is not documented."""

    def __init__(self, xtdata: Callable[[], object]):
        self._xtdata = xtdata  # a loader: xtquant.xtdata is imported only in live mode, when first asked

    def events(self, codes: Iterable[str], after: Optional[date], through: date) -> list[CorporateAction]:
        start = (after or through).strftime("%Y%m%d")
        found = []
        for code in codes:
            frame = self._xtdata().get_divid_factors(code, start, through.strftime("%Y%m%d"))
            if frame is None or len(frame) == 0:
                continue
            for index, row in frame.iterrows():
                action = CorporateAction(code, _xt_date(index), float(row.get("interest", 0) or 0),
                                         float(row.get("stockBonus", 0) or 0) + float(row.get("stockGift", 0) or 0),
                                         float(row.get("allotNum", 0) or 0), float(row.get("allotPrice", 0) or 0))
                if ex_rights.events_between([action], after, through) and _has_effect(action):
                    found.append(action)
        return found


class MootdxEventSource:
    """mootdx (where MOOTDX_SERVER is configured): `Quotes.xdxr(symbol=...)`, pytdx's 除权除息 records. Rows of
    category 1 are distributions, with `fenhong` (cash), `songzhuangu` (bonus + transfer shares), `peigu` and
    `peigujia` (rights) **per 10 shares** and the ex-date in year/month/day (pytdx's field names; [U] until
    checked against a live server)."""

    DISTRIBUTION = 1

    def __init__(self, client: Callable[[], object]):
        self._client = client  # a loader: the connection to MOOTDX_SERVER is opened when first asked
        self._opened = None

    def events(self, codes: Iterable[str], after: Optional[date], through: date) -> list[CorporateAction]:
        found = []
        for code in codes:
            if self._opened is None:
                self._opened = self._client()
            frame = self._opened.xdxr(symbol=code.split(".")[0])
            if frame is None or len(frame) == 0:
                continue
            for _, row in frame.iterrows():
                if int(row.get("category", 0)) != self.DISTRIBUTION:
                    continue
                day = date(int(row["year"]), int(row["month"]), int(row["day"]))
                action = CorporateAction(code, day, _per_share(row.get("fenhong")),
                                         _per_share(row.get("songzhuangu")), _per_share(row.get("peigu")),
                                         float(row.get("peigujia") or 0))
                if ex_rights.events_between([action], after, through) and _has_effect(action):
                    found.append(action)
        return found


class DeadlineSource:
    """A live source (xtdata, mootdx) asked with a deadline: its answer is awaited on the quote path and at the
    position table's day roll, so a hung client must cost at most `timeout` seconds once, never the feed or a
    stop-loss (DESIGN §8a). While an earlier call still hangs, asking again fails at once instead of piling up
    threads; the caller alarms and goes on with the levels it has."""

    def __init__(self, source: EventSource, timeout: float):
        self._source = source
        self._timeout = timeout
        self._hung: Optional[threading.Thread] = None

    def events(self, codes: Iterable[str], after: Optional[date], through: date) -> list[CorporateAction]:
        if self._hung is not None and self._hung.is_alive():
            raise TimeoutError("除权除息数据源上一次查询仍未返回")
        answer: dict = {}

        def ask() -> None:
            try:
                answer["events"] = self._source.events(list(codes), after, through)
            except Exception as exc:  # handed to the caller's thread below
                answer["error"] = exc

        worker = threading.Thread(target=ask, name="ex-rights-source", daemon=True)
        worker.start()
        worker.join(self._timeout)
        if worker.is_alive():
            self._hung = worker
            raise TimeoutError(f"除权除息数据源 {self._timeout:g} 秒内未返回")
        if "error" in answer:
            raise answer["error"]
        return answer["events"]


class ExRightsKeeper:
    """Applies each event once, before the open of its ex-date (or at the first day roll after it, when the
    daemon was off), and keeps the journal the page and GET /api/ex_rights show.

    Timing: the position table asks `source_for_positions` at its own day roll (synchronously, so no quote of
    the ex-date meets the old levels); `apply_day`, run by the first quote of the day (`on_quote`, a quote hub
    listener subscribed `first`: it runs before the quote is stored, before the monitors wake and before the sim
    account's listener, so no grid level, watch threshold or resting order meets the day's first quote with an
    unadjusted level — the replayed day's roll, a live morning's call auction), journals the events, applies
    them to the other holders and reports them. Crash-safety: the journal row is written
    'pending' before any holder changes; each holder commits its change with its own marker, so a restart
    finishes a pending event without applying any part twice."""

    def __init__(self, db: Database, clock, bus: EventBus, source: EventSource, positions,
                 last_quote: Callable[[str], Optional[Quote]], sim=None, grid=None, watch_store=None,
                 settings=None):
        """`last_quote(code)`: the newest quote seen (the quote hub's last_seen), for the previous close of a
        stock the position table does not hold (a watch task's)."""
        self._db = db
        self._clock = clock
        self._bus = bus
        self._source = source
        self._positions = positions
        self._last_quote = last_quote
        self._sim = sim
        self._grid = grid
        self._watch_store = watch_store
        self._settings = settings
        self._lock = threading.Lock()
        self._known: dict[str, CorporateAction] = {}  # key → event seen from the source (the gap alarm's facts)
        self._gap_checked: dict[str, date] = {}
        self._day_applied: Optional[date] = None  # the day apply_day last ran for from a quote
        migrate(db, "ex_rights", MIGRATIONS)

    # ---- the position table's day roll
    def source_for_positions(self, codes: list[str], after: Optional[date], through: date) -> list[CorporateAction]:
        if after is None:  # the first roll ever: older events belong to holdings of before this daemon
            after = date.fromordinal(through.toordinal() - 1)
        found = self._source.events(codes, after, through)
        with self._lock:
            self._known.update((action.key, action) for action in found)
        return found

    # ---- the day roll and the pre-open job
    def apply_day(self, day: date) -> str:
        """Every event up to `day` of the stocks the daemon holds or watches, not yet applied; a summary line."""
        after = self._window_start(day)
        codes = sorted({p.stock_code for p in self._positions.all() if p.volume > 0}
                       | set(self._grid_codes()) | set(self._watch_codes()))
        actions = self._source.events(codes, after, day) if codes else []
        with self._lock:
            self._known.update((action.key, action) for action in actions)
        pending = [action for action in self._pending_actions() if action.key not in {a.key for a in actions}]
        applied = [message for action in pending + actions if (message := self.apply(action))]
        if all(self._journaled(action) for action in actions):  # else the same window is asked again next time
            self._db.execute("INSERT OR REPLACE INTO ex_rights_state(key, value) VALUES('window', ?)",
                             (json.dumps([day.isoformat(), after.isoformat()]),))
        return "；".join(applied) if applied else f"{day} 无除权除息事件"

    def apply(self, action: CorporateAction) -> Optional[str]:
        """Apply one event to every holder (each once); its operator line, None when it was applied before."""
        row = self._db.query_one("SELECT status FROM ex_rights_events WHERE key=?", (action.key,))
        if row is not None and row["status"] == APPLIED:
            return None
        factor = self._factor(action)
        if factor is None:
            log.warning("除权除息 %s %s：没有前收盘价，无法计算因子，稍后重试", action.code, action.ex_date)
            return None
        if row is None:
            self._db.execute("INSERT INTO ex_rights_events(key, stock_code, ex_date, description, factor, status,"
                             " recorded_at) VALUES(?,?,?,?,?,?,?)",
                             (action.key, action.code, action.ex_date.isoformat(), action.describe(), factor, PENDING,
                              self._clock.now().isoformat(sep=" ", timespec="seconds")))
        detail = self._apply_to_holders(action, factor)
        message = operator_line(action, factor, detail)
        self._db.execute("UPDATE ex_rights_events SET status=?, detail=?, message=?, applied_at=? WHERE key=?",
                         (APPLIED, json.dumps(detail, ensure_ascii=False), message,
                          self._clock.now().isoformat(sep=" ", timespec="seconds"), action.key))
        log.warning(message)
        self._bus.emit(EventKind.EX_RIGHTS, message, stock_code=action.code, ex_date=action.ex_date.isoformat(),
                       factor=factor, **{k: v for k, v in detail.items() if k != "stock_code"})
        return message

    def journal(self, limit: int = 200) -> list[dict]:
        """The events applied or pending, newest first (GET /api/ex_rights)."""
        rows = self._db.query("SELECT * FROM ex_rights_events ORDER BY ex_date DESC, stock_code LIMIT ?", (int(limit),))
        return [{"key": r["key"], "stock_code": r["stock_code"], "ex_date": r["ex_date"],
                 "description": r["description"], "factor": r["factor"], "status": r["status"],
                 "status_label": "已调整" if r["status"] == APPLIED else "待调整", "message": r["message"],
                 "detail": json.loads(r["detail"] or "{}"), "recorded_at": r["recorded_at"],
                 "applied_at": r["applied_at"]} for r in rows]

    # ---- the quote hub's listener: the day's events at its first quote, then the gap alarm
    def on_quote(self, quote: Quote) -> None:
        """The first quote of a day applies the day's events (the replayed day's roll, a live morning); the
        first quote of a held stock is checked for a gap beyond its limit band with no known event of that day
        (the ex-rights data is missing: the levels were not adjusted)."""
        day = quote.time.date()
        if self._day_applied != day:
            self._day_applied = day
            try:
                self.apply_day(day)
            except Exception as exc:  # the feed must go on; the position table adjusted itself at its own roll
                log.exception("除权除息调整出错（%s）", day)
                self._bus.emit(EventKind.ALARM, f"{day} 除权除息调整未完成（{exc}）：网格、盯盘价位或模拟账户可能未按除权调整，请核对")
        if self._gap_checked.get(quote.code) == day:
            return
        self._gap_checked[quote.code] = day
        if self._settings is not None and not self._settings.get("EX_RIGHTS_GAP_ALARM"):
            return
        position = self._positions.get(quote.code)
        if position is None or position.volume <= 0 or quote.prev_close <= 0:
            return
        with self._lock:
            known = any(a.code == quote.code and a.ex_date == day for a in self._known.values())
        if known or _inside_band(quote.code, quote.prev_close, quote.price, day):
            return
        message = (f"【除权数据缺失？】{quote.code} 开盘 {quote.price:.3f} 较前收 {quote.prev_close:.3f} 变动 "
                   f"{(quote.price / quote.prev_close - 1) * 100:.2f}%，超过涨跌停幅度，但没有该股 {day} 的除权除息数据；"
                   f"止损、动态止盈和补仓价位未按除权调整，请核对")
        log.error(message)
        self._bus.emit(EventKind.ALARM, message, stock_code=quote.code, alarm="ex_rights_gap", price=quote.price,
                       prev_close=quote.prev_close)

    # ---- internals
    def _apply_to_holders(self, action: CorporateAction, factor: float) -> dict:
        detail: dict = {"stock_code": action.code, "event": action.describe()}
        position = self._positions.apply_ex_rights(action, factor) or self._positions.ex_rights_adjustment(action)
        if position is not None:
            detail["position"] = position
        if self._sim is not None and hasattr(self._sim, "apply_corporate_action"):
            change = self._sim.apply_corporate_action(action)
            if change is not None:
                detail["account"] = {"volume": [change.volume_before, change.volume_after],
                                     "cash_credit": change.cash_credit}
        if self._grid is not None:
            grids = self._grid.apply_ex_rights(action, factor)
            if grids:
                detail["grid"] = grids
        if self._watch_store is not None:
            tasks = self._watch_store.apply_ex_rights(action, factor)
            if tasks:
                detail["watch"] = tasks
        return detail

    def _factor(self, action: CorporateAction) -> Optional[float]:
        if action.factor is not None:
            return action.factor
        recorded = self._positions.ex_rights_adjustment(action)
        if recorded is not None:
            return recorded["factor"]
        position = self._positions.get(action.code)
        close = previous_close(self._last_quote(action.code), action.ex_date) \
            or (position.current_price if position is not None else None)
        return ex_rights.price_factor(action, close) if close else None

    def _journaled(self, action: CorporateAction) -> bool:
        return self._db.query_one("SELECT 1 FROM ex_rights_events WHERE key=?", (action.key,)) is not None

    def _pending_actions(self) -> list[CorporateAction]:
        rows = self._db.query("SELECT key FROM ex_rights_events WHERE status=?", (PENDING,))
        with self._lock:
            return [self._known[r["key"]] for r in rows if r["key"] in self._known]

    def _window_start(self, day: date) -> date:
        """The events of (start, day] are due: start = the day of the previous run (a day the daemon was off
        is caught up at the next roll); the same start again when `day` ran before; the day before at the
        first run ever (older events belong to holdings of before this daemon)."""
        row = self._db.query_one("SELECT value FROM ex_rights_state WHERE key='window'")
        if row is None:
            return date.fromordinal(day.toordinal() - 1)
        last_day, last_start = (date.fromisoformat(text) for text in json.loads(row["value"]))
        if last_day < day:
            return last_day
        return min(last_start, date.fromordinal(day.toordinal() - 1))

    def _grid_codes(self) -> list[str]:
        if self._grid is None:
            return []
        return [s.stock_code for s in self._grid.sessions(active_only=True)]

    def _watch_codes(self) -> list[str]:
        return self._watch_store.codes() if self._watch_store is not None else []


def previous_close(quote: Optional[Quote], ex_date: date) -> Optional[float]:
    """The close before `ex_date` from the newest quote: its price when it is from before the ex-date, else its
    previous close. The keeper runs ahead of the ex-date's first quote (a `first` hub listener), so the newest
    quote is normally the day before's; an ex-date quote's previous close may already be the reference price
    (a replay with an events file makes it so; miniQMT's lastClose is [U], reference/instrument_rules.md §8),
    which is why events carrying their own factor are preferred."""
    if quote is None:
        return None
    return quote.price if quote.time.date() < ex_date else (quote.prev_close or None)


def operator_line(action: CorporateAction, factor: float, detail: dict) -> str:
    """「除权除息 000661.SZ 2020-06-09（每10股派10元送转10股）：因子 0.499253，最高价 680.000 → 339.492，…」"""
    parts = [f"除权除息 {action.code} {action.ex_date}（{action.describe()}）：因子 {factor:.6f}"]
    position = detail.get("position")
    if position:
        for name, label in (("highest_price", "最高价"), ("cost_price", "成本价"), ("base_cost_price", "补仓基准价"),
                            ("stop_loss_price", "止损价")):
            old, new = position[name]
            if old:
                parts.append(f"{label} {old:.3f} → {new:.3f}")
        if position["volume"][0] != position["volume"][1]:
            parts.append(f"持股 {position['volume'][0]} → {position['volume'][1]} 股")
    account = detail.get("account")
    if account and account["cash_credit"]:
        parts.append(f"现金红利 {account['cash_credit']:.2f} 元入账")
    for grid in detail.get("grid", ()):
        old, new = grid["reference_price"]
        parts.append(f"网格 #{grid['session_id']} 基准价 {old:.3f} → {new:.3f}")
    for task in detail.get("watch", ()):
        parts.append(f"盯盘任务 #{task['task_id']}「{task['conditions'][0]}」→「{task['conditions'][1]}」")
    if len(parts) == 1:
        parts.append("没有需要调整的价位")
    return "，".join(parts)


def build_source(settings, xtdata: Optional[Callable[[], object]] = None,
                 mootdx: Optional[Callable[[], object]] = None) -> Optional[EventSource]:
    """The configured source: the events file when EX_RIGHTS_EVENTS_FILE is set, else live xtdata (a loader)
    when given and EX_RIGHTS_FROM_XTDATA, else mootdx (a loader of a client of MOOTDX_SERVER) when given; None
    when there is none (a replay without a file: nothing is adjusted, the gap alarm says so when a held stock
    gaps)."""
    path = settings.get("EX_RIGHTS_EVENTS_FILE")
    if path:
        return FileEventSource(path)
    timeout = settings.get("EX_RIGHTS_SOURCE_TIMEOUT")
    if xtdata is not None and settings.get("EX_RIGHTS_FROM_XTDATA"):
        return DeadlineSource(XtdataEventSource(xtdata), timeout)
    if mootdx is not None:
        return DeadlineSource(MootdxEventSource(mootdx), timeout)
    return None


def _inside_band(code: str, prev_close: float, price: float, day: date) -> bool:
    try:
        low, high = market_rules.price_limits(code, prev_close, day=day)
    except ValueError:
        return True  # an instrument without a band: nothing to judge
    return low - GAP_TOLERANCE <= price <= high + GAP_TOLERANCE


def _per_share(per_ten) -> float:
    value = float(per_ten or 0)
    return round(value / 10, 6) if value == value else 0.0  # NaN (an empty cell) is nothing


def _has_effect(action: CorporateAction) -> bool:
    return bool(action.cash_per_share or action.shares_per_share or action.rights_per_share)


def _xt_date(index) -> date:
    text = str(index)
    if text.isdigit() and len(text) >= 13:  # a millisecond timestamp
        return datetime.fromtimestamp(int(text) / 1000).date()
    return date.fromisoformat(f"{text[:4]}-{text[4:6]}-{text[6:8]}" if text[:8].isdigit() else text[:10])
