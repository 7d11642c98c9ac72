"""Costs the page's new views add to the daemon: the 分时 buffer per accepted quote (it runs in the quote
publisher's thread), the log tail per log record, and building the 收益 report from a year of closes and trades.

    python bench/bench_pages.py [--stocks 300] [--minutes 240] [--records 2000] [--days 250]
"""
from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from logger import SecretFilter  # noqa: E402
from core.models import Quote  # noqa: E402
from webapi.performance import build_report  # noqa: E402
from webapi.intraday import IntradayBuffer  # noqa: E402
from webapi.log_tail import LogTail  # noqa: E402


def bench_intraday(stocks: int, minutes: int) -> tuple[float, float]:
    buffer = IntradayBuffer()
    codes = [f"{600000 + i}.SH" for i in range(stocks)]
    start = datetime(2024, 6, 3, 9, 30)
    quotes = [Quote(code, 10.0 + (m % 17) * 0.01, 10.0, start + timedelta(minutes=m, seconds=s), "bench")
              for m in range(minutes) for s in (5, 35) for code in codes]
    began = time.perf_counter()
    for quote in quotes:
        buffer.on_quote(quote)
    per_quote = (time.perf_counter() - began) / len(quotes) * 1e6
    began = time.perf_counter()
    for code in codes[:50]:
        buffer.series(code)
    per_series = (time.perf_counter() - began) / 50 * 1e3
    return per_quote, per_series


def bench_log_tail(records: int) -> float:
    tail = LogTail()
    tail.addFilter(SecretFilter(["secret-token-0123456789"]))
    log = logging.getLogger("bench.pages")
    log.propagate = False
    log.addHandler(tail)
    log.setLevel(logging.INFO)
    began = time.perf_counter()
    for index in range(records):
        log.info("行情 %s 价格 %.2f", index, index * 0.01)
    return (time.perf_counter() - began) / records * 1e6


def bench_report(records: int, days: int, repeats: int = 5) -> float:
    rng = random.Random(7)
    day0 = date(2023, 6, 1)
    closes = [(day0 + timedelta(days=i), 1_000_000.0 + rng.uniform(-5e4, 5e4)) for i in range(days)]
    rows, held = [], {}
    for index in range(records):
        code = f"{600000 + rng.randrange(40)}.SH"
        side = "sell" if held.get(code) else "buy"
        held[code] = side == "buy"
        rows.append({"id": index, "trade_time": f"2024-01-01T09:30:{index:06d}", "trading_day": "2024-01-02",
                     "stock_code": code, "side": side, "volume": 1000, "amount": 20000.0, "fees": 5.0,
                     "strategy": rng.choice(["stop_loss", "take_profit", "macd_buy", "manual"])})
    timings = []
    for _ in range(repeats):
        began = time.perf_counter()
        build_report(1_000_000.0, closes, rows, closes[-1][0])
        timings.append(time.perf_counter() - began)
    return statistics.median(timings) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stocks", type=int, default=300)
    parser.add_argument("--minutes", type=int, default=240)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--days", type=int, default=250)
    args = parser.parse_args()
    per_quote, per_series = bench_intraday(args.stocks, args.minutes)
    print(f"分时缓存：每条行情 {per_quote:.2f} µs（{args.stocks} 只 × {args.minutes} 分钟 × 2 条），"
          f"读取一只的分时 {per_series:.2f} ms")
    print(f"网页日志：每条日志记录 {bench_log_tail(20000):.2f} µs（含敏感信息过滤）")
    print(f"收益报告：{args.days} 个交易日 + {args.records} 笔成交，生成一次 {bench_report(args.records, args.days):.2f} ms")


if __name__ == "__main__":
    main()
