"""Entry point (composition root): parse the command line, load and check the configuration, set up logging.
The daemon's components and threads are built here as they land."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import config
from config_store import ConfigError, ConfigStore
from logger import setup_logging
from storage import Database


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A股无人值守交易守护进程（miniQMT）")
    parser.add_argument("--data-dir", default="data", help="运行数据目录（SQLite 数据库、令牌）")
    parser.add_argument("--port", type=int, help="Web 端口（覆盖 WEB_PORT）")
    parser.add_argument("--host", help="Web 监听地址（覆盖 WEB_HOST）")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--simulation", action="store_true", help="模拟交易")
    mode.add_argument("--live", action="store_true", help="实盘交易（需要 miniQMT）")
    parser.add_argument("--replay-data", help="回放日线目录（<代码>.csv 或通达信 vipdoc）")
    parser.add_argument("--replay-speed", type=float, help="回放速度：每个交易日的秒数")
    return parser.parse_args(argv)


def run_overrides(args: argparse.Namespace) -> dict:
    overrides = {}
    if args.port is not None:
        overrides["WEB_PORT"] = args.port
    if args.host:
        overrides["WEB_HOST"] = args.host
    if args.simulation or args.live:
        overrides["ENABLE_SIMULATION_MODE"] = bool(args.simulation)
    if args.replay_data:
        overrides["REPLAY_DATA_DIR"] = args.replay_data
    if args.replay_speed is not None:
        overrides["REPLAY_SECONDS_PER_DAY"] = args.replay_speed
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(args.data_dir)
    try:
        db = Database(data_dir / "settings_check.db")
        settings = ConfigStore(db, run_overrides=run_overrides(args))
    except (ConfigError, ValueError) as exc:
        print(f"配置无效，拒绝启动：{exc}", file=sys.stderr)
        return 2
    setup_logging(Path("logs"), settings.get("LOG_LEVEL"), settings.get("LOG_RETENTION_DAYS"))
    for line in settings.startup_report():
        print(line)
    print("配置检查通过。守护进程的组件尚未全部就绪，本次启动到此结束。")
    return 0


if __name__ == "__main__":
    sys.exit(main())
