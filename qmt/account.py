"""The live account's settings: `account_config.json` (account id, type, miniQMT userdata_mini path, price
type), detection of the userdata_mini folder among common install folders, and masking of the account id."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from core.models import BrokerUnavailable

ACCOUNT_TYPES = ("STOCK",)  # credit accounts need credit order types; not supported
PRICE_TYPES = {
    "limit": "限价委托（默认）",
    "best5_cancel": "最优五档即时成交剩余撤销（沪深市价，委托价作保护价）",
}
PLACEHOLDER_IDS = ("", "你的资金账号")
DRIVES = ("C:/", "D:/", "E:/")
# Folder names brokers' miniQMT installers use (the user may also name it freely: see the glob below).
BROKER_FOLDERS = (
    "国金证券QMT交易端", "国金QMT交易端模拟", "国盛证券QMT交易端", "华鑫证券QMT交易端", "中航证券QMT实盘-交易端",
    "光大证券金阳光QMT实盘", "东莞证券QMT交易端", "湘财证券QMT交易端", "迅投极速交易终端 睿智融科版",
    "迅投QMT交易端", "QMT", "qmt", "miniQMT",
)
USERDATA = "userdata_mini"


@dataclass(frozen=True)
class AccountConfig:
    account_id: str
    account_type: str = "STOCK"
    qmt_path: str = ""
    price_type: str = "limit"

    @property
    def masked_id(self) -> str:
        return mask_account_id(self.account_id)


def mask_account_id(account_id: str) -> str:
    """'8800123456' -> '88******56': enough to tell accounts apart in a log, not enough to use one."""
    text = str(account_id)
    if len(text) <= 4:
        return "*" * len(text)
    return text[:2] + "*" * (len(text) - 4) + text[-2:]


def load_account_config(path: Path) -> AccountConfig:
    """Read and check account_config.json; every problem is a BrokerUnavailable with a Chinese message."""
    if not path.is_file():
        raise BrokerUnavailable("ACCOUNT_CONFIG_MISSING",
                                f"找不到实盘账户配置 {path}：请复制 account_config.json.example 为 account_config.json "
                                "并填写资金账号（account_id）、账号类型（account_type）和 miniQMT 路径（qmt_path）")
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BrokerUnavailable("ACCOUNT_CONFIG_INVALID", f"实盘账户配置 {path} 无法读取或不是合法 JSON：{exc}") from exc
    if not isinstance(raw, dict):
        raise BrokerUnavailable("ACCOUNT_CONFIG_INVALID", f"实盘账户配置 {path} 应是一个 JSON 对象")
    account_id = str(raw.get("account_id", "")).strip()
    if account_id in PLACEHOLDER_IDS:
        raise BrokerUnavailable("ACCOUNT_ID_MISSING", f"请在 {path} 中填写资金账号 account_id")
    account_type = str(raw.get("account_type", "STOCK")).strip().upper()
    if account_type not in ACCOUNT_TYPES:
        raise BrokerUnavailable("ACCOUNT_TYPE_UNSUPPORTED",
                                f"不支持的账号类型 {account_type}：目前只支持普通股票账户 STOCK")
    price_type = str(raw.get("price_type", "limit")).strip()
    if price_type not in PRICE_TYPES:
        choices = "、".join(f"{k}（{v}）" for k, v in PRICE_TYPES.items())
        raise BrokerUnavailable("PRICE_TYPE_INVALID", f"不支持的报价方式 price_type={price_type}，可选：{choices}")
    return AccountConfig(account_id, account_type, str(raw.get("qmt_path", "")).strip(), price_type)


def default_qmt_candidates(drives: Sequence[str] = DRIVES) -> list[Path]:
    """Common userdata_mini locations: known broker folder names, then any folder with 'QMT' in its name."""
    candidates: list[Path] = []
    for drive in drives:
        root = Path(drive)
        candidates += [root / name / USERDATA for name in BROKER_FOLDERS]
        try:
            candidates += sorted(p / USERDATA for p in root.iterdir() if "qmt" in p.name.lower() and p.is_dir())
        except OSError:
            continue  # no such drive
    return list(dict.fromkeys(candidates))


def resolve_qmt_path(configured: str, candidates: Optional[Iterable[Path]] = None) -> Path:
    """The userdata_mini folder to use: the configured one (its userdata_mini subfolder when it is the install
    folder), else the first existing common location. Raises BrokerUnavailable naming every path tried."""
    tried: list[Path] = []
    if configured:
        path = Path(configured)
        for option in (path / USERDATA, path):
            tried.append(option)
            if option.is_dir():
                return option
    for option in default_qmt_candidates() if candidates is None else candidates:
        tried.append(option)
        if option.is_dir():
            return option
    listed = "\n  ".join(str(p) for p in dict.fromkeys(tried))
    raise BrokerUnavailable(
        "QMT_PATH_NOT_FOUND",
        "找不到 miniQMT 的 userdata_mini 目录。请在 account_config.json 的 qmt_path 中填写它的完整路径"
        f"（例如 C:/国金证券QMT交易端/userdata_mini）。已尝试：\n  {listed}")
