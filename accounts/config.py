"""The accounts file of the supervisor (`python main.py --accounts accounts.json`): which accounts run, each as
its own daemon process, and the checks that keep them apart (one data dir and one QMT session per child)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import config

ACCOUNT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
RESERVED_IDS = {"all"}  # `/api/accounts/all/...` addresses every account
MODES = ("simulation", "live")
KNOWN_FIELDS = {"id", "name", "mode", "account_config", "overrides", "stock_pool", "enabled", "auto_start"}


class AccountsFileError(ValueError):
    """The accounts file cannot be used; the message (Chinese) names the file and what to fix."""


@dataclass(frozen=True)
class AccountSpec:
    id: str
    name: str
    mode: str  # simulation | live
    account_config: Optional[Path] = None  # live accounts: the account_config.json of that QMT session
    overrides: dict[str, Any] = field(default_factory=dict)  # per-account parameters (validated like --set)
    stock_pool: tuple[str, ...] = ()  # empty: the child keeps its own pool file
    enabled: bool = True
    auto_start: bool = True

    @property
    def is_live(self) -> bool:
        return self.mode == "live"

    def data_dir(self, base: Path) -> Path:
        return base / "accounts" / self.id


def load_accounts(path: Path) -> list[AccountSpec]:
    """Parse and check the accounts file; AccountsFileError with a Chinese reason when it cannot be used."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise AccountsFileError(f"找不到账户文件 {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AccountsFileError(f"无法读取账户文件 {path}：{exc}") from None
    except json.JSONDecodeError as exc:
        raise AccountsFileError(f"账户文件 {path} 不是有效的 JSON（第 {exc.lineno} 行第 {exc.colno} 列）") from None
    items = raw.get("accounts") if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise AccountsFileError(f"账户文件 {path} 应为账户列表（或 {{\"accounts\": [...]}}），且至少有一个账户")
    base = Path(path).resolve().parent
    specs = [_parse_account(item, index, base, path) for index, item in enumerate(items, start=1)]
    _check_apart(specs, path)
    return specs


def _parse_account(item: Any, index: int, base: Path, path: Path) -> AccountSpec:
    where = f"账户文件 {path} 第 {index} 个账户"
    if not isinstance(item, dict):
        raise AccountsFileError(f"{where} 应为对象")
    unknown = sorted(set(item) - KNOWN_FIELDS)
    if unknown:
        raise AccountsFileError(f"{where} 有未知字段：{', '.join(unknown)}（可用：{', '.join(sorted(KNOWN_FIELDS))}）")
    account_id = item.get("id")
    if not isinstance(account_id, str) or not ACCOUNT_ID_PATTERN.match(account_id) or account_id in RESERVED_IDS:
        raise AccountsFileError(f"{where} 的 id 无效：{account_id!r}（小写字母、数字、- 和 _，最长 32 个字符，不能是 all）")
    where = f"账户文件 {path} 中的账户 {account_id}"
    name = item.get("name", account_id)
    if not isinstance(name, str) or not name.strip() or len(name) > 40:
        raise AccountsFileError(f"{where} 的 name 应为 1~40 个字符的文字")
    mode = item.get("mode", "simulation")
    if mode not in MODES:
        raise AccountsFileError(f"{where} 的 mode 应为 simulation（模拟）或 live（实盘），不是 {mode!r}")
    account_config = _account_config(item.get("account_config"), mode, base, where)
    overrides = _overrides(item.get("overrides", {}), where)
    pool = item.get("stock_pool", [])
    if not isinstance(pool, list) or not all(isinstance(code, str) for code in pool):
        raise AccountsFileError(f"{where} 的 stock_pool 应为股票代码列表")
    flags = {key: item.get(key, True) for key in ("enabled", "auto_start")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise AccountsFileError(f"{where} 的 {key} 应为 true 或 false")
    return AccountSpec(account_id, name.strip(), mode, account_config, overrides, tuple(pool), **flags)


def _account_config(value: Any, mode: str, base: Path, where: str) -> Optional[Path]:
    if mode != "live":
        if value:
            raise AccountsFileError(f"{where} 是模拟账户，不应配置 account_config")
        return None
    if not isinstance(value, str) or not value.strip():
        raise AccountsFileError(f"{where} 是实盘账户，必须指定 account_config（该资金账号的 account_config.json 路径）")
    resolved = (base / value).resolve()
    if not resolved.is_file():
        raise AccountsFileError(f"{where} 的 account_config 文件不存在：{resolved}")
    return resolved


# Parameters the supervisor decides for each child; an account may not set them itself.
SUPERVISOR_KEYS = {"ENABLE_SIMULATION_MODE", "WEB_HOST", "WEB_PORT", "WEB_API_TOKEN", "WEB_REQUIRE_TOKEN_FOR_READS",
                   "SUPERVISOR_PID"}


def _overrides(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AccountsFileError(f"{where} 的 overrides 应为 {{参数名: 值}}")
    reserved = sorted(set(value) & SUPERVISOR_KEYS)
    if reserved:
        raise AccountsFileError(f"{where} 的 overrides 不能设置 {', '.join(reserved)}（由多账户监管进程决定）")
    try:
        return config.coerce_all(value)
    except config.ConfigError as exc:
        details = "；".join(f"{k}：{v}" for k, v in exc.errors.items()) if exc.errors else str(exc)
        raise AccountsFileError(f"{where} 的 overrides 无效：{details}") from None


def _check_apart(specs: list[AccountSpec], path: Path) -> None:
    """Two children on one data dir or one QMT session would corrupt each other: refuse the file."""
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.id in seen:
            raise AccountsFileError(f"账户文件 {path} 中账户 id {spec.id} 重复（每个账户有自己的数据目录）")
        seen[spec.id] = spec.id
    sessions: dict[tuple[str, str], str] = {}
    for spec in specs:
        if not spec.is_live or not spec.enabled:
            continue
        key = _qmt_session(spec)
        if key in sessions:
            raise AccountsFileError(f"账户文件 {path} 中账户 {sessions[key]} 和 {spec.id} 使用同一个 miniQMT 资金账号和路径，"
                                    "两个进程不能共用一个 QMT 会话")
        sessions[key] = spec.id


def _qmt_session(spec: AccountSpec) -> tuple[str, str]:
    try:
        data = json.loads(spec.account_config.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise AccountsFileError(f"账户 {spec.id} 的 account_config 无法读取：{spec.account_config}（{exc}）") from None
    if not isinstance(data, dict):
        raise AccountsFileError(f"账户 {spec.id} 的 account_config 应为 JSON 对象：{spec.account_config}")
    return str(data.get("account_id", "")).strip(), str(data.get("qmt_path", "")).strip().replace("\\", "/").lower()
