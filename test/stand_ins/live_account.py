"""Test-only launcher of a LIVE account daemon: `python test/stand_ins/live_account.py <main.py arguments>`.

It installs the miniQMT counterpart in this process before anything imports xtquant — the simulated broker
counter behind `xtquant.xtpythonclient` (one FakeQmt stock account with cash) and the simulated data service
behind `xtquant.datacenter` (instrument details, a trading calendar, ticks pushed every second with the
current time, so quotes are live) — and then runs `main.main(argv)` unchanged: the REAL xttrader.py/xtdata.py,
the real composition, the real live checks. Nothing leaves the machine: any non-loopback connection or DNS
lookup is refused. The counterpart's account id is the one in the daemon's ACCOUNT_CONFIG_FILE (as miniQMT
would be logged in to that account); its cash comes from LIVE_ACCOUNT_CASH (default 200000).

Process-level faults (issue 25): with env COUNTERPART_CONTROL naming a JSON-lines file, the counterpart applies
each line appended to it once, in order (see `CounterpartControl`); unknown commands are logged. With env
COUNTERPART_START (an ISO time with offset, e.g. 2026-12-08T10:00:00+08:00) the market clock of this process
starts at that Beijing time and runs in real time: the daemon's RealClock, the tick stamps and the counter's
order/trade times all read it, so a test can run inside a trading session at any hour."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import sys
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, Optional

TEST_DIR = Path(__file__).resolve().parents[1]
PROJECT = TEST_DIR.parent
for _path in (str(PROJECT), str(TEST_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from stand_ins import xtquant_datacenter  # noqa: E402
from stand_ins.fake_xtpythonclient import ORDER_PART_SUCC, ORDER_REPORTED, FakePosition, FakeQmt  # noqa: E402

# (name, previous close) of the stocks the simulated miniQMT quotes; prices move a little with every push
STOCKS = {"600000.SH": ("浦发银行", 13.75), "000001.SZ": ("平安银行", 12.34), "600036.SH": ("招商银行", 40.10),
          "601988.SH": ("中国银行", 5.20), "000002.SZ": ("万科Ａ", 8.15), "601318.SH": ("中国平安", 45.60)}
BEIJING = timezone(timedelta(hours=8))
CONTROL_POLL_SECONDS = 0.05
PUSH_SECONDS = 1.0
CALENDAR_DAYS = 60  # trading days (weekdays) miniQMT reports back from today
BAR_DAYS = 420  # calendar days of daily bars on the 'server' (more than the daemon's history window)


class MarketTime:
    """The market clock of this process: real time shifted so that it started at COUNTERPART_START (Beijing),
    plus the counterpart's own skew (`skew_clock`: miniQMT's clock off the daemon's box by that many seconds)."""

    def __init__(self, start: Optional[str] = None, wall: Callable[[], float] = time.time):
        self._wall = wall
        self.offset = 0.0 if not start else datetime.fromisoformat(start).timestamp() - wall()
        self.skew = 0.0

    def timestamp(self) -> float:
        """Seconds since the epoch on the daemon's (shifted) clock."""
        return self._wall() + self.offset

    def now(self) -> datetime:
        """What the daemon's RealClock reads: the Beijing time, aware (RealClock drops the zone)."""
        return datetime.fromtimestamp(self.timestamp(), BEIJING)

    def today(self) -> date:
        return self.now().date()

    def feed_timestamp(self) -> float:
        """The counterpart's clock (tick stamps, order and trade times): the market clock plus the skew."""
        return self.timestamp() + self.skew


def use_market_time(market_time: MarketTime) -> None:
    """Every RealClock built in this process (the data manager's, the trader's) reads `market_time` unless given
    another source. Only this test process is touched; production code is unchanged."""
    import market.clock as market_clock

    market_clock.RealClock.__init__.__defaults__ = (None, market_time.now)


def refuse_non_loopback() -> None:
    """Only loopback (the daemon's own web server, the supervisor's calls): the test network guard of the
    fuzzed daemon (test/net_guard/sitecustomize.py, which installs itself when loaded) refuses anything else."""
    spec = importlib.util.spec_from_file_location("live_account_net_guard", TEST_DIR / "net_guard" / "sitecustomize.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def configured_account(argv: list[str]) -> str:
    """The account id of the daemon's account_config.json (ACCOUNT_CONFIG_FILE of its command line)."""
    import main

    path = main.run_overrides(main.parse_args(argv)).get("ACCOUNT_CONFIG_FILE") or PROJECT / "account_config.json"
    return str(json.loads(Path(path).read_text(encoding="utf-8-sig"))["account_id"])


def install_counterpart(account: str, market_time: MarketTime) -> FakeQmt:
    """The broker counter: xttrader imports `xtquant.xtpythonclient` and gets the stand-in module."""
    counterpart = FakeQmt(account_id=account, cash=float(os.environ.get("LIVE_ACCOUNT_CASH", "200000")),
                          now=lambda: int(market_time.feed_timestamp()))
    sys.modules["xtquant.xtpythonclient"] = counterpart.module()
    return counterpart


def install_data_service(market_time: MarketTime) -> xtquant_datacenter.MiniQmtService:
    xtquant_datacenter.install()
    service = xtquant_datacenter.reset()
    today = market_time.today()
    weekdays = [d for d in (today - timedelta(days=n) for n in range(BAR_DAYS, -1, -1)) if d.weekday() < 5]
    service.trading_days_ms = [_ms(d) for d in weekdays[-CALENDAR_DAYS:]]
    past = [d for d in weekdays if d < today]  # bars up to the last trading day before today
    service.holidays = [(today.year + 1) * 10000 + 101]  # New Year's day: miniQMT's holiday table is never empty
    for code, (name, close) in STOCKS.items():
        service.instruments[code] = {"ExchangeID": code[-2:], "InstrumentID": code[:6], "InstrumentName": name,
                                     "PreClose": close, "UpStopPrice": round(close * 1.1, 2),
                                     "DownStopPrice": round(close * 0.9, 2), "PriceTick": 0.01}
        service.ticks[code] = _tick(close, close, 0, market_time.feed_timestamp())
        service.server_bars[code] = [_bar(d, close * (1 + 0.05 * math.sin(i / 9.0)), 5000 + i)
                                     for i, d in enumerate(past, start=1 - len(past))]
    return service


def _ms(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time()).timestamp() * 1000)


def _bar(day: date, close: float, lots: int) -> dict:
    """One daily bar closing at `close` (the last one, before today, closes at the previous close)."""
    close = round(close, 2)
    return {"time": _ms(day), "open": round(close * 0.995, 2), "high": round(close * 1.01, 2),
            "low": round(close * 0.985, 2), "close": close, "volume": lots}


def _tick(price: float, last_close: float, volume: int, stamp: float) -> dict:
    step = 0.01
    return {"time": int(stamp * 1000), "lastPrice": price, "open": last_close, "high": max(price, last_close),
            "low": min(price, last_close), "lastClose": last_close, "amount": price * volume * 100,
            "volume": volume, "pvolume": volume * 100, "stockStatus": 3,
            "askPrice": [round(price + step * i, 2) for i in range(1, 6)],
            "bidPrice": [round(price - step * i, 2) for i in range(0, 5)],
            "askVol": [10, 20, 30, 40, 50], "bidVol": [15, 25, 35, 45, 55]}


class Ticker:
    """The quotes miniQMT pushes: every second a fresh tick per stock stamped with the counterpart's clock, at a
    price wandering ±0.5% around the close, or at the price a `price` command pinned."""

    def __init__(self, service: xtquant_datacenter.MiniQmtService, market_time: MarketTime):
        self.service = service
        self.market_time = market_time
        self.pinned: dict[str, float] = {}
        self.priced_at: dict[str, float] = {}  # code -> time.monotonic() of its last `price` command
        self._count = 0
        self._lock = threading.Lock()

    def price(self, code: str) -> float:
        close = STOCKS[code][1]
        offset = ((self._count + list(STOCKS).index(code)) % 11 - 5) / 1000.0
        return self.pinned.get(code, round(close * (1 + offset), 2))

    def pin(self, code: str, price: float) -> None:
        """Quote `code` at `price` from now on; pushed at once (a crossing reaches the daemon without waiting)."""
        with self._lock:
            self.pinned[code] = round(float(price), 2)
            self.priced_at[code] = time.monotonic()
            self._push(code)

    def push_all(self) -> None:
        with self._lock:
            self._count += 1
            for code in STOCKS:
                self._push(code)

    def _push(self, code: str) -> None:
        close = STOCKS[code][1]
        self.service.push(code, _tick(self.price(code), close, 1000 + self._count, self.market_time.feed_timestamp()))

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(PUSH_SECONDS):
            self.push_all()


class CounterpartControl:
    """Faults and state of the simulated miniQMT, driven at run time through the JSON-lines file named by
    COUNTERPART_CONTROL: each appended line is applied once, in order. Commands:
    {"cmd":"price","code":C,"price":P}          quote C at P from now on;
    {"cmd":"hold","code":C,"volume":V,"cost":P} a position carried from an earlier day, all of it available;
    {"cmd":"hang","seconds":S[,"book_late":B]}  the trading link of miniQMT stops answering for S seconds;
    {"cmd":"drop_pushes","seconds":S}           order/trade/position pushes are lost for S s, queries answer;
    {"cmd":"reject_orders","side":"buy"|"sell","message":M}  the counter rejects every such order with M;
    {"cmd":"refuse_cancels","message":M}        the counter refuses every cancel with M;
    {"cmd":"restart"}                           miniQMT restarts (trading clients and data subscriptions drop);
    {"cmd":"skew_clock","seconds":S}            miniQMT's clock (tick stamps, order times) is S s off the box;
    {"cmd":"fill","code":C[,"volume":V][,"price":P]}  the exchange fills the oldest working order of C;
    {"cmd":"dump","path":F}                     write the counter's book (positions, orders with the monotonic time
                                                each was booked, cash, every remark sent) and the monotonic time of
                                                each stock's last `price` command to F as JSON;
    {"cmd":"clear"}                             every fault off (pinned prices stay);
    {"cmd":"ipo","offerings":{C:{...}},"quota":{K:N}}  today's new shares/bonds (query_ipo_data rows) and the quota;
    {"cmd":"repo_rate","code":C,"rate":R}       the reverse repo C quoted with best bid R (% a year), not pushed;
    {"cmd":"allot","code":C,"volume":V[,"name":N]}  中签: the won shares show as a position of C (issue 28 §3)."""

    def __init__(self, path: Path, counterpart: FakeQmt, service: xtquant_datacenter.MiniQmtService,
                 ticker: Ticker, market_time: MarketTime, log: Callable[[str], None]):
        self.path = path
        self.counterpart = counterpart
        self.service = service
        self.ticker = ticker
        self.market_time = market_time
        self.log = log
        self._offset = 0
        self._pending = b""

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(CONTROL_POLL_SECONDS):
            self.poll()

    def poll(self) -> int:
        """Apply the lines appended since the last poll (a line is applied only once it is complete)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        applied = 0
        for line in lines:
            if line.strip():
                self.apply_line(line.decode("utf-8", errors="replace"))
                applied += 1
        return applied

    def apply_line(self, line: str) -> None:
        try:
            command = json.loads(line)
            handler = getattr(self, "cmd_" + str(command.get("cmd")), None) if isinstance(command, dict) else None
            if handler is None:
                self.log(f"模拟 miniQMT：未知的控制命令，已忽略：{line.strip()}")
                return
            handler(command)
            if command["cmd"] != "dump":  # tests read the book many times a second: not worth a line each
                self.log(f"模拟 miniQMT：已执行控制命令 {line.strip()}")
        except Exception as exc:  # a bad line must not stop the control thread
            self.log(f"模拟 miniQMT：控制命令无法执行（{type(exc).__name__}: {exc}）：{line.strip()}")

    def cmd_price(self, command: dict) -> None:
        code = self._known(command["code"])
        with self.counterpart.lock:
            if code in self.counterpart.positions:
                self.counterpart.positions[code].last_price = round(float(command["price"]), 2)
        self.ticker.pin(code, float(command["price"]))

    def cmd_hold(self, command: dict) -> None:
        code, volume, cost = self._known(command["code"]), int(command["volume"]), float(command["cost"])
        self.counterpart.carry_position(code, FakePosition(volume, volume, cost, cost, self.ticker.price(code),
                                                           STOCKS[code][0]))

    def cmd_hang(self, command: dict) -> None:
        self.counterpart.hang(seconds=float(command["seconds"]), book_late=bool(command.get("book_late", False)))

    def cmd_drop_pushes(self, command: dict) -> None:
        self.counterpart.drop_pushes(float(command["seconds"]))

    def cmd_reject_orders(self, command: dict) -> None:
        side = command["side"]
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be buy or sell, got {side!r}")
        self.counterpart.reject_orders(side, str(command.get("message") or "柜台拒绝委托"))

    def cmd_refuse_cancels(self, command: dict) -> None:
        self.counterpart.refuse_cancels(str(command.get("message") or "柜台拒绝撤单"))

    def cmd_restart(self, command: dict) -> None:
        self.counterpart.restart()
        self.service.restart()

    def cmd_skew_clock(self, command: dict) -> None:
        self.market_time.skew = float(command["seconds"])

    def cmd_fill(self, command: dict) -> None:
        code = self._known(command["code"])
        with self.counterpart.lock:
            working = [o for o in sorted(self.counterpart.orders.values(), key=lambda o: o.order_id)
                       if o.stock_code == code and o.remaining > 0 and o.status in (ORDER_REPORTED, ORDER_PART_SUCC)]
            if not working:
                raise ValueError(f"{code} 没有可成交的委托")
            order = working[0]
            self.counterpart.fill(order.order_id, int(command.get("volume") or order.remaining), command.get("price"))

    def cmd_dump(self, command: dict) -> None:
        target = Path(command["path"])
        scratch = target.with_name(target.name + ".part")
        book = {**self.counterpart.book(), "priced_at": dict(self.ticker.priced_at)}
        scratch.write_text(json.dumps(book, ensure_ascii=False), encoding="utf-8")
        os.replace(scratch, target)  # a reader never sees half a file

    def cmd_clear(self, command: dict) -> None:
        self.counterpart.clear_faults()
        self.market_time.skew = 0.0

    def cmd_ipo(self, command: dict) -> None:
        with self.counterpart.lock:
            self.counterpart.ipo_offerings = dict(command.get("offerings") or {})
            self.counterpart.purchase_limits = {str(k): int(v) for k, v in (command.get("quota") or {}).items()}

    def cmd_repo_rate(self, command: dict) -> None:
        rate = float(command["rate"])
        tick = _tick(rate, rate, 1000, self.market_time.feed_timestamp())
        self.service.ticks[str(command["code"])] = {**tick, "bidPrice": [rate, 0, 0, 0, 0]}  # queried, never pushed

    def cmd_allot(self, command: dict) -> None:
        self.counterpart.allot(str(command["code"]), int(command["volume"]), str(command.get("name") or ""))

    @staticmethod
    def _known(code: str) -> str:
        if code not in STOCKS:
            raise ValueError(f"模拟 miniQMT 不报价 {code}（可用：{', '.join(STOCKS)}）")
        return code


def _log_line(message: str) -> None:
    """The control thread's lines go to the daemon's log (its handlers are set up by then) and stderr."""
    import logging

    logging.getLogger("counterpart").warning(message)


@contextlib.contextmanager
def counterpart_running(account: Callable[[], str]) -> Iterator[None]:
    """The simulated miniQMT installed before anything imports xtquant and running until the block ends: the
    counter for `account()`, the data service and its ticker at COUNTERPART_START's market time, and the control
    file when COUNTERPART_CONTROL names one (shared by this launcher and the gateway's)."""
    refuse_non_loopback()
    market_time = MarketTime(os.environ.get("COUNTERPART_START") or None)
    use_market_time(market_time)
    counterpart = install_counterpart(account(), market_time)
    service = install_data_service(market_time)
    ticker = Ticker(service, market_time)
    stop = threading.Event()
    threading.Thread(target=ticker.run, args=(stop,), name="fake-miniqmt-ticks", daemon=True).start()
    if os.environ.get("COUNTERPART_CONTROL"):
        control = CounterpartControl(Path(os.environ["COUNTERPART_CONTROL"]), counterpart, service, ticker,
                                     market_time, _log_line)
        threading.Thread(target=control.run, args=(stop,), name="fake-miniqmt-control", daemon=True).start()
    try:
        yield
    finally:
        stop.set()
        service.stop()
        counterpart.close()


def run(argv: list[str]) -> int:
    with counterpart_running(lambda: configured_account(argv)):
        import main

        return main.main(argv)

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
