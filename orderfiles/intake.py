"""Executes order files: a CSV in the inbox folder (or uploaded) is journaled by content hash and trading day
before its first order, each line goes through the normal executor (every check and limit applies) with
`file hash + trading day + line` as the order's idempotency key, and the file moves to done/ or error/ with a
result CSV beside it. A file still being written (its size or time still changing) is left alone until it has
been stable for a while.

Work is done in bounded steps (ORDER_FILE_STEP_SECONDS) so that the thread's heartbeat stays honest: a file of
10,000 lines is parsed once and then advanced step by step. An upload is queued and answered at once; a dry
run is validated in memory and never written into the inbox, so it can never be ordered."""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import market_rules
import orderfiles.parse as parse
from core.models import Rule, Side, TradingError
from orderfiles.store import DONE, PROCESSING, FileRecord, OrderFileStore
from daemon.workers import wait_for_version

log = logging.getLogger(__name__)

DONE_DIR, ERROR_DIR = "done", "error"
RESULT_SUFFIX = ".result.csv"
# Refusals of the trading state (paused, emergency stop, or the order-file source halted by a breaker): the file
# waits in the inbox and goes on once the owner resumes (a line refused for these is not a bad line, and the same
# content could not be handed in again that day).
WAIT_CODES = {"TRADING_PAUSED", "TRADING_HALTED", "SOURCE_HALTED"}
# Refusals because the day's order budget is used up: the file waits likewise and is re-checked at a bounded
# rate (ORDER_FILE_WAIT_RECHECK_SECONDS), never re-parsed.
BUDGET_CODES = {"MAX_ORDERS"}
MINUTE = 60.0
PACE_POLL_SECONDS = 1.0  # while paced: the longest real wait before looking at the breakers' minute again


class _Deferred(Exception):
    """New orders are refused for now (trading state or budget); the file resumes later where it stopped."""

    def __init__(self, note: str):
        super().__init__(note)
        self.note = note


def default_inbox(data_dir: Path) -> Path:
    return Path(data_dir) / "orders" / "inbox"


def line_key(record: FileRecord, line_no: int) -> str:
    """The order's idempotency key: one order per line of one file content per trading day, ever. Records
    journaled before keys carried the day keep the old form, so a resumed old file sends no line twice."""
    if not record.trading_day:
        return f"F{record.file_hash[:20]}L{line_no}"
    return f"F{record.file_hash[:20]}D{record.trading_day.replace('-', '')}L{line_no}"


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float


@dataclass
class _Job:
    """The file being executed: parsed once, advanced a bounded step at a time."""
    path: Path
    record: FileRecord
    lines: list
    done: set[int]
    position: int = 0  # index into `lines` of the next line to look at
    recheck_at: float = 0.0  # while waiting (trading state, budget, pacing): the next try, on the intake's clock
    quote_deadlines: dict[str, float] = field(default_factory=dict)  # code -> give up waiting (monotonic)


class OrderFileIntake:
    """The worker thread executes (scan); uploads only queue, and a dry run only validates, both at once."""

    def __init__(self, store: OrderFileStore, executor, positions, settings, inbox: Path,
                 now: Callable[[], float] = time.monotonic, stop: Optional[threading.Event] = None, hub=None,
                 clock=None):
        self._store = store
        self._executor = executor
        self._positions = positions
        self._settings = settings
        self.inbox = Path(inbox)
        self._now = now
        self._stop = stop or threading.Event()
        self._clock = clock  # market clock: trading day and the breakers' minute; None = the store's
        self._lock = threading.Lock()  # the executing side (one scan at a time)
        self._queue_lock = threading.Lock()
        self._queued: dict[str, int] = {}  # uploaded file name in the inbox -> its record id (no stability wait)
        self._seen: dict[str, _Seen] = {}
        self._job: Optional[_Job] = None
        self._backlog = False  # the last step ended on time, not for lack of files
        self._sent: deque = deque()  # (market time, code) of this intake's orders in the last minute (pacing)
        self._hub = hub  # QuoteHub: a code not watched yet gets quotes once `watch_codes` names it
        self._watching: frozenset[str] = frozenset()
        self.changed = threading.Event()  # set on an upload (and by the worker's file observer)

    def watch_codes(self) -> list[str]:
        """Codes of the file being processed: the data thread adds them to its watchlist."""
        return sorted(self._watching)

    # ---- the folder (the worker thread)
    def scan(self) -> list[FileRecord]:
        """One bounded step (about ORDER_FILE_STEP_SECONDS): go on with the current file, then the next stable
        CSVs of the inbox (oldest first); returns the records finished in this step."""
        with self._lock:
            self.inbox.mkdir(parents=True, exist_ok=True)
            step_end = time.monotonic() + self._settings.get("ORDER_FILE_STEP_SECONDS")
            self._backlog = False
            finished: list[FileRecord] = []
            candidates: Optional[list[Path]] = None
            while not self._stop.is_set():
                if self._job is None:
                    if candidates is None:
                        candidates = self._candidates()
                    path = next((p for p in candidates if self.is_stable(p)), None)
                    if path is None:
                        break
                    candidates.remove(path)
                    opened = self._open(path)
                    if isinstance(opened, FileRecord):
                        finished.append(opened)
                        continue
                    if opened is None:
                        continue
                    self._job = opened
                job = self._job
                if self._now() < job.recheck_at:
                    break  # waiting: looked at again at a bounded rate, nothing re-read
                if not job.path.exists():  # taken away by the operator: the record stays as it is
                    self._drop_job()
                    continue
                record = self._advance(job, step_end)
                if record is None:
                    break
                finished.append(record)
                self._drop_job()
                if time.monotonic() >= step_end:
                    self._backlog = True  # further files may wait in the inbox: the next step comes at once
                    break
            return finished

    def due_in(self) -> Optional[float]:
        """Seconds until `scan` has work (0: now); None when only a file event or the periodic rescan can bring
        any. The worker sleeps this long at most."""
        with self._queue_lock:
            queued = bool(self._queued)
        job = self._job
        if job is not None:
            return max(0.0, job.recheck_at - self._now())
        if queued or self._backlog:
            return 0.0
        if self._seen:  # a file not stable yet: look again within its stable time
            return max(0.05, self._settings.get("ORDER_FILE_STABLE_SECONDS") / 2)
        return None

    def waiting(self) -> bool:
        """Whether a file was seen that is not stable yet."""
        return bool(self._seen)

    def is_stable(self, path: Path) -> bool:
        """True for an upload, or once size and modification time have not changed for
        ORDER_FILE_STABLE_SECONDS."""
        with self._queue_lock:
            if path.name in self._queued:
                return True
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

    # ---- uploads (web threads: never wait for the executing side)
    def upload(self, name: str, raw: bytes, dry_run: bool) -> FileRecord:
        """A dry run: validated now, in memory. Otherwise: saved into the inbox (atomically, so the watcher
        never sees half of it), journaled and queued for the worker; answered at once."""
        if dry_run:
            return self.validate(_safe_name(name), raw, source="upload")
        file_hash = hashlib.sha256(raw).hexdigest()
        day = self._trading_day()
        earlier = self._store.find_processed(file_hash, day)
        if earlier is not None and earlier.status != PROCESSING:
            raise TradingError("DUPLICATE_FILE", _duplicate_reason(earlier))
        self.inbox.mkdir(parents=True, exist_ok=True)
        staging = self.inbox / f".upload-{os.getpid()}-{threading.get_ident()}.part"
        staging.write_bytes(raw)
        with self._queue_lock:
            target = _free_path(self.inbox / _safe_name(name))
            os.replace(staging, target)
            record, _ = self._store.begin(file_hash, target.name, "upload", day)
            self._queued[target.name] = record.id
        log.info("委托文件 %s（%s）已上传，排队处理", target.name, file_hash[:12])
        self.changed.set()
        return record

    def validate(self, name: str, raw: bytes, source: str) -> FileRecord:
        """A dry run: every line checked in memory, the record and its lines saved in one transaction. Nothing
        is written into the inbox and nothing can be ordered."""
        file_hash = hashlib.sha256(raw).hexdigest()
        try:
            lines, message = parse.parse(raw), ""
        except parse.OrderFileError as exc:
            lines, message = [], str(exc)
        rows = [_validation_row(line) for line in lines]
        record = self._store.save_validation(file_hash, name, source, self._trading_day(), rows, message)
        log.info("委托文件 %s 仅校验：%d 行通过，%d 行有误%s", name, record.ok, record.failed,
                 f"（{message}）" if message else "")
        return record

    def recent(self, limit: int = 100) -> list[dict]:
        return [{**r.to_dict(), "results": self._store.lines(r.id)} for r in self._store.recent(limit)]

    def results(self, file_id: int) -> list[dict]:
        return self._store.lines(file_id)

    # ---- one file
    def _open(self, path: Path):
        """Start (or resume) a file: a finished FileRecord when it needs no execution (dry run, duplicate,
        unreadable), the `_Job` to advance, or None when the file is gone."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        self._seen.pop(path.name, None)
        file_hash = hashlib.sha256(raw).hexdigest()
        record = self._record_to_resume(path.name, file_hash)  # journaled as real (an upload, or interrupted)
        if record is None and self._settings.get("ORDER_FILE_DRY_RUN"):
            return self._move(path, self.validate(path.name, raw, source="folder"))
        if record is None:
            earlier = self._store.find_processed(file_hash, self._trading_day())
            if earlier is not None and earlier.status != PROCESSING:
                if earlier.moved_to:
                    return self._refuse_duplicate(path, earlier)
                return self._move(path, earlier)  # finished before a crash, not yet moved
            record, _ = self._store.begin(file_hash, path.name, "folder", self._trading_day())
        try:
            lines = parse.parse(raw)
        except parse.OrderFileError as exc:
            return self._move(path, self._store.finish(record.id, str(exc)))
        done = self._store.done_lines(record.id)
        if done:
            log.warning("委托文件 %s 上次处理中断，从未完成的行继续（已发出的行不会重发）", path.name)
        else:
            log.info("委托文件 %s（%s）开始处理，共 %d 行", path.name, file_hash[:12], len(lines))
        self._watching = frozenset(l.stock_code for l in lines if isinstance(l, parse.OrderLine))
        return _Job(path, record, lines, done)

    def _record_to_resume(self, name: str, file_hash: str) -> Optional[FileRecord]:
        """The unfinished record of this content: the upload's, today's, or the one this very file (by name)
        started on an earlier day and left by a crash or by waiting over the night, so that no line of it is
        sent twice under a new day's key. The same content dropped anew on a later day is that day's order."""
        with self._queue_lock:
            queued = self._queued.get(name)
        if queued is not None:
            record = self._store.get(queued)
            if record is not None and record.file_hash == file_hash and record.status == PROCESSING:
                return record
        record = self._store.find_unfinished(file_hash)
        if record is not None and (record.trading_day == self._trading_day() or record.name == name):
            return record  # today's, or the very file left in the inbox from an earlier day
        return None

    def _drop_job(self) -> None:
        job, self._job = self._job, None
        self._watching = frozenset()
        if job is not None:
            with self._queue_lock:
                self._queued.pop(job.path.name, None)

    def _advance(self, job: _Job, step_end: float) -> Optional[FileRecord]:
        """Lines until the step ends (None: more to do, or waiting) or the file is finished (its record)."""
        while job.position < len(job.lines):
            if self._stop.is_set():
                return None  # shutting down: the file stays in the inbox and resumes at the next start
            line = job.lines[job.position]
            if line.line_no not in job.done:
                if isinstance(line, parse.OrderLine):
                    if not self._quote_ready(job, line.stock_code, step_end):
                        return None
                    if not self._pace_allows(job, line.stock_code):
                        return None
                try:
                    self._one_line(job.record, line)
                except _Deferred as deferred:
                    self._defer(job, deferred.note)
                    return None
                self._resumed(job)
                pause = self._settings.get("ORDER_FILE_LINE_INTERVAL")
                if pause > 0 and isinstance(line, parse.OrderLine):
                    self._stop.wait(pause)
            job.position += 1
            if time.monotonic() >= step_end and job.position < len(job.lines):
                return None
        if self._stop.is_set():
            return None
        return self._move(job.path, self._store.finish(job.record.id))

    def _defer(self, job: _Job, note: str) -> None:
        """Wait: the note is logged and saved once (not at every re-check); re-checked at a bounded rate."""
        job.recheck_at = self._now() + self._settings.get("ORDER_FILE_WAIT_RECHECK_SECONDS")
        if job.record.message != note:
            log.warning("委托文件 %s 暂停处理：%s；条件恢复后从未完成的行继续（每 %g 秒检查一次）", job.path.name,
                        note, self._settings.get("ORDER_FILE_WAIT_RECHECK_SECONDS"))
            job.record = self._store.set_message(job.record.id, note)

    def _resumed(self, job: _Job) -> None:
        if job.record.message:
            log.info("委托文件 %s 继续处理", job.path.name)
            job.record = self._store.set_message(job.record.id, "")

    # ---- internals
    def _quote_ready(self, job: _Job, code: str, step_end: float) -> bool:
        """A code first named by this file has no quote until the data thread subscribed it: wait for it (on
        the hub's update condition) at most ORDER_FILE_QUOTE_WAIT seconds in all, within this step; False when
        the step ended first (the next step waits on). After the wait the executor decides."""
        if self._hub is None or self._hub.latest(code) is not None:
            return True
        deadline = job.quote_deadlines.setdefault(code, time.monotonic() + self._settings.get("ORDER_FILE_QUOTE_WAIT"))
        while self._hub.latest(code) is None and not self._stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                return True
            if now >= step_end:
                return False
            wait_for_version(self._hub.wait_for_update, self._hub.version, self._stop, min(deadline, step_end) - now)
        return True

    def _pace_allows(self, job: _Job, code: str) -> bool:
        """Stay below the per-minute breakers (MAX_ACTIONS_PER_MINUTE, MAX_ACTIONS_PER_STOCK_PER_MINUTE) and
        ORDER_FILE_MAX_LINES_PER_MINUTE: a file is placed as fast as they allow and never trips them. The
        minute is the market clock's, as the breakers count it."""
        now = self._market_seconds()
        while self._sent and self._sent[0][0] <= now - MINUTE:
            self._sent.popleft()
        account_cap = min(int(self._settings.get("ORDER_FILE_MAX_LINES_PER_MINUTE")),
                          int(self._settings.get("MAX_ACTIONS_PER_MINUTE")) - 1)
        stock_cap = int(self._settings.get("MAX_ACTIONS_PER_STOCK_PER_MINUTE")) - 1
        same_stock = [t for t, c in self._sent if c == code]
        if len(self._sent) < account_cap and len(same_stock) < stock_cap:
            return True
        oldest = self._sent[0][0] if len(self._sent) >= account_cap else same_stock[0]
        # the market minute may run faster than real time (replay): look again within a second, no later
        job.recheck_at = self._now() + min(max(0.05, oldest + MINUTE - now), PACE_POLL_SECONDS)
        return False

    def _one_line(self, record: FileRecord, line: parse.ParsedLine) -> None:
        def save(status: str, order_id: str = "", reason: str = "") -> None:
            side = line.side.value if isinstance(line, parse.OrderLine) else line.side
            self._store.record_line(record.id, line.line_no, line.stock_code, side, line.client_ref, status,
                                    order_id, reason)

        if isinstance(line, parse.LineError):
            save("failed", reason=line.reason)
            return
        key = line_key(record, line.line_no)
        order = self._executor.order_for_idempotency_key(key)
        if order is None:
            try:
                order = self._place(line, key)
            except TradingError as exc:
                if exc.code in WAIT_CODES:
                    raise _Deferred(f"等待恢复交易：{exc.message}") from exc
                if exc.code in BUDGET_CODES:
                    raise _Deferred(f"等待委托额度：{exc.message}") from exc
                save("failed", reason=exc.message)
                return
            self._sent.append((self._market_seconds(), line.stock_code))
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

    def _candidates(self) -> list[Path]:
        candidates = sorted((p for p in self.inbox.iterdir() if _is_order_file(p)), key=_mtime)
        present = {p.name for p in candidates}
        self._seen = {name: seen for name, seen in self._seen.items() if name in present}
        with self._queue_lock:  # an upload the operator removed before its turn is no longer due
            self._queued = {name: id_ for name, id_ in self._queued.items() if name in present}
        return candidates

    def _trading_day(self) -> str:
        clock = self._clock or self._store.clock
        return clock.today().isoformat()

    def _market_seconds(self) -> float:
        clock = self._clock or self._store.clock
        return clock.now().timestamp()

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
        with self._queue_lock:
            self._queued.pop(path.name, None)
        log.info("委托文件 %s 处理完毕：%d 行成功，%d 行失败%s → %s", record.name, record.ok, record.failed,
                 f"（{record.message}）" if record.message else "", target)
        return self._store.get(record.id)

    def _refuse_duplicate(self, path: Path, earlier: FileRecord) -> FileRecord:
        folder = self.inbox / ERROR_DIR
        folder.mkdir(parents=True, exist_ok=True)
        target = _free_path(folder / path.name)
        reason = _duplicate_reason(earlier)
        (folder / (target.stem + RESULT_SUFFIX)).write_bytes(
            parse.result_csv([{"line": "", "status": "failed", "reason": reason}]))
        os.replace(path, target)
        self._seen.pop(path.name, None)
        with self._queue_lock:
            self._queued.pop(path.name, None)
        log.warning("委托文件 %s：%s", path.name, reason)
        return earlier


def _duplicate_reason(earlier: FileRecord) -> str:
    return (f"重复文件：相同内容已于 {earlier.received_at} 以「{earlier.name}」处理过（同一交易日同一内容只执行一次），"
            f"未再次下单")


def _validation_row(line: parse.ParsedLine) -> tuple:
    """(line_no, stock_code, side, client_ref, status, reason) of a dry-run line."""
    if isinstance(line, parse.LineError):
        return line.line_no, line.stock_code, line.side, line.client_ref, "failed", line.reason
    return line.line_no, line.stock_code, line.side.value, line.client_ref, "valid", ""


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
