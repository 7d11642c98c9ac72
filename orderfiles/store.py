"""The order-file journal in the trading db: each file by content hash and trading day (processed once per
trading day, recorded before its first order) and the result of each of its lines (written right after the
line's order), so a crash resumes a file where it stopped. A dry run is one row written in one transaction
with all its lines (never a half-validated record). SQL only; the processing is orderfiles.intake's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from persistence.storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS order_files (
        id INTEGER PRIMARY KEY AUTOINCREMENT, file_hash TEXT NOT NULL, name TEXT NOT NULL,
        dry_run INTEGER NOT NULL, source TEXT NOT NULL, status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '',
        lines INTEGER NOT NULL DEFAULT 0, ok INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
        received_at TEXT NOT NULL, finished_at TEXT NOT NULL DEFAULT '', moved_to TEXT NOT NULL DEFAULT '');
    CREATE UNIQUE INDEX IF NOT EXISTS order_files_once ON order_files(file_hash) WHERE dry_run = 0;
    CREATE TABLE IF NOT EXISTS order_file_lines (
        file_id INTEGER NOT NULL, line_no INTEGER NOT NULL, stock_code TEXT NOT NULL, side TEXT NOT NULL,
        client_ref TEXT NOT NULL, status TEXT NOT NULL, order_id TEXT NOT NULL, reason TEXT NOT NULL,
        PRIMARY KEY (file_id, line_no))
    """,
    # issue 26: the same content is processed once per trading day (a basket re-exported daily is a new order);
    # rows from before keep trading_day '' and are matched by the date they were received
    """
    ALTER TABLE order_files ADD COLUMN trading_day TEXT NOT NULL DEFAULT '';
    DROP INDEX IF EXISTS order_files_once;
    CREATE UNIQUE INDEX IF NOT EXISTS order_files_once_a_day ON order_files(file_hash, trading_day) WHERE dry_run = 0
    """,
)

PROCESSING, DONE, ERROR = "processing", "done", "error"
STATUS_LABELS = {PROCESSING: "处理中", DONE: "全部成功", ERROR: "有失败"}


@dataclass(frozen=True)
class FileRecord:
    id: int
    file_hash: str
    name: str
    dry_run: bool
    source: str  # folder | upload
    status: str
    message: str
    lines: int
    ok: int
    failed: int
    received_at: str
    finished_at: str
    moved_to: str
    trading_day: str = ""  # YYYY-MM-DD; '' for rows journaled before issue 26

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "status_label": STATUS_LABELS.get(self.status, self.status)}


class OrderFileStore:
    def __init__(self, db: Database, clock):
        self._db = db
        self.clock = clock  # stamps; and the intake's trading day when it is given no clock of its own
        migrate(db, "order_files", MIGRATIONS)

    def find_processed(self, file_hash: str, trading_day: str) -> Optional[FileRecord]:
        """The real (not dry-run) record of this content on this trading day, if any."""
        return _record(self._db.query_one(
            "SELECT * FROM order_files WHERE file_hash=? AND dry_run=0 AND (trading_day=? OR (trading_day=''"
            " AND substr(received_at, 1, 10)=?)) ORDER BY id LIMIT 1", (file_hash, trading_day, trading_day)))

    def find_unfinished(self, file_hash: str) -> Optional[FileRecord]:
        """The newest real record of this content still in progress (any trading day)."""
        return _record(self._db.query_one("SELECT * FROM order_files WHERE file_hash=? AND dry_run=0 AND status=?"
                                          " ORDER BY id DESC LIMIT 1", (file_hash, PROCESSING)))

    def get(self, file_id: int) -> Optional[FileRecord]:
        return _record(self._db.query_one("SELECT * FROM order_files WHERE id=?", (file_id,)))

    def begin(self, file_hash: str, name: str, source: str, trading_day: str) -> tuple[FileRecord, bool]:
        """Journal the real file (committed) before its first line is acted on: (its record, whether it is new).
        The same content on the same trading day gets the one existing record (an upload racing the watcher)."""
        with self._db.transaction() as conn:
            existing = conn.execute(
                "SELECT id FROM order_files WHERE file_hash=? AND dry_run=0 AND trading_day=?",
                (file_hash, trading_day)).fetchone()
            if existing is not None:
                file_id, created = existing[0], False
            else:
                file_id = conn.execute(
                    "INSERT INTO order_files(file_hash, name, dry_run, source, status, received_at, trading_day)"
                    " VALUES(?,?,0,?,?,?,?)", (file_hash, name, source, PROCESSING, self._stamp(), trading_day)
                ).lastrowid
                created = True
        return self.get(file_id), created

    def save_validation(self, file_hash: str, name: str, source: str, trading_day: str, rows: list[tuple],
                        message: str = "") -> FileRecord:
        """A dry run in one transaction: the record, every line `(line_no, stock_code, side, client_ref,
        status, reason)` and the counts, so 10,000 lines cost one commit."""
        lines = len(rows)
        ok = sum(1 for r in rows if r[4] != "failed")
        status = ERROR if message or lines > ok else DONE
        stamp = self._stamp()
        with self._db.transaction() as conn:
            file_id = conn.execute(
                "INSERT INTO order_files(file_hash, name, dry_run, source, status, message, lines, ok, failed,"
                " received_at, finished_at, trading_day) VALUES(?,?,1,?,?,?,?,?,?,?,?,?)",
                (file_hash, name, source, status, message, lines, ok, lines - ok, stamp, stamp, trading_day)
            ).lastrowid
            conn.executemany("INSERT INTO order_file_lines VALUES(?,?,?,?,?,?,'',?)",
                             [(file_id, *row) for row in rows])
        return self.get(file_id)

    def done_lines(self, file_id: int) -> set[int]:
        return {r[0] for r in self._db.query("SELECT line_no FROM order_file_lines WHERE file_id=?", (file_id,))}

    def record_line(self, file_id: int, line_no: int, stock_code: str, side: str, client_ref: str, status: str,
                    order_id: str = "", reason: str = "") -> None:
        self._db.execute("INSERT OR REPLACE INTO order_file_lines VALUES(?,?,?,?,?,?,?,?)",
                         (file_id, line_no, stock_code, side, client_ref, status, order_id, reason))

    def lines(self, file_id: int) -> list[dict[str, Any]]:
        rows = self._db.query("SELECT * FROM order_file_lines WHERE file_id=? ORDER BY line_no", (file_id,))
        return [{"line": r["line_no"], "stock_code": r["stock_code"], "side": r["side"],
                 "client_ref": r["client_ref"], "status": r["status"], "order_id": r["order_id"],
                 "reason": r["reason"]} for r in rows]

    def finish(self, file_id: int, message: str = "") -> FileRecord:
        counts = self._db.query_one(
            "SELECT COUNT(*), COALESCE(SUM(status != 'failed'), 0) FROM order_file_lines WHERE file_id=?", (file_id,))
        lines, ok = counts[0], counts[1]
        status = ERROR if message or lines > ok else DONE  # a waiting note is replaced by the final message
        self._db.execute("UPDATE order_files SET status=?, message=?, lines=?, ok=?, failed=?, finished_at=?"
                         " WHERE id=?", (status, message, lines, ok, lines - ok, self._stamp(), file_id))
        return self.get(file_id)

    def set_message(self, file_id: int, message: str) -> FileRecord:
        """A note on a file still in progress (e.g. waiting for trading to resume)."""
        self._db.execute("UPDATE order_files SET message=? WHERE id=?", (message, file_id))
        return self.get(file_id)

    def set_moved(self, file_id: int, moved_to: str) -> None:
        self._db.execute("UPDATE order_files SET moved_to=? WHERE id=?", (moved_to, file_id))

    def recent(self, limit: int = 100) -> list[FileRecord]:
        return [_record(r) for r in self._db.query("SELECT * FROM order_files ORDER BY id DESC LIMIT ?", (limit,))]

    def _stamp(self) -> str:
        return self.clock.now().isoformat(sep=" ", timespec="seconds")


def _record(row) -> Optional[FileRecord]:
    if row is None:
        return None
    return FileRecord(id=row["id"], file_hash=row["file_hash"], name=row["name"], dry_run=bool(row["dry_run"]),
                      source=row["source"], status=row["status"], message=row["message"], lines=row["lines"],
                      ok=row["ok"], failed=row["failed"], received_at=row["received_at"],
                      finished_at=row["finished_at"], moved_to=row["moved_to"], trading_day=row["trading_day"])
