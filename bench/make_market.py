"""Writes a whole-market-sized folder of daily bars for the scale benchmark (issue 20): N stocks × Y years of
business days as <code>.csv, seeded random walks (about 2 % daily volatility, inside ±10 % limits, on the 0.01
tick). Not real prices: only the size and shape matter here. Usage: python bench/make_market.py OUT [--stocks
5000] [--years 23] [--seed 1]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def codes(count: int) -> list[str]:
    """Valid main-board codes: 600000–601999 and 603000–603999 (SH), 000001–001000 and 002000–002999 (SZ)."""
    pool = ([f"{600000 + i:06d}.SH" for i in range(2000)] + [f"{603000 + i:06d}.SH" for i in range(1000)]
            + [f"{1 + i:06d}.SZ" for i in range(1000)] + [f"{2000 + i:06d}.SZ" for i in range(1000)])
    if count > len(pool):
        raise SystemExit(f"最多 {len(pool)} 只")
    return pool[:count]


def write_stock(folder: Path, code: str, days: pd.DatetimeIndex, rng: np.random.Generator) -> None:
    count = len(days)
    returns = np.clip(rng.normal(0.0002, 0.02, count), -0.095, 0.095)
    close = np.maximum(np.round(10 * np.exp(np.cumsum(np.log1p(returns))), 2), 0.5)
    previous = np.concatenate([[close[0]], close[:-1]])
    gap = np.clip(rng.normal(0, 0.006, count), -0.05, 0.05)
    open_ = np.maximum(np.round(previous * (1 + gap), 2), 0.5)
    spread = np.abs(rng.normal(0, 0.008, count))
    high = np.round(np.maximum(open_, close) * (1 + spread), 2)
    low = np.maximum(np.round(np.minimum(open_, close) * (1 - spread), 2), 0.01)
    volume = rng.integers(1, 500, count) * 10000
    frame = pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "open": open_, "high": high, "low": low,
                          "close": close, "volume": volume})
    frame.to_csv(folder / f"{code}.csv", index=False, float_format="%.2f")


def main() -> int:
    parser = argparse.ArgumentParser(description="生成全市场规模的日线测试目录（随机游走，非真实价格）")
    parser.add_argument("out")
    parser.add_argument("--stocks", type=int, default=5000)
    parser.add_argument("--years", type=int, default=23)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    days = pd.bdate_range("2002-01-04", periods=args.years * 250)
    rng = np.random.default_rng(args.seed)
    for code in codes(args.stocks):
        write_stock(folder, code, days, rng)
    print(f"{args.stocks} 只 × {len(days)} 天 → {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
