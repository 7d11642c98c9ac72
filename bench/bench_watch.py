"""Issue 17 benchmark: one watch-monitor pass over N active tasks after a quote burst (every watched stock gets a
new quote), nothing firing, on the real QuoteHub and a WatchStore on a temp SQLite file. Tasks mix price, change,
limit, zone, N-day high/low, MACD and 量比 conditions (daily facts from a cached context, as in the daemon).
`--day-switch` (issue 26): the passes right after a day switch, with the daemon's DailyContextCache on a real
BarStore and IndicatorCalculator (each stock's daily facts must be loaded again for the new day).
Usage: python bench/bench_watch.py [--tasks 2000] [--stocks 500] [--passes 200] [--day-switch [--history 250]]"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from market.bar_store import BarStore, DailyBar  # noqa: E402
from persistence.config_store import ConfigStore  # noqa: E402
from indicator_calculator import IndicatorCalculator  # noqa: E402
from market.clock import ReplayClock  # noqa: E402
from core.models import Quote  # noqa: E402
from market.quote_hub import QuoteHub  # noqa: E402
from core.signal_store import SignalStore  # noqa: E402
from persistence.storage import Database  # noqa: E402
from watch.monitor import DailyContextCache, WatchMonitor  # noqa: E402
from watch.requests import parse_task  # noqa: E402
from watch.rules import DailyContext  # noqa: E402
from watch.store import WatchStore  # noqa: E402

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
    parser.add_argument("--day-switch", action="store_true")
    parser.add_argument("--history", type=int, default=250, help="daily bars per stock before the first day")
    args = parser.parse_args()
    if args.day_switch:
        day_switch(args)
        return
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


def burst(hub: QuoteHub, clock: ReplayClock, codes: list[str], n: int) -> None:
    for j, code in enumerate(codes):
        price = round(10.0 + ((n + j) % 21 - 10) * 0.01, 2)
        hub.publish(Quote(code=code, price=price, prev_close=10.0, time=clock.now(), source="bench", volume=1e5))


def weekdays_before(day: date, count: int) -> list[date]:
    days = []
    while len(days) < count:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            days.append(day)
    return days[::-1]


def day_switch(args) -> None:
    """Day 1 with every stock's facts loaded; then day 1's bars arrive (as at the close), the clock moves to
    day 2's open and the quotes burst: every pass is timed until all stocks have day 2's facts, per budget."""
    first, second = date(2025, 9, 29), date(2025, 9, 30)
    codes = [f"{600000 + i}.SH" for i in range(args.stocks)]
    for budget in (1000.0, 8.0):  # 1000 ms: everything in the first pass (the behaviour before issue 26)
        with tempfile.TemporaryDirectory() as folder:
            settings = ConfigStore(Database(Path(folder) / "config.db"),
                                   run_overrides={"QUOTE_STALE_SECONDS": 3600.0, "WATCH_DAILY_LOAD_MS": budget})
            clock = ReplayClock(datetime.combine(first, datetime.min.time()).replace(hour=10))
            hub = QuoteHub(settings, clock)
            market = Database(Path(folder) / "market.db")
            bars = BarStore(market)
            indicators = IndicatorCalculator(bars)
            bars.subscribe(indicators.update)
            history = weekdays_before(first, args.history)
            bars.upsert([DailyBar(code, d, 10.0, 10.3 + (i % 7) * 0.01, 9.7, 10.0 + (i % 5 - 2) * 0.02, 1e6)
                         for code in codes for i, d in enumerate(history)])
            db = Database(Path(folder) / "trading.db")
            store = WatchStore(db, clock)
            for i in range(args.tasks):
                store.add(parse_task({"stock_code": codes[i % len(codes)], "conditions": BODIES[i % len(BODIES)],
                                      "sessions_only": True}, clock.today()))
            monitor = WatchMonitor(store, hub, SignalStore(db, clock), positions=None, events=None,
                                   settings=settings, clock=clock, daily=DailyContextCache(bars, indicators).get)
            burst(hub, clock, codes, 0)
            monitor.run_once()
            while monitor.daily_pending:
                monitor.run_once()
            bars.upsert([DailyBar(code, first, 10.0, 10.3, 9.7, 10.0, 1e6) for code in codes])  # day 1's close
            clock.set(datetime.combine(second, datetime.min.time()).replace(hour=9, minute=30))
            times, cpu, n = [], [], 0
            started_all = time.perf_counter()
            while n == 0 or monitor.daily_pending:
                n += 1
                clock.advance(1)
                burst(hub, clock, codes, n)
                started, started_cpu = time.perf_counter(), time.thread_time()
                assert not monitor.run_once()
                times.append((time.perf_counter() - started) * 1000)
                cpu.append((time.thread_time() - started_cpu) * 1000)
            loaded = (time.perf_counter() - started_all) * 1000
            after = []
            for k in range(20):
                clock.advance(3)
                burst(hub, clock, codes, n + k)
                started = time.perf_counter()
                monitor.run_once()
                after.append((time.perf_counter() - started) * 1000)
            print(f"WATCH_DAILY_LOAD_MS={budget:g}: {args.tasks} tasks on {args.stocks} stocks ({args.history} bars "
                  f"each); after the day switch {len(times)} passes until every stock had the new day's facts "
                  f"({loaded:.0f} ms incl. quote bursts): slowest pass {max(times):.1f} ms (CPU {max(cpu):.1f} ms), "
                  f"first pass {times[0]:.1f} ms; the next 20 passes median {statistics.median(after):.2f} ms, "
                  f"max {max(after):.2f} ms")
            db.close()
            market.close()


if __name__ == "__main__":
    main()
