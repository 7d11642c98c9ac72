"""Protection latency of a LIVE daemon as a real process (issue 25 §3): the real xttrader/xtdata over the simulated
miniQMT (test/stand_ins/live_account.py), inside a trading session (COUNTERPART_START), faults driven through the
counterpart's control file. Prints p50/p99 of

- price crossing the stop-loss → a sell working at the counterpart (from the moment the counterpart quotes the
  crossing price to the moment the counter books the sell; both are time.monotonic() on this machine), on a clean
  day and under two fault classes: `drop_pushes` (order/trade pushes lost for 5 s from just before the crossing)
  and `hang` (miniQMT's trading link answers nothing for 5 s from just before the crossing; what was sent into the
  hang is lost);
- a non-explained block (the counter rejects every sell) → /api/health red with 「保护失效」 for that stock.

    python bench/bench_protection.py [--clean 10] [--drop-pushes 5] [--hang 3] [--blocked 2] [--root DIR]

Each crossing: the stock is quoted above its stop, a 1,000-share position carried from an earlier day appears at
the counter, the daemon takes it into its books, the quote drops below cost × (1 + STOP_LOSS_RATIO), the sell is
timed, then filled. The stocks are used in turn. The daemon runs with the shipped defaults except
BROKER_SYNC_INTERVAL 1 s (a new carried position reaches the books within a second instead of ten: the set-up of
each crossing, not the measured path), SIGNAL_COOLDOWN_SECONDS 1 s and MAX_ORDERS_PER_DAY 1000 (the same stock
is sold again within a minute, many times a day)."""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))

import config  # noqa: E402
from counterpart_support import WORKING, Counterpart, held, launch_live, protection_failures  # noqa: E402
from daemon_support import Daemon, wait_until  # noqa: E402

# code -> previous close of the counterpart (test/stand_ins/live_account.py STOCKS)
CLOSES = {"600000.SH": 13.75, "000001.SZ": 12.34, "600036.SH": 40.10, "601988.SH": 5.20, "000002.SZ": 8.15,
          "601318.SH": 45.60}
VOLUME = 1000
FAULT_SECONDS = 5.0
WAIT_SECONDS = 40.0  # a crossing that takes longer than this is reported as a miss
SETTINGS = {"ENABLE_AUTO_TRADING": True, "BROKER_SYNC_INTERVAL": 1.0, "SIGNAL_COOLDOWN_SECONDS": 1.0,
            "MAX_ORDERS_PER_DAY": 1000}


def levels(code: str) -> tuple[float, float, float]:
    """(cost, a quote above the stop, a quote below it and above the limit-down) for `code`."""
    close = CLOSES[code]
    cost = round(close * 1.02, 2)
    stop = cost * (1 + config.STOP_LOSS_RATIO)
    crossing = round(max(stop - 0.02 * close, close * 0.9 + 0.02), 2)
    assert round(close * 0.9, 2) < crossing < stop, (code, crossing, stop)
    return cost, close, crossing


class Bench:
    def __init__(self, daemon: Daemon, counterpart: Counterpart):
        self.daemon = daemon
        self.counterpart = counterpart
        self._turn = 0
        self.spoiled: set[str] = set()  # stocks left with an unsold position (a missed crossing)
        self.alarms: list[float | None] = []  # per missed crossing: seconds to 「保护失效」 for it (None: none)

    def next_code(self) -> str:
        for _ in range(len(CLOSES)):
            code = list(CLOSES)[self._turn % len(CLOSES)]
            self._turn += 1
            if code not in self.spoiled:
                return code
        raise AssertionError("every stock is left with an unsold position")

    def hold(self, code: str) -> None:
        """A carried position the daemon has taken into its books, quoted above its stop."""
        cost, above, _ = levels(code)
        self.counterpart.send("price", code=code, price=above)
        self.counterpart.send("hold", code=code, volume=VOLUME, cost=cost)
        wait_until(lambda: self._held(code) == VOLUME and self._quoted(code) == above, WAIT_SECONDS,
                   f"{code} in the daemon's books at {above}", self.daemon)

    def crossing_to_working(self, code: str, fault: dict | None = None) -> float | None:
        """Seconds from the crossing quote to the sell booked at the counter (None: not within WAIT_SECONDS)."""
        self.hold(code)
        if fault:
            self.counterpart.send(**fault)
        crossed = self.counterpart.send("price", code=code, price=levels(code)[2])
        alarmed: list[float] = []

        def working_or_note_alarm():
            book = self._working_sell_book(code)
            if book is None and not alarmed and code in (protection_failures(self.daemon) or {}):
                alarmed.append(time.monotonic() - crossed)
            return book

        try:
            book = wait_until(working_or_note_alarm, WAIT_SECONDS, f"a sell of {code}", self.daemon)
        except AssertionError:
            self.counterpart.send("clear")
            self.spoiled.add(code)
            self.alarms.append(alarmed[0] if alarmed else None)
            return None
        [sell] = [o for o in book["orders"] if o["stock_code"] == code and o["side"] == "sell" and o["working"]]
        seconds = sell["booked_at"] - book["priced_at"][code]
        self.counterpart.send("clear")
        self.sell_out(code)
        return seconds

    def crossing_to_alarm(self, code: str) -> float | None:
        """Seconds from the crossing quote (every sell rejected) to 「保护失效」 naming `code` in /api/health."""
        self.hold(code)
        self.counterpart.send("reject_orders", side="sell", message="柜台拒绝：该证券暂停卖出")
        crossed = self.counterpart.send("price", code=code, price=levels(code)[2])
        try:
            wait_until(lambda: code in (protection_failures(self.daemon) or {}), WAIT_SECONDS,
                       f"保护失效 for {code}", self.daemon)
            seconds = time.monotonic() - crossed
        except AssertionError:
            seconds = None
        self.counterpart.send("clear")
        try:  # once the counter accepts sells again the stop-loss goes out; sold, the stock is free for the next
            wait_until(lambda: self._working_sell_book(code), WAIT_SECONDS, f"a sell of {code} after the block",
                       self.daemon)
            self.sell_out(code)
        except AssertionError:
            print(f"  注意：{code} 解除拒单后 {WAIT_SECONDS:.0f} 秒内没有卖单工作")
        return seconds

    def sell_out(self, code: str) -> None:
        self.counterpart.send("fill", code=code)
        wait_until(lambda: self._held(code) == 0, WAIT_SECONDS, f"{code} sold out in the daemon's books", self.daemon)

    def _working_sell_book(self, code: str) -> dict | None:
        book = self.counterpart.book(self.daemon)
        working = [o for o in book["orders"] if o["stock_code"] == code and o["side"] == "sell"
                   and o["status"] in WORKING]
        return book if working else None

    def _held(self, code: str) -> int | None:
        try:
            return held(self.daemon).get(code, 0)
        except (AssertionError, OSError, ValueError):
            return None

    def _quoted(self, code: str) -> float | None:
        try:
            rows = self.daemon.api("/api/positions")["positions"]
        except (AssertionError, OSError, ValueError):
            return None
        return next((p["current_price"] for p in rows if p["stock_code"] == code), None)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def summary(name: str, values: list[float | None]) -> str:
    measured = [v for v in values if v is not None]
    missed = len(values) - len(measured)
    if not measured:
        return f"{name}: n={len(values)}, 全部超时（> {WAIT_SECONDS:.0f} s）"
    text = (f"{name}: n={len(values)}, p50 {statistics.median(measured):.2f} s, "
            f"p99 {percentile(measured, 0.99):.2f} s, min {min(measured):.2f} s, max {max(measured):.2f} s")
    return text + (f", {missed} 次超时（> {WAIT_SECONDS:.0f} s）" if missed else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", type=int, default=10, help="clean-day crossings")
    parser.add_argument("--drop-pushes", type=int, default=5, help="crossings with pushes dropped")
    parser.add_argument("--hang", type=int, default=3, help="crossings into a hung miniQMT")
    parser.add_argument("--blocked", type=int, default=2, help="rejected stop-losses timed to 保护失效")
    parser.add_argument("--root", help="working directory (default: a temporary one)")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="bench_protection_"))
    daemon, counterpart = launch_live(root, SETTINGS)
    bench = Bench(daemon, counterpart)
    results: dict[str, list[float | None]] = {}
    try:
        results["clean"] = [bench.crossing_to_working(bench.next_code()) for _ in range(args.clean)]
        results["drop_pushes"] = [bench.crossing_to_working(bench.next_code(), {"cmd": "drop_pushes",
                                                                                  "seconds": FAULT_SECONDS})
                                  for _ in range(args.drop_pushes)]
        results["hang"] = [bench.crossing_to_working(bench.next_code(), {"cmd": "hang", "seconds": FAULT_SECONDS})
                           for _ in range(args.hang)]
        results["blocked"] = [bench.crossing_to_alarm(bench.next_code()) for _ in range(args.blocked)]
    finally:
        daemon.stop_quietly()
    print(f"PROTECTION_DEADLINE {config.PROTECTION_DEADLINE:g} s；数据目录 {root}")
    print(summary("干净：跌破止损 → 卖单在柜台工作", results["clean"]))
    print(summary(f"推送丢失 {FAULT_SECONDS:g} s：跌破止损 → 卖单在柜台工作", results["drop_pushes"]))
    print(summary(f"miniQMT 无响应 {FAULT_SECONDS:g} s：跌破止损 → 卖单在柜台工作", results["hang"]))
    print(summary("柜台拒绝卖单：跌破止损 → 「保护失效」", results["blocked"]))
    if bench.alarms:
        print(summary("未在时限内卖出的跌破：跌破止损 → 「保护失效」", bench.alarms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
