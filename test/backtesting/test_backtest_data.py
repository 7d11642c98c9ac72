"""Loading and validating daily bars for the backtest: every kind of bad data is reported with its file and
row and the stock is skipped; good stocks still load."""
import os

import numpy as np
import pytest

from backtesting.data import load_bars
from core.models import DataUnavailable

GOOD = """date,open,high,low,close,volume
2024-01-02,10.00,10.20,9.90,10.10,1000
2024-01-03,10.10,10.30,10.00,10.20,1200
2024-01-04,10.20,10.25,10.05,10.15,900
"""


def folder_with(tmp_path, files: dict[str, str]):
    folder = tmp_path / "bars"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_good_file_loads_exactly(tmp_path):
    loaded = load_bars(folder_with(tmp_path, {"600036.SH.csv": GOOD}))
    (bars,) = loaded.stocks
    assert loaded.problems == []
    assert bars.code == "600036.SH"
    assert [str(d) for d in bars.dates] == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert bars.open.tolist() == [10.00, 10.10, 10.20] and bars.close.tolist() == [10.10, 10.20, 10.15]
    assert bars.volume.tolist() == [1000, 1200, 900]


BAD_ROW = "2024-01-03,10.10,10.30,10.00,10.20,1200"


@pytest.mark.parametrize("replacement, row, fragment", [
    ("2024-01-03,0,10.30,10.00,10.20,1200", 3, "价格必须大于0"),
    ("2024-01-03,10.10,10.30,-1,10.20,1200", 3, "价格必须大于0"),
    ("2024-01-03,10.10,9.90,10.00,10.00,1200", 3, "最高价低于最低价"),
    ("2024-01-03,10.40,10.30,10.00,10.20,1200", 3, "开盘价或收盘价超出最高最低价范围"),
    ("2024-01-03,10.10,10.30,10.00,9.90,1200", 3, "开盘价或收盘价超出最高最低价范围"),
    ("2024-01-02,10.10,10.30,10.00,10.20,1200", 3, "日期重复：2024-01-02（与第2行相同）"),
    ("2024-01-05,10.10,10.30,10.00,10.20,1200", 4, "日期未按升序排列：2024-01-04 排在 2024-01-05 之后"),
    ("2024-01-03,10.10,abc,10.00,10.20,1200", 3, "high 缺失或不是有效数字：「abc」"),
    ("2024-01-03,10.10,,10.00,10.20,1200", 3, "high 缺失或不是有效数字"),
    ("2024/13/45,10.10,10.30,10.00,10.20,1200", 3, "日期无法识别：「2024/13/45」"),
    ("2024-01,10.10,10.30,10.00,10.20,1200", 3, "日期无法识别：「2024-01」"),
    ("2024-02-30,10.10,10.30,10.00,10.20,1200", 3, "日期无法识别：「2024-02-30」"),
    ("2024-01-03,10.10,10.30,10.00,10.20,-5", 3, "成交量为负"),
])
def test_bad_row_is_reported_with_file_and_row_and_the_stock_skipped(tmp_path, replacement, row, fragment):
    folder = folder_with(tmp_path, {"600036.SH.csv": GOOD.replace(BAD_ROW, replacement),
                                    "000001.SZ.csv": GOOD})
    loaded = load_bars(folder)
    assert [bars.code for bars in loaded.stocks] == ["000001.SZ"]
    (problem,) = loaded.problems
    assert (problem.source, problem.row, problem.skipped) == (str(folder / "600036.SH.csv"), row, True)
    assert fragment in problem.message
    assert problem.describe().startswith(f"{folder / '600036.SH.csv'} 第{row}行：")
    assert loaded.skipped_sources == [str(folder / "600036.SH.csv")]


def test_missing_column_is_reported_for_the_file(tmp_path):
    text = "\n".join(",".join(line.split(",")[:5]) for line in GOOD.splitlines())  # no volume
    loaded = load_bars(folder_with(tmp_path, {"600036.SH.csv": text, "000001.SZ.csv": GOOD}))
    (problem,) = loaded.problems
    assert problem.row is None and "缺少列：volume" in problem.message
    assert [bars.code for bars in loaded.stocks] == ["000001.SZ"]


def test_several_problems_in_one_file_are_all_listed(tmp_path):
    text = GOOD + "2024-01-04,10.00,10.10,9.90,10.00,800\n2024-01-08,0,1,1,1,1\n"
    loaded = load_bars(folder_with(tmp_path, {"600036.SH.csv": text}))
    assert sorted((p.row, p.message.split("：")[0]) for p in loaded.problems) == [
        (5, "日期重复"), (6, "价格必须大于0（open=0, high=1, low=1, close=1）")]
    assert loaded.stocks == []


def test_zero_volume_row_is_a_suspended_day_reported_as_notice(tmp_path):
    text = GOOD.replace(BAD_ROW, "2024-01-03,10.10,10.10,10.10,10.10,0")
    loaded = load_bars(folder_with(tmp_path, {"600036.SH.csv": text}))
    (bars,) = loaded.stocks
    assert [str(d) for d in bars.dates] == ["2024-01-02", "2024-01-04"]
    (notice,) = loaded.problems
    assert (notice.row, notice.skipped) == (3, False) and "按停牌处理" in notice.message


def test_file_names_must_be_stock_codes_and_codes_filter(tmp_path):
    folder = folder_with(tmp_path, {"notes.csv": GOOD, "600036.csv": GOOD, "000001.SZ.csv": GOOD,
                                    "sh600036.csv": GOOD})
    loaded = load_bars(folder)
    assert [bars.code for bars in loaded.stocks] == ["000001.SZ", "600036.SH"]
    messages = sorted(p.message for p in loaded.problems)
    assert len(messages) == 2 and "文件名不是股票代码" in messages[1] and "重复的文件" in messages[0]
    assert [bars.code for bars in load_bars(folder, codes=["000001"]).stocks] == ["000001.SZ"]


def test_missing_or_empty_folder_raises_with_chinese_message(tmp_path):
    with pytest.raises(DataUnavailable, match="行情目录不存在"):
        load_bars(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataUnavailable, match="没有找到日线文件"):
        load_bars(tmp_path / "empty")


def test_header_only_file_is_reported(tmp_path):
    loaded = load_bars(folder_with(tmp_path, {"600036.SH.csv": "date,open,high,low,close,volume\n"}))
    assert loaded.stocks == [] and loaded.problems[0].message == "文件没有数据行"


def test_extra_columns_spaces_and_compact_dates_are_accepted(tmp_path):
    text = ("date, open, high, low, close, volume, amount\n2024-01-02, 10.00, 10.20, 9.90, 10.10, 1000, 10100\n"
            "20240103 ,10.10,10.30,10.00,10.20,1200,12200\n")
    (bars,) = load_bars(folder_with(tmp_path, {"600036.SH.csv": text})).stocks
    assert bars.high.tolist() == [10.20, 10.30] and bars.dates.dtype == np.dtype("datetime64[D]")
    assert [str(d) for d in bars.dates] == ["2024-01-02", "2024-01-03"]


# ---- the columnar market and its cache (issue 20) -----------------------------------------------------------

def _bars_csv(folder, code, closes):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["date,open,high,low,close,volume"]
    for day, close in zip(("2024-01-02", "2024-01-03", "2024-01-05"), closes):
        lines.append(f"{day},{close},{close + 0.05:.2f},{close - 0.05:.2f},{close},1000")
    (folder / f"{code}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_market_is_columnar_on_one_compact_calendar(tmp_path):
    from backtesting.market import load_market

    _bars_csv(tmp_path / "d", "600036.SH", [10.0, 10.1, 10.2])
    (tmp_path / "d" / "000001.SZ.csv").write_text(
        "date,open,high,low,close,volume\n2024-01-04,9.999,10.0,9.99,10.0,100\n2024-01-05,10.0,10.1,9.9,10.05,0\n",
        encoding="utf-8")
    market = load_market(tmp_path / "d", workers=1)
    assert market.codes == ["000001.SZ", "600036.SH"]
    assert [str(d) for d in market.calendar] == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    assert market.offsets.tolist() == [0, 1, 4] and market.day.tolist() == [2, 0, 1, 3]
    assert market.open.tolist() == [9999, 10000, 10100, 10200] and market.open.dtype.itemsize == 4
    assert market.closes(1).tolist() == [10.0, 10.1, 10.2]
    assert [p.message for p in market.problems] == ["成交量为0的行共 1 行，按停牌处理（不交易）"]


def test_cache_is_keyed_by_file_content_and_parallel_equals_serial(tmp_path):
    from backtesting.market import load_market

    folder, cache = tmp_path / "d", tmp_path / "cache"
    for index, code in enumerate(("600000.SH", "600036.SH", "000001.SZ", "000002.SZ")):
        _bars_csv(folder, code, [10.0 + index, 10.1 + index, 10.2 + index])
    first = load_market(folder, cache_dir=cache, workers=2)
    assert len(list(cache.glob("*.npy"))) == 4
    inodes = {p.name: p.stat().st_ino for p in cache.glob("*.npy")}
    again = load_market(folder, cache_dir=cache, workers=1)
    assert {p.name: p.stat().st_ino for p in cache.glob("*.npy")} == inodes  # read, not rebuilt
    assert again.close.tolist() == first.close.tolist() and again.codes == first.codes
    _bars_csv(folder, "600036.SH", [20.0, 20.1, 20.2])  # new content: a new entry, never the stale one
    changed = load_market(folder, cache_dir=cache, workers=1)
    assert changed.closes(changed.codes.index("600036.SH")).tolist() == [20.0, 20.1, 20.2]
    assert len(list(cache.glob("*.npy"))) == 4  # the stale entry was replaced, not kept
    uncached = load_market(folder, workers=1)
    assert uncached.close.tolist() == changed.close.tolist()


def test_daily_appends_do_not_grow_the_cache_and_the_cap_removes_the_least_recently_used(tmp_path):
    """Issue 27 §2: three appended bars to each file kept 4 entries per stock; now one per file, a size cap
    (BACKTEST_CACHE_MAX_MB) and `backtest.py cache clear`."""
    import io

    import backtest
    from backtesting.market import cache_size, load_market

    folder, other, cache = tmp_path / "d", tmp_path / "other", tmp_path / "cache"
    closes = [10.0, 10.1, 10.2]
    for day in range(3):
        closes.append(round(closes[-1] + 0.1, 2))
        for code in ("600000.SH", "600036.SH"):
            _bars_csv(folder, code, closes)
        load_market(folder, cache_dir=cache, workers=1)
        assert len(list(cache.glob("*.npy"))) == 2
    _bars_csv(other, "600000.SH", [5.0, 5.1, 5.2])  # the same code from another folder is its own entry
    load_market(other, cache_dir=cache, workers=1)
    assert len(list(cache.glob("*.npy"))) == 3
    entry_size = max(p.stat().st_size for p in cache.glob("*.npy"))
    for entry in cache.glob("*.npy"):  # an hour ago: the run below makes its own entries the recently used ones
        os.utime(entry, (entry.stat().st_atime, entry.stat().st_mtime - 3600))
    load_market(folder, cache_dir=cache, workers=1, cache_max_mb=2.5 * entry_size / 1024 / 1024)
    # the other folder's entry was the least recently used; this run's two stay
    assert sorted(p.name.split("-")[0] for p in cache.glob("*.npy")) == ["600000.SH", "600036.SH"]
    assert cache_size(cache) <= 2.5 * entry_size
    out = io.StringIO()
    assert backtest.main(["cache", "clear", "--cache", str(cache)], out, io.StringIO()) == 0
    assert list(cache.glob("*")) == [] and "删除 2 个文件" in out.getvalue()
