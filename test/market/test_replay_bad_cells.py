"""A replay CSV with a non-numeric cell or an invalid date (issue 21 item 7): the bad rows are skipped with a
warning naming the file and the line, like the other bad rows; the good rows replay."""
from __future__ import annotations

import logging

from data_test_support import shared_data
from market.replay_feeds import CsvBarFolder


def test_bad_cells_and_dates_skip_their_row_with_a_warning(tmp_path, caplog):
    lines = shared_data("daily", "600036.SH.csv").read_text(encoding="utf-8").splitlines()[:11]  # header + 10 real trading days
    header, rows = lines[0], lines[1:]
    good_days = [row.split(",")[0] for row in rows]
    cells = rows[2].split(",")
    cells[4] = "abc"  # close is not a number
    rows[2] = ",".join(cells)
    cells = rows[5].split(",")
    cells[0] = "2020-02-30"  # no such date
    rows[5] = ",".join(cells)
    (tmp_path / "600036.SH.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="market.replay_feeds"):
        bars = CsvBarFolder(tmp_path).bars("600036.SH")
    expected = [d for i, d in enumerate(good_days) if i not in (2, 5)]
    assert [b.day.isoformat() for b in bars] == expected
    warnings = [r.getMessage() for r in caplog.records if "已跳过" in r.getMessage()]
    assert len(warnings) == 2
    assert "第 4 行有不是数字的单元格" in warnings[0] and "600036.SH.csv" in warnings[0]
    assert "第 7 行日期无效「2020-02-30」" in warnings[1]
