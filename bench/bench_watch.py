"""Issue 17 benchmark: one watch-monitor pass over N active tasks after a quote burst (every watched stock gets a
new quote), nothing firing, on the real QuoteHub and a WatchStore on a temp SQLite file. Tasks mix price, change,
limit, zone, N-day high/low, MACD and 量比 conditions (daily facts from a cached context, as in the daemon).
Usage: python bench/bench_watch.py [--tasks 2000] [--stocks 500] [--passes 200]"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config_store import ConfigStore  # noqa: E402
from market_clock import ReplayClock  # noqa: E402
from models import Quote  # noqa: E402
from quote_hub import QuoteHub  # noqa: E402
from signal_store import SignalStore  # noqa: E402
from storage import Database  # noqa: E402
from watch_monitor import WatchMonitor  # noqa: E402
from watch_requests import parse_task  # noqa: E402
from watch_rules import DailyContext  # noqa: E402
from watch_store import WatchStore  # noqa: E402

BODIES = [  # never reached by the quotes below (prices stay within ±1 % of 10.00)
    [{"type": "price_above", "value": 10.5}],
    [{"type": "price_below", "value": 9.5}, {"type": "change_below", "value": -5}],
    [{"type": "in_zone", "low": 9.0, "high": 9.5}],
    [{"type": "near_limit_up", "value": 1}],
    [{"type": "new_high", "days": 20}, {"type": "volume_ratio_above", "value": 3}],
    [{"type": "new_low", "days": 5}],
    [{"type": "macd_golden"}, {"type": "price_above", "value": 10.2}],
    [{"type": "change_above", "value": 3}],
]
DAILY = DailyContext(highs=tuple(10.5 + i * 0.01 for i in range(60)), lows=tuple(9.5 - i * 0.01 for i in range(60)),
                     volumes=tuple(1e6 for _ in range(60)), macd_cross=None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--stocks", type=int, default=500)
    parser.add_argument("--passes", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = ConfigStore(Database(Path(folder) / "config.db"), run_overrides={"QUOTE_STALE_SECONDS": 3600.0})
        clock = ReplayClock(datetime(2025, 9, 29, 10, 0))
        hub = QuoteHub(settings, clock)
        db = Database(Path(folder) / "trading.db")
        store = WatchStore(db, clock)
        codes = [f"{600000 + i}.SH" for i in range(args.stocks)]
        for i in range(args.tasks):
            store.add(parse_task({"stock_code": codes[i % len(codes)], "conditions": BODIES[i % len(BODIES)],
                                  "sessions_only": True}, clock.today()))
        monitor = WatchMonitor(store, hub, SignalStore(db, clock), positions=None, events=None, settings=settings,
                               clock=clock, daily=lambda code, day: DAILY)
        monitor.run_once()  # loads the tasks once, as after a start
        times, cpu = [], []
        for n in range(args.passes):
            clock.advance(3)
            for j, code in enumerate(codes):  # the burst: a new quote for every watched stock
                price = round(10.0 + ((n + j) % 21 - 10) * 0.01, 2)
                hub.publish(Quote(code=code, price=price, prev_close=10.0, time=clock.now(), source="bench",
                                  volume=1e5))
            started, started_cpu = time.perf_counter(), time.thread_time()
            alerts = monitor.run_once()
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.thread_time() - started_cpu) * 1000)
            assert not alerts, alerts
        times.sort()
        cpu.sort()
        print(f"{args.tasks} active tasks on {args.stocks} stocks, {args.passes} passes after a quote burst")
        print(f"pass time: median {statistics.median(times):.2f} ms, p95 {times[int(len(times) * 0.95) - 1]:.2f} ms, "
              f"max {times[-1]:.2f} ms (target < 20 ms)")
        print(f"CPU time of the pass thread: median {statistics.median(cpu):.2f} ms, "
              f"p95 {cpu[int(len(cpu) * 0.95) - 1]:.2f} ms (wall time minus waiting for a shared core)")
        db.close()


if __name__ == "__main__":
    main()
