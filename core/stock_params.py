"""Per-stock rule parameters (table `stock_params`) and the MACD/pool-buy blacklist (`stock_blacklist`): a stock's
value overrides the global one for that stock only, validated with config.py's metadata like the globals, each
change journaled in the config history (old → new). `params_for(code)` is what the rules, the monitor, the chart
and the backtest read. Locking a stock is the trading state's per-stock halt, not a flag here."""
from __future__ import annotations

import json
import threading
from typing import Any, Callable, Mapping, Optional

import config
import strategy
from config import ConfigError
from persistence.storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS stock_params (
        stock_code TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at TEXT NOT NULL,
        source TEXT NOT NULL DEFAULT '', PRIMARY KEY (stock_code, key));
    CREATE TABLE IF NOT EXISTS stock_blacklist (
        stock_code TEXT PRIMARY KEY, changed_at TEXT NOT NULL, source TEXT NOT NULL DEFAULT '')
    """,
)

# DESIGN §6 rule parameters that may be set per stock (grid parameters are read when a grid session starts).
STOCK_KEYS = (
    "STOP_LOSS_RATIO", "INITIAL_TAKE_PROFIT_RATIO", "INITIAL_TAKE_PROFIT_RATIO_PERCENTAGE", "DYNAMIC_TAKE_PROFIT",
    "BUY_GRID_LEVELS", "POSITION_UNIT", "MAX_POSITION_VALUE",
    "GRID_STEP_RATIO", "GRID_BUY_AMOUNT", "GRID_CALLBACK_RATIO", "GRID_MAX_INVESTMENT", "GRID_TAKE_PROFIT_RATIO",
    "GRID_STOP_LOSS_RATIO", "GRID_MAX_HOLD_DAYS",
)

Journal = Callable[[str, Any, Any, str], None]  # (history key, old, new, source)


class StockSettings:
    """A settings view for one stock: its overrides first, then the global settings (`get(key)` like
    ConfigStore), so every `from_settings` reader takes per-stock values without knowing about them."""

    def __init__(self, settings: Any, overrides: Mapping[str, Any]):
        self._settings = settings
        self._overrides = dict(overrides)

    def get(self, key: str) -> Any:
        if key in self._overrides:
            return self._overrides[key]
        return self._settings.get(key)

    def __getitem__(self, key: str) -> Any:
        return self.get(key)


class StockParams:
    def __init__(self, db: Database, settings: Any, clock: Any, journal: Optional[Journal] = None):
        self._db = db
        self._settings = settings
        self._clock = clock
        self._journal = journal
        self._lock = threading.RLock()
        migrate(db, "stock_params", MIGRATIONS)
        self._overrides: dict[str, dict[str, Any]] = {}
        for row in db.query("SELECT stock_code, key, value FROM stock_params"):
            self._overrides.setdefault(row["stock_code"], {})[row["key"]] = json.loads(row["value"])
        self._blacklist = {r["stock_code"] for r in db.query("SELECT stock_code FROM stock_blacklist")}
        self._global_params: Optional[strategy.RuleParams] = None
        self._cache: dict[str, strategy.RuleParams] = {}
        self.version = 0
        self._settings_changes = 0  # counted by _on_settings_change, without this object's lock
        self._cached_changes = 0  # the count the cache was built at
        settings.subscribe(lambda _changed: self._on_settings_change())

    # ---- reading
    def overrides(self, code: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._overrides.get(code, {}))

    def all_overrides(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {code: dict(values) for code, values in sorted(self._overrides.items()) if values}

    def settings_for(self, code: str) -> StockSettings:
        return StockSettings(self._settings, self.overrides(code))

    def params_for(self, code: str) -> strategy.RuleParams:
        """The effective rule parameters of `code` (cached; the global set for stocks without overrides)."""
        with self._lock:
            changes = self._settings_changes
            if changes != self._cached_changes:  # a global parameter changed since the cache was built
                self._invalidate()
                self._cached_changes = changes
            cached = self._cache.get(code)
            if cached is not None:
                return cached
            if code not in self._overrides:
                params = self._global_params or strategy.RuleParams.from_settings(self._settings)
                if self._settings_changes == changes:  # not changed meanwhile: safe to keep
                    self._global_params = params
                return params
            params = strategy.RuleParams.from_settings(self.settings_for(code))
            if self._settings_changes == changes:
                self._cache[code] = params
            return params

    def _on_settings_change(self) -> None:
        """The ConfigStore calls this while holding ITS lock. Taking this object's lock here deadlocks against a
        thread that holds this lock and reads a setting (issue 26 item 15: a config update racing a per-stock
        reset froze every web thread and the watchdog). So only count the change; params_for drops the cache.
        The ConfigStore calls its listeners one at a time under its lock, so the count has a single writer."""
        self._settings_changes += 1

    def effective(self, code: str) -> dict[str, Any]:
        """Every per-stock key with its effective value and where it comes from."""
        overrides = self.overrides(code)
        return {key: {"value": overrides.get(key, self._settings.get(key)), "global": self._settings.get(key),
                      "overridden": key in overrides, "meaning": config.PARAMS_BY_KEY[key].meaning,
                      "range": config.PARAMS_BY_KEY[key].describe_range()} for key in STOCK_KEYS}

    def is_blacklisted(self, code: str) -> bool:
        return code in self._blacklist

    def buyable(self, codes) -> list[str]:
        """`codes` without the blacklisted ones (MACD entries and pool buys)."""
        return [code for code in codes if code not in self._blacklist]

    def blacklist(self) -> list[str]:
        return sorted(self._blacklist)

    # ---- changing
    def update(self, code: str, changes: Mapping[str, Any], source: str = "web") -> dict[str, Any]:
        """Validate and store overrides for `code` (None removes one). Raises ConfigError (nothing changed)."""
        if not isinstance(changes, Mapping) or not changes:
            raise ConfigError({"params": "没有要修改的参数"})
        unknown = sorted(k for k in changes if k not in STOCK_KEYS)
        if unknown:
            raise ConfigError({k: f"{k} 不能按个股设置，可设置：{', '.join(STOCK_KEYS)}" for k in unknown})
        with self._lock:
            current = self.overrides(code)
            merged = dict(current)
            errors = {}
            for key, value in changes.items():
                if value is None:
                    merged.pop(key, None)
                    continue
                try:
                    merged[key] = config.coerce_value(config.PARAMS_BY_KEY[key], value)
                except ValueError as exc:
                    errors[key] = f"{code} 的 {exc}"
            if errors:
                raise ConfigError(errors)
            self._validate(code, merged)
            self._store(code, current, merged, source)
            return merged

    def reset(self, code: str, source: str = "web") -> None:
        """Drop every override of `code`: the stock follows the global parameters again."""
        with self._lock:
            current = self.overrides(code)
            if not current:
                raise ConfigError({"stock_code": f"{code} 没有个股参数，无需恢复"})
            self._store(code, current, {}, source)

    def set_blacklisted(self, code: str, blacklisted: bool, source: str = "web") -> None:
        with self._lock:
            if blacklisted == (code in self._blacklist):
                return
            with self._db.transaction() as conn:
                if blacklisted:
                    conn.execute("INSERT INTO stock_blacklist(stock_code, changed_at, source) VALUES(?,?,?)",
                                 (code, self._clock.now().isoformat(timespec="seconds"), source))
                    self._blacklist.add(code)
                else:
                    conn.execute("DELETE FROM stock_blacklist WHERE stock_code=?", (code,))
                    self._blacklist.discard(code)
            self._record(f"{code}:BLACKLIST", not blacklisted, blacklisted, source)

    # ---- internals
    def _validate(self, code: str, merged: Mapping[str, Any]) -> None:
        result = config.validate({**self._settings.snapshot(), **merged})
        errors = {key: f"{code} 的 {message}" for key, message in result.errors.items() if key in merged}
        if not result.ok and not errors:  # a cross-check that names another key but is caused by ours
            errors = {key: f"{code} 的个股参数与全局参数冲突：{message}" for key, message in result.errors.items()}
        if errors:
            raise ConfigError(errors)

    def _store(self, code: str, current: Mapping[str, Any], merged: Mapping[str, Any], source: str) -> None:
        stamp = self._clock.now().isoformat(timespec="seconds")
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM stock_params WHERE stock_code=?", (code,))
            conn.executemany("INSERT INTO stock_params(stock_code, key, value, updated_at, source) VALUES(?,?,?,?,?)",
                             [(code, k, json.dumps(v, ensure_ascii=False), stamp, source) for k, v in merged.items()])
        if merged:
            self._overrides[code] = dict(merged)
        else:
            self._overrides.pop(code, None)
        for key in sorted(set(current) | set(merged)):
            old = current.get(key, self._settings.get(key))
            new = merged.get(key, self._settings.get(key))
            if old != new or (key in current) != (key in merged):
                self._record(f"{code}:{key}", old, new, source)
        self._invalidate()

    def _record(self, key: str, old: Any, new: Any, source: str) -> None:
        if self._journal is not None:
            self._journal(key, old, new, source)

    def _invalidate(self) -> None:
        with self._lock:
            self._cache.clear()
            self._global_params = None
            self.version += 1
