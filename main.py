"""Entry point and composition root: parse the command line, load and check the configuration, build every
component with its collaborators, start the named threads under the watchdog, and shut down in order on
SIGINT/SIGTERM (Ctrl+C on Windows)."""
from __future__ import annotations

import argparse
import gc
import logging
import signal
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Optional

from persistence.config_store import ConfigError, ConfigStore, parse_set_items
from persistence.instance_lock import InstanceLock, LockHeld
from logger import setup_logging
from core.models import TradingError
import persistence.health as storage_health

log = logging.getLogger("main")

STORAGE_REFUSED = 5  # exit code: a database or the data dir cannot be trusted or written
CONFIG_RESET_HINT = storage_health.CONFIG_RESET_HINT


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A股无人值守交易守护进程（miniQMT）")
    parser.add_argument("--data-dir", help="运行数据目录（SQLite 数据库、令牌、股票池），默认 data/")
    parser.add_argument("--log-dir", default="logs", help="日志目录，默认 logs/")
    parser.add_argument("--port", type=int, help="Web 端口（覆盖 WEB_PORT）")
    parser.add_argument("--host", help="Web 监听地址（覆盖 WEB_HOST）")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--simulation", action="store_true", help="模拟交易")
    mode.add_argument("--live", action="store_true", help="实盘交易（需要 miniQMT）")
    parser.add_argument("--replay-data", help="回放日线目录（<代码>.csv 或通达信 vipdoc）")
    parser.add_argument("--replay-speed", type=float, help="回放速度：每个交易日的真实秒数")
    parser.add_argument("--stock-pool", help="股票池文件；默认当前目录下的 stock_pool.json，指定 --data-dir 时为"
                                             "该数据目录中的 stock_pool.json（首次从 stock_pool.json 复制）")
    parser.add_argument("--reset-sim-account", action="store_true",
                        help="启动前把数据目录中的模拟账户数据库归档到 archive/，从新的模拟账户开始")
    parser.add_argument("--accounts", metavar="accounts.json",
                        help="多账户：按账户文件为每个账户启动一个守护进程，并在同一网页地址统一查看和操作")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="本次运行覆盖参数（JSON 值，如 --set ENABLE_AUTO_TRADING=true）")
    parser.add_argument("--doctor", action="store_true", help="系统诊断：检查运行环境后退出（有错误时退出码非 0）")
    return parser.parse_args(argv)


def run_overrides(args: argparse.Namespace) -> dict:
    overrides = parse_set_items(args.set)
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
    explicit_data_dir, args.data_dir = args.data_dir, args.data_dir or "data"
    if args.accounts:
        return _run_supervisor(args)
    data_dir = Path(args.data_dir)
    if args.doctor:  # no instance lock: the doctor may look at a machine where the daemon runs
        import doctor.cli as doctor_cli

        try:
            overrides = run_overrides(args)
        except ValueError as exc:
            print(f"参数无效：{exc}", file=sys.stderr)
            return 2
        return doctor_cli.run(data_dir, Path(args.log_dir), overrides, sys.stdout)
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
        if args.reset_sim_account:
            from accounts.identity import reset_sim_account

            archived = reset_sim_account(data_dir)
            print(f"已归档旧的模拟账户数据库：{archived}" if archived else "数据目录中没有模拟账户数据库，无需归档",
                  file=sys.stderr)
            # a new account is asked for: this start may create the account database the marker would miss
            (data_dir / storage_health.MARKER_NAME).unlink(missing_ok=True)
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
        except sqlite3.Error as exc:  # a full disk while the parameter tables are written
            print(storage_health.refusal(exc, data_dir / "config.db", data_dir, "参数数据库").message, file=sys.stderr)
            return STORAGE_REFUSED
        try:
            secret_filter = setup_logging(args.log_dir, settings.get("LOG_LEVEL"),
                                          settings.get("LOG_RETENTION_DAYS"), secrets=[settings.get("WEB_API_TOKEN")])
        except OSError as exc:
            print(storage_health.describe_os_error(exc, Path(args.log_dir)), file=sys.stderr)
            return STORAGE_REFUSED
        refused = _configure_calendar(settings)
        if refused:
            log.error("%s", refused)
            return 2
        stop_event = threading.Event()
        _install_signal_handlers(stop_event)  # before the build: a stop asked for meanwhile is honoured after it
        try:
            from daemon.composition import build_daemon
            from core.stock_pool import pool_file

            daemon = build_daemon(settings, data_dir, Path(args.log_dir), secret_filter,
                                  pool_file(args.stock_pool, explicit_data_dir), stop_event)
        except storage_health.StorageRefused as exc:
            log.error("%s", exc.message)
            return STORAGE_REFUSED
        except TradingError as exc:
            log.error("启动失败：%s", exc.message)  # the console handler shows it to the operator
            return 4
        except OSError as exc:  # token file, logs: a read-only or full disk
            log.error("%s", storage_health.describe_os_error(exc, getattr(exc, "filename", None) or data_dir))
            return STORAGE_REFUSED
        except sqlite3.Error as exc:  # names the damaged database, or the folder of a full disk
            log.error("%s", storage_health.startup_refusal(exc, data_dir).message)
            return STORAGE_REFUSED
        # What is built so far lives as long as the process: out of the full collections, which otherwise
        # scan it every time (a 40 ms pause in a monitor pass over 1,000 positions; bench_signal_latency).
        gc.freeze()
        return daemon.run()
    finally:
        if config_db is not None:
            config_db.close()
        lock.release()


def _configure_calendar(settings) -> str:
    """The owner's holiday file into the trading calendar, and the warning when the known trading days run
    out soon (logged; /api/status shows it). Returns the refusal line for an unreadable file, else ''."""
    import market_rules
    from market.clock import RealClock

    try:
        warning = market_rules.configure_calendar(market_rules.DEFAULT_CALENDAR, settings.get("HOLIDAYS_FILE"),
                                                  RealClock().today(), settings.get("CALENDAR_WARN_DAYS"))
    except ValueError as exc:
        return f"配置无效，拒绝启动：{exc}"
    if warning:
        log.warning("%s", warning)
    return ""


def _run_supervisor(args: argparse.Namespace) -> int:
    from accounts.entry import run

    try:
        overrides = run_overrides(args)
    except ValueError as exc:
        print(f"配置无效，拒绝启动：{exc}", file=sys.stderr)
        return 2
    return run(args, overrides, _install_signal_handlers)


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
