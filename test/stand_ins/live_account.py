"""Test-only launcher of a LIVE account daemon: `python test/stand_ins/live_account.py <main.py arguments>`.

It installs the miniQMT counterpart in this process before anything imports xtquant — the simulated broker
counter behind `xtquant.xtpythonclient` (one FakeQmt stock account with cash) and the simulated data service
behind `xtquant.datacenter` (instrument details, a trading calendar, ticks pushed every second with the
current time, so quotes are live) — and then runs `main.main(argv)` unchanged: the REAL xttrader.py/xtdata.py,
the real composition, the real live checks. Nothing leaves the machine: any non-loopback connection or DNS
lookup is refused. The counterpart's account id is the one in the daemon's ACCOUNT_CONFIG_FILE (as miniQMT
would be logged in to that account); its cash comes from LIVE_ACCOUNT_CASH (default 200000)."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parents[1]
PROJECT = TEST_DIR.parent
for _path in (str(PROJECT), str(TEST_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from stand_ins import xtquant_datacenter  # noqa: E402
from stand_ins.fake_xtpythonclient import FakeQmt  # noqa: E402

# (name, previous close) of the stocks the simulated miniQMT quotes; prices move a little with every push
STOCKS = {"600000.SH": ("浦发银行", 13.75), "000001.SZ": ("平安银行", 12.34), "600036.SH": ("招商银行", 40.10)}
PUSH_SECONDS = 1.0
CALENDAR_DAYS = 60  # trading days (weekdays) miniQMT reports back from today
BAR_DAYS = 420  # calendar days of daily bars on the 'server' (more than the daemon's history window)


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


def install_counterpart(account: str) -> FakeQmt:
    """The broker counter: xttrader imports `xtquant.xtpythonclient` and gets the stand-in module."""
    counterpart = FakeQmt(account_id=account, cash=float(os.environ.get("LIVE_ACCOUNT_CASH", "200000")),
                          now=lambda: int(time.time()))
    sys.modules["xtquant.xtpythonclient"] = counterpart.module()
    return counterpart


def install_data_service() -> xtquant_datacenter.MiniQmtService:
    xtquant_datacenter.install()
    service = xtquant_datacenter.reset()
    today = date.today()
    weekdays = [d for d in (today - timedelta(days=n) for n in range(BAR_DAYS, -1, -1)) if d.weekday() < 5]
    service.trading_days_ms = [_ms(d) for d in weekdays[-CALENDAR_DAYS:]]
    past = [d for d in weekdays if d < today]  # bars up to the last trading day before today
    service.holidays = [(today.year + 1) * 10000 + 101]  # New Year's day: miniQMT's holiday table is never empty
    for code, (name, close) in STOCKS.items():
        service.instruments[code] = {"ExchangeID": code[-2:], "InstrumentID": code[:6], "InstrumentName": name,
                                     "PreClose": close, "UpStopPrice": round(close * 1.1, 2),
                                     "DownStopPrice": round(close * 0.9, 2), "PriceTick": 0.01}
        service.ticks[code] = _tick(close, close, 0)
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


def _tick(price: float, last_close: float, volume: int) -> dict:
    step = 0.01
    return {"time": int(time.time() * 1000), "lastPrice": price, "open": last_close, "high": max(price, last_close),
            "low": min(price, last_close), "lastClose": last_close, "amount": price * volume * 100,
            "volume": volume, "pvolume": volume * 100, "stockStatus": 3,
            "askPrice": [round(price + step * i, 2) for i in range(1, 6)],
            "bidPrice": [round(price - step * i, 2) for i in range(0, 5)],
            "askVol": [10, 20, 30, 40, 50], "bidVol": [15, 25, 35, 45, 55]}


def push_ticks(service: xtquant_datacenter.MiniQmtService, stop: threading.Event) -> None:
    """Every second a fresh tick per stock (current time, a price wandering ±0.5% around the close)."""
    count = 0
    while not stop.wait(PUSH_SECONDS):
        count += 1
        for index, (code, (_, close)) in enumerate(STOCKS.items()):
            offset = ((count + index) % 11 - 5) / 1000.0
            service.push(code, _tick(round(close * (1 + offset), 2), close, 1000 + count))


def run(argv: list[str]) -> int:
    refuse_non_loopback()
    counterpart = install_counterpart(configured_account(argv))
    service = install_data_service()
    stop = threading.Event()
    threading.Thread(target=push_ticks, args=(service, stop), name="fake-miniqmt-ticks", daemon=True).start()
    import main

    try:
        return main.main(argv)
    finally:
        stop.set()
        service.stop()
        counterpart.close()


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
