"""Backtest speed on the real data sets: 30 stocks (../shared/data/daily) and 240 stocks
(../shared/data/full/daily), default parameters. Prints each run's summary and its timings.
With --optimize N: parameter-search throughput (trials per minute) on the 240 stocks with 1 and 2 local Dask
workers (issue 20). The whole-CLI comparison with the plain per-bar baseline and the whole-market run are
separate commands, listed in bench/RESULTS.md.
Usage: python bench/bench_backtest.py [--repeat N] [--optimize TRIALS]"""
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
from backtesting.report import format_table  # noqa: E402

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


def bench_optimize(trials: int, workers: int, cache: Path) -> float:
    """Trials per minute of a TPE search (batch 4) on the 240 stocks, data loading included."""
    import backtesting.optimize as bo

    folder = DATA / "full" / "daily"
    space = [bo.Dimension("STOP_LOSS_RATIO", -0.12, -0.05), bo.Dimension("INITIAL_TAKE_PROFIT_RATIO", 0.03, 0.10)]
    settings = bo.SearchSettings(str(folder), space, trials, cache_dir=str(cache), batch=4)
    storage = f"sqlite:///{PROJECT / 'bench' / 'out' / f'optimize-{workers}.db'}"
    Path(storage[10:]).unlink(missing_ok=True)
    client, cluster = bo.open_client(None, workers)
    try:
        began = time.perf_counter()
        bo.run_search(settings, client, storage, "bench", progress=lambda line: print(line, file=sys.stderr))
        elapsed = time.perf_counter() - began
    finally:
        client.close()
        cluster.close()
    rate = trials / elapsed * 60
    print(f"参数搜索 {workers} 个工作进程：{trials} 次试验 {elapsed:.1f} s，{rate:.1f} 次/分钟")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description="回测性能基准")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--optimize", type=int, metavar="TRIALS", help="只测参数搜索吞吐（1 与 2 个工作进程）")
    args = parser.parse_args()
    if args.optimize:
        (PROJECT / "bench" / "out").mkdir(parents=True, exist_ok=True)
        cache = PROJECT / "bench" / "out" / "cache"
        one = bench_optimize(args.optimize, 1, cache)
        two = bench_optimize(args.optimize, 2, cache)
        print(f"2 个工作进程 / 1 个：{two / one:.2f}×（CPU 核数 {os.cpu_count()}）")
        return 0
    for label, folder in SETS:
        bench(label, folder, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
