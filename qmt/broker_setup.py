"""What every live back-end's `connect_live_broker` does around building its broker (miniQMT in easy_qmt_trader,
big QMT in bigqmt.broker, the remote gateway in gateway.client): use the daemon's trading database or open (and
then own) one, and connect, closing the half-built broker when that fails."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, TypeVar

from persistence.storage import Database

B = TypeVar("B")


def trading_db(data_dir: Path, db: Optional[Database]) -> tuple[Database, bool]:
    """The database the broker works on, and whether the broker owns it (opened here: it closes it)."""
    if db is not None:
        return db, False
    return Database(Path(data_dir) / "trading.db"), True


def connected(broker: B) -> B:
    """`broker` once its `connect()` succeeded; on any failure it is closed and the error propagates."""
    try:
        broker.connect()
    except BaseException:
        broker.close()
        raise
    return broker
