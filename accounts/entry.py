"""`python main.py --accounts accounts.json`: the supervisor's entry. Loads the accounts file, starts one daemon
per account, serves the one browser address, supervises until SIGINT/SIGTERM, then stops every child
gracefully (each its own shutdown) and exits 0."""
from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

from accounts.child import CommandFor, default_command
from accounts.config import AccountsFileError, load_accounts
from accounts.supervisor import Supervisor
from persistence.config_store import ConfigError, ConfigStore
from persistence.instance_lock import InstanceLock, LockHeld
from logger import setup_logging
from persistence.storage import Database

log = logging.getLogger("accounts")

WEB_STOP_SECONDS = 2.0
# Settings of the supervisor's own command line that are about the supervisor, not passed on to children.
SUPERVISOR_ONLY = {"WEB_PORT", "WEB_HOST", "WEB_API_TOKEN", "WEB_CORS_ORIGINS", "ENABLE_SIMULATION_MODE"}
# Children start their shared replay this long after the supervisor, so that a slow start does not have to
# catch up (importing pandas/TA-Lib on a loaded 2-core machine takes seconds).
REPLAY_ORIGIN_LEAD_SECONDS = 10.0


def run(args: argparse.Namespace, overrides: dict, install_signal_handlers,
        command_for: CommandFor = default_command) -> int:
    """`command_for` builds each child's command line (main.py; a test puts a launcher with stand-ins there)."""
    data_dir, log_dir = Path(args.data_dir), Path(args.log_dir)
    try:
        specs = load_accounts(Path(args.accounts))
    except AccountsFileError as exc:
        print(f"拒绝启动：{exc}", file=sys.stderr)
        return 2
    try:
        lock = InstanceLock(data_dir / "supervisor.lock")
        lock.acquire()
    except LockHeld as exc:
        print(f"拒绝启动：{exc}", file=sys.stderr)
        return 3
    accounts_lock = accounts_file_lock(Path(args.accounts))
    try:
        accounts_lock.acquire()
    except LockHeld:
        lock.release()
        print(f"拒绝启动：账户文件 {Path(args.accounts).resolve()} 中的账户已由另一个多账户监管进程运行"
              f"（锁文件 {accounts_lock.path.name}）；同一组账户不能同时运行两份，即使数据目录不同", file=sys.stderr)
        return 3
    config_db = Database(data_dir / "supervisor_config.db")
    try:
        try:
            settings = ConfigStore(config_db, run_overrides=overrides)
        except ConfigError as exc:
            print(f"配置无效，拒绝启动：{exc}", file=sys.stderr)
            return 2
        secret_filter = setup_logging(log_dir, settings.get("LOG_LEVEL"), settings.get("LOG_RETENTION_DAYS"))
        stop_event = threading.Event()
        install_signal_handlers(stop_event)
        return _serve(settings, specs, data_dir, log_dir, overrides, secret_filter, stop_event, command_for)
    finally:
        config_db.close()
        accounts_lock.release()
        lock.release()


def accounts_file_lock(accounts: Path) -> InstanceLock:
    """The lock a supervisor holds on its accounts file (`<file>.lock` beside it): a second supervisor on the
    same accounts, even with another `--data-dir`, would run every account twice (a live account placing each
    order twice), so it is refused. An OS lock: released even after `kill -9`."""
    path = Path(accounts).resolve()
    return InstanceLock(path.with_name(path.name + ".lock"))


def _serve(settings: ConfigStore, specs, data_dir: Path, log_dir: Path, overrides: dict, secret_filter,
           stop_event: threading.Event, command_for: CommandFor = default_command) -> int:
    from accounts.web import create_supervisor_app
    from webapi.common import load_or_create_token
    from webapi.server import WebServer

    child_settings = {k: v for k, v in overrides.items() if k not in SUPERVISOR_ONLY}
    child_settings["REPLAY_CLOCK_ORIGIN"] = round(time.time() + REPLAY_ORIGIN_LEAD_SECONDS, 3)
    supervisor = Supervisor(specs, settings, data_dir, log_dir, child_settings, command_for)
    try:
        token = load_or_create_token(data_dir, settings)
    except ValueError as exc:
        log.error("启动失败：%s", exc)
        return 4
    secret_filter.add(token)
    host, port = settings.get("WEB_HOST"), int(settings.get("WEB_PORT"))
    app = create_supervisor_app(supervisor, token, host, port, list(settings.get("WEB_CORS_ORIGINS")))
    web = WebServer(_NoContext(), host, port, threads=24, app=app)
    try:
        web.start()
    except OSError as exc:
        log.error("启动失败：网页服务无法在 %s:%s 启动（%s），请用 --port 换一个端口", host, port, exc.strerror or exc)
        return 4
    log.info("多账户监管已启动：%d 个账户，网页 %s", len(supervisor.children), web.url)
    supervisor.start_all()
    try:
        while not stop_event.wait(float(settings.get("ACCOUNT_POLL_INTERVAL"))):
            supervisor.run_once()
    finally:
        log.info("正在退出：依次停止各账户（每个账户安全退出）……")
        web.stop(WEB_STOP_SECONDS)
        supervisor.shutdown()
    log.info("多账户监管已安全退出")
    return 0


class _NoContext:
    """WebServer wants a context for its defaults; the supervisor passes host, port and app explicitly."""

    settings = None
