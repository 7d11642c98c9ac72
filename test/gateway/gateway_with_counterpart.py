"""Test-only launcher of the gateway on the simulated miniQMT: `python test/gateway/gateway_with_counterpart.py
<qmt_gateway.py arguments>`. Like test/stand_ins/live_account.py it installs the counterpart (the broker counter
behind xtquant.xtpythonclient, the data service behind xtquant.datacenter, the control file COUNTERPART_CONTROL,
the market clock COUNTERPART_START) before anything imports xtquant, then runs `gateway.cli.main(argv)` unchanged:
the real qmt_gateway around the real easy_qmt_trader and xttrader.py."""
from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parents[1]
PROJECT = TEST_DIR.parent
for _path in (str(PROJECT), str(TEST_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from stand_ins import live_account  # noqa: E402


def run(argv: list[str]) -> int:
    from gateway import cli

    live_account.refuse_non_loopback()
    market_time = live_account.MarketTime(os.environ.get("COUNTERPART_START") or None)
    live_account.use_market_time(market_time)
    account_file = cli.run_overrides(cli.parse_args(argv))["ACCOUNT_CONFIG_FILE"]
    account = str(json.loads(Path(account_file).read_text(encoding="utf-8"))["account_id"])
    counterpart = live_account.install_counterpart(account, market_time)
    service = live_account.install_data_service(market_time)
    ticker = live_account.Ticker(service, market_time)
    stop = threading.Event()
    threading.Thread(target=ticker.run, args=(stop,), name="fake-miniqmt-ticks", daemon=True).start()
    if os.environ.get("COUNTERPART_CONTROL"):
        control = live_account.CounterpartControl(Path(os.environ["COUNTERPART_CONTROL"]), counterpart, service,
                                                  ticker, market_time, live_account._log_line)
        threading.Thread(target=control.run, args=(stop,), name="fake-miniqmt-control", daemon=True).start()
    try:
        return cli.main(argv)
    finally:
        stop.set()
        service.stop()
        counterpart.close()


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
