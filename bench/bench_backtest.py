"""Backtest speed on the real data sets: 30 stocks (../shared/data/daily) and 240 stocks
(../shared/data/full/daily), default parameters. Prints each run's summary and its timings.
With --optimize N: parameter-search throughput (trials per minute) on the 240 stocks with 1 and 2 local Dask
workers measured side by side, alternating, and their ratio, with the driver's time per trial against a trial's
time on a worker (issues 20, 27 §8). The whole-CLI comparison with the plain per-bar baseline and the whole-market
run are separate commands, listed in bench/RESULTS.md.
Usage: python bench/bench_backtest.py [--repeat N] [--optimize TRIALS [--rounds N] [--ask-ahead]]"""
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


def bench_optimize(trials: int, workers: int, cache: Path, run: int, ask_ahead: bool) -> dict:
    """One TPE search (batch 4) on the 240 stocks through a fresh LocalCluster of `workers` processes: its trials
    per minute (the workers' data loading and the best set's equity included, the cluster's start-up not), the
    driver's own time per trial (asking, booking, reporting: the serial part) and a trial's time on a worker."""
    import backtesting.optimize as bo

    folder = DATA / "full" / "daily"
    space = [bo.Dimension("STOP_LOSS_RATIO", -0.12, -0.05), bo.Dimension("INITIAL_TAKE_PROFIT_RATIO", 0.03, 0.10)]
    settings = bo.SearchSettings(str(folder), space, trials, cache_dir=str(cache), batch=4, ask_ahead=ask_ahead)
    path = PROJECT / "bench" / "out" / f"optimize-{workers}-{run}.log"
    path.unlink(missing_ok=True)
    timing = bo.SearchTiming()
    client, cluster = bo.open_client(None, workers)
    try:
        began, began_cpu = time.perf_counter(), time.process_time()
        folds = bo.run_search(settings, client, bo.storage_spec(str(path), path.parent), "bench", timing=timing,
                              progress=lambda line: print(line, file=sys.stderr))
        elapsed, process_cpu = time.perf_counter() - began, time.process_time() - began_cpu
    finally:
        client.close()
        cluster.close()
    done = max(timing.trials, 1)
    result = {"workers": workers, "seconds": elapsed, "rate": trials / elapsed * 60,
              "driver_ms": timing.driver / done * 1000, "driver_cpu_ms": timing.driver_cpu / done * 1000,
              "compute_ms": timing.compute / done * 1000, "compute_cpu_ms": timing.compute_cpu / done * 1000,
              "process_cpu_ms": process_cpu / done * 1000, "busy": timing.compute / (workers * elapsed),
              "best": folds[0].best_value}
    print(f"第 {run + 1} 轮，{workers} 个工作进程：{trials} 次试验 {elapsed:.1f} s，{result['rate']:.1f} 次/分钟；"
          f"每次试验 驱动线程 CPU {result['driver_cpu_ms']:.1f} ms（墙钟 {result['driver_ms']:.1f} ms，"
          f"驱动进程含 Dask 调度器 CPU {result['process_cpu_ms']:.1f} ms），"
          f"工作进程回测 CPU {result['compute_cpu_ms']:.0f} ms（墙钟 {result['compute_ms']:.0f} ms）；"
          f"工作进程忙于回测的时间占 {result['busy'] * 100:.1f}%；最佳 sharpe {result['best']:.4f}", flush=True)
    return result


def bench_optimize_pair(trials: int, rounds: int, ask_ahead: bool) -> None:
    """1 and 2 workers side by side in one run, alternating which goes first, so both meet the same machine."""
    import optuna

    import backtesting.optimize as bo

    out = PROJECT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    warm = out / "optimize-warm.log"
    warm.unlink(missing_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(storage=bo.open_storage(str(warm)))  # imports the storage stack before any timed run
    runs = []
    for run in range(rounds):
        for workers in ((1, 2) if run % 2 == 0 else (2, 1)):
            runs.append(bench_optimize(trials, workers, out / "cache", run, ask_ahead))
    one = [r for r in runs if r["workers"] == 1]
    two = [r for r in runs if r["workers"] == 2]
    rate_one, rate_two = statistics.median(r["rate"] for r in one), statistics.median(r["rate"] for r in two)
    pairs = "、".join(f"{b['rate'] / a['rate']:.2f}×" for a, b in zip(one, two))
    print(f"{'提前提出下一批（--ask-ahead）' if ask_ahead else '逐批提出（默认）'}："
          f"1 个工作进程 {rate_one:.1f} 次/分钟，2 个 {rate_two:.1f} 次/分钟（{rounds} 轮中位数）："
          f"2 个 / 1 个 = {rate_two / rate_one:.2f}×（各轮 {pairs}；CPU 核数 {os.cpu_count()}，"
          f"负载 {' / '.join(f'{x:.1f}' for x in os.getloadavg())}）")
    median = {key: statistics.median(r[key] for r in runs)
              for key in ("driver_cpu_ms", "driver_ms", "process_cpu_ms", "compute_cpu_ms", "compute_ms")}
    print(f"每次试验（中位数）：驱动线程 CPU {median['driver_cpu_ms']:.1f} ms（墙钟 {median['driver_ms']:.1f} ms，"
          f"驱动进程含 Dask 调度器 CPU {median['process_cpu_ms']:.1f} ms），"
          f"工作进程回测 CPU {median['compute_cpu_ms']:.0f} ms（墙钟 {median['compute_ms']:.0f} ms）；"
          f"驱动进程占回测 CPU 的 {median['process_cpu_ms'] / median['compute_cpu_ms'] * 100:.1f}%；"
          f"工作进程忙于回测的时间占 {statistics.median(r['busy'] for r in one) * 100:.1f}%（1 个）、"
          f"{statistics.median(r['busy'] for r in two) * 100:.1f}%（2 个），其余为等待驱动进程、调度与收尾")


def main() -> int:
    parser = argparse.ArgumentParser(description="回测性能基准")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--optimize", type=int, metavar="TRIALS", help="只测参数搜索吞吐（1 与 2 个工作进程）")
    parser.add_argument("--rounds", type=int, default=2, help="--optimize 时 1 与 2 个工作进程各测几轮（交替先后）")
    parser.add_argument("--ask-ahead", action="store_true", help="--optimize 时使用 optimize 的 --ask-ahead")
    args = parser.parse_args()
    if args.optimize:
        bench_optimize_pair(args.optimize, args.rounds, args.ask_ahead)
        return 0
    for label, folder in SETS:
        bench(label, folder, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
