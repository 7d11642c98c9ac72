"""Whether the databases can be trusted: the data-dir marker (a used dir with a database missing or empty is
refused, never silently re-created), `PRAGMA quick_check` at start and nightly, and a running guard that
halts automatic trading the moment a write fails (corruption, I/O error, full disk) and lifts a full-disk halt
once space is back. Start-up refusals are one Chinese line naming the file and the fix."""
from __future__ import annotations

import errno
import logging
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Iterable, Optional

from core.events import EventKind
from core.models import TradingError
from persistence.storage import Database

log = logging.getLogger(__name__)

MARKER_NAME = ".data_dir_used"  # written at the first start; its presence means "this dir holds an account"
BACKUP_DIR_NAME = "backups"  # where the nightly backups go (<data dir>/backups)
# sqlite error names that mean the file or the disk is broken (not a bug in a statement, not a constraint)
STORAGE_ERRORS = ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_READONLY",
                  "SQLITE_CANTOPEN")
DISK_FULL_LABEL = "磁盘已满"
CONFIG_RESET_HINT = "若确要以默认参数启动，请删除标记文件 {marker} 后重启"  # the refusal of a missing config.db
# The trading database's reset hint per mode (the daemon's refusal and the doctor's check say the same).
RESET_HINTS = {
    "simulation": "若确要新建模拟账户，请使用 --reset-sim-account（先归档现有数据）",
    "live": "实盘的委托日志不能重建，请务必从备份恢复",
}
# at start-up, an I/O error with less free space than this on the data dir's disk is a full disk (SQLite
# cannot always tell: a failed write of its shared-memory file is reported as SQLITE_IOERR)
FULL_DISK_BYTES = 1024 * 1024
DATABASE_LABELS = {"config.db": "参数数据库", "sim_trading.db": "模拟账户数据库", "trading.db": "交易数据库（委托日志）",
                   "market.db": "行情数据库"}
PROBE_BYTES = 256 * 1024  # a write of this size must succeed before a full-disk halt is lifted
STORAGE_SOURCE = "storage"


class StorageRefused(TradingError):
    """The daemon must not start (or trade) on these files; the message names the file and the way out."""


# ---- start-up -------------------------------------------------------------------------------------

def restore_hint(data_dir: Path) -> str:
    return (f"请停止程序，用备份目录 {Path(data_dir) / BACKUP_DIR_NAME} 中最近的备份替换该文件"
            "（python main.py --doctor 可检查数据目录与备份）")


def check_database_file(path: Path, data_dir: Path, what: str, reset_hint: str) -> None:
    """Refuse a database that is empty (0 bytes), or missing from a data dir that has been used."""
    path, data_dir = Path(path), Path(data_dir)
    used = (data_dir / MARKER_NAME).exists()
    if path.exists() and path.stat().st_size == 0:
        raise StorageRefused("DB_EMPTY", f"拒绝启动：{what} {path} 是空文件（0 字节），不能当作新数据库使用。"
                                         f"{restore_hint(data_dir)}；{reset_hint}")
    if used and not path.exists():
        raise StorageRefused("DB_MISSING", f"拒绝启动：数据目录 {data_dir} 已使用过，但{what} {path} 不存在。"
                                           f"{restore_hint(data_dir)}；{reset_hint}")


def open_checked(path: Path, data_dir: Path, what: str, reset_hint: str) -> Database:
    """Open a database after the file checks, then `PRAGMA quick_check`; StorageRefused on any failure."""
    check_database_file(path, data_dir, what, reset_hint)
    try:
        db = Database(path)
    except sqlite3.Error as exc:
        raise refusal(exc, path, data_dir, what) from exc
    try:
        findings = db.query("PRAGMA quick_check")
    except sqlite3.Error as exc:  # a full disk or an I/O error is not a corrupt file
        db.close()
        raise refusal(exc, path, data_dir, what) from exc
    if [str(r[0]) for r in findings] != ["ok"]:
        db.close()
        raise corrupt_refusal(path, data_dir, what)
    return db


def corrupt_refusal(path: Path, data_dir: Path, what: str) -> StorageRefused:
    """The one wording for a database file that is damaged (the daemon's refusal and the doctor's check);
    sqlite's own English finding stays out of it (`python main.py --doctor` shows which file)."""
    return StorageRefused("DB_CORRUPT", f"拒绝启动：{what} {path} 已损坏，不是完整可用的数据库文件。"
                                        f"{restore_hint(data_dir)}")


def database_label(path: Path) -> str:
    """What a database file of the data dir holds, as the refusals name it."""
    return DATABASE_LABELS.get(Path(path).name, "数据库")


def probe_file(path: Path) -> Optional[BaseException]:
    """A read-only `PRAGMA quick_check` of a database file from outside (no write, no WAL replay needed):
    None when it is intact, else the error (sqlite3.DatabaseError('corrupt') for bad findings)."""
    try:
        conn = sqlite3.connect(f"file:{Path(path).as_posix()}?mode=ro", uri=True, timeout=5)
        try:
            rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return exc
    return None if rows == ["ok"] else sqlite3.DatabaseError("database disk image is malformed")


def startup_refusal(exc: BaseException, data_dir: Path) -> StorageRefused:
    """A storage error met while building the daemon, without knowing the file: a damaged database of the
    data dir is named (its own file, not the folder); a full disk or an unwritable dir names the folder."""
    data_dir = Path(data_dir)
    if _start_kind(exc, data_dir) == "corrupt":
        for path in sorted(data_dir.glob("*.db")):
            if _start_kind(probe_file(path), data_dir) == "corrupt":
                return corrupt_refusal(path, data_dir, database_label(path))
    return refusal(exc, data_dir, data_dir, "数据目录中的数据库")


def quick_check(db: Database) -> str:
    """'' when `PRAGMA quick_check` says ok, else its first findings (or the error it raised)."""
    try:
        rows = db.query("PRAGMA quick_check")
    except sqlite3.Error as exc:
        return str(exc)
    findings = [str(r[0]) for r in rows]
    return "" if findings == ["ok"] else "；".join(findings[:3])


def mark_used(data_dir: Path) -> None:
    """After a successful start: from now on a missing database in this dir is refused."""
    marker = Path(data_dir) / MARKER_NAME
    if not marker.exists():
        marker.write_text("miniQMT 数据目录标记：存在时，缺失或为空的数据库会被拒绝，而不是新建。\n", encoding="utf-8")


def refusal(exc: BaseException, path: Path, data_dir: Path, what: str = "数据库") -> StorageRefused:
    """One Chinese line for an error met while opening `path` at start-up."""
    kind = _start_kind(exc, data_dir)
    if kind == "full":
        return StorageRefused("DISK_FULL", f"拒绝启动：{DISK_FULL_LABEL}，无法写入{what} {path}。请清理磁盘空间后重启")
    if kind == "readonly":
        return StorageRefused("DATA_DIR_READONLY", f"拒绝启动：数据目录 {data_dir} 不可写（{what} {path}）。"
                                                   "请检查目录权限或磁盘是否只读，或用 --data-dir 指定可写目录")
    if kind == "corrupt":
        return corrupt_refusal(path, data_dir, what)
    return StorageRefused("STORAGE_ERROR", f"拒绝启动：无法读写{what} {path}（{_error_label(exc)}）。请检查该文件与磁盘")


def _start_kind(exc: Optional[BaseException], data_dir: Path) -> str:
    """`classify` at start-up, where an I/O error on a disk with (almost) no space left is a full disk:
    SQLite reports a failed write of its shared-memory or journal file as an I/O error."""
    if exc is None:
        return ""
    kind = classify(exc)
    if kind == "io" and _free_bytes(Path(data_dir)) < FULL_DISK_BYTES:
        return "full"
    return kind


def _free_bytes(path: Path) -> int:
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return 1 << 62


def _error_label(exc: BaseException) -> str:
    """A storage error in Chinese for the refusal line (sqlite's English text is not shown to the owner)."""
    if isinstance(exc, OSError):
        return exc.strerror or "文件系统错误"
    return {"io": "磁盘读写错误"}.get(classify(exc), "SQLite 错误")


def classify(exc: BaseException) -> str:
    """'full', 'readonly', 'corrupt', 'io' for storage failures; '' for anything else (a bug, a constraint)."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return "full"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return "readonly"
        return "io"
    if not isinstance(exc, sqlite3.Error):
        return ""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return "full"
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) or "readonly" in text:
        return "readonly"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text:
        return "corrupt"
    if name.startswith("SQLITE_IOERR") or "disk i/o error" in text:
        return "io"
    return ""


# ---- while running --------------------------------------------------------------------------------

class StorageGuard:
    """Told of every failed database operation (`Database.on_failure`): a storage failure halts automatic
    trading through the trading state at once and publishes STORAGE_FAILURE. `check()` (the storage worker)
    halts when free space runs low and lifts its own full-disk halt when a real write succeeds again. Every
    database it is given is watched from the start."""

    def __init__(self, trading_state, events, databases: Callable[[], Iterable[Database]], data_dir: Path,
                 min_free_bytes: Callable[[], float], disk_free: Callable[[Path], int] = None):
        self._state = trading_state
        self._events = events
        self._databases = databases
        self._data_dir = Path(data_dir)
        self._min_free_bytes = min_free_bytes
        self._disk_free = disk_free or (lambda path: shutil.disk_usage(path).free)
        self._reporting = threading.local()  # the halt itself writes to the failing db: no recursion
        self._full_reason = ""  # the reason of our own full-disk halt, lifted when space is back
        self.problem = ""  # the last storage problem (shown by /api/health until trading resumes)
        for db in databases():  # every database counts: market.db's failed writes halt like the journal's
            self.watch(db)

    def watch(self, db: Database) -> None:
        db.on_failure = lambda exc: self.failed(db, exc)

    def failed(self, db: Database, exc: BaseException) -> None:
        kind = classify(exc)
        if not kind or getattr(self._reporting, "active", False):
            return
        self._reporting.active = True
        try:
            if kind == "full":
                self._halt_full(f"写入 {Path(db.path).name} 失败（{exc}）")
            else:
                self._halt(f"数据库 {db.path} 写入/读取失败（{exc}），已停止自动交易。{restore_hint(self._data_dir)}",
                           db.path)
        finally:
            self._reporting.active = False

    def nightly_check(self, _day=None) -> bool:
        """`PRAGMA quick_check` on every database; a failure halts automatic trading. True when all are ok."""
        healthy = True
        for db in self._databases():
            problem = self._quietly(lambda: quick_check(db))  # its own finding is the report, named as such
            if problem:
                healthy = False
                self._halt(f"数据库 {db.path} 完整性检查失败（{problem}），已停止自动交易。"
                           f"{restore_hint(self._data_dir)}", db.path)
        return healthy

    def check(self) -> None:
        """Low free space halts before a write fails; a full-disk halt of ours is lifted once free space is
        above the minimum and a real write of PROBE_BYTES to every database succeeds."""
        free = self._disk_free(self._data_dir)
        if free < self._min_free_bytes():
            if not self._full_reason:
                self._halt_full(f"数据目录 {self._data_dir} 剩余空间 {free / 1e6:.0f} MB，低于下限")
            return
        if self._full_reason and self._quietly(self._probe_writes):
            snapshot = self._state.snapshot()
            if snapshot["state"] == "halted" and snapshot["reason"] == self._full_reason:
                self._state.resume("磁盘空间已恢复，自动恢复交易", STORAGE_SOURCE)
                self._events.emit(EventKind.STORAGE_FAILURE, "磁盘空间已恢复，已自动恢复交易", recovered=True)
            self._full_reason = ""
            self.problem = ""

    def _quietly(self, probe: Callable[[], object]):
        """Run a probe whose expected failures are not new storage failures."""
        self._reporting.active = True
        try:
            return probe()
        finally:
            self._reporting.active = False

    def _halt_full(self, detail: str) -> None:
        reason = f"{DISK_FULL_LABEL}：{detail}。请清理磁盘空间，空间恢复后自动恢复交易"
        if self._state.halt(reason, STORAGE_SOURCE):
            self._full_reason = reason
        self._publish(reason, "full", str(self._data_dir))

    def _halt(self, reason: str, path: str) -> None:
        self._state.halt(reason, STORAGE_SOURCE)
        self._publish(reason, "failure", path)

    def _publish(self, reason: str, kind: str, path: str) -> None:
        if self.problem == reason:
            return
        self.problem = reason
        log.error(reason)
        self._events.emit(EventKind.STORAGE_FAILURE, reason, problem=kind, path=path)

    def _probe_writes(self) -> bool:
        for db in self._databases():
            try:
                with db.transaction() as conn:
                    conn.execute("CREATE TABLE IF NOT EXISTS storage_probe (data BLOB)")
                    conn.execute("INSERT INTO storage_probe(data) VALUES (zeroblob(?))", (PROBE_BYTES,))
                with db.transaction() as conn:
                    conn.execute("DELETE FROM storage_probe")
            except sqlite3.Error as exc:
                log.info("磁盘空间仍不足：%s", exc)
                return False
        return True


def describe_os_error(exc: OSError, path: Optional[Path]) -> str:
    """One Chinese line for an OSError met at start-up (lock file, token file, data dir)."""
    where = f" {path}" if path else ""
    kind = classify(exc)
    if kind == "full":
        return f"拒绝启动：{DISK_FULL_LABEL}，无法写入{where}。请清理磁盘空间后重启"
    if kind == "readonly":
        return f"拒绝启动：数据目录{where} 不可写（{exc.strerror}）。请检查目录权限，或用 --data-dir 指定可写目录"
    return f"拒绝启动：无法访问{where}（{exc.strerror or exc}）。请检查该路径与磁盘"
