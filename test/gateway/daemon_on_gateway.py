"""Test-only launcher of a LIVE daemon on the remote broker: `python test/gateway/daemon_on_gateway.py <main.py
arguments>`. The daemon needs no xtquant here (BROKER = "remote"); only its market clock is shifted like the
gateway's counterpart (COUNTERPART_START), so both agree on the trading session at any hour, and nothing but loopback
is reachable. Then `main.main(argv)` runs unchanged."""
from __future__ import annotations

import os
import sys
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parents[1]
PROJECT = TEST_DIR.parent
for _path in (str(PROJECT), str(TEST_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from stand_ins import live_account  # noqa: E402


def run(argv: list[str]) -> int:
    live_account.refuse_non_loopback()
    live_account.use_market_time(live_account.MarketTime(os.environ.get("COUNTERPART_START") or None))
    import main

    return main.main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
