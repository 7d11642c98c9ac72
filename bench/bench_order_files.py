"""Issue 26 item 2 benchmark: order files at scale, on the real components (synthetic replay, SimTrader,
TradingExecutor, the order-file journal on temp SQLite files).
1. Validation: a dry-run upload of a 10,000-line file (GBK, Chinese headers, 1 % bad lines) → lines/s.
2. Execution: an N-line file worked by the order-file worker's bounded steps (pacing and breakers lifted to
   their maxima, so the executor and the sim broker are the limit) → lines/s, the longest step (the thread's
   heartbeat gap), and how long a second upload takes to be answered while the file runs.
Usage: python bench/bench_order_files.py [--lines 10000] [--execute 900]"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from orderfiles.intake import OrderFileIntake  # noqa: E402
from orderfiles.store import OrderFileStore  # noqa: E402
from orderfiles.worker import OrderFileWorker  # noqa: E402
from web_test_support import build_system  # noqa: E402

CODES = ["600036.SH", "000001", "600519.SH", "300750.SZ", "1"]  # "1": an Excel-stripped 000001
LIMITS = {"MAX_ORDERS_PER_DAY": 10000, "MAX_ORDERS_PER_STOCK_PER_DAY": 1000, "MAX_ACTIONS_PER_MINUTE": 1000,
          "MAX_ACTIONS_PER_STOCK_PER_MINUTE": 1000, "ORDER_FILE_MAX_LINES_PER_MINUTE": 1000,
          "SIMULATION_BALANCE": 1e9, "MAX_ORDER_VALUE": 1e8}


def file_bytes(lines: int, bad_every: int = 100) -> bytes:
    rows = ["证券代码,方向,数量,价格,备注"]
    for i in range(lines):
        volume = "150" if bad_every and i % bad_every == 99 else "100"  # a lot-size error now and then
        rows.append(f"{CODES[i % len(CODES)]},买入,{volume},,ref-{i}")
    return ("\r\n".join(rows) + "\r\n").encode("gbk")


def bench_validation(intake: OrderFileIntake, lines: int) -> None:
    raw = file_bytes(lines)
    started = time.perf_counter()
    record = intake.upload("basket.csv", raw, dry_run=True)
    seconds = time.perf_counter() - started
    in_inbox = sorted(p.name for p in intake.inbox.iterdir() if p.is_file()) if intake.inbox.exists() else []
    print(f"validation: {lines} lines in {seconds:.2f} s = {lines / seconds:,.0f} lines/s "
          f"(ok {record.ok}, failed {record.failed}; files in the inbox: {len(in_inbox)})")


def bench_execution(system, intake: OrderFileIntake, lines: int) -> None:
    worker = OrderFileWorker(intake, system.settings)
    intake.upload("run.csv", file_bytes(lines, bad_every=0), dry_run=False)
    steps, answers = [], []
    started = time.perf_counter()
    while (intake.inbox / "run.csv").exists():
        begun = time.perf_counter()
        worker.run_once()
        steps.append(time.perf_counter() - begun)
        if len(answers) < 5:  # an upload while the file runs: queued, answered at once
            extra = f"证券代码,方向,数量\n600036.SH,买,100\n#{len(answers)}\n".encode("utf-8")
            begun = time.perf_counter()
            intake.upload(f"extra-{len(answers)}.csv", extra, dry_run=False)
            answers.append(time.perf_counter() - begun)
    seconds = time.perf_counter() - started
    print(f"execution: {lines} lines in {seconds:.2f} s = {lines / seconds:,.0f} lines/s over {len(steps)} steps; "
          f"longest step {max(steps):.3f} s (declared bound {worker.max_step_seconds:g} s), "
          f"median {statistics.median(steps):.3f} s; upload answered during the run in "
          f"{max(answers) * 1000:.1f} ms at most")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=10000)
    # the replay clock stands still here: at most MAX_ACTIONS_PER_MINUTE - 1 (999) lines fit its one minute
    parser.add_argument("--execute", type=int, default=900)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        system = build_system(Path(folder), overrides=LIMITS)
        try:
            intake = OrderFileIntake(OrderFileStore(system.dbs[1], system.clock), system.executor,
                                     system.positions, system.settings, Path(folder) / "inbox")
            bench_validation(intake, args.lines)
            if args.execute:
                bench_execution(system, intake, args.execute)
        finally:
            system.close()


if __name__ == "__main__":
    main()
