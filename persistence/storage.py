"""SQLite plumbing shared by the modules that own tables: WAL connections, forward migrations keyed by
`PRAGMA user_version`, and a lock-guarded connection wrapper for use across threads."""
from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence


class Database:
    """One SQLite connection shared by the threads of one owner, serialised by a re-entrant lock.

    Each owning module opens its own `Database` on the file and applies its own migrations; WAL lets the
    others read while one writes. `synchronous=FULL` because a trade journal must survive a power cut.
    """

    def __init__(self, path: str | Path, migrations: Sequence[str] = (), name: str = "main"):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        # Told of every failed statement (persistence.health.StorageGuard halts trading on a broken file or disk).
        self.on_failure: Optional[Callable[[BaseException], None]] = None
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA foreign_keys=ON")
        if migrations:
            migrate(self, name, migrations)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT under the lock; rolls back on any exception."""
        with self._reported(), self.lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence = ()) -> sqlite3.Cursor:
        with self._reported(), self.lock:
            return self._conn.execute(sql, params)

    def query(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        with self._reported(), self.lock:
            return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence = ()) -> sqlite3.Row | None:
        with self._reported(), self.lock:
            return self._conn.execute(sql, params).fetchone()

    @contextmanager
    def _reported(self) -> Iterator[None]:
        """Entered before the lock: the listener runs after the lock is released (it may take other locks)."""
        try:
            yield
        except sqlite3.Error as exc:
            listener = self.on_failure
            if listener is not None:
                listener(exc)
            raise

    def integrity_ok(self) -> bool:
        with self.lock:
            return self._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self.lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another connection still reads; the checkpoint happens on its close
            self._conn.close()


def migrate(db: Database, name: str, migrations: Sequence[str]) -> None:
    """Apply the owner's migrations not yet applied. Several owners share one file, so each owner keeps
    its version in `schema_versions` (PRAGMA user_version is per file, not per owner)."""
    with db.transaction() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_versions (owner TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_versions WHERE owner=?", (name,)).fetchone()
        current = row[0] if row else 0
        for version, script in enumerate(migrations[current:], start=current + 1):
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_versions(owner, version) VALUES(?, ?) "
                         "ON CONFLICT(owner) DO UPDATE SET version=excluded.version", (name, version))
        total = conn.execute("SELECT COALESCE(SUM(version), 0) FROM schema_versions").fetchone()[0]
        conn.execute(f"PRAGMA user_version={int(total)}")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
