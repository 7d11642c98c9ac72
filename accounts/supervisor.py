"""The account supervisor: one daemon process per account, each kept alive (restart with back-off and an
hourly cap), watched through its HTTP API only (overview, equity series, alarms), and stopped in order.
It never reads a child's files or imports its internals; `accounts.web` serves its page and API."""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from accounts.child import (CHILD_STATE_LABELS, AccountChild, ChildPaths, ChildState, CommandFor, RestartPolicy,
                            default_command)
from accounts.config import AccountSpec
from core.stock_pool import StockPool, pool_file
from persistence.storage import Database, migrate

log = logging.getLogger(__name__)

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS account_equity (
        account_id TEXT NOT NULL, market_time TEXT NOT NULL, total_asset REAL NOT NULL,
        PRIMARY KEY (account_id, market_time))
    """,
)
CHILD_CALL_SECONDS = 3.0  # one status call; a child that does not answer in time is shown as unreachable
STATE_ACTIONS = {"pause": "pause", "resume": "resume", "emergency_stop": "emergency_stop"}
EQUITY_POINTS = 5000  # per account, in the overview chart


class ChildApi:
    """JSON calls to one child over loopback, with the child's token (never through a proxy)."""

    def __init__(self, child: AccountChild, timeout: float = CHILD_CALL_SECONDS):
        self._child = child
        self._timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        """The `data` of a success answer; raises ChildCallFailed with the child's Chinese message otherwise."""
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(self._child.base_url() + path, data=data, method=method, headers={
            "X-API-Token": self._child.token, "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                payload = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise ChildCallFailed(exc.code, _message_of(exc)) from None
        except (OSError, ValueError) as exc:
            raise ChildCallFailed(503, f"账户 {self._child.spec.id} 无法访问（{exc}）") from None
        return payload.get("data")


class ChildCallFailed(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _message_of(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read().decode("utf-8")).get("message") or f"HTTP {exc.code}"
    except (OSError, ValueError, AttributeError):
        return f"HTTP {exc.code}"


@dataclass
class AccountView:
    """What the overview shows of one account; filled from the child's API on every poll."""

    status: Optional[dict] = None
    health: Optional[dict] = None
    connection: Optional[dict] = None
    error: str = ""
    polled_at: float = 0.0
    equity: list[tuple[str, float]] = field(default_factory=list)


class Supervisor:
    def __init__(self, specs: list[AccountSpec], settings, data_dir: Path, log_dir: Path,
                 child_settings: dict[str, Any], command_for: CommandFor = default_command,
                 now: Callable[[], float] = time.monotonic, shipped_pool: Path = Path("stock_pool.json")):
        """`shipped_pool`: the pool an account without its own `stock_pool` starts from, as a single daemon."""
        self._settings = settings
        self._shipped_pool = Path(shipped_pool)
        self._data_dir = Path(data_dir).resolve()  # children run in their own folders: every path is absolute
        log_dir = Path(log_dir).resolve()
        self._now = now
        self._db = Database(self._data_dir / "supervisor.db")
        migrate(self._db, "accounts_supervisor", MIGRATIONS)
        self._lock = threading.RLock()
        self.alarms: list[str] = []
        self.children: dict[str, AccountChild] = {}
        self._views: dict[str, AccountView] = {}
        policy = lambda: RestartPolicy(int(settings.get("ACCOUNT_RESTART_LIMIT_PER_HOUR")),  # noqa: E731
                                       float(settings.get("ACCOUNT_RESTART_BACKOFF_MAX")))
        for spec in specs:
            if not spec.enabled:
                continue
            paths = ChildPaths(spec.data_dir(self._data_dir), log_dir / "accounts" / spec.id,
                               log_dir / "accounts" / f"{spec.id}.console.log")
            run = _run_settings(spec, child_settings)
            self.children[spec.id] = AccountChild(spec, paths, lambda run=run: dict(run), policy, command_for, now,
                                                  self._alarm)
            self._views[spec.id] = AccountView(equity=self._load_equity(spec.id))
        self.disabled = [spec for spec in specs if not spec.enabled]

    # ---- life cycle
    def start_all(self) -> None:
        for child in self.children.values():
            if child.spec.auto_start:
                _write_pool(child, self._shipped_pool)
                child.start()

    def run_once(self) -> None:
        """Supervise every child (restarts), then refresh its view from its API."""
        for child in self.children.values():
            message = child.supervise()
            if message:
                (log.error if child.state == ChildState.FAILED else log.warning)(message)
        for child in self.children.values():
            self._poll(child)

    def shutdown(self, timeout: Optional[float] = None) -> dict[str, Optional[int]]:
        """SIGTERM to every child in order, then wait for each: all shut down gracefully in parallel, so the
        total stays within one child's timeout."""
        limit = float(timeout if timeout is not None else self._settings.get("ACCOUNT_STOP_TIMEOUT"))
        results: dict[str, Optional[int]] = {}
        threads = []
        for account_id, child in self.children.items():
            thread = threading.Thread(target=lambda a=account_id, c=child: results.__setitem__(a, c.stop(limit)),
                                      name=f"stop-{account_id}")
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join(limit + 35)
        self._db.close()
        log.info("全部账户已停止：%s", "，".join(f"{k} 退出码 {v}" for k, v in results.items()))
        return results

    # ---- commands
    def child(self, account_id: str) -> AccountChild:
        child = self.children.get(account_id)
        if child is None:
            raise KeyError(account_id)
        return child

    def start(self, account_id: str) -> None:
        child = self.child(account_id)
        _write_pool(child, self._shipped_pool)
        child.start()

    def stop(self, account_id: str) -> Optional[int]:
        return self.child(account_id).stop(float(self._settings.get("ACCOUNT_STOP_TIMEOUT")))

    def restart(self, account_id: str) -> None:
        self.child(account_id).restart(float(self._settings.get("ACCOUNT_STOP_TIMEOUT")))

    def trading_action(self, account_id: str, action: str, reason: str = "") -> dict[str, dict]:
        """pause / resume / emergency_stop one account or "all"; per account the child's answer or error."""
        targets = list(self.children) if account_id == "all" else [self.child(account_id).spec.id]
        body: dict[str, Any] = {"reason": reason} if reason else {}
        if action == "resume":
            body["confirm"] = True
        results = {}
        for target in targets:
            child = self.children[target]
            try:
                data = ChildApi(child, timeout=15.0).call("POST", f"/api/actions/{STATE_ACTIONS[action]}", body)
                results[target] = {"ok": True, "message": (data or {}).get("message", ""),
                                   "trading_state": (data or {}).get("trading_state")}
            except ChildCallFailed as exc:
                results[target] = {"ok": False, "message": exc.message}
        log.warning("多账户操作 %s（%s）：%s", action, account_id,
                    "，".join(f"{k}：{'成功' if v['ok'] else v['message']}" for k, v in results.items()))
        return results

    # ---- reading
    def overview(self) -> dict:
        with self._lock:
            accounts = [self._account_overview(child) for child in self.children.values()]
        accounts += [{"id": s.id, "name": s.name, "mode": s.mode, "state": "disabled", "state_label": "未启用"}
                     for s in self.disabled]
        running = [a for a in accounts if a.get("total_asset") is not None]
        totals = {key: round(sum(a.get(key) or 0.0 for a in running), 2) for key in ("total_asset", "today_pnl")}
        totals.update(positions_count=sum(a.get("positions_count") or 0 for a in accounts),
                      pending_signals=sum(a.get("pending_signals") or 0 for a in accounts),
                      accounts=len(accounts), running=sum(1 for a in accounts if a["state"] == ChildState.RUNNING))
        return {"accounts": accounts, "totals": totals, "alarms": list(self.alarms[-50:])}

    def equity(self) -> dict[str, list[list]]:
        with self._lock:
            return {account_id: [[t, v] for t, v in view.equity] for account_id, view in self._views.items()}

    # ---- internals
    def _alarm(self, account_id: str, message: str) -> None:
        with self._lock:
            self.alarms.append(message)

    def _poll(self, child: AccountChild) -> None:
        view = self._views[child.spec.id]
        if child.state != ChildState.RUNNING:
            view.error = ""
            return
        api = ChildApi(child)
        try:
            status = api.call("GET", "/api/status")
            health = api.call("GET", "/api/health")
            connection = api.call("GET", "/api/connection/status")
        except ChildCallFailed as exc:
            view.error = exc.message
            return
        with self._lock:
            view.status, view.health, view.connection, view.error = status, health, connection, ""
            view.polled_at = self._now()
            self._record_equity(child.spec.id, view, status)

    def _record_equity(self, account_id: str, view: AccountView, status: dict) -> None:
        account = status.get("account") or {}
        moment = (status.get("clock") or {}).get("time")
        total = account.get("total_asset")
        if not moment or total is None or (view.equity and view.equity[-1][0] >= moment):
            return
        view.equity.append((moment, float(total)))
        del view.equity[:-EQUITY_POINTS]
        with self._db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO account_equity(account_id, market_time, total_asset) VALUES(?,?,?)",
                         (account_id, moment, float(total)))

    def _load_equity(self, account_id: str) -> list[tuple[str, float]]:
        rows = self._db.query("SELECT market_time, total_asset FROM account_equity WHERE account_id=? "
                              "ORDER BY market_time DESC LIMIT ?", (account_id, EQUITY_POINTS))
        return [(r["market_time"], r["total_asset"]) for r in reversed(rows)]

    def _account_overview(self, child: AccountChild) -> dict:
        view = self._views[child.spec.id]
        status, health, connection = view.status or {}, view.health or {}, view.connection or {}
        account = status.get("account") or {}
        threads = health.get("threads") or []
        thread_alarms = [t["alarm"] for t in threads if t.get("alarm")]
        fresh = child.state == ChildState.RUNNING and not view.error and status
        return {
            "id": child.spec.id, "name": child.spec.name, "mode": child.spec.mode,
            "state": child.state, "state_label": CHILD_STATE_LABELS[child.state], "pid": child.pid,
            "restarts": child.restart_count, "last_exit": child.last_exit, "alarm": child.alarm,
            "reachable": bool(fresh), "error": view.error,
            "trading_state": status.get("trading_state") if fresh else None,
            "total_asset": account.get("total_asset") if fresh else None,
            "today_pnl": account.get("today_pnl") if fresh else None,
            "positions_count": status.get("positions_count") if fresh else None,
            "pending_signals": status.get("pending_signals") if fresh else None,
            "market_time": (status.get("clock") or {}).get("time") if fresh else None,
            "data_source": (status.get("data_source") or {}).get("label") if fresh else None,
            "link": _link_state(connection) if fresh else None,
            "alarms": thread_alarms + ([child.alarm] if child.alarm else []),
        }


def _link_state(connection: dict) -> str:
    broker = connection.get("broker") or {}
    if broker.get("connected"):
        return "已连接"
    return broker.get("error") or "断开"


def _run_settings(spec: AccountSpec, shared: dict[str, Any]) -> dict[str, Any]:
    """What the supervisor decides for a child, on top of the settings shared by every child (the
    supervisor's own command-line overrides) and the account's own overrides."""
    run = {**shared, **spec.overrides, "ENABLE_SIMULATION_MODE": not spec.is_live, "WEB_HOST": "127.0.0.1",
           "WEB_REQUIRE_TOKEN_FOR_READS": True, "SUPERVISOR_PID": os.getpid()}
    if spec.account_config is not None:
        run["ACCOUNT_CONFIG_FILE"] = str(spec.account_config)
    return run


def _write_pool(child: AccountChild, shipped: Path) -> None:
    """An account's own stock pool from the accounts file, written into its data dir before it starts; without
    one, the account's pool file is seeded once from the shipped pool, as a single daemon's data dir is."""
    child.paths.data_dir.mkdir(parents=True, exist_ok=True)
    if child.spec.stock_pool:
        StockPool(child.paths.data_dir / "stock_pool.json").replace(child.spec.stock_pool)
    else:
        pool_file(None, str(child.paths.data_dir), shipped)
