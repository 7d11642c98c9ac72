"""StockPool: validated, normalized codes; atomic replacement; tolerant loading."""
import json
import os

import pytest

from core.stock_pool import StockPool, StockPoolError, normalize_codes


def test_missing_file_is_an_empty_pool(tmp_path):
    pool = StockPool(tmp_path / "stock_pool.json")
    assert pool.codes() == []
    assert len(pool) == 0


def test_load_normalizes_dedupes_and_skips_bad_entries_with_warning(tmp_path):
    path = tmp_path / "stock_pool.json"
    path.write_text(json.dumps(["600036", "sh600036", "000001.SZ", "999999", 42, "300750"]), encoding="utf-8")
    pool = StockPool(path)
    assert pool.codes() == ["600036.SH", "000001.SZ", "300750.SZ"]
    assert len(pool.load_warnings) == 2
    assert all("忽略无效代码" in w for w in pool.load_warnings)
    assert "600036.SH" in pool and "600000.SH" not in pool


@pytest.mark.parametrize("content", ["{broken", json.dumps({"codes": ["600036"]})])
def test_unreadable_file_loads_as_empty_pool_with_warning(tmp_path, content):
    path = tmp_path / "stock_pool.json"
    path.write_text(content, encoding="utf-8")
    pool = StockPool(path)
    assert pool.codes() == []
    assert "按空股票池处理" in pool.load_warnings[0]


def test_replace_writes_normalized_json_atomically_and_notifies(tmp_path):
    path = tmp_path / "stock_pool.json"
    pool = StockPool(path)
    heard = []
    pool.subscribe(heard.append)
    result = pool.replace(["sz000001", " 600519 ", "600519.SH", "688981"])
    assert result == ["000001.SZ", "600519.SH", "688981.SH"]
    assert json.loads(path.read_text(encoding="utf-8")) == result
    assert heard == [result]
    assert [p.name for p in tmp_path.iterdir()] == ["stock_pool.json"]  # no temporary file left behind
    assert StockPool(path).codes() == result


def test_refused_replacement_lists_every_error_and_changes_nothing(tmp_path):
    path = tmp_path / "stock_pool.json"
    pool = StockPool(path)
    pool.replace(["600036"])
    before = path.read_bytes()
    with pytest.raises(StockPoolError) as info:
        pool.replace(["600000", "12345", "abc", "900901"])
    assert info.value.code == "INVALID_STOCK_POOL"
    assert "3 个无效代码" in info.value.message
    assert len(info.value.errors) == 3
    assert pool.codes() == ["600036.SH"]
    assert path.read_bytes() == before


@pytest.mark.parametrize("value", ["600036", {"a": 1}, None, 5])
def test_pool_must_be_a_list(value):
    with pytest.raises(StockPoolError, match="列表"):
        normalize_codes(value)


def test_pool_size_is_bounded():
    with pytest.raises(StockPoolError, match="最多 2000"):
        normalize_codes(["600036"] * 2001)


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "stock_pool.json"
    pool = StockPool(path)
    pool.replace(["600036"])

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        pool.replace(["000001"])
    assert json.loads(path.read_text(encoding="utf-8")) == ["600036.SH"]
    assert pool.codes() == ["600036.SH"]
    assert [p.name for p in tmp_path.iterdir()] == ["stock_pool.json"]


def test_with_a_data_dir_the_pool_lives_in_it_seeded_from_the_shipped_file(tmp_path):
    from core.stock_pool import StockPool, pool_file

    shipped = tmp_path / "checkout" / "stock_pool.json"
    shipped.parent.mkdir()
    shipped.write_text('["600036", "000001.SZ"]', encoding="utf-8")
    before = shipped.read_bytes()
    data_dir = tmp_path / "run1"
    path = pool_file(None, str(data_dir), shipped)
    assert path == data_dir / "stock_pool.json"
    pool = StockPool(path)
    assert pool.codes() == ["600036.SH", "000001.SZ"]
    pool.replace(["600519"])
    assert shipped.read_bytes() == before, "the checkout's pool is never rewritten"
    assert StockPool(pool_file(None, str(data_dir), shipped)).codes() == ["600519.SH"], "kept, not re-seeded"
    assert pool_file(None, None, shipped) == shipped
    assert pool_file(str(tmp_path / "mine.json"), str(data_dir), shipped) == tmp_path / "mine.json"
