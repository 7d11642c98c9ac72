"""Executes order files: a CSV in the inbox folder (or uploaded) is journaled by content hash before its first
order, each line goes through the normal executor (every check and limit applies) with `file hash + line` as
the order's idempotency key, and the file moves to done/ or error/ with a result CSV beside it. A file still
being written (its size or time still changing) is left alone until it has been stable for a while."""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import market_rules
import orders_file_parse as parse
from models import Rule, Side, TradingError
from orders_file_store import DONE, PROCESSING, FileRecord, OrderFileStore
from workers import wait_for_version

log = logging.getLogger(__name__)

DONE_DIR, ERROR_DIR = "done", "error"
# Refusals of the whole trading state: the file waits in the inbox and goes on once trading resumes (a line
# refused for these is not a bad line, and the same content could never be handed in again).
WAIT_CODES = {"TRADING_PAUSED", "TRADING_HALTED"}


class _Deferred(Exception):
    """The trading state refuses new orders now; the file resumes later where it stopped."""
RESULT_SUFFIX = ".result.csv"


def default_inbox(data_dir: Path) -> Path:
    return Path(data_dir) / "orders" / "inbox"


def line_key(file_hash: str, line_no: int) -> str:
    """The order's idempotency key: one order per line of one file content, ever."""
    return f"F{file_hash[:20]}L{line_no}"


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


class OrderFileIntake:
    """One file at a time (a lock): the watcher's scans and uploads never interleave."""

    def __init__(self, store: OrderFileStore, executor, positions, settings, inbox: Path,
                 now: Callable[[], float] = time.monotonic, stop: Optional[threading.Event] = None, hub=None):
        self._store = store
        self._executor = executor
        self._positions = positions
        self._settings = settings
        self.inbox = Path(inbox)
        self._now = now
        self._stop = stop or threading.Event()
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}
        self._hub = hub  # QuoteHub: a code not watched yet gets quotes once `watch_codes` names it
        self._watching: frozenset[str] = frozenset()

    def watch_codes(self) -> list[str]:
        """Codes of the file being processed: the data thread adds them to its watchlist."""
        return sorted(self._watching)

    # ---- the folder
    def scan(self) -> list[FileRecord]:
        """Process every stable CSV in the inbox (oldest first); returns the records finished now."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        finished = []
        candidates = sorted((p for p in self.inbox.iterdir() if _is_order_file(p)), key=_mtime)
        present = {p.name for p in candidates}
        self._seen = {name: seen for name, seen in self._seen.items() if name in present}
        for path in candidates:
            if self._stop.is_set():
                break
            if self.is_stable(path):
                record = self.process(path, dry_run=bool(self._settings.get("ORDER_FILE_DRY_RUN")), source="folder")
                if record is not None and record.status != PROCESSING:
                    finished.append(record)
        return finished

    def is_stable(self, path: Path) -> bool:
        """True once size and modification time have not changed for ORDER_FILE_STABLE_SECONDS."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False
        seen = self._seen.get(path.name)
        now = self._now()
        if seen is None or (seen.size, seen.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
            self._seen[path.name] = _Seen(stat.st_size, stat.st_mtime_ns, now)
            return False
        return now - seen.since >= self._settings.get("ORDER_FILE_STABLE_SECONDS")

    def waiting(self) -> bool:
        """Whether a file was seen that is not stable yet (the worker then looks again soon)."""
        return bool(self._seen)

    # ---- uploads
    def upload(self, name: str, raw: bytes, dry_run: bool) -> FileRecord:
        """Save into the inbox (atomically, so the watcher never sees half of it) and process it now."""
        earlier = None if dry_run else self._store.find_processed(hashlib.sha256(raw).hexdigest())
        if earlier is not None and earlier.status != PROCESSING:
            raise TradingError("DUPLICATE_FILE", f"重复文件：相同内容已于 {earlier.received_at} 以「{earlier.name}」"
                                                 f"处理过，未再次下单")
        safe = _safe_name(name)
        self.inbox.mkdir(parents=True, exist_ok=True)
        staging = self.inbox / f".upload-{os.getpid()}-{threading.get_ident()}.part"
        staging.write_bytes(raw)
        target = _free_path(self.inbox / safe)
        os.replace(staging, target)
        return self.process(target, dry_run=dry_run, source="upload")

    # ---- one file
    def process(self, path: Path, dry_run: bool, source: str) -> Optional[FileRecord]:
        """Journal, execute (or validate) every line not done yet, write the result, move the file."""
        with self._lock:
            if not path.exists():
                return None  # taken by the other path (upload vs. watcher)
            raw = path.read_bytes()
            file_hash = hashlib.sha256(raw).hexdigest()
            record = None if dry_run else self._store.find_processed(file_hash)
            if record is not None and record.status != PROCESSING:
                if record.moved_to:
                    return self._refuse_duplicate(path, record)
                return self._move(path, record)  # finished before a crash, not yet moved
            if record is None:
                record = self._store.begin(file_hash, path.name, dry_run, source)
                log.info("委托文件 %s（%s）开始处理%s", path.name, file_hash[:12], "（仅校验）" if dry_run else "")
            else:
                log.warning("委托文件 %s 上次处理中断，从未完成的行继续（已发出的行不会重发）", path.name)
            try:
                lines = parse.parse(raw)
            except parse.OrderFileError as exc:
                return self._move(path, self._store.finish(record.id, str(exc)))
            done = self._store.done_lines(record.id)
            self._watching = frozenset(l.stock_code for l in lines if isinstance(l, parse.OrderLine))
            try:
                self._run_lines(record, lines, done, dry_run)
            except _Deferred as deferred:
                note = f"等待恢复交易：{deferred}"
                if record.message != note:  # logged once, not at every rescan
                    log.warning("委托文件 %s 暂停处理：%s；恢复交易后从未完成的行继续", path.name, deferred)
                return self._store.set_message(record.id, note)
            finally:
                self._watching = frozenset()
            if self._stop.is_set():
                return None  # shutting down: the file stays in the inbox and resumes at the next start
            return self._move(path, self._store.finish(record.id))

    def _run_lines(self, record: FileRecord, lines: list, done: set[int], dry_run: bool) -> None:
        for line in lines:
            if line.line_no in done:
                continue
            if self._stop.is_set():
                return
            if isinstance(line, parse.OrderLine) and not dry_run:
                self._await_quote(line.stock_code)
            self._one_line(record, line, dry_run)
            pause = self._settings.get("ORDER_FILE_LINE_INTERVAL")
            if pause > 0 and not dry_run:
                self._stop.wait(pause)

    def recent(self, limit: int = 100) -> list[dict]:
        return [{**r.to_dict(), "results": self._store.lines(r.id)} for r in self._store.recent(limit)]

    def results(self, file_id: int) -> list[dict]:
        return self._store.lines(file_id)

    # ---- internals
    def _await_quote(self, code: str) -> None:
        """A code first named by this file has no quote until the data thread subscribed it: wait for it
        (on the hub's update condition), at most ORDER_FILE_QUOTE_WAIT seconds; the executor then decides."""
        if self._hub is None:
            return
        deadline = time.monotonic() + self._settings.get("ORDER_FILE_QUOTE_WAIT")
        while self._hub.latest(code) is None and not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            wait_for_version(self._hub.wait_for_update, self._hub.version, self._stop, remaining)

    def _one_line(self, record: FileRecord, line: parse.ParsedLine, dry_run: bool) -> None:
        def save(status: str, order_id: str = "", reason: str = "") -> None:
            side = line.side.value if isinstance(line, parse.OrderLine) else line.side
            self._store.record_line(record.id, line.line_no, line.stock_code, side, line.client_ref, status,
                                    order_id, reason)

        if isinstance(line, parse.LineError):
            save("failed", reason=line.reason)
            return
        if dry_run:
            save("valid")
            return
        key = line_key(record.file_hash, line.line_no)
        order = self._executor.order_for_idempotency_key(key)
        if order is None:
            try:
                order = self._place(line, key)
            except TradingError as exc:
                if exc.code in WAIT_CODES:
                    raise _Deferred(exc.message) from exc
                save("failed", reason=exc.message)
                return
        status = "failed" if order.status.value == "rejected" else "ok"
        save(status, order.order_id or order.client_id, order.reason if status == "failed" else "")

    def _place(self, line: parse.OrderLine, key: str):
        if line.side is Side.BUY:
            if line.amount is not None:
                return self._executor.buy_stock(line.stock_code, amount=line.amount, rule=Rule.ORDER_FILE,
                                                idempotency_key=key)
            return self._executor.buy_stock(line.stock_code, volume=line.volume, price=line.price,
                                            rule=Rule.ORDER_FILE, idempotency_key=key)
        volume = line.volume
        if line.ratio is not None:
            held = self._positions.get(line.stock_code)
            if held is None or held.available <= 0:
                raise TradingError("NO_AVAILABLE", f"没有 {line.stock_code} 的可卖持仓")
            volume = market_rules.sell_volume_for_ratio(line.stock_code, held.available, line.ratio)
        return self._executor.sell_stock(line.stock_code, volume, price=line.price, rule=Rule.ORDER_FILE,
                                         idempotency_key=key)

    def _move(self, path: Path, record: FileRecord) -> FileRecord:
        """Result CSV first, then the file beside it; the record notes where (a crash in between redoes it)."""
        folder = self.inbox / (DONE_DIR if record.status == DONE else ERROR_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        target = _free_path(folder / path.name)
        rows = self._store.lines(record.id)
        if record.message:
            rows = rows + [{"line": "", "status": "failed", "reason": record.message}]
        (folder / (target.stem + RESULT_SUFFIX)).write_bytes(parse.result_csv(rows))
        os.replace(path, target)
        self._store.set_moved(record.id, str(target))
        self._seen.pop(path.name, None)
        log.info("委托文件 %s 处理完毕：%d 行成功，%d 行失败%s → %s", record.name, record.ok, record.failed,
                 f"（{record.message}）" if record.message else "", target)
        return self._store.get(record.id)

    def _refuse_duplicate(self, path: Path, earlier: FileRecord) -> FileRecord:
        folder = self.inbox / ERROR_DIR
        folder.mkdir(parents=True, exist_ok=True)
        target = _free_path(folder / path.name)
        reason = f"重复文件：相同内容已于 {earlier.received_at} 以「{earlier.name}」处理过，未再次下单"
        (folder / (target.stem + RESULT_SUFFIX)).write_bytes(
            parse.result_csv([{"line": "", "status": "failed", "reason": reason}]))
        os.replace(path, target)
        self._seen.pop(path.name, None)
        log.warning("委托文件 %s：%s", path.name, reason)
        return earlier


def _is_order_file(path: Path) -> bool:
    # Excel's lock files (~$x.csv) and our own staging files (.x.part) are not instructions
    return path.is_file() and path.suffix.lower() == ".csv" and not path.name.startswith(("~$", ".")) \
        and not path.name.endswith(RESULT_SUFFIX)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _safe_name(name: str) -> str:
    base = os.path.basename((name or "").replace("\\", "/")).strip().lstrip(".~$") or "upload.csv"
    base = "".join(c for c in base if c.isprintable() and c not in '<>:"|?*')[:100] or "upload.csv"
    return base if base.lower().endswith(".csv") else base + ".csv"


def _free_path(path: Path) -> Path:
    if not path.exists():
        return path
    for n in range(2, 10000):
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise OSError(f"目录 {path.parent} 中同名文件过多")
