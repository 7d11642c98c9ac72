"""Runtime configuration: the values of `config.py`, overridden by changes made from the web (persisted in
`system_config`, every change in `config_history`), overridden for one run by command-line flags.
Every module reads parameters through `ConfigStore.get`, so a change from the web applies without restart."""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from typing import Any, Callable, Mapping, Optional

import config
from config import ConfigError
from persistence.storage import Database, migrate

log = logging.getLogger(__name__)

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS system_config (
        key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL, source TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS config_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, key TEXT NOT NULL,
        old_value TEXT, new_value TEXT, source TEXT NOT NULL)
    """,
)

SECRET_MASK = "******"
RUN_OVERRIDE_NOTE = "本次运行由命令行指定"


class RunOverrideRefused(ConfigError):
    """A web change to a key fixed on the command line for this run; answered 409, not 400."""

    code = "RUN_OVERRIDE"
    status = 409


class ConfigStore:
    def __init__(self, db: Database, defaults: Optional[Mapping[str, Any]] = None,
                 run_overrides: Optional[Mapping[str, Any]] = None, now: Callable[[], datetime] = datetime.now):
        self._db = db
        self._now = now
        self._lock = threading.RLock()
        self._defaults = dict(defaults if defaults is not None else config.DEFAULTS)
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        migrate(db, "config_store", MIGRATIONS)
        self.load_warnings: list[str] = []
        self._stored = self._load_stored()
        self._run = config.coerce_all(run_overrides or {})
        self._values = self._merge()
        result = config.validate(self._values)
        if not result.ok:
            raise ConfigError(result.errors)
        self.warnings = result.warnings

    # ---- reading
    def get(self, key: str) -> Any:
        with self._lock:
            return self._values[key]

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def overridden(self) -> dict[str, Any]:
        """Keys changed from the web (persisted), with their values; secrets masked."""
        with self._lock:
            return {k: _shown(k, v) for k, v in self._stored.items()}

    def startup_report(self) -> list[str]:
        """Chinese lines for the start-up log: which keys differ from config.py and why."""
        lines = [f"网页修改的参数覆盖 config.py：{k} = {_shown(k, v)}" for k, v in sorted(self._stored.items())]
        lines += [f"命令行参数覆盖：{k} = {_shown(k, v)}" for k, v in sorted(self._run.items())]
        return lines + self.load_warnings

    def describe(self) -> list[dict[str, Any]]:
        """Parameters with metadata for the web page (grouped in config order)."""
        with self._lock:
            return [{
                "key": p.key, "value": _shown(p.key, self._values[p.key]), "default": _shown(p.key, self._defaults[p.key]),
                "type": p.kind, "range": p.describe_range(), "min": p.min, "max": p.max, "choices": list(p.choices),
                "meaning": p.meaning, "group": p.group, "overridden": p.key in self._stored,
                "restart_required": p.restart, "secret": p.secret,
                "run_override": p.key in self._run, "run_override_note": RUN_OVERRIDE_NOTE if p.key in self._run else "",
            } for p in config.PARAMS]

    def history(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._db.query("SELECT * FROM config_history ORDER BY id DESC LIMIT ?", (limit,))
        return [{"id": r["id"], "time": r["time"], "key": r["key"], "old_value": _shown_json(r["key"], r["old_value"]),
                 "new_value": _shown_json(r["key"], r["new_value"]), "source": r["source"]} for r in rows]

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call `listener(changed_values)` after every applied change."""
        self._listeners.append(listener)

    # ---- changing
    def update(self, changes: Mapping[str, Any], source: str = "web") -> list[str]:
        """Validate and persist `changes` atomically; return warnings. Raises ConfigError, changing nothing."""
        if not isinstance(changes, Mapping) or not changes:
            raise ConfigError({"changes": "没有要修改的参数"})
        with self._lock:
            self._refuse_run_overrides(changes)
            coerced = config.coerce_all(changes)
            candidate = {**self._values, **coerced}
            result = config.validate(candidate)
            if not result.ok:
                raise ConfigError(result.errors)
            self._persist(coerced, source)
            return result.warnings

    def reset(self, key: str, source: str = "web") -> None:
        """Drop the web override of `key`, back to config.py's value."""
        with self._lock:
            self._refuse_run_overrides([key])
            if key not in self._stored:
                raise ConfigError({key: f"{key} 没有被覆盖，无需恢复"})
            candidate = {**self._values, key: self._run.get(key, self._defaults[key])}
            result = config.validate(candidate)
            if not result.ok:
                raise ConfigError(result.errors)
            self._persist({key: None}, source)

    def rollback(self, history_id: Optional[int] = None, source: str = "rollback") -> dict[str, Any]:
        """Restore the value a change replaced (the latest change when no id is given)."""
        with self._lock:
            if history_id is None:
                row = self._db.query_one("SELECT * FROM config_history ORDER BY id DESC LIMIT 1")
            else:
                row = self._db.query_one("SELECT * FROM config_history WHERE id=?", (history_id,))
            if row is None:
                raise ConfigError({"history_id": "没有可回滚的修改记录"})
            key, old = row["key"], row["old_value"]
            if key not in config.PARAMS_BY_KEY:
                raise ConfigError({key: f"参数 {key} 已不存在，无法回滚"})
            if old is None or json.loads(old) == self._defaults[key]:
                if key in self._stored:
                    self.reset(key, source)
                return {key: self._values[key]}
            self.update({key: json.loads(old)}, source)
            return {key: self._values[key]}

    def journal(self, key: str, old: Any, new: Any, source: str) -> None:
        """Record a change made outside the global parameters (per-stock parameters, a position's rule state,
        issue 17) in the same history, so one page shows every change with old → new."""
        with self._db.transaction() as conn:
            conn.execute("INSERT INTO config_history(time, key, old_value, new_value, source) VALUES(?,?,?,?,?)",
                         (self._now().isoformat(timespec="seconds"), key, json.dumps(old, ensure_ascii=False),
                          json.dumps(new, ensure_ascii=False), source))
    def run_overridden(self) -> dict[str, Any]:
        """Keys set on the command line for this run (they outrank the web), with their values."""
        return {k: _shown(k, v) for k, v in self._run.items()}

    # ---- internals
    def _refuse_run_overrides(self, keys) -> None:
        """A web change to a key the command line fixed would 'succeed' without effect: refuse it instead."""
        fixed = {k: f"{k} {RUN_OVERRIDE_NOTE}（{_shown(k, self._run[k])}），网页修改不会生效；请去掉命令行参数后重启"
                 for k in keys if k in self._run}
        if fixed:
            raise RunOverrideRefused(fixed)

    def _persist(self, changes: Mapping[str, Any], source: str) -> None:
        """Write overrides and history in one transaction, then publish. `None` removes an override."""
        stamp = self._now().isoformat(timespec="seconds")
        with self._db.transaction() as conn:
            for key, value in changes.items():
                old = json.dumps(self._values[key], ensure_ascii=False)
                if value is None:
                    conn.execute("DELETE FROM system_config WHERE key=?", (key,))
                    new_effective = self._run.get(key, self._defaults[key])
                else:
                    conn.execute("INSERT INTO system_config(key, value, updated_at, source) VALUES(?,?,?,?) "
                                 "ON CONFLICT(key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at,"
                                 " source=excluded.source", (key, json.dumps(value, ensure_ascii=False), stamp, source))
                    new_effective = value
                conn.execute("INSERT INTO config_history(time, key, old_value, new_value, source) VALUES(?,?,?,?,?)",
                             (stamp, key, old, json.dumps(new_effective, ensure_ascii=False), source))
        for key, value in changes.items():
            if value is None:
                self._stored.pop(key, None)
            else:
                self._stored[key] = value
            log.info("参数已修改（%s）：%s = %s", source, key, _shown(key, self.get_effective(key)))
        self._values = self._merge()
        for listener in list(self._listeners):
            listener({k: self._values[k] for k in changes})

    def get_effective(self, key: str) -> Any:
        if key in self._run:
            return self._run[key]
        return self._stored.get(key, self._defaults[key])

    def _merge(self) -> dict[str, Any]:
        return {**self._defaults, **self._stored, **self._run}

    def _load_stored(self) -> dict[str, Any]:
        """Read overrides; a corrupt or now-invalid one is ignored (config.py value used) with a warning."""
        stored = {}
        for row in self._db.query("SELECT key, value FROM system_config"):
            key = row["key"]
            param = config.PARAMS_BY_KEY.get(key)
            try:
                if param is None:
                    raise ValueError(f"未知参数 {key}")
                stored[key] = config.coerce_value(param, json.loads(row["value"]))
            except (ValueError, TypeError) as exc:
                self.load_warnings.append(f"忽略数据库中无效的参数覆盖 {key}：{exc}")
        result = config.validate({**self._defaults, **stored})
        for key, message in result.errors.items():
            if key in stored:
                stored.pop(key)
                self.load_warnings.append(f"忽略数据库中无效的参数覆盖 {key}：{message}")
        for line in self.load_warnings:
            log.warning(line)
        return stored


def _shown(key: str, value: Any) -> Any:
    param = config.PARAMS_BY_KEY.get(key)
    if param is not None and param.secret and value:
        return SECRET_MASK
    return value


def _shown_json(key: str, text: Optional[str]) -> Any:
    return None if text is None else _shown(key, json.loads(text))


def parse_set_items(items: list[str]) -> dict[str, Any]:
    """The run overrides of a command line's `--set KEY=VALUE` items (main.py, qmt_gateway.py): the value as JSON,
    else as text. ValueError (Chinese) for an item without `=`."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--set 参数格式应为 KEY=VALUE：{item}")
        try:
            overrides[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key.strip()] = text
    return overrides
