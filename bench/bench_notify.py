"""Notification figures (issue 16), on real parts over loopback:

1. event published → delivered to a loopback JSON webhook (bus → notifier thread under the watchdog → SQLite
   outbox → apprise → HTTP), one at a time, p50/p99;
2. order latency (`buy_stock` → fill → position, every fill published on the bus) with the notifier's only
   channel a receiver that hangs for 30 s, against a healthy receiver: delivery must never delay an order;
3. issue 34, with the shipped defaults (burst window, rate limit, digest size): a burst of fills published at
   full speed with a thread alarm in its middle → messages the burst became, alarm latency (published →
   received), time until the last fill was received, fills lost.

    python bench/bench_notify.py [--messages 200] [--orders 200] [--bursts 3] [--burst-fills 500]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "test")]

from bench_order_roundtrip import CODE, PRICE, Quotes, percentile  # noqa: E402
from persistence.config_store import ConfigStore  # noqa: E402
from core.events import EventBus, EventKind  # noqa: E402
from market.clock import ReplayClock  # noqa: E402
from notify.store import NotifyStore  # noqa: E402
from notify_support import HangingReceiver, WebhookReceiver, announcements  # noqa: E402
from notify.worker import Notifier  # noqa: E402
from position_manager import PositionManager  # noqa: E402
from sim_trader import SimTrader  # noqa: E402
from persistence.storage import Database  # noqa: E402
from trading_executor import TradingExecutor  # noqa: E402
from daemon.workers import Watchdog  # noqa: E402

FAST = {"NOTIFY_RATE_LIMIT": 1000, "NOTIFY_DIGEST_THRESHOLD": 1000, "MAX_ORDERS_PER_DAY": 10_000,
        "SIMULATION_BALANCE": 1e8, "NOTIFY_COALESCE_SECONDS": 0.0, "NOTIFY_COALESCE_MAX_SECONDS": 0.0}


def _notifier(folder: Path, url: str, clock, **overrides):
    settings = ConfigStore(Database(folder / "settings.db"), run_overrides={**FAST, **overrides})
    bus = EventBus(clock)
    notifier = Notifier(NotifyStore(Database(folder / "notify.db")), bus, settings)
    notifier.add_channel("bench", url, [])
    watchdog = Watchdog(settings)
    watchdog.add(notifier)
    watchdog.start()
    return settings, bus, watchdog, notifier


def delivery(messages: int, folder: Path) -> list[float]:
    receiver = WebhookReceiver()
    clock = ReplayClock(datetime(2024, 2, 8, 10, 0))
    _, bus, watchdog, _ = _notifier(folder, receiver.url, clock)
    samples = []
    try:
        for index in range(messages):
            start = time.perf_counter()
            bus.emit(EventKind.FILL, f"{CODE} 买入 {100 + index} 股 @ {PRICE}", stock_code=CODE)
            receiver.wait_for(index + 1, 10)
            samples.append(receiver.arrivals[index] - start)
    finally:
        watchdog.stop(15)
        receiver.close()
    return samples


def orders(count: int, folder: Path, hanging: bool) -> tuple[list[float], dict]:
    folder.mkdir(parents=True, exist_ok=True)
    receiver = HangingReceiver() if hanging else WebhookReceiver()
    clock = ReplayClock(datetime(2024, 2, 8, 10, 0))
    settings, bus, watchdog, notifier = _notifier(folder, receiver.url, clock, NOTIFY_SEND_TIMEOUT=30.0)
    quotes = Quotes(clock)
    db = Database(folder / "sim_trading.db")
    sim = SimTrader(db, settings, clock, quotes)
    positions = PositionManager(db, settings, clock, "simulation")
    executor = TradingExecutor(db, sim, positions, quotes, settings, clock)
    executor.add_fill_listener(lambda fill, rule: bus.emit(EventKind.FILL, f"{fill.stock_code} {fill.volume} 股",
                                                           stock_code=fill.stock_code))
    sim.set_listener(executor)
    executor.recover()
    quotes.set(CODE, PRICE)
    samples = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            executor.buy_stock(CODE, volume=100)
            samples.append(time.perf_counter() - start)
            clock.advance(1)
        outbox = notifier.channels_view()[0]["counts"]  # while the orders ran: how far delivery got
    finally:
        watchdog.stop(1)  # a hung send keeps its (daemon) thread; the process exit ends it
        receiver.close()
        db.close()
    return samples, outbox


def bursts(count: int, fills: int, folder: Path) -> list[dict]:
    """`count` bursts of `fills` fills each (a thread alarm after the first half), shipped defaults only."""
    folder.mkdir(parents=True, exist_ok=True)
    receiver = WebhookReceiver()
    clock = ReplayClock(datetime(2024, 2, 8, 10, 0))
    settings = ConfigStore(Database(folder / "settings.db"), run_overrides={})
    bus = EventBus(clock)
    notifier = Notifier(NotifyStore(Database(folder / "notify.db")), bus, settings)
    notifier.add_channel("bench", receiver.url, [])
    watchdog = Watchdog(settings)
    watchdog.add(notifier)
    watchdog.start()
    results = []
    try:
        for number in range(count):
            before = len(receiver.bodies)
            start = time.perf_counter()
            alarm_at = 0.0
            for index in range(fills):
                bus.emit(EventKind.FILL, f"{CODE} 网格卖出 {100 + index} 股 @ {PRICE}", stock_code=CODE,
                         burst=number)
                if index == fills // 2:
                    alarm_at = time.perf_counter()
                    bus.emit(EventKind.THREAD_ALARM, f"第 {number + 1} 轮：线程「行情」无心跳")
            published = time.perf_counter() - start
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                told = announcements(receiver.wait_for(len(receiver.bodies) + 1, 1)[before:])
                if sum(1 for label, _ in told if label == "成交") >= fills:
                    break
            mine = receiver.bodies[before:]
            alarm_index = next(i for i, b in enumerate(mine) if b["title"] == "miniQMT【线程告警】")
            told = [text for label, text in announcements(mine) if label == "成交"]
            results.append({"published_s": published, "messages": len(mine) - 1,
                            "alarm_ms": (receiver.arrivals[before + alarm_index] - alarm_at) * 1000,
                            "alarm_first": alarm_index == 0,
                            "last_fill_s": receiver.arrivals[len(receiver.bodies) - 1] - start,
                            "lost": fills - len(set(told))})
            clock.advance(60)  # the next burst is a minute later on the market clock (and a new rate window)
    finally:
        watchdog.stop(5)
        receiver.close()
    return results


def line(label: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return f"{label:58s} n={len(ms):4d}  p50 {percentile(ms, 50):7.2f} ms  p99 {percentile(ms, 99):7.2f} ms  " \
           f"max {max(ms):7.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description="通知投递延迟与挂起的接收端对委托延迟的影响")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--burst-fills", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(line("event published → delivered to loopback webhook", delivery(args.messages, folder / "d")))
        healthy, healthy_outbox = orders(args.orders, folder / "h", hanging=False)
        hung, hung_outbox = orders(args.orders, folder / "x", hanging=True)
        print(line("buy_stock → fill → position, healthy receiver", healthy), "outbox:", healthy_outbox)
        print(line("buy_stock → fill → position, receiver hangs 30 s", hung), "outbox:", hung_outbox)
        for number, r in enumerate(bursts(args.bursts, args.burst_fills, folder / "b"), start=1):
            print(f"burst {number}: {args.burst_fills} fills published in {r['published_s'] * 1000:.0f} ms + 1 thread "
                  f"alarm → {r['messages']} fill message(s); alarm received {r['alarm_ms']:.1f} ms after "
                  f"publishing{'' if r['alarm_first'] else ' (NOT first)'}; last fill received after "
                  f"{r['last_fill_s']:.2f} s; fills lost {r['lost']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
