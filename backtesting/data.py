"""Daily bars for the backtest: a folder of `<code>.csv` files or a TDX `vipdoc` tree (read offline with mootdx),
validated row by row. A stock with bad data is reported (file, row, reason) and skipped, never used."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

import numpy as np

import market_rules
from core.models import DataUnavailable
from market import ex_rights
from market.ex_rights import CorporateAction
from market.replay_feeds import read_names

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("date", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
_DATE_PATTERN = r"^\d{4}-?\d{2}-?\d{2}(?:[ T][\d:.]*)?$"  # YYYY-MM-DD or YYYYMMDD, maybe a time of day
MAX_ROWS_REPORTED = 3  # per problem kind and file: enough to find the fault, short enough to read


@dataclass(frozen=True)
class StockBars:
    """One stock's validated daily bars, dates strictly ascending."""

    code: str
    dates: np.ndarray  # datetime64[D]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # shares
    source: str


@dataclass(frozen=True)
class DataProblem:
    """Something wrong in one input file. `row` is the line in a CSV (header = line 1) or the record number
    in a TDX file; None for the whole file. `skipped` says whether the stock was left out because of it."""

    source: str
    row: Optional[int]
    message: str
    skipped: bool = True

    def describe(self) -> str:
        where = f"{self.source}" if self.row is None else f"{self.source} 第{self.row}行"
        outcome = "，已跳过该股票" if self.skipped else ""
        return f"{where}：{self.message}{outcome}"


@dataclass
class LoadedData:
    stocks: list[StockBars] = field(default_factory=list)
    problems: list[DataProblem] = field(default_factory=list)

    @property
    def skipped_sources(self) -> list[str]:
        return sorted({p.source for p in self.problems if p.skipped})


def load_bars(path: str | Path, codes: Optional[Iterable[str]] = None) -> LoadedData:
    """Bars from a CSV folder or a TDX folder (one holding `vipdoc`, or `vipdoc` itself), sorted by code.
    `codes` limits the stocks loaded. Raises DataUnavailable when the folder holds no usable files."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataUnavailable("BACKTEST_DATA_MISSING", f"行情目录不存在：{folder}")
    wanted = _normalize_codes(codes)
    if _vipdoc_of(folder) is not None:
        loaded = load_tdx_folder(folder, wanted)
    else:
        loaded = load_csv_folder(folder, wanted)
    if not loaded.stocks and not loaded.problems:
        raise DataUnavailable("BACKTEST_DATA_EMPTY", f"目录 {folder} 中没有找到日线文件（<代码>.csv 或通达信 vipdoc）")
    return loaded


def load_csv_folder(folder: Path, codes: Optional[set[str]] = None) -> LoadedData:
    """Files `<code>.csv` with columns date,open,high,low,close,volume (volume in shares)."""
    loaded = LoadedData()
    seen: dict[str, str] = {}
    for path in sorted(Path(folder).glob("*.csv")):
        code = _code_from_name(path.stem, str(path), loaded.problems)
        if code is None or (codes is not None and code not in codes):
            continue
        if code in seen:
            loaded.problems.append(DataProblem(str(path), None, f"{code} 与 {seen[code]} 是同一只股票，重复的文件"))
            continue
        seen[code] = path.name
        import pandas as pd  # imported here: a run that finds every file in the cache never needs pandas

        try:
            frame = pd.read_csv(path, dtype={"date": str}, skipinitialspace=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
            loaded.problems.append(DataProblem(str(path), None, f"无法读取 CSV：{exc}"))
            continue
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        _add(loaded, validate_bars(code, frame, str(path), first_row=2))
    _sort(loaded)
    return loaded


def load_tdx_folder(folder: Path, codes: Optional[set[str]] = None) -> LoadedData:
    """`vipdoc/{sh,sz}/lday/*.day` read with mootdx's offline Reader (no network). TDX volume is in lots."""
    from mootdx.reader import Reader  # imported lazily: only TDX input needs it

    vipdoc = _vipdoc_of(Path(folder))
    reader = Reader.factory(market="std", tdxdir=str(vipdoc.parent))
    loaded = LoadedData()
    for path in sorted(vipdoc.glob("*/lday/*.day")):
        digits, exchange = path.stem[2:], path.stem[:2].upper()
        try:
            code = market_rules.normalize_code(f"{digits}.{exchange}")
        except ValueError:
            continue  # an index or another non-stock file of the TDX tree (e.g. sh000001 is the SSE index)
        if codes is not None and code not in codes:
            continue
        frame = reader.daily(symbol=digits)
        if frame is None or len(frame) == 0:
            loaded.problems.append(DataProblem(str(path), None, "通达信文件没有数据记录"))
            continue
        frame = frame.reset_index()
        frame["date"] = frame["date"].astype(str).str[:10]
        for column in PRICE_COLUMNS:  # TDX stores 1/100 CNY; remove binary noise of the division
            frame[column] = frame[column].astype(float).round(3)
        frame["volume"] = (frame["volume"].astype(float) * 100).round()
        _add(loaded, validate_bars(code, frame, str(path), first_row=1))
    _sort(loaded)
    return loaded


def validate_bars(code: str, frame: pd.DataFrame, source: str,
                  first_row: int = 2) -> tuple[Optional[StockBars], list[DataProblem]]:
    """Check every row; return the bars, or None with the problems when any row is bad.

    Bad: missing columns, unreadable dates or numbers, prices ≤ 0, high < low, open/close outside [low, high],
    negative volume, duplicate or unsorted dates. A zero-volume row is a suspended day: dropped, reported as
    a notice (the stock is kept)."""
    import pandas as pd

    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        return None, [DataProblem(source, None, f"缺少列：{', '.join(missing)}（需要 {','.join(COLUMNS)}）")]
    if len(frame) == 0:
        return None, [DataProblem(source, None, "文件没有数据行")]
    rows = np.arange(len(frame)) + first_row
    problems: list[DataProblem] = []

    def report(mask: np.ndarray, describe) -> None:
        for position in np.flatnonzero(mask)[:MAX_ROWS_REPORTED]:
            problems.append(DataProblem(source, int(rows[position]), describe(int(position))))

    day_values = _parse_days(frame["date"], report)
    values = {}
    for column in COLUMNS[1:]:
        column_values = frame[column]
        if not pd.api.types.is_numeric_dtype(column_values):
            column_values = pd.to_numeric(column_values, errors="coerce")
        numbers = column_values.to_numpy(dtype=float)
        report(~np.isfinite(numbers), lambda i, c=column: f"{c} 缺失或不是有效数字：「{frame[column].iloc[i]}」")
        values[column] = numbers
    if problems:
        return None, problems
    o, h, l, c, v = (values[k] for k in ("open", "high", "low", "close", "volume"))
    positive = (o > 0) & (h > 0) & (l > 0) & (c > 0)
    report(~positive, lambda i: f"价格必须大于0（open={o[i]:g}, high={h[i]:g}, low={l[i]:g}, close={c[i]:g}）")
    report(positive & (h < l), lambda i: f"最高价低于最低价（high={h[i]:g}, low={l[i]:g}）")
    report(positive & (h >= l) & ((o > h) | (o < l) | (c > h) | (c < l)),
           lambda i: f"开盘价或收盘价超出最高最低价范围（open={o[i]:g}, high={h[i]:g}, low={l[i]:g}, close={c[i]:g}）")
    report(v < 0, lambda i: f"成交量为负：{v[i]:g}")
    duplicated = pd.Series(day_values).duplicated().to_numpy()
    report(duplicated, lambda i: f"日期重复：{day_values[i]}（与第{_first_row_of(day_values, i, rows)}行相同）")
    unsorted = np.zeros(len(day_values), dtype=bool)
    unsorted[1:] = day_values[1:] < day_values[:-1]
    report(unsorted, lambda i: f"日期未按升序排列：{day_values[i]} 排在 {day_values[i - 1]} 之后")
    if problems:
        return None, problems
    traded = v > 0
    if not traded.all():
        idle = np.flatnonzero(~traded)
        problems.append(DataProblem(source, int(rows[idle[0]]),
                                    f"成交量为0的行共 {len(idle)} 行，按停牌处理（不交易）", skipped=False))
    if not traded.any():
        return None, problems + [DataProblem(source, None, "没有成交量大于0的行")]
    bars = StockBars(code, day_values[traded], o[traded], h[traded], l[traded], c[traded], v[traded], source)
    return bars, problems


# ---- helpers ----------------------------------------------------------------------------------------

def _parse_days(column: pd.Series, report) -> np.ndarray:
    """Dates as datetime64[D]; unreadable ones are reported (NaT). numpy parses plain ISO dates fast;
    pandas takes over for anything else (other ISO 8601 spellings, stray spaces, bad values)."""
    import pandas as pd

    text = column.to_numpy(dtype=str)
    if (np.char.str_len(text) == 10).all():  # YYYY-MM-DD; numpy would also take "2024" or "NaT"
        try:
            days = np.array(text, dtype="datetime64[D]")
            if not np.isnat(days).any():
                return days
        except ValueError:
            pass
    raw = pd.Series(np.char.strip(text))
    parsed = pd.to_datetime(raw, format="ISO8601", errors="coerce")
    unreadable = parsed.isna().to_numpy() | ~raw.str.match(_DATE_PATTERN).to_numpy(dtype=bool)
    report(unreadable, lambda i: f"日期无法识别：「{text[i]}」")
    return parsed.to_numpy().astype("datetime64[D]")


def _vipdoc_of(folder: Path) -> Optional[Path]:
    if folder.name.lower() == "vipdoc" and any(folder.glob("*/lday")):
        return folder
    candidate = folder / "vipdoc"
    return candidate if candidate.is_dir() else None


def _code_from_name(stem: str, source: str, problems: list[DataProblem]) -> Optional[str]:
    try:
        return market_rules.normalize_code(stem)
    except ValueError as exc:
        problems.append(DataProblem(source, None, f"文件名不是股票代码：{exc}"))
        return None


def _normalize_codes(codes: Optional[Iterable[str]]) -> Optional[set[str]]:
    if codes is None:
        return None
    return {market_rules.normalize_code(code) for code in codes}


def _first_row_of(days: np.ndarray, index: int, rows: np.ndarray) -> int:
    return int(rows[int(np.flatnonzero(days[:index] == days[index])[0])])


def _add(loaded: LoadedData, result: tuple[Optional[StockBars], list[DataProblem]]) -> None:
    bars, problems = result
    loaded.problems.extend(problems)
    if bars is not None:
        loaded.stocks.append(bars)


def _sort(loaded: LoadedData) -> None:
    loaded.stocks.sort(key=lambda bars: bars.code)


def st_codes_in(folder: Optional[str | Path]) -> frozenset[str]:
    """ST/*ST codes by the names file beside the bars (names.csv), for the date-dependent ST band; empty when
    the folder has none (the backtest then treats every stock as not ST)."""
    if folder is None or not Path(folder).is_dir():
        return frozenset()
    return frozenset(code for code, name in read_names(Path(folder)).items() if market_rules.is_st_name(name))


# ---- ex-rights events for unadjusted bars (issue 28) -----------------------------------------------------

def load_events(path: str | Path) -> dict[str, list[CorporateAction]]:
    """An events file (market/ex_rights.py's CSV: code,ex_date,cash_per_share,shares_per_share[,...]) grouped
    by code. Raises DataUnavailable with the file's fault (line and reason) in Chinese."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataUnavailable("EX_RIGHTS_FILE_MISSING", f"无法读取除权除息文件 {file}：{exc}") from None
    try:
        return ex_rights.events_by_code(ex_rights.parse_events(text, str(file)))
    except ex_rights.EventsFileError as exc:
        raise DataUnavailable("EX_RIGHTS_FILE_BAD", str(exc)) from None


def derive_events_from_folders(raw_folder: str | Path, adjusted_folder: str | Path,
                               codes: Optional[Iterable[str]] = None) -> dict[str, list[CorporateAction]]:
    """The ex-dates found where `<code>.csv` of a raw folder and of a forward-adjusted (qfq) folder differ by
    a new constant (ex_rights.derive_events), over the dates both files have. Stocks in only one folder have
    none."""
    import pandas as pd

    wanted = _normalize_codes(codes)
    events: dict[str, list[CorporateAction]] = {}
    for raw_file in sorted(Path(raw_folder).glob("*.csv")):
        try:
            code = market_rules.normalize_code(raw_file.stem)
        except ValueError:
            continue
        adjusted_file = Path(adjusted_folder) / raw_file.name
        if (wanted is not None and code not in wanted) or not adjusted_file.is_file():
            continue
        merged = pd.read_csv(raw_file, dtype={"date": str}).merge(
            pd.read_csv(adjusted_file, dtype={"date": str}), on="date", suffixes=("_raw", "_adj"))
        days = [date.fromisoformat(text[:10]) for text in merged["date"]]
        found = ex_rights.derive_events(code, days, {c: merged[f"{c}_raw"].tolist() for c in PRICE_COLUMNS},
                                        {c: merged[f"{c}_adj"].tolist() for c in PRICE_COLUMNS})
        if found:
            events[code] = found
    return events
