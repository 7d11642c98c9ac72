"""Benchmark: how many quotes per second the replay source delivers to a QuoteHub subscriber when the
replay runs flat out (the wait returned by run_once is ignored). Prints the figures; not a test.

    python bench/bench_replay.py [--days 5] [--codes 30] [--ticks 240]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persistence.config_store import ConfigStore  # noqa: E402
from data_manager import build_data_manager  # noqa: E402
from persistence.storage import Database  # noqa: E402

SHARED_DAILY = Path(__file__).resolve().parents[2] / "shared" / "data" / "daily"


def measure(label: str, overrides: dict, codes: list[str], days: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = ConfigStore(Database(Path(folder) / "settings.db"), run_overrides=overrides)
        manager, clock = build_data_manager(settings, Path(folder) / "data")
        manager.set_watchlist(codes)
        received = [0]
        manager.hub.subscribe(lambda quote: received.__setitem__(0, received[0] + 1))
        manager.run_once()  # first step loads the history of every code (not timed)
        steps = days * (int(settings.get("REPLAY_TICKS_PER_DAY")) + 1)
        received[0] = 0
        started = time.perf_counter()
        for _ in range(steps):
            manager.run_once()
        elapsed = time.perf_counter() - started
        manager.close()
    print(f"{label}: {received[0]} quotes of {len(codes)} stocks over {days} days in {elapsed:.2f} s "
          f"= {received[0] / elapsed:,.0f} quotes/s to one subscriber (market clock reached {clock.now():%Y-%m-%d %H:%M})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--codes", type=int, default=30)
    parser.add_argument("--ticks", type=int, default=240)
    args = parser.parse_args()
    synthetic_codes = [f"{600000 + i:06d}.SH" for i in range(args.codes)]
    measure("synthetic 演示行情", {"REPLAY_TICKS_PER_DAY": args.ticks}, synthetic_codes, args.days)
    if SHARED_DAILY.is_dir():
        real_codes = sorted(p.stem for p in SHARED_DAILY.glob("*.csv"))[: args.codes]
        measure("real daily bars (../shared/data/daily)",
                {"REPLAY_TICKS_PER_DAY": args.ticks, "REPLAY_DATA_DIR": str(SHARED_DAILY)}, real_codes, args.days)
    else:
        print(f"real daily bars skipped: {SHARED_DAILY} not found")


if __name__ == "__main__":
    main()
