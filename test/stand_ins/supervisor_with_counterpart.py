"""Test-only supervisor entry: `python test/stand_ins/supervisor_with_counterpart.py --accounts accounts.json ...`
takes exactly main.py's command line and runs the real supervisor (accounts.entry.run), except that a LIVE
account's child is started through test/stand_ins/live_account.py (the miniQMT counterpart in the child's own
process, then main.main unchanged) instead of main.py. Simulated accounts start main.py as in production."""
from __future__ import annotations

import sys
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parents[1]
PROJECT = TEST_DIR.parent
LIVE_LAUNCHER = Path(__file__).resolve().parent / "live_account.py"
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

import accounts.entry as accounts_main  # noqa: E402
import main  # noqa: E402
from accounts.child import ChildLaunch, default_command  # noqa: E402


def command_with_counterpart(launch: ChildLaunch) -> list[str]:
    """main.py's command for this child; for a live account the launcher with the stand-ins in its place."""
    command = default_command(launch)
    if launch.spec.is_live:
        command[1] = str(LIVE_LAUNCHER)
    return command


def run(argv: list[str]) -> int:
    args = main.parse_args(argv)
    args.data_dir = args.data_dir or "data"
    if not args.accounts:
        print("此测试入口只用于多账户监管（--accounts）", file=sys.stderr)
        return 2
    try:
        overrides = main.run_overrides(args)
    except ValueError as exc:
        print(f"配置无效，拒绝启动：{exc}", file=sys.stderr)
        return 2
    return accounts_main.run(args, overrides, main._install_signal_handlers, command_with_counterpart)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
