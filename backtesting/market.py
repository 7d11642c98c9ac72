"""Whole-market bars in columnar form for the backtest (issue 20): every stock's bars in one set of numpy arrays
(prices as int32 thousandths of a CNY, days as int32 indexes into one compact calendar), so 5,000 stocks × 23
years fit in about 20 bytes per bar instead of Python lists per stock. Loading reads a CSV folder in parallel
processes through a cache of validated bars (one .npy per file, keyed by the file's content), so a second
run skips parsing and checking; a TDX folder goes through backtesting.data.load_bars."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Optional, Sequence

import numpy as np

import market_rules
from backtesting.data import DataProblem, StockBars, _code_from_name, _normalize_codes, _vipdoc_of, load_bars
from core.models import DataUnavailable

PRICE_SCALE = 1000  # prices are stored as whole thousandths of a CNY (the finest A-share tick is 0.001)
CACHE_FORMAT = "bars-v2"  # part of every cache key: a new format never reads an old file
EPOCH = np.datetime64("1970-01-01", "D")


@dataclass
class MarketData:
    """Bars of many stocks, columnar. Stock i owns rows offsets[i]:offsets[i+1], dates ascending.

    `day` holds each bar's index into `calendar` (every date on which at least one stock has a bar)."""

    codes: list[str]
    offsets: np.ndarray  # int64, len(codes) + 1
    day: np.ndarray  # int32 calendar index per bar
    open: np.ndarray  # int32 thousandths of a CNY
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    calendar: np.ndarray  # datetime64[D]
    problems: list[DataProblem] = field(default_factory=list)

    @property
    def bar_count(self) -> int:
        return int(self.offsets[-1])

    @property
    def skipped_sources(self) -> list[str]:
        return sorted({p.source for p in self.problems if p.skipped})

    def closes(self, stock: int) -> np.ndarray:
        """One stock's closes as float CNY (for the indicators)."""
        start, end = self.offsets[stock], self.offsets[stock + 1]
        return self.close[start:end] / PRICE_SCALE

    @classmethod
    def from_stocks(cls, stocks: Sequence[StockBars], problems: Optional[list[DataProblem]] = None) -> "MarketData":
        """Columnar bars from validated per-stock bars (sorted by code here)."""
        stocks = sorted(stocks, key=lambda bars: bars.code)
        parts = [_compact(bars.dates, bars.open, bars.high, bars.low, bars.close) for bars in stocks]
        return _assemble([bars.code for bars in stocks], parts, list(problems or []))


def load_market(path: str | Path, codes: Optional[Iterable[str]] = None, cache_dir: Optional[str | Path] = None,
                workers: Optional[int] = None,
                progress: Optional[Callable[[int, int], None]] = None,
                cache_max_mb: Optional[float] = None) -> MarketData:
    """All usable stocks of a CSV folder (or a TDX folder) as MarketData. CSV files are read by `workers`
    processes (default: the CPU count; 1 reads in this process) through `cache_dir` (None: a temporary folder
    removed afterwards, so nothing is kept). `progress(done, total)` is called per file read. A file's entry
    replaces the one its older content left; past `cache_max_mb` the least recently used entries go."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataUnavailable("BACKTEST_DATA_MISSING", f"行情目录不存在：{folder}")
    wanted = _normalize_codes(codes)
    if _vipdoc_of(folder) is not None:
        loaded = load_bars(folder, wanted)
        return MarketData.from_stocks(loaded.stocks, loaded.problems)
    problems: list[DataProblem] = []
    files: dict[str, Path] = {}
    for file in sorted(folder.glob("*.csv")):
        code = _code_from_name(file.stem, str(file), problems)
        if code is None or (wanted is not None and code not in wanted):
            continue
        if code in files:
            problems.append(DataProblem(str(file), None, f"{code} 与 {files[code].name} 是同一只股票，重复的文件"))
            continue
        files[code] = file
    if not files and not problems:
        raise DataUnavailable("BACKTEST_DATA_EMPTY", f"目录 {folder} 中没有找到日线文件（<代码>.csv 或通达信 vipdoc）")
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="backtest-bars-") as scratch:
            return _load_files(files, Path(scratch), workers, problems, progress)
    market = _load_files(files, Path(cache_dir), workers, problems, progress)
    if cache_max_mb is not None:
        prune_cache(Path(cache_dir), cache_max_mb)
    return market


def prune_cache(cache: Path, max_mb: float) -> int:
    """Remove the least recently used entries (a hit refreshes an entry's time) until the cache holds at most
    `max_mb` MB; returns the bytes freed. An entry's sidecar notices go with it."""
    entries = sorted(cache.glob("*.npy"), key=lambda entry: entry.stat().st_mtime)
    sizes = {entry: entry.stat().st_size + _size(entry.with_suffix(".json")) for entry in entries}
    total, limit, freed = sum(sizes.values()), max_mb * 1024 * 1024, 0
    for entry in entries:
        if total <= limit:
            break
        _remove_entry(entry)
        total -= sizes[entry]
        freed += sizes[entry]
    return freed


def clear_cache(cache: Path) -> tuple[int, int]:
    """`backtest.py cache clear`: every entry, sidecar and leftover scratch file; (files removed, bytes freed)."""
    removed = freed = 0
    for pattern in ("*.npy", "*.json", "*.tmp"):
        for file in cache.glob(pattern):
            freed += _size(file)
            file.unlink(missing_ok=True)
            removed += 1
    return removed, freed


def cache_size(cache: Path) -> int:
    return sum(_size(file) for file in cache.glob("*") if file.is_file())


def default_cache_dir() -> Path:
    """Where validated bars are kept between runs: $XDG_CACHE_HOME (or ~/.cache)/miniqmt-backtest."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "miniqmt-backtest"


# ---- loading through the cache ----------------------------------------------------------------------

def _load_files(files: dict[str, Path], cache: Path, workers: Optional[int], problems: list[DataProblem],
                progress: Optional[Callable[[int, int], None]]) -> MarketData:
    """Files already in the cache are taken from it here; only the others are parsed and checked, by
    `workers` processes, each leaving its result in the cache."""
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, tuple[Optional[Path], list[DataProblem]]] = {}
    misses = []
    for code, file in files.items():
        entry = cache_entry(cache, code, file.read_bytes(), file)
        found = _read_notices(entry, str(file))
        if found is None:
            misses.append((code, str(file), str(entry)))
        else:
            os.utime(entry)  # recently used: the size cap removes the least recently used first
            results[code] = (entry, found)
    done, total = len(results), len(files)
    workers = max(1, min(workers or os.cpu_count() or 1, len(misses) or 1))
    if progress is not None and done:
        progress(done, total)
    executor = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        mapped = executor.map(_cache_one, misses, chunksize=max(1, len(misses) // (workers * 8))) if executor \
            else map(_cache_one, misses)
        for code, entry, found in mapped:
            results[code] = (Path(entry) if entry else None, found)
            _remove_stale(cache, code, files[code], entry)
            done += 1
            if progress is not None:
                progress(done, total)
    finally:
        if executor is not None:
            executor.shutdown()
    usable = []
    for code in sorted(results):
        entry, found = results[code]
        problems.extend(found)
        if entry is not None:
            usable.append((code, entry))
    # Filled from the cache one file at a time: the peak memory is the final arrays plus one file.
    return _fill_from_cache(usable, problems)


def cache_entry(cache: Path, code: str, content: bytes, source: Optional[Path] = None) -> Path:
    """`<code>-<source key>-<content key>.npy`: the source key names the file it came from, so the entry of
    that file's previous content can be found and replaced."""
    key = hashlib.sha256(CACHE_FORMAT.encode() + code.encode() + b"\0" + content).hexdigest()
    return cache / f"{code}-{_source_key(source)}-{key[:32]}.npy"


def _source_key(source: Optional[Path]) -> str:
    text = str(Path(source).resolve()) if source is not None else ""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _remove_stale(cache: Path, code: str, source: Path, current: Optional[str]) -> None:
    """Entries of this file's earlier contents (and of the old unkeyed naming) are replaced, not kept."""
    keep = Path(current).name if current else None
    for entry in cache.glob(f"{code}-*.npy"):
        parts = entry.stem.split("-")
        if entry.name != keep and (len(parts) == 2 or parts[-2] == _source_key(source)):
            _remove_entry(entry)


def _remove_entry(entry: Path) -> None:
    entry.unlink(missing_ok=True)
    entry.with_suffix(".json").unlink(missing_ok=True)


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0


def _read_notices(entry: Path, source: str) -> Optional[list[DataProblem]]:
    """The notices kept with a cached file ([] when none), or None when the file is not in the cache."""
    if not entry.exists():
        return None
    sidecar = entry.with_suffix(".json")
    if not sidecar.exists():
        return []
    try:
        return [DataProblem(source, *item) for item in json.loads(sidecar.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        return None


def _cache_one(job: tuple[str, str, str]) -> tuple[str, Optional[str], list[DataProblem]]:
    """Parse and check one CSV file, keep the bars in the cache; returns (code, cache file or None, problems)."""
    import io

    import pandas as pd

    from backtesting.data import validate_bars

    code, source, entry = job
    content = Path(source).read_bytes()
    try:
        frame = pd.read_csv(io.BytesIO(content), dtype={"date": str}, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        return code, None, [DataProblem(source, None, f"无法读取 CSV：{exc}")]
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    bars, problems = validate_bars(code, frame, source, first_row=2)
    if bars is None:
        return code, None, problems
    stacked = np.stack(_compact(bars.dates, bars.open, bars.high, bars.low, bars.close))
    target = Path(entry)
    if problems:
        notices = json.dumps([[p.row, p.message, p.skipped] for p in problems], ensure_ascii=False)
        _write_atomic(target.with_suffix(".json"), lambda handle: handle.write(notices.encode("utf-8")))
    _write_atomic(target, lambda handle: np.save(handle, stacked, allow_pickle=False))  # last: marks it complete
    return code, str(target), problems


def _write_atomic(target: Path, write: Callable[[BinaryIO], None]) -> None:
    scratch = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    with open(scratch, "wb") as handle:
        write(handle)
    os.replace(scratch, target)  # atomic: a concurrent reader sees no file or the whole file


def _fill_from_cache(usable: list[tuple[str, Path]], problems: list[DataProblem]) -> MarketData:
    stored = [np.load(entry, mmap_mode="r") for _, entry in usable]  # headers only until copied
    offsets = np.zeros(len(usable) + 1, dtype=np.int64)
    np.cumsum([part.shape[1] for part in stored], out=offsets[1:])
    total = int(offsets[-1])
    days = np.empty(total, dtype=np.int32)
    columns = {name: np.empty(total, dtype=np.int32) for name in ("open", "high", "low", "close")}
    targets = [days] + list(columns.values())
    for index, part in enumerate(stored):
        start, end = offsets[index], offsets[index + 1]
        for row, target in enumerate(targets):
            target[start:end] = part[row]
        stored[index] = None  # unmap as we go
    return _index_days([code for code, _ in usable], offsets, days, columns, problems)


# ---- columnar helpers -------------------------------------------------------------------------------

def _compact(dates: np.ndarray, *prices: np.ndarray) -> tuple[np.ndarray, ...]:
    """(day numbers since 1970 as int32, prices as int32 thousandths of a CNY)."""
    days = (dates.astype("datetime64[D]") - EPOCH).astype(np.int32)
    return (days,) + tuple(np.rint(np.asarray(p, dtype=float) * PRICE_SCALE).astype(np.int32) for p in prices)


def _assemble(codes: list[str], parts: list[tuple[np.ndarray, ...]], problems: list[DataProblem]) -> MarketData:
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(part[0]) for part in parts], out=offsets[1:])
    if parts:
        days = np.concatenate([part[0] for part in parts])
        columns = {name: np.concatenate([part[i + 1] for part in parts])
                   for i, name in enumerate(("open", "high", "low", "close"))}
    else:
        days = np.empty(0, dtype=np.int32)
        columns = {name: np.empty(0, dtype=np.int32) for name in ("open", "high", "low", "close")}
    return _index_days(codes, offsets, days, columns, problems)


def _index_days(codes: list[str], offsets: np.ndarray, days: np.ndarray, columns: dict[str, np.ndarray],
                problems: list[DataProblem]) -> MarketData:
    """Replace day numbers by indexes into the compact calendar of every day that has a bar (in place)."""
    if len(days):
        first = int(days.min())
        present = np.zeros(int(days.max()) - first + 1, dtype=bool)
        present[days - first] = True
        index_of = np.cumsum(present, dtype=np.int32) - 1
        calendar = EPOCH + (np.flatnonzero(present) + first).astype("timedelta64[D]")
        days -= first
        np.take(index_of, days, out=days)
    else:
        calendar = np.array([], dtype="datetime64[D]")
    return MarketData(codes, offsets, days, columns["open"], columns["high"], columns["low"], columns["close"],
                      calendar.astype("datetime64[D]"), problems)


def tick_of(code: str) -> float:
    return float(market_rules.tick_size(code))
