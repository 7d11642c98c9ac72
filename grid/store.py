"""Persistence of grid sessions (`grid_sessions`) and their fills (`grid_trades`) in the trading db: a
session's parameters, callback watch, book and open order survive restarts; a fill and the session's new
book are written in one transaction and a fill id is recorded once."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any, Optional

from grid.rules import GridBook, GridEndReason, GridParams, GridState, GridStatus, GridWatch, cents
from core.models import Rule, Side
from market import ex_rights
from market.ex_rights import CorporateAction
from persistence.storage import Database, migrate

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS grid_sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, stock_code TEXT NOT NULL, status TEXT NOT NULL,
        end_reason TEXT, end_message TEXT NOT NULL DEFAULT '', origin TEXT NOT NULL DEFAULT 'manual',
        created_at TEXT NOT NULL, start_date TEXT NOT NULL, ended_at TEXT,
        center_price REAL NOT NULL, step_ratio REAL NOT NULL, buy_amount REAL NOT NULL,
        callback_ratio REAL NOT NULL, max_investment REAL NOT NULL, take_profit_ratio REAL NOT NULL,
        stop_loss_ratio REAL NOT NULL, max_hold_days INTEGER NOT NULL, max_deviation REAL NOT NULL,
        reference_price REAL NOT NULL, watch_low REAL, watch_high REAL, last_fill_time TEXT,
        net_volume INTEGER NOT NULL DEFAULT 0, open_cost REAL NOT NULL DEFAULT 0,
        realized_pnl REAL NOT NULL DEFAULT 0, fees REAL NOT NULL DEFAULT 0,
        buy_count INTEGER NOT NULL DEFAULT 0, sell_count INTEGER NOT NULL DEFAULT 0,
        bought_volume INTEGER NOT NULL DEFAULT 0, sold_volume INTEGER NOT NULL DEFAULT 0,
        pending_signal_id INTEGER, open_order_id TEXT NOT NULL DEFAULT '', last_price REAL NOT NULL DEFAULT 0);
    CREATE INDEX IF NOT EXISTS idx_grid_sessions_code ON grid_sessions(stock_code, status);
    CREATE TABLE IF NOT EXISTS grid_trades (
        id INTEGER PRIMARY KEY AUTOINCREMENT, session_id INTEGER NOT NULL REFERENCES grid_sessions(id),
        fill_id TEXT NOT NULL UNIQUE, order_id TEXT NOT NULL, stock_code TEXT NOT NULL, side TEXT NOT NULL,
        rule TEXT NOT NULL, price REAL NOT NULL, volume INTEGER NOT NULL, amount REAL NOT NULL,
        fees REAL NOT NULL, time TEXT NOT NULL, net_volume_after INTEGER NOT NULL,
        realized_pnl_after REAL NOT NULL);
    CREATE INDEX IF NOT EXISTS idx_grid_trades_session ON grid_trades(session_id, id)
    """,
    # issue 28: the ex-rights events already applied to a session (once each, with the session's new prices)
    """
    CREATE TABLE IF NOT EXISTS grid_ex_rights (
        key TEXT NOT NULL, session_id INTEGER NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (key, session_id))
    """,
)


@dataclass(frozen=True)
class GridTrade:
    """One fill of a grid order, with the grid's net shares and realized P&L after it."""

    id: int
    session_id: int
    fill_id: str
    order_id: str  # our client order id
    stock_code: str
    side: Side
    rule: Rule
    price: float
    volume: int
    amount: float
    fees: float
    time: datetime
    net_volume_after: int
    realized_pnl_after: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "session_id": self.session_id, "fill_id": self.fill_id, "order_id": self.order_id,
                "stock_code": self.stock_code, "side": self.side.value, "side_label": self.side.label,
                "rule": self.rule.value, "strategy": self.rule.value, "rule_label": self.rule.label,
                "price": self.price, "volume": self.volume, "amount": self.amount, "fees": self.fees,
                "time": self.time.isoformat(timespec="seconds"), "net_volume_after": self.net_volume_after,
                "realized_pnl_after": self.realized_pnl_after}


@dataclass
class SessionRow:
    """The stored state of one session (mutable; owned by the GridManager under its lock)."""

    stock_code: str
    params: GridParams
    center_price: float
    state: GridState
    created_at: datetime
    start_date: date
    status: GridStatus = GridStatus.ACTIVE
    end_reason: Optional[GridEndReason] = None
    end_message: str = ""
    ended_at: Optional[datetime] = None
    pending_signal_id: Optional[int] = None
    open_order_id: str = ""
    last_price: float = 0.0
    origin: str = "manual"  # 'manual' (web) | 'take_profit' (auto-start after the first take-profit)
    id: Optional[int] = None


class GridStore:
    def __init__(self, db: Database):
        self._db = db
        self.version = 0  # grows with every write: lets the web push a new snapshot when something changed
        migrate(db, "grid_trading", MIGRATIONS)

    def create(self, row: SessionRow) -> SessionRow:
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO grid_sessions(stock_code, status, origin, created_at, start_date, center_price,"
                " step_ratio, buy_amount, callback_ratio, max_investment, take_profit_ratio, stop_loss_ratio,"
                " max_hold_days, max_deviation, reference_price) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (row.stock_code, row.status.value, row.origin, row.created_at.isoformat(), row.start_date.isoformat(),
                 row.center_price, row.params.step_ratio, row.params.buy_amount, row.params.callback_ratio,
                 row.params.max_investment, row.params.take_profit_ratio, row.params.stop_loss_ratio,
                 row.params.max_hold_days, row.params.max_deviation, row.state.reference_price))
            row.id = cursor.lastrowid
            self._update(conn, row)
        self.version += 1
        return row

    def save(self, row: SessionRow) -> None:
        with self._db.transaction() as conn:
            self._update(conn, row)
        self.version += 1

    def has_trade(self, fill_id: str) -> bool:
        return self._db.query_one("SELECT 1 FROM grid_trades WHERE fill_id=?", (fill_id,)) is not None

    def add_trade(self, row: SessionRow, trade: GridTrade) -> Optional[GridTrade]:
        """Record `trade` and the session's new state together; None if the fill was recorded before."""
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM grid_trades WHERE fill_id=?", (trade.fill_id,)).fetchone():
                return None
            cursor = conn.execute(
                "INSERT INTO grid_trades(session_id, fill_id, order_id, stock_code, side, rule, price, volume, amount,"
                " fees, time, net_volume_after, realized_pnl_after) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (row.id, trade.fill_id, trade.order_id, trade.stock_code, trade.side.value, trade.rule.value,
                 trade.price, trade.volume, trade.amount, trade.fees, trade.time.isoformat(), trade.net_volume_after,
                 trade.realized_pnl_after))
            self._update(conn, row)
        self.version += 1
        return GridTrade(**{**trade.__dict__, "id": cursor.lastrowid, "session_id": row.id})

    def apply_ex_rights(self, row: SessionRow, action: CorporateAction, factor: float) -> Optional[dict]:
        """issue 28: scale the session's prices (centre, reference = the last grid fill, callback watch, last
        price) by the event's factor and its net shares and their cost by the event, before the ex-date's open;
        written with the event's marker, once per session. Returns the old → new prices, None if done before."""
        with self._db.transaction() as conn:
            if conn.execute("SELECT 1 FROM grid_ex_rights WHERE key=? AND session_id=?",
                            (action.key, row.id)).fetchone():
                return None
            detail = adjust_session(row, action, factor)
            conn.execute("UPDATE grid_sessions SET center_price=? WHERE id=?", (row.center_price, row.id))
            self._update(conn, row)
            conn.execute("INSERT INTO grid_ex_rights(key, session_id, detail) VALUES(?,?,?)",
                         (action.key, row.id, json.dumps(detail)))
        self.version += 1
        return detail

    def load(self) -> list[SessionRow]:
        return [_to_row(r) for r in self._db.query("SELECT * FROM grid_sessions ORDER BY id")]

    def trades(self, session_id: int) -> list[GridTrade]:
        rows = self._db.query("SELECT * FROM grid_trades WHERE session_id=? ORDER BY id", (session_id,))
        return [_to_trade(r) for r in rows]

    @staticmethod
    def _update(conn, row: SessionRow) -> None:
        s, b = row.state, row.state.book
        conn.execute(
            "UPDATE grid_sessions SET status=?, end_reason=?, end_message=?, ended_at=?, reference_price=?,"
            " watch_low=?, watch_high=?, last_fill_time=?, net_volume=?, open_cost=?, realized_pnl=?, fees=?,"
            " buy_count=?, sell_count=?, bought_volume=?, sold_volume=?, pending_signal_id=?, open_order_id=?,"
            " last_price=? WHERE id=?",
            (row.status.value, row.end_reason.value if row.end_reason else None, row.end_message,
             row.ended_at.isoformat() if row.ended_at else None, s.reference_price, s.watch.low, s.watch.high,
             s.last_fill_time.isoformat() if s.last_fill_time else None, b.net_volume, b.open_cost, b.realized_pnl,
             b.fees, b.buy_count, b.sell_count, b.bought_volume, b.sold_volume, row.pending_signal_id,
             row.open_order_id, row.last_price, row.id))


def adjust_session(row: SessionRow, action: CorporateAction, factor: float) -> dict:
    """The session's prices × factor and its book through the event (in place); the old → new values."""
    state, book = row.state, row.state.book
    before = {"center_price": row.center_price, "reference_price": state.reference_price,
              "watch_low": state.watch.low, "watch_high": state.watch.high, "net_volume": book.net_volume}
    new_book = book
    if book.net_volume > 0:  # shares the grid bought get their bonus shares; their cost loses the cash paid
        change = ex_rights.holding_change(book.net_volume, book.open_cost, action)
        new_book = replace(book, net_volume=change.volume_after, open_cost=change.cost_amount_after)
    row.center_price = ex_rights.adjust_level(row.center_price, factor)
    row.last_price = ex_rights.adjust_level(row.last_price, factor)
    row.state = replace(state, reference_price=ex_rights.adjust_level(state.reference_price, factor),
                        watch=GridWatch(ex_rights.adjust_level(state.watch.low, factor),
                                        ex_rights.adjust_level(state.watch.high, factor)), book=new_book)
    after = {"center_price": row.center_price, "reference_price": row.state.reference_price,
             "watch_low": row.state.watch.low, "watch_high": row.state.watch.high,
             "net_volume": new_book.net_volume}
    return {"session_id": row.id, "factor": factor, **{k: [before[k], after[k]] for k in before}}


def _to_row(r) -> SessionRow:
    params = GridParams(r["step_ratio"], r["buy_amount"], r["callback_ratio"], r["max_investment"],
                        r["take_profit_ratio"], r["stop_loss_ratio"], r["max_hold_days"], r["max_deviation"])
    book = GridBook(r["net_volume"], r["open_cost"], r["realized_pnl"], r["fees"], r["buy_count"], r["sell_count"],
                    r["bought_volume"], r["sold_volume"])
    state = GridState(r["reference_price"], GridWatch(r["watch_low"], r["watch_high"]), book,
                      _time(r["last_fill_time"]))
    return SessionRow(
        stock_code=r["stock_code"], params=params, center_price=r["center_price"], state=state,
        created_at=datetime.fromisoformat(r["created_at"]), start_date=date.fromisoformat(r["start_date"]),
        status=GridStatus(r["status"]), end_reason=GridEndReason(r["end_reason"]) if r["end_reason"] else None,
        end_message=r["end_message"], ended_at=_time(r["ended_at"]), pending_signal_id=r["pending_signal_id"],
        open_order_id=r["open_order_id"], last_price=r["last_price"], origin=r["origin"], id=r["id"])


def _to_trade(r) -> GridTrade:
    return GridTrade(id=r["id"], session_id=r["session_id"], fill_id=r["fill_id"], order_id=r["order_id"],
                     stock_code=r["stock_code"], side=Side(r["side"]), rule=Rule(r["rule"]), price=r["price"],
                     volume=r["volume"], amount=r["amount"], fees=r["fees"], time=datetime.fromisoformat(r["time"]),
                     net_volume_after=r["net_volume_after"], realized_pnl_after=cents(r["realized_pnl_after"]))


def _time(text: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(text) if text else None
