"""Issue 5 benchmarks, on the real components with fsync'd SQLite:
1. latency from a quote crossing the stop-loss to the sell order in the journal, through the running monitor
   and strategy threads (auto-trading on), one event per position;
2. one monitor pass over N positions with fresh quotes and nothing firing.
Usage: python bench/bench_signal_latency.py [--positions 1000]"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from persistence.config_store import ConfigStore  # noqa: E402
from market.clock import ReplayClock  # noqa: E402
from core.models import Quote  # noqa: E402
from position_manager import PositionManager  # noqa: E402
from core.position_monitor import PositionMonitor  # noqa: E402
from market.quote_hub import QuoteHub  # noqa: E402
from core.signal_store import SignalStore  # noqa: E402
from sim_trader import SimTrader  # noqa: E402
from persistence.storage import Database  # noqa: E402
from core.strategy_runner import StrategyRunner  # noqa: E402
from trading_executor import TradingExecutor  # noqa: E402
from daemon.workers import Watchdog  # noqa: E402


def codes(count: int) -> list[str]:
    return [f"{600000 + i}.SH" for i in range(count)]


def build(folder: Path, count: int):
    settings = ConfigStore(Database(folder / "config.db"), run_overrides={
        "ENABLE_AUTO_TRADING": True, "ENABLE_MACD_BUY": False, "SIMULATION_BALANCE": 1e9,
        "MAX_ORDERS_PER_DAY": 10000, "QUOTE_STALE_SECONDS": 3600.0})
    clock = ReplayClock(datetime(2025, 9, 29, 9, 31))
    hub = QuoteHub(settings, clock)
    db = Database(folder / "sim_trading.db")
    sim = SimTrader(db, settings, clock, hub.latest)
    positions = PositionManager(db, settings, clock, "simulation")
    executor = TradingExecutor(db, sim, positions, hub.latest, settings, clock)
    sim.set_listener(executor)
    executor.recover()
    hub.subscribe(sim.on_quote)
    signals = SignalStore(db, clock)
    monitor = PositionMonitor(positions, hub, signals, executor, settings, clock)
    runner = StrategyRunner(signals, positions, executor, hub, settings, clock)
    for code in codes(count):
        hub.publish(Quote(code=code, price=10.0, prev_close=10.0, time=clock.now(), source="bench"))
        executor.buy_stock(code, volume=100)
    clock.set(datetime(2025, 9, 30, 9, 31))  # next trading day: the shares are sellable (T+1)
    for code in codes(count):
        hub.publish(Quote(code=code, price=10.0, prev_close=10.0, time=clock.now(), source="bench"))
    monitor.run_once()  # first pass stores every position's stop-loss price (one durable write each), once
    gc.freeze()  # as main.py does once the daemon is built
    return settings, clock, hub, executor, monitor, runner


def pass_times(monitor, hub, clock, count: int, rounds: int, changed_share: float = 1.0) -> list[float]:
    """Time `rounds` passes; before each, `changed_share` of the stocks get a new quote."""
    times = []
    step = max(1, round(1 / changed_share))
    for r in range(rounds):
        clock.set(datetime(2025, 9, 30, 9, 32, r % 60))
        price = 10.0 + (r % 5) * 0.01  # moves, but far from every trigger
        for code in codes(count)[r % step::step]:
            hub.publish(Quote(code=code, price=price, prev_close=10.0, time=clock.now(), source="bench"))
        started = time.perf_counter()
        monitor.run_once()
        times.append((time.perf_counter() - started) * 1000)
    return times


# cost (1,000 + 5.01 fees) / 100 = 10.0501, stop 10.0501 × 0.905 = 9.0953: 9.05 crosses it (limit-down is 9.00)
def stop_latencies(settings, clock, hub, executor, monitor, runner, count: int) -> list[float]:
    journaled: dict[str, float] = {}
    done = threading.Condition()
    original = executor.journal.open_order

    def timed_open_order(code, *args, **kwargs):
        entry = original(code, *args, **kwargs)  # committed to the journal here, before the broker sees it
        with done:
            journaled[code] = time.perf_counter()
            done.notify_all()
        return entry

    executor.journal.open_order = timed_open_order
    watchdog = Watchdog(settings)
    watchdog.add(monitor)
    watchdog.add(runner)
    watchdog.start()
    latencies = []
    try:
        for i, code in enumerate(codes(count)):
            clock.set(datetime(2025, 9, 30, 10, 0) .replace(minute=i // 60 % 60, second=i % 60, hour=10 + i // 3600))
            sent = time.perf_counter()
            hub.publish(Quote(code=code, price=9.05, prev_close=10.0, time=clock.now(), source="bench"))
            with done:
                if not done.wait_for(lambda: code in journaled, timeout=5):
                    raise SystemExit(f"no order for {code} within 5 s")
            latencies.append((journaled[code] - sent) * 1000)
    finally:
        watchdog.stop(5)
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--positions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        built = build(Path(tmp), args.positions)
        settings, clock, hub, executor, monitor, runner = built
        for share in (1.0, 0.1):
            passes = pass_times(monitor, hub, clock, args.positions, args.rounds, share)
            print(f"monitor pass over {args.positions} positions, {share:.0%} of quotes new ({args.rounds} passes): "
                  f"p50 {statistics.median(passes):.1f} ms, p99 {percentile(passes, 99):.1f} ms, "
                  f"max {max(passes):.1f} ms")
        latencies = stop_latencies(*built, args.positions)
        print(f"quote crossing stop-loss → sell order journaled ({len(latencies)} events, {args.positions} positions "
              f"held): p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
              f"max {max(latencies):.1f} ms")


if __name__ == "__main__":
    main()
