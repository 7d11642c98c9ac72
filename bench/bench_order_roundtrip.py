"""Order round-trip latency in the simulation: place → fill → position updated, through the real executor,
sim broker, position table and SQLite files (synchronous=FULL, as in the daemon). Prints p50/p99.

    python bench/bench_order_roundtrip.py [--orders 500] [--data-dir DIR] [--synchronous FULL|NORMAL]

`--synchronous NORMAL` (no fsync per commit) shows how much of the latency is the disk.
"""
from __future__ import annotations

import argparse
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
from sim_trader import SimTrader  # noqa: E402
from persistence.storage import Database  # noqa: E402
from trading_executor import TradingExecutor  # noqa: E402

CODE = "600036.SH"
PRICE = 12.34
RESTING_PRICE = 12.33


class Quotes:
    def __init__(self, clock):
        self._clock = clock
        self._lock = threading.Lock()
        self._quotes: dict[str, Quote] = {}

    def set(self, code: str, price: float) -> Quote:
        quote = Quote(code=code, price=price, prev_close=PRICE, time=self._clock.now(), source="bench")
        with self._lock:
            self._quotes[code] = quote
        return quote

    def __call__(self, code: str):
        with self._lock:
            return self._quotes.get(code)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def run(orders: int, data_dir: Path, synchronous: str) -> None:
    clock = ReplayClock(datetime(2024, 2, 8, 10, 0))
    quotes = Quotes(clock)
    settings = ConfigStore(Database(data_dir / "settings.db"), run_overrides={"MAX_ORDERS_PER_DAY": 10_000,
                                                                                   "SIMULATION_BALANCE": 1e8})
    db = Database(data_dir / "sim_trading.db")
    db.execute(f"PRAGMA synchronous={synchronous}")
    sim = SimTrader(db, settings, clock, quotes)
    positions = PositionManager(db, settings, clock, "simulation")
    executor = TradingExecutor(db, sim, positions, quotes, settings, clock)
    sim.set_listener(executor)
    executor.recover()
    quotes.set(CODE, PRICE)

    marketable, resting = [], []
    for _ in range(orders):
        held = positions.get(CODE).volume if positions.get(CODE) else 0
        start = time.perf_counter()
        executor.buy_stock(CODE, volume=100)  # marketable: fills at the quote inside the call
        assert positions.get(CODE).volume == held + 100
        marketable.append(time.perf_counter() - start)

        executor.buy_stock(CODE, volume=100, price=RESTING_PRICE)  # rests in the book
        held += 100
        start = time.perf_counter()
        sim.on_quote(quotes.set(CODE, RESTING_PRICE))  # a quote crosses it
        assert positions.get(CODE).volume == held + 100
        resting.append(time.perf_counter() - start)
        quotes.set(CODE, PRICE)
        clock.advance(1)

    print(f"orders per kind: {orders}   db: {data_dir / 'sim_trading.db'} (WAL, synchronous={synchronous})")
    for label, samples in (("buy_stock → fill → position (marketable)", marketable),
                           ("on_quote → fill → position (resting order)", resting)):
        ms = [s * 1000 for s in samples]
        print(f"{label:45s} p50 {percentile(ms, 50):6.2f} ms   p99 {percentile(ms, 99):6.2f} ms   "
              f"mean {statistics.fmean(ms):6.2f} ms   max {max(ms):6.2f} ms")
    db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="模拟交易委托往返延迟（下单 → 成交 → 持仓更新）")
    parser.add_argument("--orders", type=int, default=500, help="each kind of order, default 500")
    parser.add_argument("--data-dir", help="where to put the SQLite files (default: a temporary folder)")
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL",
                        help="SQLite synchronous mode of the trading db (the daemon uses FULL)")
    args = parser.parse_args()
    if args.data_dir:
        run(args.orders, Path(args.data_dir), args.synchronous)
    else:
        with tempfile.TemporaryDirectory() as folder:
            run(args.orders, Path(folder), args.synchronous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
