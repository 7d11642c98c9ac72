"""The trading state, above every parameter layer (DESIGN §8): `running`, `paused` (no new automatic orders;
manual orders allowed) or `halted` (emergency: no new orders except manual sells the operator confirms).
Per-stock halts (circuit breakers, locks) sit beside it. Persisted in the account's trading database with
every change (who, why, when), so a restart stays halted; only an explicit resume leaves a stop."""
from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Callable, Optional

from core.models import OrderRejected, Rule, Side
from core.order_sources import OrderSource, source_of
from persistence.storage import Database, migrate

log = logging.getLogger(__name__)

AUTOMATIC_SOURCES = (OrderSource.RULES, OrderSource.GRID, OrderSource.ORDER_FILE, OrderSource.WATCH)
_AUTOMATIC_SOURCES_SQL = " UNION ALL ".join(f"SELECT '{s.value}' AS source" for s in AUTOMATIC_SOURCES)

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS trading_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', source TEXT NOT NULL DEFAULT '',
        changed_at TEXT NOT NULL, market_time TEXT NOT NULL DEFAULT '');
    CREATE TABLE IF NOT EXISTS trading_state_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        scope TEXT NOT NULL, old_state TEXT NOT NULL, new_state TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '', source TEXT NOT NULL DEFAULT '',
        changed_at TEXT NOT NULL, market_time TEXT NOT NULL DEFAULT '');
    CREATE TABLE IF NOT EXISTS stock_halts (
        stock_code TEXT PRIMARY KEY, reason TEXT NOT NULL, source TEXT NOT NULL, changed_at TEXT NOT NULL)
    """,
    # issue 25: breakers halt one order source (for a stock, or '' = the account), never the protective exits.
    # A breaker's earlier stock halt or account pause becomes a halt of every automatic source.
    f"""
    CREATE TABLE IF NOT EXISTS source_halts (
        stock_code TEXT NOT NULL, source TEXT NOT NULL, reason TEXT NOT NULL, halted_by TEXT NOT NULL,
        changed_at TEXT NOT NULL, PRIMARY KEY (stock_code, source));
    INSERT OR IGNORE INTO source_halts SELECT h.stock_code, s.source, h.reason, h.source, h.changed_at
        FROM stock_halts h, ({_AUTOMATIC_SOURCES_SQL}) s WHERE h.source = 'circuit_breaker';
    DELETE FROM stock_halts WHERE source = 'circuit_breaker';
    INSERT OR IGNORE INTO source_halts SELECT '', s.source, t.reason, t.source, t.changed_at
        FROM trading_state t, ({_AUTOMATIC_SOURCES_SQL}) s WHERE t.state = 'paused' AND t.source = 'circuit_breaker';
    UPDATE trading_state SET state = 'running' WHERE state = 'paused' AND source = 'circuit_breaker'
    """,
)

ACCOUNT_SCOPE = "account"
ACCOUNT_KEY = ""  # the stock code of an account-wide source halt


class State(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"

    @property
    def label(self) -> str:
        return STATE_LABELS[self]


STATE_LABELS = {State.RUNNING: "运行中", State.PAUSED: "已暂停自动交易", State.HALTED: "紧急停止"}
STATUS_WORDS = {State.RUNNING: "运行", State.PAUSED: "暂停", State.HALTED: "紧急停止"}  # 「交易状态：…」


@dataclass(frozen=True)
class StateChange:
    scope: str  # "account" or a stock code
    old: str
    new: str
    reason: str
    source: str  # who: "web", "circuit_breaker", "storage", …
    changed_at: str  # wall-clock time of the change
    market_time: str


StateListener = Callable[[StateChange], None]


class TradingState:
    """Thread-safe; `check_order` is the gate the executor calls before every order."""

    def __init__(self, db: Database, clock, wall_clock: Callable[[], datetime] = datetime.now):
        self._db = db
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.RLock()
        self._listeners: list[StateListener] = []
        migrate(db, "trading_state", MIGRATIONS)
        row = db.query_one("SELECT state, reason, source, changed_at FROM trading_state WHERE id=1")
        self._state = State(row["state"]) if row else State.RUNNING
        self._reason = row["reason"] if row else ""
        self._source = row["source"] if row else ""
        self._changed_at = row["changed_at"] if row else ""
        self._stock_halts: dict[str, str] = {  # the owner's locks: every automatic order of the stock waits
            r["stock_code"]: r["reason"] for r in db.query("SELECT stock_code, reason FROM stock_halts")}
        self._source_halts: dict[tuple[str, OrderSource], str] = {  # (stock or ACCOUNT_KEY, source) -> reason
            (r["stock_code"], OrderSource(r["source"])): r["reason"]
            for r in db.query("SELECT stock_code, source, reason FROM source_halts")}

    # ---- reading
    @property
    def state(self) -> State:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    def snapshot(self) -> dict:
        with self._lock:
            return {"state": self._state.value, "label": self._state.label, "reason": self._reason,
                    "source": self._source, "changed_at": self._changed_at,
                    "halted_stocks": self._halted_stocks(), "halted_sources": self._halted_sources()}

    def _halted_stocks(self) -> dict[str, str]:
        """Stocks with a lock or a halted source, with the reasons (a person resumes them one by one)."""
        reasons: dict[str, list[str]] = {code: [reason] for code, reason in self._stock_halts.items()}
        for (code, source), reason in sorted(self._source_halts.items()):
            if code != ACCOUNT_KEY:
                reasons.setdefault(code, []).append(f"{source.label}：{reason}")
        return {code: "；".join(parts) for code, parts in sorted(reasons.items())}

    def _halted_sources(self) -> list[dict]:
        return [{"stock_code": code, "source": source.value, "source_label": source.label, "reason": reason}
                for (code, source), reason in sorted(self._source_halts.items())]

    def status_line(self) -> str:
        """「交易状态：运行/暂停/紧急停止」 with the reason and any halted order sources: the one line the start-up
        summary, the 盘前就绪 message and the daily report show (issue 25 item 15)."""
        with self._lock:
            state, reason, halts = self._state, self._reason, len(self._source_halts)
        text = f"交易状态：{STATUS_WORDS[state]}"
        if state is not State.RUNNING:
            text += f"（{reason or '操作员操作'}；只有明确恢复交易才会解除）"
        if halts:
            text += f"；熔断停止的委托来源 {halts} 项（止损等保护性卖出不受影响）"
        return text

    def auto_trading_line(self, enabled: bool) -> str:
        """What ENABLE_AUTO_TRADING means now: never 「开启」 while a stop or pause holds every automatic order."""
        if not enabled:
            return "自动交易：关闭（信号只排队，需人工执行）"
        if self._state is State.HALTED:
            return "自动交易：不执行（紧急停止中；参数或命令行的 ENABLE_AUTO_TRADING 不能解除，需在网页或接口恢复交易）"
        if self._state is State.PAUSED:
            return "自动交易：不执行（已暂停；需在网页或接口恢复交易）"
        return "自动交易：开启"

    def history(self, limit: int = 100) -> list[dict]:
        rows = self._db.query("SELECT scope, old_state, new_state, reason, source, changed_at, market_time "
                              "FROM trading_state_history ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def allows_automatic(self, stock_code: str = "") -> bool:
        with self._lock:
            return self._state is State.RUNNING and stock_code not in self._stock_halts

    def check_order(self, stock_code: str, side: Side, rule: Rule, operator_confirmed: bool = False) -> None:
        """Raise OrderRejected when the state forbids this order. Manual orders and orders a person confirmed
        (e.g. a signal executed by hand) pass a pause, a lock and a source halt; when halted only a sell the
        operator has confirmed goes through. A re-priced sell continues an order already working (e.g. a
        stop-loss), so a pause or a halt does not strand it. A halted source refuses only its own orders,
        never a protective exit (core.order_sources)."""
        with self._lock:
            manual = rule is Rule.MANUAL
            if self._state is State.HALTED:
                if side is Side.SELL and operator_confirmed:
                    return
                raise OrderRejected("TRADING_HALTED", "已紧急停止：不接受新委托（只允许经确认的手动卖出），"
                                                      f"原因：{self._reason or '操作员紧急停止'}；恢复交易后才能下单")
            if manual or operator_confirmed or rule is Rule.REPRICE:
                return
            if self._state is State.PAUSED:
                raise OrderRejected("TRADING_PAUSED", f"自动交易已暂停（{self._reason or '操作员暂停'}），"
                                                      "不会自动下单；手动委托不受影响")
            if stock_code in self._stock_halts:
                raise OrderRejected("STOCK_HALTED", f"{stock_code} 已停止自动交易：{self._stock_halts[stock_code]}")
            halted = self._source_halt(stock_code, source_of(rule))
            if halted:
                raise OrderRejected("SOURCE_HALTED", halted)

    def automatic_block(self, stock_code: str, rule: Rule) -> Optional[str]:
        """Why an automatic order of `rule` for the stock would be refused by a lock or a halted source (not
        by a pause or an emergency stop, which hold every signal), or None. Lets the strategy runner keep a
        blocked signal queued instead of refusing it again at every quote."""
        with self._lock:
            if stock_code in self._stock_halts:
                return f"{stock_code} 已停止自动交易：{self._stock_halts[stock_code]}"
            return self._source_halt(stock_code, source_of(rule))

    def _source_halt(self, stock_code: str, source: OrderSource) -> Optional[str]:
        """Under `_lock`: the refusal of a halted source for the stock or the account (protective exits and
        manual orders belong to no halted source)."""
        if source in (OrderSource.PROTECTIVE, OrderSource.MANUAL):
            return None
        for scope in (stock_code, ACCOUNT_KEY):
            reason = self._source_halts.get((scope, source))
            if reason is not None:
                where = f"{stock_code} 的" if scope else "账户的"
                return f"{where}{source.label}已停止自动交易：{reason}（止损等保护性卖出不受影响）"
        return None

    # ---- changing
    def subscribe(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def halt(self, reason: str, source: str) -> bool:
        """Emergency stop. Returns False when already halted (the first reason is kept)."""
        return self._set(State.HALTED, reason, source)

    def pause(self, reason: str, source: str) -> bool:
        """Pause automatic trading; a halt is never softened into a pause."""
        if self._state is State.HALTED:
            return False
        return self._set(State.PAUSED, reason, source)

    def resume(self, reason: str, source: str) -> bool:
        """Back to running; an account-wide halt of an order source (a breaker) is lifted with it."""
        lifted = self._lift_sources(ACCOUNT_KEY, reason, source)
        return self._set(State.RUNNING, reason, source) or lifted

    def halt_stock(self, stock_code: str, reason: str, source: str) -> bool:
        with self._lock:
            if stock_code in self._stock_halts:
                return False
            change = self._change(stock_code, State.RUNNING.value, State.HALTED.value, reason, source)
            self._record(change, "INSERT OR REPLACE INTO stock_halts(stock_code, reason, source, changed_at) "
                                 "VALUES(?,?,?,?)", (stock_code, reason, source, change.changed_at))
            self._stock_halts[stock_code] = reason
        log.warning("%s 停止自动交易（%s）：%s", stock_code, source, reason)
        self._notify(change)
        return True

    def halt_source(self, stock_code: str, order_source: OrderSource, reason: str, source: str) -> bool:
        """Stop one order source for a stock (or the account: `stock_code` = ACCOUNT_KEY) until a person resumes
        it; other sources and the protective exits go on. False when already halted (the first reason is kept)."""
        key = (stock_code, order_source)
        with self._lock:
            if key in self._source_halts:
                return False
            change = self._change(stock_code or ACCOUNT_SCOPE, State.RUNNING.value, State.HALTED.value,
                                  f"{order_source.label}：{reason}", source)
            self._record(change, "INSERT OR REPLACE INTO source_halts(stock_code, source, reason, halted_by, "
                                 "changed_at) VALUES(?,?,?,?,?)",
                         (stock_code, order_source.value, reason, source, change.changed_at))
            self._source_halts[key] = reason
        log.warning("%s的%s停止自动交易（%s）：%s（止损等保护性卖出不受影响）", stock_code or "账户",
                    order_source.label, source, reason)
        self._notify(change)
        return True

    def resume_source(self, stock_code: str, order_source: OrderSource, reason: str, source: str) -> bool:
        key = (stock_code, order_source)
        with self._lock:
            if key not in self._source_halts:
                return False
            change = self._change(stock_code or ACCOUNT_SCOPE, State.HALTED.value, State.RUNNING.value,
                                  f"{order_source.label}：{reason}", source)
            self._record(change, "DELETE FROM source_halts WHERE stock_code=? AND source=?",
                         (stock_code, order_source.value))
            del self._source_halts[key]
        log.warning("%s的%s恢复自动交易（%s）：%s", stock_code or "账户", order_source.label, source, reason)
        self._notify(change)
        return True

    def _lift_sources(self, stock_code: str, reason: str, source: str) -> bool:
        with self._lock:
            halted = [s for (code, s) in self._source_halts if code == stock_code]
        lifted = [self.resume_source(stock_code, s, reason, source) for s in halted]
        return any(lifted)

    def resume_stock(self, stock_code: str, reason: str, source: str) -> bool:
        """Lift the lock of a stock and every halted source of it."""
        lifted = self._lift_sources(stock_code, reason, source)
        with self._lock:
            if stock_code not in self._stock_halts:
                return lifted
            change = self._change(stock_code, State.HALTED.value, State.RUNNING.value, reason, source)
            self._record(change, "DELETE FROM stock_halts WHERE stock_code=?", (stock_code,))
            del self._stock_halts[stock_code]
        log.warning("%s 恢复自动交易（%s）：%s", stock_code, source, reason)
        self._notify(change)
        return True

    # ---- internals
    def _set(self, new: State, reason: str, source: str) -> bool:
        with self._lock:
            if new is self._state:
                return False
            old = self._state
            change = self._change(ACCOUNT_SCOPE, old.value, new.value, reason, source)
            self._record(change, "INSERT INTO trading_state(id, state, reason, source, changed_at, market_time) "
                                 "VALUES(1,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET state=excluded.state, "
                                 "reason=excluded.reason, source=excluded.source, changed_at=excluded.changed_at, "
                                 "market_time=excluded.market_time",
                         (new.value, reason, source, change.changed_at, change.market_time))
            self._state, self._reason, self._source, self._changed_at = new, reason, source, change.changed_at
        log.warning("交易状态：%s → %s（来源：%s，原因：%s）", old.label, new.label, source, reason or "无")
        self._notify(change)
        return True

    def _change(self, scope: str, old: str, new: str, reason: str, source: str) -> StateChange:
        changed_at = self._wall_clock().isoformat(timespec="seconds")
        market_time = self._clock.now().isoformat(timespec="seconds") if self._clock is not None else ""
        return StateChange(scope, old, new, reason, source, changed_at, market_time)

    def _record(self, change: StateChange, sql: str, params: tuple) -> None:
        """The history row and the state row in one transaction: both are written or neither. A stop must hold
        even when its database cannot be written (full disk, corrupt file): then it holds in memory."""
        try:
            with self._db.transaction() as conn:
                conn.execute("INSERT INTO trading_state_history(scope, old_state, new_state, reason, source, "
                             "changed_at, market_time) VALUES(?,?,?,?,?,?,?)",
                             (change.scope, change.old, change.new, change.reason, change.source, change.changed_at,
                              change.market_time))
                conn.execute(sql, params)
        except sqlite3.Error as exc:
            log.error("交易状态变更无法写入数据库（%s），仅在本次运行中生效", exc)

    def _notify(self, change: StateChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # the state change itself is persisted; a listener must not undo it
                log.exception("交易状态监听器出错")
