"""Which market a simulated account trades (demo seed, replay folder, real-time data), recorded in its own
database so that it is never started on another market, and `reset_sim_account`, which archives the old
database before a fresh account begins. The data source itself is data_manager's; this only names it."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Callable, Optional

from core.models import TradingError
from persistence.storage import Database, migrate

log = logging.getLogger(__name__)

SIM_DB_NAME = "sim_trading.db"
ARCHIVE_DIR_NAME = "archive"
RESET_FLAG = "--reset-sim-account"

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS account_market (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        identity TEXT NOT NULL, label TEXT NOT NULL, bound_at TEXT NOT NULL)
    """,
)


@dataclass(frozen=True)
class MarketIdentity:
    """`identity` is compared (stable across runs); `label` is what a person reads."""

    identity: str
    label: str


def market_identity(source_name: str, settings) -> MarketIdentity:
    """The market of a data source: the demo market by its seed, a replay folder by its absolute path,
    real-time sources (xtquant, mootdx) as the one live market."""
    if source_name == "synthetic":
        seed = int(settings.get("SYNTHETIC_SEED"))
        return MarketIdentity(f"demo:{seed}", f"演示行情（种子 {seed}）")
    if source_name == "replay":
        folder = Path(str(settings.get("REPLAY_DATA_DIR"))).resolve()
        return MarketIdentity(f"replay:{folder.as_posix()}", f"回放行情（{folder}）")
    return MarketIdentity("live", "实时行情")


class AccountMismatch(TradingError):
    """The account's database was made on another market."""


def bind_account(db: Database, current: MarketIdentity, data_dir: Path,
                 now: Callable[[], datetime] = datetime.now) -> MarketIdentity:
    """Record `current` for a new account, or refuse one bound to another market. An account that already
    traded but has no record (made before this check existed) is bound to the current market."""
    migrate(db, "account_market", MIGRATIONS)
    row = db.query_one("SELECT identity, label FROM account_market WHERE id=1")
    if row is None:
        with db.transaction() as conn:
            conn.execute("INSERT INTO account_market(id, identity, label, bound_at) VALUES(1,?,?,?)",
                         (current.identity, current.label, now().isoformat(timespec="seconds")))
        return current
    bound = MarketIdentity(row["identity"], row["label"])
    if bound.identity != current.identity:
        raise AccountMismatch(
            "ACCOUNT_MARKET_MISMATCH",
            f"数据目录 {Path(data_dir).resolve()} 中的模拟账户属于「{bound.label}」，本次行情是"
            f"「{current.label}」，拒绝在另一个市场上启动这个账户（两个市场的价格不能混在一起）。可选：换一个数据目录"
            f"（--data-dir 其他目录），或用 {RESET_FLAG} 先归档旧的模拟账户数据库再从新账户开始")
    return bound


def last_trade_day(db: Database) -> Optional[date]:
    """The trading day of the account's latest trade record (None without any): a replay resumes after it."""
    try:
        row = db.query_one("SELECT MAX(trading_day) AS day FROM trade_records")
    except Exception:  # no trade_records table yet: a brand-new account
        return None
    return date.fromisoformat(row["day"]) if row and row["day"] else None


def reset_sim_account(data_dir: Path, now: Callable[[], datetime] = datetime.now) -> Optional[Path]:
    """Move the simulated account's database (with its WAL/SHM side files) to `<data_dir>/archive/` under a
    time-stamped name and return the archived path; None when there was no database. The daemon must not
    have the database open (main.py calls this under the instance lock, before building anything)."""
    data_dir = Path(data_dir)
    db_path = data_dir / SIM_DB_NAME
    if not db_path.exists():
        for side in _side_files(db_path):
            side.unlink(missing_ok=True)
        return None
    archive = data_dir / ARCHIVE_DIR_NAME
    archive.mkdir(parents=True, exist_ok=True)
    stamp = now().strftime("%Y%m%d-%H%M%S")
    target = archive / f"sim_trading-{stamp}.db"
    counter = 1
    while target.exists():
        target = archive / f"sim_trading-{stamp}-{counter}.db"
        counter += 1
    shutil.move(str(db_path), str(target))
    for side in _side_files(db_path):
        if side.exists():
            shutil.move(str(side), str(target) + side.name[len(db_path.name):])
    log.warning("已归档旧的模拟账户数据库：%s → %s", db_path, target)
    return target


def _side_files(db_path: Path) -> list[Path]:
    return [db_path.with_name(db_path.name + suffix) for suffix in ("-wal", "-shm")]


def account_guard(db: Database, settings, data_dir: Path) -> Callable[[str], Optional[date]]:
    """The check build_data_manager runs once it knows the source: bind (or refuse) the account's market and
    answer the account's last trading day."""
    def guard(source_name: str) -> Optional[date]:
        bind_account(db, market_identity(source_name, settings), data_dir)
        return last_trade_day(db)
    return guard
