"""Test-only launcher of the gateway on the simulated miniQMT: `python test/gateway/gateway_with_counterpart.py
<qmt_gateway.py arguments>`. Like test/stand_ins/live_account.py it installs the counterpart (the broker counter
behind xtquant.xtpythonclient, the data service behind xtquant.datacenter, the control file COUNTERPART_CONTROL,
the market clock COUNTERPART_START) before anything imports xtquant, then runs `gateway.cli.main(argv)` unchanged:
the real qmt_gateway around the real easy_qmt_trader and xttrader.py."""
from __future__ import annotations

import json
import sys
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parents[1]
PROJECT = TEST_DIR.parent
for _path in (str(PROJECT), str(TEST_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from stand_ins import live_account  # noqa: E402


def run(argv: list[str]) -> int:
    from gateway import cli

    def account() -> str:
        account_file = cli.run_overrides(cli.parse_args(argv))["ACCOUNT_CONFIG_FILE"]
        return str(json.loads(Path(account_file).read_text(encoding="utf-8"))["account_id"])

    with live_account.counterpart_running(account):
        return cli.main(argv)

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
