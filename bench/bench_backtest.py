"""Backtest speed on the real data sets: 30 stocks (../shared/data/daily) and 240 stocks
(../shared/data/full/daily), default parameters. Prints each run's summary and its timings.
Usage: python bench/bench_backtest.py [--repeat N]"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

import config  # noqa: E402
from backtest import run_backtest  # noqa: E402
from backtest_report import format_table  # noqa: E402

DATA = PROJECT.parent / "shared" / "data"
SETS = (("30 只股票（daily）", DATA / "daily"), ("240 只股票（full/daily）", DATA / "full" / "daily"))


def bench(label: str, folder: Path, repeat: int) -> None:
    if not folder.is_dir():
        print(f"{label}: 跳过，数据目录不存在 {folder}")
        return
    out = PROJECT / "bench" / "out" / folder.parent.name / folder.name
    totals, runs = [], []
    for _ in range(repeat):
        began = time.perf_counter()
        run = run_backtest(folder, dict(config.DEFAULTS), out=out)
        totals.append(time.perf_counter() - began)
        runs.append(run)
    last = runs[-1]
    print(f"== {label}: {folder}")
    print(format_table(last.summary))
    load = statistics.median(r.seconds["load"] for r in runs)
    engine = statistics.median(r.seconds["run"] for r in runs)
    write = statistics.median(r.seconds["write"] for r in runs)
    print(f"耗时（{repeat} 次的中位数）：读取校验 {load:.2f} s，回测 {engine:.2f} s，写结果含 PNG {write:.2f} s，"
          f"合计 {statistics.median(totals):.2f} s（最快 {min(totals):.2f} s）")
    days = last.summary.trading_days
    print(f"规模：{last.summary.stocks} 只 × {days} 个交易日，{last.summary.trade_count} 笔成交；"
          f"CPU 核数 {os.cpu_count()}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description="回测性能基准")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for label, folder in SETS:
        bench(label, folder, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
