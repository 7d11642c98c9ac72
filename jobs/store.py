"""The record of job runs (table `job_runs` of `<data dir>/jobs.db`): one row per job and trading day for the
scheduled/caught-up/skipped run (a unique index makes "never twice for the same day" a database fact, even
across a crash mid-run), plus any manual runs; and the day's alarms for the daily report (table `alarms`,
committed when raised, so a restart keeps them). Its own file: jobs belong to the daemon, not to one account
mode."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any, Optional

from persistence.storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS job_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, day TEXT NOT NULL, trigger TEXT NOT NULL,
        started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL, result TEXT NOT NULL DEFAULT '');
    CREATE UNIQUE INDEX IF NOT EXISTS job_runs_once ON job_runs(job_id, day) WHERE trigger != 'manual';
    CREATE INDEX IF NOT EXISTS job_runs_job ON job_runs(job_id, id)
    """,
    # issue 26: the report's alarms survive a restart (they were held in memory)
    """
    CREATE TABLE IF NOT EXISTS alarms (
        id INTEGER PRIMARY KEY AUTOINCREMENT, day TEXT NOT NULL, time TEXT NOT NULL, kind TEXT NOT NULL,
        message TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS alarms_day ON alarms(day, id)
    """,
)

RUNNING, OK, FAILED, SKIPPED, INTERRUPTED = "running", "ok", "failed", "skipped", "interrupted"
RETRY = "retry"  # stopped by the daemon's own shutdown before it could finish: run again at the next start
STATUS_LABELS = {RUNNING: "运行中", OK: "成功", FAILED: "失败", SKIPPED: "已跳过", INTERRUPTED: "中断（进程退出）",
                 RETRY: "待补跑（程序退出时未完成）"}


class JobStore:
    def __init__(self, db: Database):
        self._db = db
        migrate(db, "job_store", MIGRATIONS)
        # a run still "running" belongs to a process that died: it stays counted for its day, never re-run
        db.execute("UPDATE job_runs SET status=?, result='进程在任务运行中退出' WHERE status=?", (INTERRUPTED, RUNNING))

    def claim(self, job_id: str, day: date, trigger: str, now: datetime, status: str = RUNNING,
              result: str = "") -> Optional[int]:
        """Commit the run before it starts; None when this job already has its run for `day`."""
        with self._db.transaction() as conn:
            cursor = conn.execute("INSERT OR IGNORE INTO job_runs(job_id, day, trigger, started_at, status, result) "
                                  "VALUES(?,?,?,?,?,?)", (job_id, day.isoformat(), trigger,
                                                          now.isoformat(sep=" ", timespec="seconds"), status, result))
            return cursor.lastrowid if cursor.rowcount else None

    def finish(self, run_id: int, ok: bool, result: str, now: datetime) -> None:
        self._db.execute("UPDATE job_runs SET status=?, result=?, finished_at=? WHERE id=?",
                         (OK if ok else FAILED, result, now.isoformat(sep=" ", timespec="seconds"), run_id))

    def release(self, run_id: int, result: str, now: datetime) -> None:
        """The run could not finish because the daemon is stopping: it is run again at the next start."""
        self._db.execute("UPDATE job_runs SET status=?, result=?, finished_at=? WHERE id=?",
                         (RETRY, result, now.isoformat(sep=" ", timespec="seconds"), run_id))

    def retries(self, job_id: str) -> list[tuple[int, date]]:
        """(run id, day) of this job's released runs, oldest first."""
        rows = self._db.query("SELECT id, day FROM job_runs WHERE job_id=? AND status=? ORDER BY day", (job_id, RETRY))
        return [(row[0], date.fromisoformat(row[1])) for row in rows]

    def reclaim(self, run_id: int, now: datetime) -> bool:
        """Take a released run again (committed before it starts, as `claim`); False when already taken."""
        with self._db.transaction() as conn:
            cursor = conn.execute("UPDATE job_runs SET status=?, trigger='catch_up', started_at=?, finished_at=NULL "
                                  "WHERE id=? AND status=?",
                                  (RUNNING, now.isoformat(sep=" ", timespec="seconds"), run_id, RETRY))
            return cursor.rowcount == 1

    def skip_released(self, run_id: int, result: str, now: datetime) -> None:
        """A released run whose moment is gone for good (its catch-up policy says so)."""
        self._db.execute("UPDATE job_runs SET status=?, result=?, finished_at=? WHERE id=? AND status=?",
                         (SKIPPED, result, now.isoformat(sep=" ", timespec="seconds"), run_id, RETRY))

    def last_day(self, job_id: str) -> Optional[date]:
        row = self._db.query_one("SELECT MAX(day) FROM job_runs WHERE job_id=? AND trigger!='manual'", (job_id,))
        return date.fromisoformat(row[0]) if row and row[0] else None

    def last_run(self, job_id: str) -> Optional[dict[str, Any]]:
        row = self._db.query_one("SELECT * FROM job_runs WHERE job_id=? ORDER BY id DESC LIMIT 1", (job_id,))
        return _row(row) if row else None

    def runs(self, job_id: Optional[str] = None, day: Optional[date] = None, limit: int = 200) -> list[dict]:
        sql, params = "SELECT * FROM job_runs WHERE 1=1", []
        if job_id:
            sql, params = sql + " AND job_id=?", params + [job_id]
        if day:
            sql, params = sql + " AND day=?", params + [day.isoformat()]
        return [_row(r) for r in self._db.query(sql + " ORDER BY id DESC LIMIT ?", params + [limit])]

    # ---- the day's alarms (for the daily report)
    def record_alarm(self, moment: datetime, kind: str, message: str) -> None:
        self._db.execute("INSERT INTO alarms(day, time, kind, message) VALUES(?,?,?,?)",
                         (moment.date().isoformat(), moment.strftime("%H:%M:%S"), kind, message))

    def alarms_on(self, day: date) -> list[tuple[str, str, str]]:
        """(HH:MM:SS, kind, message) of the alarms raised on `day`, oldest first."""
        rows = self._db.query("SELECT time, kind, message FROM alarms WHERE day=? ORDER BY id", (day.isoformat(),))
        return [(row[0], row[1], row[2]) for row in rows]

    def prune_alarms(self, before: date) -> int:
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM alarms WHERE day < ?", (before.isoformat(),)).rowcount


def _row(row) -> dict[str, Any]:
    return {"id": row["id"], "job_id": row["job_id"], "day": row["day"], "trigger": row["trigger"],
            "started_at": row["started_at"], "finished_at": row["finished_at"], "status": row["status"],
            "status_label": STATUS_LABELS.get(row["status"], row["status"]), "result": row["result"]}
