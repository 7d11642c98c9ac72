"""The order-file journal in the trading db: each file by content hash (processed once, recorded before its
first order) and the result of each of its lines (written right after the line's order), so a crash resumes
a file where it stopped. SQL only; the processing is orders_file_intake's."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from storage import Database, migrate

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

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "status_label": STATUS_LABELS.get(self.status, self.status)}


class OrderFileStore:
    def __init__(self, db: Database, clock):
        self._db = db
        self._clock = clock
        migrate(db, "order_files", MIGRATIONS)

    def find_processed(self, file_hash: str) -> Optional[FileRecord]:
        """The real (not dry-run) record of this content, if any."""
        return _record(self._db.query_one("SELECT * FROM order_files WHERE file_hash=? AND dry_run=0", (file_hash,)))

    def get(self, file_id: int) -> Optional[FileRecord]:
        return _record(self._db.query_one("SELECT * FROM order_files WHERE id=?", (file_id,)))

    def begin(self, file_hash: str, name: str, dry_run: bool, source: str) -> FileRecord:
        """Journal the file (committed) before its first line is acted on."""
        cursor = self._db.execute(
            "INSERT INTO order_files(file_hash, name, dry_run, source, status, received_at) VALUES(?,?,?,?,?,?)",
            (file_hash, name, int(dry_run), source, PROCESSING, self._stamp()))
        return self.get(cursor.lastrowid)

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
        return self._clock.now().isoformat(sep=" ", timespec="seconds")


def _record(row) -> Optional[FileRecord]:
    if row is None:
        return None
    return FileRecord(id=row["id"], file_hash=row["file_hash"], name=row["name"], dry_run=bool(row["dry_run"]),
                      source=row["source"], status=row["status"], message=row["message"], lines=row["lines"],
                      ok=row["ok"], failed=row["failed"], received_at=row["received_at"],
                      finished_at=row["finished_at"], moved_to=row["moved_to"])
