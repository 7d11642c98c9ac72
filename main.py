"""Entry point and composition root: parse the command line, load and check the configuration, build every
component with its collaborators, start the named threads under the watchdog, and shut down in order on
SIGINT/SIGTERM (Ctrl+C on Windows)."""
from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Optional

from config_store import ConfigError, ConfigStore
from instance_lock import InstanceLock, LockHeld
from logger import setup_logging
from models import TradingError
import storage_health

log = logging.getLogger("main")

STORAGE_REFUSED = 5  # exit code: a database or the data dir cannot be trusted or written
CONFIG_RESET_HINT = "若确要以默认参数启动，请删除标记文件 {marker} 后重启"


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A股无人值守交易守护进程（miniQMT）")
    parser.add_argument("--data-dir", default="data", help="运行数据目录（SQLite 数据库、令牌），默认 data/")
    parser.add_argument("--log-dir", default="logs", help="日志目录，默认 logs/")
    parser.add_argument("--port", type=int, help="Web 端口（覆盖 WEB_PORT）")
    parser.add_argument("--host", help="Web 监听地址（覆盖 WEB_HOST）")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--simulation", action="store_true", help="模拟交易")
    mode.add_argument("--live", action="store_true", help="实盘交易（需要 miniQMT）")
    parser.add_argument("--replay-data", help="回放日线目录（<代码>.csv 或通达信 vipdoc）")
    parser.add_argument("--replay-speed", type=float, help="回放速度：每个交易日的真实秒数")
    parser.add_argument("--stock-pool", default="stock_pool.json", help="股票池文件，默认当前目录下的 stock_pool.json")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="本次运行覆盖参数（JSON 值，如 --set ENABLE_AUTO_TRADING=true）")
    return parser.parse_args(argv)


def run_overrides(args: argparse.Namespace) -> dict:
    import json

    overrides = {}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set 参数格式应为 KEY=VALUE：{item}")
        try:
            overrides[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key.strip()] = text
    if args.port is not None:
        overrides["WEB_PORT"] = args.port
    if args.host:
        overrides["WEB_HOST"] = args.host
    if args.simulation or args.live:
        overrides["ENABLE_SIMULATION_MODE"] = bool(args.simulation)
    if args.replay_data:
        overrides["REPLAY_DATA_DIR"] = args.replay_data
        overrides.setdefault("DATA_SOURCE", "replay")
    if args.replay_speed is not None:
        overrides["REPLAY_SECONDS_PER_DAY"] = args.replay_speed
    return overrides


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    data_dir = Path(args.data_dir)
    try:
        lock = InstanceLock(data_dir / "daemon.lock")
        lock.acquire()
    except LockHeld as exc:
        print(f"拒绝启动：{exc}", file=sys.stderr)
        return 3
    except OSError as exc:  # a read-only or full data dir
        print(storage_health.describe_os_error(exc, data_dir), file=sys.stderr)
        return STORAGE_REFUSED
    config_db = None
    try:
        marker = data_dir / storage_health.MARKER_NAME
        try:
            config_db = storage_health.open_checked(data_dir / "config.db", data_dir, "参数数据库",
                                                    CONFIG_RESET_HINT.format(marker=marker))
        except storage_health.StorageRefused as exc:
            print(exc.message, file=sys.stderr)
            return STORAGE_REFUSED
        try:
            settings = ConfigStore(config_db, run_overrides=run_overrides(args))
        except (ConfigError, ValueError) as exc:
            print(f"配置无效，拒绝启动：{exc}", file=sys.stderr)
            return 2
        try:
            secret_filter = setup_logging(args.log_dir, settings.get("LOG_LEVEL"),
                                          settings.get("LOG_RETENTION_DAYS"), secrets=[settings.get("WEB_API_TOKEN")])
        except OSError as exc:
            print(storage_health.describe_os_error(exc, Path(args.log_dir)), file=sys.stderr)
            return STORAGE_REFUSED
        stop_event = threading.Event()
        _install_signal_handlers(stop_event)  # before the build: a stop asked for meanwhile is honoured after it
        try:
            from composition import build_daemon

            daemon = build_daemon(settings, data_dir, Path(args.log_dir), secret_filter, Path(args.stock_pool),
                                  stop_event)
        except storage_health.StorageRefused as exc:
            log.error("%s", exc.message)
            return STORAGE_REFUSED
        except TradingError as exc:
            log.error("启动失败：%s", exc.message)  # the console handler shows it to the operator
            return 4
        except OSError as exc:  # token file, logs: a read-only or full disk
            log.error("%s", storage_health.describe_os_error(exc, getattr(exc, "filename", None) or data_dir))
            return STORAGE_REFUSED
        except sqlite3.Error as exc:
            log.error("%s", storage_health.refusal(exc, data_dir, data_dir).message)
            return STORAGE_REFUSED
        return daemon.run()
    finally:
        if config_db is not None:
            config_db.close()
        lock.release()


def _install_signal_handlers(stop_event: threading.Event) -> None:
    def request_stop(signum, _frame):
        log.info("收到退出信号 %s", signum)
        stop_event.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if hasattr(signal, "SIGBREAK"):  # Windows console Ctrl+Break
        signal.signal(signal.SIGBREAK, request_stop)


if __name__ == "__main__":
    sys.exit(main())
