"""The stock pool (candidates for MACD entries and random buys): validated, normalized codes kept in
`stock_pool.json`, replaced atomically so a crash never leaves a half-written file."""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterable

import market_rules
from core.models import TradingError

log = logging.getLogger(__name__)

MAX_POOL_SIZE = 2000  # a sanity bound on one request, far above any real pool


class StockPoolError(TradingError):
    """A refused pool change; `errors` lists each bad entry with its Chinese reason."""

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__("INVALID_STOCK_POOL", message)
        self.errors = list(errors or [])


class StockPool:
    """The pool file and its in-memory copy. Thread-safe; listeners hear about every replacement."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[list[str]], None]] = []
        self.load_warnings: list[str] = []
        self._codes = self._load()

    def codes(self) -> list[str]:
        with self._lock:
            return list(self._codes)

    def __contains__(self, code: object) -> bool:
        with self._lock:
            return code in self._codes

    def __len__(self) -> int:
        with self._lock:
            return len(self._codes)

    def subscribe(self, listener: Callable[[list[str]], None]) -> None:
        """Call `listener(codes)` after every successful replacement (e.g. to update the watchlist)."""
        self._listeners.append(listener)

    def replace(self, codes: Iterable[object]) -> list[str]:
        """Validate every entry, then write the whole pool atomically. Raises StockPoolError, changing nothing."""
        normalized = normalize_codes(codes)
        with self._lock:
            _write_atomically(self.path, normalized)
            self._codes = normalized
        log.info("股票池已更新：%d 只股票", len(normalized))
        for listener in list(self._listeners):
            listener(list(normalized))
        return list(normalized)

    def _load(self) -> list[str]:
        """Read the file; a missing file is an empty pool, bad entries are skipped with a warning."""
        if not self.path.exists():
            return []
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self._warn(f"股票池文件 {self.path} 无法读取（{exc}），按空股票池处理")
            return []
        if not isinstance(raw, list):
            self._warn(f"股票池文件 {self.path} 应为代码列表，按空股票池处理")
            return []
        codes: list[str] = []
        for entry in raw:
            try:
                code = market_rules.normalize_code(entry)
            except ValueError as exc:
                self._warn(f"股票池中忽略无效代码：{exc}")
                continue
            if code not in codes:
                codes.append(code)
        return codes

    def _warn(self, message: str) -> None:
        self.load_warnings.append(message)
        log.warning(message)


def pool_file(explicit: str | None, data_dir: str | None, shipped: Path = Path("stock_pool.json")) -> Path:
    """Where the pool lives: `--stock-pool` when given; with an explicit `--data-dir`, inside that data dir
    (first seeded from the shipped pool), so that editing the pool of one run never rewrites the tracked file
    of the checkout; otherwise the shipped `stock_pool.json`."""
    if explicit:
        return Path(explicit)
    if not data_dir:
        return shipped
    own = Path(data_dir) / shipped.name
    if not own.exists() and shipped.exists():
        codes = StockPool(shipped).codes()
        _write_atomically(own, codes)
        log.info("股票池：数据目录中没有 %s，已从 %s 复制 %d 只股票", own.name, shipped, len(codes))
    return own


def normalize_codes(codes: Iterable[object]) -> list[str]:
    """Normalize each code (`600036` → `600036.SH`), drop duplicates keeping order; collect every error."""
    if isinstance(codes, (str, bytes)) or not isinstance(codes, (list, tuple)):
        raise StockPoolError("股票池必须是股票代码列表")
    if len(codes) > MAX_POOL_SIZE:
        raise StockPoolError(f"股票池最多 {MAX_POOL_SIZE} 只股票，收到 {len(codes)} 只")
    normalized: list[str] = []
    errors: list[str] = []
    for entry in codes:
        try:
            code = market_rules.normalize_code(entry)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if code not in normalized:
            normalized.append(code)
    if errors:
        shown = "；".join(errors[:5]) + ("……" if len(errors) > 5 else "")
        raise StockPoolError(f"股票池有 {len(errors)} 个无效代码：{shown}", errors)
    return normalized


def _write_atomically(path: Path, codes: list[str]) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(codes, ensure_ascii=False, indent=2) + "\n"
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
