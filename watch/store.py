"""Persisted watch tasks and their alert history (tables `watch_tasks`, `watch_alerts`): a task keeps its state
(status, times fired, last fire) across restarts; a fire and its alert row are written in one transaction."""
from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import date, datetime
from typing import Any, Optional

from core.models import TradingError
from persistence.storage import Database, migrate
from watch.requests import parse_task, task_to_body
from market import ex_rights
from market.ex_rights import CorporateAction
from watch.rules import Condition, ConditionType, TaskStatus, WatchTask

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS watch_tasks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        stock_code TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL,
        fired_count INTEGER NOT NULL DEFAULT 0, last_fired_at TEXT,
        created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS watch_alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id INTEGER NOT NULL, stock_code TEXT NOT NULL, time TEXT NOT NULL, price REAL NOT NULL,
        message TEXT NOT NULL, action TEXT NOT NULL, signal_id INTEGER, outcome TEXT NOT NULL DEFAULT '');
    CREATE INDEX IF NOT EXISTS idx_watch_alerts_code ON watch_alerts(stock_code, time);
    CREATE INDEX IF NOT EXISTS idx_watch_alerts_task ON watch_alerts(task_id, id)
    """,
    # issue 28: the ex-rights events already applied to a task's price thresholds (once each)
    """
    CREATE TABLE IF NOT EXISTS watch_ex_rights (
        key TEXT NOT NULL, task_id INTEGER NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (key, task_id))
    """,
)
# Conditions whose numbers are prices (the others are percents, ratios or day counts and need no adjustment).
PRICE_CONDITIONS = (ConditionType.PRICE_ABOVE, ConditionType.PRICE_BELOW, ConditionType.IN_ZONE)


class TaskNotFound(TradingError):
    def __init__(self, task_id: int):
        super().__init__("WATCH_TASK_NOT_FOUND", f"盯盘任务 #{task_id} 不存在")


class WatchStore:
    """`version` grows on every change so that the monitor reloads its in-memory task list only then."""

    def __init__(self, db: Database, clock):
        self._db = db
        self._clock = clock
        self._lock = threading.Lock()
        self.version = 0
        self._codes: tuple[int, list[str]] = (-1, [])
        migrate(db, "watch_store", MIGRATIONS)

    # ---- tasks
    def add(self, task: WatchTask) -> WatchTask:
        stamp = self._clock.now()
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO watch_tasks(stock_code, body, status, fired_count, created_at, updated_at)"
                " VALUES(?,?,?,0,?,?)", (task.stock_code, _dump(task), TaskStatus.ACTIVE.value, stamp.isoformat(),
                                         stamp.isoformat()))
        self._bump()
        return replace(task, id=cursor.lastrowid, status=TaskStatus.ACTIVE, fired_count=0, last_fired_at=None,
                       created_at=stamp)

    def replace_body(self, task: WatchTask) -> WatchTask:
        """An edit: new conditions/options, state kept except that a finished task becomes active again."""
        current = self.get(task.id)
        status = TaskStatus.ACTIVE if current.status in (TaskStatus.DONE, TaskStatus.EXPIRED) else current.status
        fired = current.last_fired_at if status is current.status else None
        with self._db.transaction() as conn:
            conn.execute("UPDATE watch_tasks SET stock_code=?, body=?, status=?, last_fired_at=?, updated_at=?"
                         " WHERE id=?", (task.stock_code, _dump(task), status.value, _iso(fired),
                                         self._clock.now().isoformat(), task.id))
        self._bump()
        return self.get(task.id)

    def set_status(self, task_id: int, status: TaskStatus) -> WatchTask:
        self.get(task_id)
        with self._db.transaction() as conn:
            conn.execute("UPDATE watch_tasks SET status=?, updated_at=? WHERE id=?",
                         (status.value, self._clock.now().isoformat(), task_id))
        self._bump()
        return self.get(task_id)

    def delete(self, task_id: int) -> None:
        self.get(task_id)
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM watch_tasks WHERE id=?", (task_id,))
        self._bump()

    def get(self, task_id: Optional[int]) -> WatchTask:
        row = self._db.query_one("SELECT * FROM watch_tasks WHERE id=?", (task_id,))
        if row is None:
            raise TaskNotFound(task_id)
        return _task(row)

    def all(self, stock_code: str = "") -> list[WatchTask]:
        if stock_code:
            rows = self._db.query("SELECT * FROM watch_tasks WHERE stock_code=? ORDER BY id", (stock_code,))
        else:
            rows = self._db.query("SELECT * FROM watch_tasks ORDER BY id")
        return [_task(r) for r in rows]

    def codes(self) -> list[str]:
        """Stocks with an active task (the data source fetches their quotes); cached per store version."""
        with self._lock:
            if self._codes[0] == self.version:
                return self._codes[1]
        version = self.version
        rows = self._db.query("SELECT DISTINCT stock_code FROM watch_tasks WHERE status=?", (TaskStatus.ACTIVE.value,))
        codes = sorted(r["stock_code"] for r in rows)
        with self._lock:
            self._codes = (version, codes)
        return codes

    def active(self) -> list[WatchTask]:
        rows = self._db.query("SELECT * FROM watch_tasks WHERE status=? ORDER BY id", (TaskStatus.ACTIVE.value,))
        return [_task(r) for r in rows]

    def apply_ex_rights(self, action: CorporateAction, factor: float) -> list[dict]:
        """issue 28: the price thresholds (价格≥/≤, 区间) of the stock's unfinished tasks × the event's factor,
        before the ex-date's open; each task once per event (its marker commits with the new body). Returns
        the old → new conditions of the tasks changed now."""
        changed = []
        for task in self.all(action.code):
            if task.status not in (TaskStatus.ACTIVE, TaskStatus.STOPPED):
                continue
            conditions = tuple(_adjusted_condition(c, factor) for c in task.conditions)
            if conditions == task.conditions:
                continue
            detail = {"task_id": task.id, "factor": factor, "conditions": [task.describe(),
                                                                           replace(task, conditions=conditions).describe()]}
            with self._db.transaction() as conn:
                if conn.execute("SELECT 1 FROM watch_ex_rights WHERE key=? AND task_id=?",
                                (action.key, task.id)).fetchone():
                    continue
                conn.execute("UPDATE watch_tasks SET body=?, updated_at=? WHERE id=?",
                             (_dump(replace(task, conditions=conditions)), self._clock.now().isoformat(), task.id))
                conn.execute("INSERT INTO watch_ex_rights(key, task_id, detail) VALUES(?,?,?)",
                             (action.key, task.id, json.dumps(detail, ensure_ascii=False)))
            changed.append(detail)
        if changed:
            self._bump()
        return changed

    # ---- fires and alerts
    def record_fire(self, task: WatchTask, when: datetime, price: float, message: str,
                    signal_id: Optional[int] = None, outcome: str = "") -> tuple[WatchTask, dict]:
        """The task after this fire (DONE when it does not repeat) and the alert row, written together."""
        status = TaskStatus.ACTIVE if task.repeat_cooldown > 0 else TaskStatus.DONE
        with self._db.transaction() as conn:
            conn.execute("UPDATE watch_tasks SET status=?, fired_count=fired_count+1, last_fired_at=?, updated_at=?"
                         " WHERE id=?", (status.value, when.isoformat(), when.isoformat(), task.id))
            cursor = conn.execute(
                "INSERT INTO watch_alerts(task_id, stock_code, time, price, message, action, signal_id, outcome)"
                " VALUES(?,?,?,?,?,?,?,?)", (task.id, task.stock_code, when.isoformat(), float(price), message,
                                              task.action.type.value, signal_id, outcome))
        self._bump()
        alert = {"id": cursor.lastrowid, "task_id": task.id, "stock_code": task.stock_code,
                 "time": when.isoformat(timespec="seconds"), "price": float(price), "message": message,
                 "action": task.action.type.value, "signal_id": signal_id, "outcome": outcome}
        return replace(task, status=status, fired_count=task.fired_count + 1, last_fired_at=when), alert

    def alerts(self, stock_code: str = "", day: Optional[date] = None, task_id: Optional[int] = None,
               limit: int = 200) -> list[dict]:
        sql, params = "SELECT * FROM watch_alerts WHERE 1=1", []
        if stock_code:
            sql, params = sql + " AND stock_code=?", params + [stock_code]
        if day is not None:
            sql, params = sql + " AND substr(time,1,10)=?", params + [day.isoformat()]
        if task_id is not None:
            sql, params = sql + " AND task_id=?", params + [task_id]
        rows = self._db.query(sql + " ORDER BY id DESC LIMIT ?", params + [limit])
        return [{"id": r["id"], "task_id": r["task_id"], "stock_code": r["stock_code"], "time": r["time"][:19],
                 "price": r["price"], "message": r["message"], "action": r["action"], "signal_id": r["signal_id"],
                 "outcome": r["outcome"]} for r in rows]

    def _bump(self) -> None:
        with self._lock:
            self.version += 1


def task_view(task: WatchTask, last_alerts: list[dict] = ()) -> dict[str, Any]:
    """JSON shape of a task for the API: its body plus state and labels."""
    return {"id": task.id, **task_to_body(task), "status": task.status.value,
            "status_label": task.status.label, "fired_count": task.fired_count,
            "last_fired_at": task.last_fired_at.isoformat(timespec="seconds") if task.last_fired_at else None,
            "created_at": task.created_at.isoformat(timespec="seconds") if task.created_at else None,
            "description": task.describe(), "action_label": task.action.type.label,
            "last_alerts": list(last_alerts)}


def _adjusted_condition(condition: Condition, factor: float) -> Condition:
    if condition.type not in PRICE_CONDITIONS:
        return condition
    return replace(condition, value=ex_rights.adjust_level(condition.value, factor),
                   low=ex_rights.adjust_level(condition.low, factor), high=ex_rights.adjust_level(condition.high, factor))


def _dump(task: WatchTask) -> str:
    return json.dumps(task_to_body(task), ensure_ascii=False)


def _iso(value: Optional[datetime]) -> Optional[str]:
    return value.isoformat() if value else None


def _task(row: Any) -> WatchTask:
    # Stored bodies were validated when written; parsing again with a far-past "today" keeps old expiry dates.
    parsed = parse_task(json.loads(row["body"]), date.min)
    return replace(parsed, id=row["id"], status=TaskStatus(row["status"]), fired_count=row["fired_count"],
                   last_fired_at=datetime.fromisoformat(row["last_fired_at"]) if row["last_fired_at"] else None,
                   created_at=datetime.fromisoformat(row["created_at"]))
