"""`python main.py --doctor`: builds the doctor's view of this machine (the same checks as GET /api/diagnostics)
and prints one line per check with its fix hint; the exit code is 1 when any check is an error."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable, Optional, TextIO

import doctor.checks as doctor
import persistence.health as storage_health


def machine_env(settings: Any, data_dir: Path, log_dir: Path, port_owned_by_us: bool = False,
                reference_time: Optional[Callable[[], Any]] = None, calendar=None) -> doctor.DoctorEnv:
    """This machine: the trading calendar of market_rules, and in live mode a real miniQMT connection."""
    import market_rules

    calendar = calendar or market_rules.DEFAULT_CALENDAR

    def connect():
        from brokers.select import connect_live_broker

        return connect_live_broker(settings, data_dir)

    return doctor.DoctorEnv(settings=settings, data_dir=Path(data_dir), log_dir=Path(log_dir),
                            connect_broker=connect, port_owned_by_us=port_owned_by_us,
                            reference_time=reference_time or (lambda: None),
                            is_trading_day=calendar.is_trading_day, calendar_last_day=lambda: calendar.known_through,
                            calendar=calendar)


def report(checks: list[doctor.Check], out: TextIO) -> None:
    marks = {doctor.OK: "[正常]", doctor.WARNING: "[警告]", doctor.ERROR: "[错误]"}
    for check in checks:
        out.write(f"{marks[check.level]} {check.name}：{check.detail}\n")
        if check.hint and check.level != doctor.OK:
            out.write(f"         处理建议：{check.hint}\n")
    errors = sum(c.level == doctor.ERROR for c in checks)
    warnings = sum(c.level == doctor.WARNING for c in checks)
    out.write(f"\n诊断完成：{len(checks)} 项检查，{errors} 项错误，{warnings} 项警告\n")


def run(data_dir: Path, log_dir: Path, run_overrides: dict, out: TextIO) -> int:
    """The CLI: settings as the daemon would load them. Settings it would refuse, and a config.db it would
    refuse (empty, missing from a used data dir, damaged, unreadable), are reported in the daemon's own words
    (the other checks then see the defaults plus the command-line values); the doctor never creates or
    repairs config.db in a data dir the daemon would refuse."""
    import config
    from persistence.config_store import ConfigStore

    settings: Any = _Defaults(run_overrides)
    refused, db = _config_db(Path(data_dir))
    try:
        if db is not None:
            try:
                settings = ConfigStore(db, run_overrides=run_overrides)
            except (config.ConfigError, ValueError) as exc:
                refused = doctor.Check("config", "参数配置", doctor.ERROR, f"配置无效，拒绝启动：{exc}",
                                       "在网页「参数设置」或 config.py 中改正这些参数")
            except sqlite3.Error as exc:
                refused = _config_db_check(storage_health.refusal(
                    exc, Path(data_dir) / "config.db", Path(data_dir), "参数数据库").message)
        checks = doctor.run_all(machine_env(settings, data_dir, log_dir))
    finally:
        if db is not None:
            db.close()
    if refused is not None:
        checks = [c for c in checks if c.key != refused.key] + [refused]
    report(checks, out)
    return doctor.exit_code(checks)


def _config_db(data_dir: Path):
    """(refusal check or None, the opened config.db or None), as main.py opens it."""
    from persistence.storage import Database

    path = data_dir / "config.db"
    hint = storage_health.CONFIG_RESET_HINT.format(marker=data_dir / storage_health.MARKER_NAME)
    try:
        storage_health.check_database_file(path, data_dir, "参数数据库", hint)
    except storage_health.StorageRefused as exc:
        return _config_db_check(exc.message), None
    if path.exists():
        problem = storage_health.probe_file(path)
        if problem is not None:
            return _config_db_check(storage_health.refusal(problem, path, data_dir, "参数数据库").message), None
    try:
        return None, Database(path)
    except sqlite3.Error as exc:
        return _config_db_check(storage_health.refusal(exc, path, data_dir, "参数数据库").message), None
    except OSError as exc:
        return _config_db_check(storage_health.describe_os_error(exc, data_dir)), None


def _config_db_check(message: str) -> doctor.Check:
    return doctor.Check("config", "参数配置", doctor.ERROR, message, doctor.DATABASE_HINT)


class _Defaults:
    """config.py's values with this run's command-line values, for the other checks when the configured
    values are refused."""

    def __init__(self, overrides: dict):
        import config

        self._values = {**config.DEFAULTS, **{k: v for k, v in overrides.items() if k in config.DEFAULTS}}

    def get(self, key: str) -> Any:
        return self._values[key]

    def snapshot(self) -> dict:
        return dict(self._values)


def daemon_diagnostics(settings: Any, data_dir: Path, log_dir: Path, broker: Any, hub: Any, clock: Any
                       ) -> Callable[[], list[doctor.Check]]:
    """The checks as the running daemon sees them (GET /api/diagnostics): its own port is in use by itself,
    the broker check queries the connection it already has (never a second session), and in live data mode
    the newest exchange quote time during a session is the reference the machine clock is compared with."""

    class _Running:
        def query_asset(self):
            return broker.query_asset()

        def close(self) -> None:
            pass  # not ours to close

    def newest_quote_time():
        if clock.is_replay or clock.session() not in ("continuous", "call_auction", "closing_auction"):
            return None
        times = [q.time for q in (hub.last_seen(code) for code in hub.codes()) if q is not None]
        if not times:
            return None
        newest = max(times)
        return newest if newest.tzinfo else newest.replace(tzinfo=doctor.MARKET_TZ)

    def run() -> list[doctor.Check]:
        env = machine_env(settings, data_dir, log_dir, port_owned_by_us=True, reference_time=newest_quote_time,
                          calendar=getattr(clock, "calendar", None))
        env.connect_broker = _Running
        return doctor.run_all(env)

    return run
