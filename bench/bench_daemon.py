"""Daemon process figures, measured from outside on `python main.py` (utime+stime from /proc/<pid>/stat,
VmRSS from /proc/<pid>/status):

1. idle CPU outside trading sessions: real clock (DATA_SOURCE=mootdx, offline TDX folder, no server), a
   300-stock pool, over `--seconds` (default 60); target < 1 % of one core;
2. memory with 300 stocks in the pool on the synthetic market (replay at the default speed): RSS once every
   stock's history is loaded, and CPU/RSS over the next `--replay-seconds`;
3. start-up time (spawn → /api/health all alive).

    python bench/bench_daemon.py [--seconds 60] [--replay-seconds 20] [--stocks 300]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))

from daemon_support import TDX, cpu_seconds, query, rss_mb, start_ready, wait_until  # noqa: E402
from market.clock import RealClock  # noqa: E402


def pool_codes(count: int) -> list[str]:
    """Valid codes on three boards: Shanghai main (60xxxx), Shenzhen main (00xxxx), ChiNext (300xxx)."""
    sh = [f"{600000 + i}.SH" for i in range(count // 2)]
    sz = [f"{i:06d}.SZ" for i in range(1, count // 3 + 1)]
    cyb = [f"{300000 + i}.SZ" for i in range(1, count - len(sh) - len(sz) + 1)]
    return sh + sz + cyb


def measure(pid: int, seconds: float) -> tuple[float, float]:
    """(CPU seconds used, wall seconds) over the next `seconds`."""
    cpu, wall = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return cpu_seconds(pid) - cpu, time.monotonic() - wall


def idle_outside_sessions(root: Path, pool: Path, seconds: float) -> None:
    clock = RealClock()
    closed = not clock.is_trading()
    print(f"real market clock now {clock.now():%Y-%m-%d %H:%M} (Beijing), session: {clock.session()}, "
          f"next session in {clock.seconds_until_session() / 60:.0f} min")
    if not closed or clock.seconds_until_session() < seconds + 60:
        print("WARNING: the real market trades (or is about to) now; the idle figure below is not 'outside sessions'")
    sets = {"DATA_SOURCE": "mootdx", "TDX_DIR": str(TDX) if TDX.is_dir() else ""}
    started = time.monotonic()
    daemon = start_ready(root / "idle", ["--stock-pool", str(pool)], sets, name="idle")
    try:
        print(f"start-up (spawn → all threads alive), real clock, mootdx offline: {time.monotonic() - started:.2f} s")
        status = daemon.api("/api/status")
        print(f"data source: {status['data_source']['label']}, market session: {status['clock']['session']}")
        time.sleep(5)  # let the first data step (bars of the pool from the TDX folder) finish before measuring
        cpu, wall = measure(daemon.pid, seconds)
        print(f"idle CPU outside sessions: {cpu:.3f} s CPU in {wall:.1f} s = {100 * cpu / wall:.3f} % of one core "
              f"(target < 1 %); RSS {rss_mb(daemon.pid):.1f} MB")
        health = daemon.api("/api/health")
        print(f"threads still beating: {all(t['alive'] for t in health['threads'])} "
              f"({', '.join(t['name'] for t in health['threads'])})")
        code, took = daemon.terminate(10)
        print(f"SIGTERM → exit code {code} in {took:.2f} s")
    finally:
        daemon.stop_quietly()


def synthetic_300(root: Path, pool: Path, count: int, seconds: float) -> None:
    started = time.monotonic()
    daemon = start_ready(root / "synthetic", ["--stock-pool", str(pool)], {"DATA_SOURCE": "replay"}, name="synth")
    try:
        print(f"start-up (spawn → all threads alive), synthetic market, {count} stocks: "
              f"{time.monotonic() - started:.2f} s; RSS {rss_mb(daemon.pid):.1f} MB")
        market = daemon.data_dir / "market.db"

        def loaded() -> bool:
            return query(market, "SELECT COUNT(DISTINCT stock_code) FROM stock_daily_data")[0][0] >= count
        wait_until(loaded, 300, f"the history of {count} stocks", daemon)
        print(f"history of {count} stocks loaded after {time.monotonic() - started:.2f} s: "
              f"RSS {rss_mb(daemon.pid):.1f} MB")
        cpu, wall = measure(daemon.pid, seconds)
        quotes = daemon.api("/api/status")["data_source"]
        print(f"replaying {count} stocks at the default speed (240 s per day, 240 ticks): "
              f"{100 * cpu / wall:.1f} % of one core over {wall:.0f} s; RSS {rss_mb(daemon.pid):.1f} MB; "
              f"last quote {quotes.get('last_quote_time')}")
        code, took = daemon.terminate(10)
        print(f"SIGTERM → exit code {code} in {took:.2f} s")
    finally:
        daemon.stop_quietly()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle measuring window")
    parser.add_argument("--replay-seconds", type=float, default=20.0, help="synthetic replay measuring window")
    parser.add_argument("--stocks", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_daemon_") as tmp:
        root = Path(tmp)
        pool = root / "pool.json"
        codes = pool_codes(args.stocks)
        pool.write_text(json.dumps(codes), encoding="utf-8")
        print(f"pool: {len(codes)} stocks ({codes[0]} … {codes[-1]})")
        idle_outside_sessions(root, pool, args.seconds)
        synthetic_300(root, pool, len(codes), args.replay_seconds)


if __name__ == "__main__":
    main()
