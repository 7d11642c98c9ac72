"""Daily-bar feeds the replay plays: a folder of `<code>.csv` files or a TDX `vipdoc` tree read offline with
mootdx. A feed only loads bars; turning them into intraday quotes is `replay_source`'s job."""
from __future__ import annotations

import logging
import struct
from datetime import date
from pathlib import Path
from typing import Optional, Protocol

import pandas as pd

import market_rules
from market.bar_store import DailyBar
from core.models import DataUnavailable

log = logging.getLogger(__name__)

CSV_COLUMNS = ("date", "open", "high", "low", "close", "volume")
NAMES_FILES = ("names.csv", "stock_names.csv")  # optional `code,name` lines beside the bars (issue 14)
TDX_VOLUME_UNIT = 100  # mootdx reports .day volumes in lots of 100 shares


class BarFeed(Protocol):
    label: str
    source_name: str

    def codes(self) -> Optional[list[str]]:
        """Codes the feed holds, or None when it can make bars for any valid code (synthetic)."""

    def bars(self, code: str) -> list[DailyBar]:
        """All bars of `code`, oldest first; [] when the feed has none. Raises DataUnavailable on bad files."""

    def trading_days(self) -> list[date]:
        """The days the replay walks through, ascending."""


class CsvBarFolder:
    """`<code>.csv` files (date,open,high,low,close,volume; volume in shares), e.g. ../shared/data/daily."""

    source_name = "replay"

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.label = f"回放行情（{self.folder.name}）"
        self._cache: dict[str, list[DailyBar]] = {}
        self._names: Optional[dict[str, str]] = None

    def stock_name(self, code: str) -> str:
        """From a names file in the folder when there is one; '' otherwise (the page then shows the code)."""
        if self._names is None:
            self._names = read_names(self.folder)
        return self._names.get(code, "")

    def codes(self) -> list[str]:
        found = []
        for path in sorted(self.folder.glob("*.csv")):
            try:
                found.append(market_rules.normalize_code(path.stem))
            except ValueError:
                log.warning("回放目录中的文件名不是股票代码，已忽略：%s", path.name)
        return found

    def bars(self, code: str) -> list[DailyBar]:
        if code not in self._cache:
            path = self.folder / f"{code}.csv"
            if not path.exists():
                path = self.folder / f"{code[:6]}.csv"
            self._cache[code] = _read_csv(code, path) if path.exists() else []
        return self._cache[code]

    def trading_days(self) -> list[date]:
        return _union_days(self, self.codes())


def read_names(folder: Path) -> dict[str, str]:
    """`code,name` per line (a `code,name` header line is allowed); bad lines are skipped with a warning."""
    import csv

    for file_name in NAMES_FILES:
        path = Path(folder) / file_name
        if not path.exists():
            continue
        names: dict[str, str] = {}
        with open(path, encoding="utf-8-sig", newline="") as handle:
            for row in csv.reader(handle):
                if len(row) < 2 or row[0].strip().lower() in ("code", "代码"):
                    continue
                try:
                    names[market_rules.normalize_code(row[0].strip())] = row[1].strip()
                except ValueError:
                    log.warning("股票名称文件 %s 中忽略无效代码：%s", path.name, row[0])
        return names
    return {}


class TdxBarFolder:
    """A TDX install (or its `vipdoc` folder): `vipdoc/{sh,sz}/lday/*.day`, read with mootdx's offline Reader
    (no network, no server)."""

    source_name = "replay"

    def __init__(self, tdx_dir: Path):
        tdx_dir = Path(tdx_dir)
        self.tdx_dir = tdx_dir.parent if tdx_dir.name == "vipdoc" else tdx_dir
        self.label = f"回放行情（通达信 {self.tdx_dir.name}）"
        self._cache: dict[str, list[DailyBar]] = {}
        self._reader = None

    def codes(self) -> list[str]:
        found = []
        for market in ("sh", "sz"):
            for path in sorted((self.tdx_dir / "vipdoc" / market / "lday").glob(f"{market}*.day")):
                try:
                    code = market_rules.normalize_code(path.stem)
                except ValueError:
                    continue  # indexes and other instruments share the folder
                found.append(code)
        return found

    def bars(self, code: str) -> list[DailyBar]:
        if code not in self._cache:
            self._cache[code] = read_tdx_daily(self._get_reader(), code)
        return self._cache[code]

    def trading_days(self) -> list[date]:
        return _union_days(self, self.codes())

    def _get_reader(self):
        if self._reader is None:
            self._reader = open_tdx_reader(self.tdx_dir)
        return self._reader


def is_tdx_tree(folder: Path) -> bool:
    folder = Path(folder)
    return (folder / "vipdoc").is_dir() or (folder.name == "vipdoc" and folder.is_dir())


def open_tdx_reader(tdx_dir: Path):
    """mootdx's offline std Reader on `tdx_dir` (the folder that contains vipdoc)."""
    from mootdx.reader import Reader  # lazy: mootdx is only needed when TDX files are used

    try:
        return Reader.factory(market="std", tdxdir=str(tdx_dir))
    except Exception as exc:  # mootdx raises a bare Exception for a missing folder
        raise DataUnavailable("TDX_DIR_MISSING", f"通达信目录不可用：{tdx_dir}（{exc}）") from exc


def read_tdx_daily(reader, code: str) -> list[DailyBar]:
    """Daily bars of `code` from a mootdx Reader; [] when the .day file is absent. Volumes in shares."""
    try:
        frame = reader.daily(symbol=code[:6])
    except NotImplementedError:  # tdxpy knows no security type for e.g. Shanghai 56xxxx ETFs: read it here
        return _read_day_file(reader, code)
    if frame is None or frame.empty:
        return []
    unit = tdx_volume_unit(code)
    bars = []
    for day, row in frame.iterrows():
        price = lambda key: market_rules.round_price(code, float(row[key]))  # noqa: E731 (13.780000000000001)
        bars.append(DailyBar(code, pd.Timestamp(day).date(), price("open"), price("high"), price("low"),
                             price("close"), float(round(float(row["volume"]) * unit))))
    return _checked(code, bars, f"通达信日线 {code}")


def tdx_volume_unit(code: str) -> int:
    """What one unit of mootdx's daily volume is in shares: tdxpy divides the file's share count by 100
    (lots) except for Shanghai funds (coefficient 1.0), whose volume already is in shares."""
    is_sh_fund = code.endswith(".SH") and market_rules.board(code) is market_rules.Board.ETF
    return 1 if is_sh_fund else TDX_VOLUME_UNIT


DAY_RECORD = struct.Struct("<IIIIIfII")  # date, open, high, low, close (price units), amount, volume (shares), -


def _read_day_file(reader, code: str) -> list[DailyBar]:
    """A .day file tdxpy refuses: 32-byte records, prices in 0.001 (funds) or 0.01 units, volume in shares."""
    path = reader.find_path(symbol=code[:6], subdir="lday", suffix="day")
    if path is None:
        return []
    price_unit = float(market_rules.tick_size(code))  # 0.001 for funds and convertible bonds, else 0.01
    data = Path(path).read_bytes()
    bars = []
    for offset in range(0, len(data) - DAY_RECORD.size + 1, DAY_RECORD.size):
        stamp, *prices, _amount, volume, _ = DAY_RECORD.unpack_from(data, offset)
        try:
            day = date(stamp // 10000, stamp // 100 % 100, stamp % 100)
        except ValueError:
            log.warning("通达信日线 %s 中的日期无效已跳过：%s", code, stamp)
            continue
        o, h, low, c = (market_rules.round_price(code, p * price_unit) for p in prices)
        bars.append(DailyBar(code, day, o, h, low, c, float(volume)))
    return _checked(code, bars, f"通达信日线 {code}")


def _read_csv(code: str, path: Path) -> list[DailyBar]:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataUnavailable("REPLAY_FILE_BAD", f"无法读取回放日线文件 {path}：{exc}") from exc
    missing = [c for c in CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise DataUnavailable("REPLAY_FILE_BAD", f"回放日线文件 {path} 缺少列：{', '.join(missing)}")
    bars = []
    for line, r in enumerate(frame.itertuples(index=False), start=2):  # line 1 is the header
        try:
            day = date.fromisoformat(str(r.date)[:10])
        except ValueError:  # skipped with a warning, like the other bad rows
            log.warning("回放数据 %s 第 %d 行日期无效「%s」，已跳过", path, line, str(r.date)[:20])
            continue
        try:
            values = [float(v) for v in (r.open, r.high, r.low, r.close, r.volume)]
        except (TypeError, ValueError):
            log.warning("回放数据 %s 第 %d 行有不是数字的单元格，已跳过", path, line)
            continue
        bars.append(DailyBar(code, day, *values))
    return _checked(code, bars, str(path))


def _checked(code: str, bars: list[DailyBar], origin: str) -> list[DailyBar]:
    """Sorted, de-duplicated bars without unusable rows (each dropped row is logged)."""
    good: dict[date, DailyBar] = {}
    for bar in bars:
        problem = bar.problem()
        if problem:
            log.warning("回放数据 %s 中的无效日线已跳过：%s", origin, problem)
            continue
        good[bar.day] = bar
    return [good[d] for d in sorted(good)]


def _union_days(feed, codes: list[str]) -> list[date]:
    days: set[date] = set()
    for code in codes:
        days.update(bar.day for bar in feed.bars(code))
    return sorted(days)
