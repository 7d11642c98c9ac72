"""A position's rule state corrected by hand (issue 17): validation of an edit of highest price, first take-profit
flag, base cost, used add levels and open date; positions found at the broker (not opened by the daemon) stay
「待确认」 (table `position_reviews`) until the operator confirms their state. Applying the edit and journaling it
are the caller's (the web route); the position table is the position manager's."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any, Mapping, Optional

from core.models import Position, TradingError
from persistence.storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS position_reviews (
        stock_code TEXT PRIMARY KEY, found_at TEXT NOT NULL, highest_source TEXT NOT NULL,
        confirmed_at TEXT, confirmed_by TEXT NOT NULL DEFAULT '')
    """,
)

STATE_FIELDS = ("highest_price", "profit_triggered", "base_cost_price", "used_add_levels", "open_date")
HIGHEST_SOURCES = {
    "daily_bars": "开仓日以来日线最高价",
    "cost_or_price": "成本价与现价的较高者（券商未提供开仓日）",
    "operator": "人工设置",
}


class InvalidPositionState(TradingError):
    def __init__(self, message: str):
        super().__init__("INVALID_POSITION_STATE", message)


@dataclass(frozen=True)
class StateEdit:
    """The validated new values (only the fields that change) and where the highest price comes from."""

    changes: dict[str, Any]
    highest_source: str = ""
    confirm: bool = False


def parse_state_edit(body: Any, position: Position, add_levels: tuple[float, ...], today: date,
                     bars_high_since: Optional[float] = None) -> StateEdit:
    """Validate an edit of `position`'s rule state against its effective add levels. `bars_high_since` is the
    highest daily high since the (new) open date, used when the open date changes and no highest is given."""
    if not isinstance(body, Mapping):
        raise InvalidPositionState("请求体必须是 JSON 对象")
    unknown = sorted(set(body) - set(STATE_FIELDS) - {"confirm"})
    if unknown:
        raise InvalidPositionState(f"包含未知字段：{', '.join(map(str, unknown))}")
    new: dict[str, Any] = {}
    if "profit_triggered" in body:
        if not isinstance(body["profit_triggered"], bool):
            raise InvalidPositionState("profit_triggered 必须是 true 或 false")
        new["profit_triggered"] = body["profit_triggered"]
    if "base_cost_price" in body:
        new["base_cost_price"] = _price(body["base_cost_price"], "基准成本价 base_cost_price")
    if "open_date" in body:
        raw = body["open_date"]
        try:
            day = date.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            day = None
        if day is None:
            raise InvalidPositionState(f"开仓日期 open_date 必须是 YYYY-MM-DD：{raw!r}")
        if day > today:
            raise InvalidPositionState(f"开仓日期 {day} 晚于今天 {today}")
        new["open_date"] = day
    if "used_add_levels" in body:
        new["used_add_levels"] = _levels(body["used_add_levels"], add_levels)
    source = ""
    if "highest_price" in body:
        new["highest_price"] = _price(body["highest_price"], "最高价 highest_price")
        source = "operator"
    elif "open_date" in body and bars_high_since is not None:
        new["highest_price"] = round(max(bars_high_since, position.current_price or 0.0), 3)
        source = "daily_bars"
    floor = min(position.cost_price, new.get("base_cost_price", position.base_cost_price))
    highest = new.get("highest_price", position.highest_price)
    if "highest_price" in new and highest < round(floor, 3) - 1e-9:
        raise InvalidPositionState(f"最高价 {highest:g} 低于成本价/基准成本价 {floor:.3f}：开仓以来的最高价不会低于买入价")
    confirm = body.get("confirm", False)
    if not isinstance(confirm, bool):
        raise InvalidPositionState("confirm 必须是 true 或 false")
    changes = {k: v for k, v in new.items() if getattr(position, k) != v}
    if not changes and not confirm:
        raise InvalidPositionState("没有要修改的持仓状态")
    return StateEdit(changes, source, confirm)


def state_view(position: Position) -> dict[str, Any]:
    return {"highest_price": position.highest_price, "profit_triggered": position.profit_triggered,
            "base_cost_price": position.base_cost_price, "used_add_levels": list(position.used_add_levels),
            "open_date": position.open_date.isoformat() if position.open_date else None}


class PositionReviews:
    """Which positions were found at the broker and still wait for the operator's confirmation."""

    def __init__(self, db: Database, clock):
        self._db = db
        self._clock = clock
        migrate(db, "position_reviews", MIGRATIONS)

    def found(self, code: str, highest_source: str) -> None:
        """A position the daemon did not open; replaces an older record (a new episode found again)."""
        self._db.execute("INSERT OR REPLACE INTO position_reviews(stock_code, found_at, highest_source) VALUES(?,?,?)",
                         (code, self._clock.now().isoformat(timespec="seconds"), highest_source))

    def confirm(self, code: str, by: str = "web") -> None:
        self._db.execute("UPDATE position_reviews SET confirmed_at=?, confirmed_by=? WHERE stock_code=?",
                         (self._clock.now().isoformat(timespec="seconds"), by, code))

    def set_highest_source(self, code: str, source: str) -> None:
        self._db.execute("UPDATE position_reviews SET highest_source=? WHERE stock_code=?", (source, code))

    def get(self, code: str) -> Optional[dict[str, Any]]:
        row = self._db.query_one("SELECT * FROM position_reviews WHERE stock_code=?", (code,))
        if row is None:
            return None
        pending = row["confirmed_at"] is None
        return {"pending": pending, "label": "待确认" if pending else "已确认", "found_at": row["found_at"],
                "confirmed_at": row["confirmed_at"], "highest_source": row["highest_source"],
                "highest_source_label": HIGHEST_SOURCES.get(row["highest_source"], row["highest_source"])}

    def pending_codes(self) -> list[str]:
        return [r["stock_code"] for r in self._db.query(
            "SELECT stock_code FROM position_reviews WHERE confirmed_at IS NULL ORDER BY stock_code")]


def _price(raw: Any, label: str) -> float:
    try:  # a JSON integer may be too large for a float
        value = float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else math.nan
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or value <= 0:
        raise InvalidPositionState(f"{label} 必须是大于 0 的数字")
    return value


def _levels(raw: Any, add_levels: tuple[float, ...]) -> tuple[int, ...]:
    if not isinstance(raw, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in raw):
        raise InvalidPositionState("used_add_levels 必须是补仓档位序号（整数）列表")
    for index in raw:
        if not 0 <= index < len(add_levels):
            raise InvalidPositionState(f"补仓档位序号 {index} 不存在：当前档位为 "
                                       f"{', '.join(f'{i}={level:g}' for i, level in enumerate(add_levels))}")
    if len(set(raw)) != len(raw):
        raise InvalidPositionState("used_add_levels 有重复的档位")
    return tuple(sorted(raw))
