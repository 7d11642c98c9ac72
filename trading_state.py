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
from typing import Callable

from models import OrderRejected, Rule, Side
from storage import Database, migrate

log = logging.getLogger(__name__)

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
)

ACCOUNT_SCOPE = "account"


class State(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"

    @property
    def label(self) -> str:
        return STATE_LABELS[self]


STATE_LABELS = {State.RUNNING: "运行中", State.PAUSED: "已暂停自动交易", State.HALTED: "紧急停止"}


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
        self._stock_halts: dict[str, str] = {
            r["stock_code"]: r["reason"] for r in db.query("SELECT stock_code, reason FROM stock_halts")}

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
                    "halted_stocks": dict(sorted(self._stock_halts.items()))}

    def history(self, limit: int = 100) -> list[dict]:
        rows = self._db.query("SELECT scope, old_state, new_state, reason, source, changed_at, market_time "
                              "FROM trading_state_history ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def allows_automatic(self, stock_code: str = "") -> bool:
        with self._lock:
            return self._state is State.RUNNING and stock_code not in self._stock_halts

    def check_order(self, stock_code: str, side: Side, rule: Rule, operator_confirmed: bool = False) -> None:
        """Raise OrderRejected when the state forbids this order. Manual orders and orders a person confirmed
        (e.g. a signal executed by hand) pass a pause and a stock halt; when halted only a sell the operator
        has confirmed goes through. A re-priced sell continues an
        order already working (e.g. a stop-loss), so a pause or a stock halt does not strand it."""
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
        return self._set(State.RUNNING, reason, source)

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

    def resume_stock(self, stock_code: str, reason: str, source: str) -> bool:
        with self._lock:
            if stock_code not in self._stock_halts:
                return False
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
