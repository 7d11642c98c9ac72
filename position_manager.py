"""The in-memory position table shared by the threads (same columns as the SQLite `positions` table):
fills, prices, rule state and T+1 availability, persisted to the trading db. Detecting signals is the
monitor's job (core/position_monitor.py), not this module's."""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable, Iterable, Optional

import market_rules
from core.models import BrokerPosition, Fill, Position, Rule, Side
from market import ex_rights
from market.ex_rights import CorporateAction
from persistence.storage import Database, migrate

log = logging.getLogger(__name__)

MIGRATIONS = (
    """
    CREATE TABLE IF NOT EXISTS positions (
        stock_code TEXT PRIMARY KEY, stock_name TEXT NOT NULL DEFAULT '',
        volume INTEGER NOT NULL, available INTEGER NOT NULL,
        cost_price REAL NOT NULL, base_cost_price REAL NOT NULL,
        current_price REAL NOT NULL DEFAULT 0, market_value REAL NOT NULL DEFAULT 0,
        profit_ratio REAL NOT NULL DEFAULT 0, last_update TEXT, open_date TEXT,
        profit_triggered INTEGER NOT NULL DEFAULT 0, highest_price REAL NOT NULL DEFAULT 0,
        stop_loss_price REAL NOT NULL DEFAULT 0, used_add_levels TEXT NOT NULL DEFAULT '[]',
        cost_amount REAL NOT NULL DEFAULT 0, frozen INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE IF NOT EXISTS position_fills (
        fill_id TEXT PRIMARY KEY, stock_code TEXT NOT NULL, side TEXT NOT NULL, volume INTEGER NOT NULL,
        price REAL NOT NULL, realized_pnl REAL, applied_at TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS position_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)
    """,
)

# cost_price is the exact average (cost basis / volume, not rounded: the rules compare prices with it and the
# backtest uses the same exact value); the cost basis in cents (`cost_amount`) makes realized P&L exact.
CENTS = Decimal("0.01")


@dataclass(frozen=True)
class BookedFill:
    """What one fill did to the table. `realized_pnl` (sells: proceeds − sell fees − the cost basis of the
    sold shares) is None for buys and for sells of a position the table did not know."""

    position: Position  # after the fill; volume 0 when it closed the episode
    realized_pnl: Optional[float]
    duplicate: bool  # the fill id had been applied before: nothing changed


@dataclass
class _Holding:
    position: Position
    cost_amount: float  # total cost basis in CNY including buy fees (reduced pro rata by sells)
    frozen: int = 0  # shares reserved by open sell orders (already taken out of `available`)


class PositionManager:
    """Thread-safe position table. Lock order: callers may hold their own locks when calling in; this class
    holds only its own lock and then the db lock, and never calls out while holding them."""

    def __init__(self, db: Database, settings, clock, mode: str):
        self._db = db
        self._settings = settings
        self._clock = clock
        self.mode = mode
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._holdings: dict[str, _Holding] = {}
        self._dirty: set[str] = set()
        self._missing: dict[str, int] = {}  # code → consecutive broker answers without it (issue 13)
        self.data_version = 0
        # issue 28: the ex-rights events of a day, asked at the day roll (before any read of the new day)
        self._ex_rights_source: Optional[Callable[[list[str], Optional[date], date], list[CorporateAction]]] = None
        self._ex_today: dict[str, tuple[date, float]] = {}  # code → (ex-date, factor) of the events applied
        self._ex_cost_kept: set[tuple[str, date]] = set()  # (code, ex-date) whose stale broker cost was reported
        migrate(db, "position_manager", MIGRATIONS)
        self._rolled_day = self._load()

    # ---- reading
    def get(self, code: str) -> Optional[Position]:
        """A copy of the position, or None when not held."""
        with self._lock:
            self._roll_if_new_day()
            holding = self._holdings.get(code)
            return holding.position.copy() if holding else None

    def all(self) -> list[Position]:
        with self._lock:
            self._roll_if_new_day()
            return [self._holdings[code].position.copy() for code in sorted(self._holdings)]

    def frozen(self, code: str) -> int:
        """Shares of `code` reserved by open sell orders."""
        with self._lock:
            holding = self._holdings.get(code)
            return holding.frozen if holding else 0

    def cost_amount(self, code: str) -> float:
        """Exact cost basis (CNY, incl. buy fees) of the shares held."""
        with self._lock:
            holding = self._holdings.get(code)
            return holding.cost_amount if holding else 0.0

    def wait_for_change(self, seen_version: int, timeout: float) -> int:
        """Block until `data_version` differs from `seen_version` or `timeout` seconds pass; return it."""
        with self._changed:
            self._changed.wait_for(lambda: self.data_version != seen_version, timeout=max(0.0, timeout))
            return self.data_version

    # ---- fills
    def apply_fill(self, fill: Fill, rule: Rule, name: str = "") -> Position:
        return self.book_fill(fill, rule, name).position

    def book_fill(self, fill: Fill, rule: Rule, name: str = "") -> BookedFill:
        """Apply one fill exactly once (keyed by fill id, persisted in the same transaction as the row)."""
        with self._lock:
            self._roll_if_new_day()
            done = self._db.query_one("SELECT realized_pnl FROM position_fills WHERE fill_id=?", (fill.fill_id,))
            if done is not None:
                return BookedFill(self._snapshot(fill.stock_code), done["realized_pnl"], True)
            if fill.side is Side.BUY:
                holding, realized = self._book_buy(fill), None
            else:
                holding, realized = self._book_sell(fill)
                if holding is not None and rule is Rule.TAKE_PROFIT:
                    holding.position.profit_triggered = True  # set by the fill, never by sending (issue 25)
            if holding is not None and name:
                holding.position.stock_name = name
            applied_at = self._clock.now().isoformat(sep=" ")
            try:
                with self._db.transaction() as conn:
                    conn.execute("INSERT INTO position_fills(fill_id, stock_code, side, volume, price, realized_pnl,"
                                 " applied_at) VALUES(?,?,?,?,?,?,?)",
                                 (fill.fill_id, fill.stock_code, fill.side.value, fill.volume, fill.price, realized,
                                  applied_at))
                    self._write_or_delete(conn, fill.stock_code, holding)
            except BaseException:
                self._reload()  # memory must not run ahead of what was committed
                raise
            self._dirty.discard(fill.stock_code)
            self._bump()
            log.debug("持仓记账 %s %s %d 股 @ %.3f（%s）", fill.stock_code, fill.side.label, fill.volume, fill.price,
                      rule.label)
            return BookedFill(holding.position.copy() if holding else Position(fill.stock_code), realized, False)

    # ---- sell-order reservations (QMT semantics: `available` excludes shares in open sell orders)
    def reserve(self, code: str, volume: int) -> None:
        with self._lock:
            self._roll_if_new_day()
            holding = self._holdings.get(code)
            if holding is None or volume <= 0:
                return
            taken = min(volume, holding.position.available)
            holding.position.available -= taken
            holding.frozen += taken
            self._touch(code)

    def release(self, code: str, volume: int) -> None:
        """Give back shares of a sell order that ended unfilled (cancelled or rejected)."""
        with self._lock:
            self._roll_if_new_day()
            holding = self._holdings.get(code)
            if holding is None or volume <= 0:
                return
            back = min(volume, holding.frozen)
            holding.frozen -= back
            holding.position.available = min(holding.position.volume, holding.position.available + back)
            self._touch(code)

    def reset_reservations(self, frozen_by_code: dict[str, int]) -> None:
        """Start-up: reservations = the open sell orders of the journal (the broker's `available` already
        excludes them, so `available` is not changed)."""
        with self._lock:
            for code, holding in self._holdings.items():
                wanted = min(frozen_by_code.get(code, 0), holding.position.volume)
                if holding.frozen != wanted:
                    holding.frozen = wanted
                    self._touch(code)

    # ---- prices and rule state
    def update_price(self, code: str, price: float, when: datetime, name: str = "") -> Optional[Position]:
        """New market price: current price, market value, profit ratio, highest price of the episode."""
        with self._lock:
            holding = self._holdings.get(code)
            if holding is None:
                return None
            p = holding.position
            before = (p.current_price, p.highest_price, p.stock_name)
            p.current_price = price
            p.market_value = _cents(price * p.volume)
            p.profit_ratio = _profit_ratio(price, p.cost_price)
            p.highest_price = max(p.highest_price, price)
            p.last_update = when
            if name:
                p.stock_name = name
            if (p.current_price, p.highest_price, p.stock_name) != before:
                self._touch(code)
            return p.copy()

    def set_stop_loss_price(self, code: str, price: float) -> None:
        self._change_rule_state(code, stop_loss_price=float(price))

    def mark_profit_triggered(self, code: str, triggered: bool = True) -> None:
        """`triggered=False` undoes a mark whose order was refused before it reached the broker."""
        self._change_rule_state(code, profit_triggered=bool(triggered))

    def mark_add_level_used(self, code: str, index: int, used: bool = True) -> None:
        with self._lock:
            holding = self._holdings.get(code)
            if holding is None:
                return
            levels = set(holding.position.used_add_levels)
            levels = levels | {int(index)} if used else levels - {int(index)}
            self._change_rule_state(code, used_add_levels=tuple(sorted(levels)))

    def set_rule_state(self, code: str, **changes) -> Optional[Position]:
        """An operator's correction of the episode state (highest price, profit flag, base cost, used add levels,
        open date; validated by core.position_review, issue 17). Persisted at once; returns the position after it."""
        unknown = set(changes) - RULE_STATE_FIELDS
        if unknown:
            raise ValueError(f"不能修改的持仓字段：{', '.join(sorted(unknown))}")
        self._change_rule_state(code, **changes)
        return self.get(code)

    # ---- broker and day
    def refresh_from_broker(self, positions: Iterable[BrokerPosition]) -> None:
        """The broker is authoritative for volume and available (and, live, cost); the episode is ours.
        A holding missing from the answer is removed only after POSITION_GONE_CONFIRMATIONS consecutive
        answers without it (one failed or half-initialised query must not wipe it), and its rule state is
        kept aside: if the broker shows the stock again, the episode resumes with it (issue 13)."""
        with self._lock:
            self._roll_if_new_day()
            seen: set[str] = set()
            for bp in positions:
                if bp.volume <= 0:
                    continue
                seen.add(bp.stock_code)
                self._missing.pop(bp.stock_code, None)
                if self._refresh_one(bp):
                    self._persist_now(bp.stock_code)
            needed = int(self._settings.get("POSITION_GONE_CONFIRMATIONS"))
            for code in [c for c in self._holdings if c not in seen]:
                count = self._missing[code] = self._missing.get(code, 0) + 1
                volume = self._holdings[code].position.volume
                if count < needed:
                    log.warning("券商持仓查询中没有 %s（本地 %d 股），第 %d 次；连续 %d 次确认前不删除本地持仓",
                                code, volume, count, needed)
                    continue
                log.warning("券商账户已连续 %d 次查询无 %s 持仓（本地记录 %d 股），清除本地持仓；止盈止损状态已保留，"
                            "若该持仓重新出现将恢复", count, code, volume)
                self._stash_rule_state(code)
                del self._holdings[code]
                del self._missing[code]
                self._persist_now(code)

    def sync(self) -> int:
        """Write positions changed since the last write (prices, highest price, reservations); return rows."""
        with self._lock:
            codes = sorted(self._dirty)
            if not codes:
                return 0
            with self._db.transaction() as conn:
                for code in codes:
                    self._write_or_delete(conn, code, self._holdings.get(code))
            self._dirty.clear()
            return len(codes)

    def roll_day(self, today: date) -> None:
        """T+1 release: on a trading day every share held becomes sellable (minus open sell orders)."""
        with self._lock:
            self._roll(today)

    # ---- ex-rights days (issue 28)
    def set_ex_rights_source(self, source: Callable[[list[str], Optional[date], date], list[CorporateAction]]) -> None:
        """`source(held codes, last rolled day, day)` → the events with ex-dates after the one and up to the other (a cheap lookup: it runs under this class's lock at
        the day roll, so that no quote of an ex-date meets the old levels)."""
        with self._lock:
            self._ex_rights_source = source

    def apply_ex_rights(self, action: CorporateAction, factor: Optional[float] = None) -> Optional[dict]:
        """Scale the episode's prices (cost, first-buy price, highest, stop level) by the event's factor (given,
        else the event's own or computed from the last price seen) and add the bonus shares, once per event (a
        marker in the same transaction). Returns the adjustment (old → new levels), or None when not held or
        already applied."""
        with self._lock:
            with self._db.transaction() as conn:
                done = self._adjust_for_event(conn, action, factor)
            if done is not None:
                self._dirty.discard(action.code)
                self._bump()
            return done

    def ex_rights_adjustment(self, action: CorporateAction) -> Optional[dict]:
        """The adjustment recorded for `action` (None when it changed no position here)."""
        row = self._db.query_one("SELECT value FROM position_state WHERE key=?", (_ex_key(action),))
        return json.loads(row["value"]) if row else None

    def _adjust_for_event(self, conn, action: CorporateAction, factor: Optional[float] = None) -> Optional[dict]:
        holding = self._holdings.get(action.code)
        key = _ex_key(action)
        if holding is None or conn.execute("SELECT 1 FROM position_state WHERE key=?", (key,)).fetchone():
            return None
        before = holding.position
        if factor is None:  # at the day roll, before any quote of the day: the last price is the previous close
            factor = ex_rights.price_factor(action, before.current_price or before.cost_price)
        change = ex_rights.holding_change(before.volume, holding.cost_amount, action)
        after = ex_rights.adjust_position(before, factor, change.volume_after)
        holding.position = after
        holding.cost_amount = _cents(after.cost_price * after.volume)
        self._refresh_derived(after)
        detail = {"stock_code": action.code, "ex_date": action.ex_date.isoformat(), "factor": factor,
                  "event": action.describe(), "volume": [before.volume, after.volume],
                  **{name: [getattr(before, name), getattr(after, name)] for name in ADJUSTED_LEVELS}}
        conn.execute("INSERT INTO position_state(key, value) VALUES(?, ?)", (key, json.dumps(detail)))
        self._write_or_delete(conn, action.code, holding)
        self._ex_today[action.code] = (action.ex_date, factor)
        log.warning("除权除息 %s（%s，%s）：因子 %.6f，最高价 %.3f → %.3f，成本价 %.3f → %.3f，首次买入价 %.3f → %.3f，"
                    "持股 %d → %d 股", action.code, action.ex_date, action.describe(), factor, before.highest_price,
                    after.highest_price, before.cost_price, after.cost_price, before.base_cost_price,
                    after.base_cost_price, before.volume, after.volume)
        return detail

    def _broker_cost_before_ex_rights(self, bp: BrokerPosition, cost_price: float) -> bool:
        """On an ex-date whose event scaled our cost: whether the broker still shows the cost of before it
        (nearer the unadjusted cost than ours). Taking it would put the stop-loss back above the gapped price,
        so ours stays until the broker has adjusted its own (brokers do so at different times of the day)."""
        adjusted = self._ex_today.get(bp.stock_code)
        if adjusted is None or adjusted[0] != self._clock.today():
            return False
        factor = adjusted[1]
        stale = bp.cost_price > cost_price * (1 + (1 - factor) / 2)
        if stale and (bp.stock_code, adjusted[0]) not in self._ex_cost_kept:
            self._ex_cost_kept.add((bp.stock_code, adjusted[0]))
            log.warning("%s 今日除权除息，券商成本价 %.3f 尚未调整，暂用本程序按因子 %.6f 调整后的成本价 %.3f",
                        bp.stock_code, bp.cost_price, factor, cost_price)
        return stale

    def _ex_rights_at_roll(self, conn, today: date) -> list[str]:
        if self._ex_rights_source is None or not self._holdings:
            return []
        try:
            actions = self._ex_rights_source(sorted(self._holdings), self._rolled_day, today)
        except Exception as exc:  # the roll (T+1 release) must go on; the pre-open job asks the source again
            log.error("换日时未能取得除权除息数据（%s），持仓价位暂未调整，盘前任务将重试", exc)
            return []
        adjusted = []
        for action in actions:
            if self._adjust_for_event(conn, action) is not None:
                adjusted.append(action.code)
        return adjusted

    # ---- internals: fills
    def _book_buy(self, fill: Fill) -> _Holding:
        holding = self._holdings.get(fill.stock_code)
        spent = _cents(fill.amount + fill.fees)
        if holding is None:
            holding = _Holding(self._open_episode(fill), spent)
            self._holdings[fill.stock_code] = holding
            self._drop_rule_state(fill.stock_code)  # a new episode starts fresh
        else:
            holding.cost_amount = _cents(holding.cost_amount + spent)
        p = holding.position
        p.volume += fill.volume  # T+1: `available` grows only at the next trading day's roll
        if market_rules.is_t0(fill.stock_code):  # issue 28: bonds and T+0 funds are sellable at once
            p.available += fill.volume
        p.cost_price = _cost_price(holding.cost_amount, p.volume)
        p.highest_price = max(p.highest_price, fill.price)
        self._refresh_derived(p)
        return holding

    def _open_episode(self, fill: Fill) -> Position:
        # The first level of BUY_GRID_LEVELS at (or above) the base price is the opening buy itself;
        # marking it used keeps the add rule from buying again at the price just paid.
        levels = self._settings.get("BUY_GRID_LEVELS")
        used = (0,) if levels and levels[0] >= 1.0 else ()
        return Position(stock_code=fill.stock_code, base_cost_price=fill.price, current_price=fill.price,
                        open_date=fill.time.date(), highest_price=fill.price, used_add_levels=used,
                        last_update=fill.time)

    def _book_sell(self, fill: Fill) -> tuple[Optional[_Holding], Optional[float]]:
        holding = self._holdings.get(fill.stock_code)
        if holding is None:
            log.warning("收到 %s 卖出成交 %d 股，但本地无该持仓；成交已记账，持仓以券商同步为准",
                        fill.stock_code, fill.volume)
            return None, None
        p = holding.position
        sold = min(fill.volume, p.volume)
        if sold < fill.volume:
            log.warning("%s 卖出成交 %d 股超过本地持仓 %d 股，按本地持仓记账", fill.stock_code, fill.volume, p.volume)
        basis = holding.cost_amount if sold == p.volume else _cents(holding.cost_amount * sold / p.volume)
        realized = _cents(fill.amount - fill.fees - basis)
        unreserved = max(0, sold - holding.frozen)  # a sell we had not reserved (e.g. recovered at start)
        holding.frozen -= sold - unreserved
        p.available = max(0, p.available - unreserved)
        p.volume -= sold
        holding.cost_amount = _cents(holding.cost_amount - basis)  # cost_price itself is unchanged by sells
        if p.volume == 0:
            del self._holdings[fill.stock_code]  # flat: the episode ends, its state is reset
            return None, realized
        self._refresh_derived(p)
        return holding, realized

    # ---- internals: state
    def _refresh_one(self, bp: BrokerPosition) -> bool:
        holding = self._holdings.get(bp.stock_code)
        if holding is None:
            price = bp.market_value / bp.volume if bp.market_value else bp.cost_price
            position = Position(stock_code=bp.stock_code, stock_name=bp.stock_name, volume=bp.volume,
                                available=bp.available, cost_price=bp.cost_price,
                                base_cost_price=bp.cost_price, current_price=price,
                                open_date=self._clock.today(), highest_price=max(price, bp.cost_price),
                                last_update=self._clock.now())
            self._restore_rule_state(position)
            self._refresh_derived(position)
            self._holdings[bp.stock_code] = _Holding(position, _cents(bp.cost_price * bp.volume))
            log.info("按券商持仓新增本地持仓 %s：%d 股，成本 %.3f", bp.stock_code, bp.volume, bp.cost_price)
            return True
        p = holding.position
        before = (p.volume, p.available, p.cost_price, p.stock_name)
        if p.volume != bp.volume:
            log.info("%s 持仓数量按券商校正：%d → %d 股", bp.stock_code, p.volume, bp.volume)
            holding.cost_amount = _cents(p.cost_price * bp.volume)
        p.volume, p.available = bp.volume, bp.available
        holding.frozen = min(holding.frozen, p.volume)
        if self.mode == "live" and bp.cost_price > 0 and not self._broker_cost_before_ex_rights(bp, p.cost_price):
            p.cost_price = bp.cost_price
            holding.cost_amount = _cents(bp.cost_price * bp.volume)
        if bp.stock_name:
            p.stock_name = bp.stock_name
        self._refresh_derived(p)
        return (p.volume, p.available, p.cost_price, p.stock_name) != before

    # ---- rule state of a holding removed without fills explaining it (issue 13): restored when the same
    # holding (same volume) shows up again; any other volume, or a buy fill, starts a new episode
    def _stash_rule_state(self, code: str) -> None:
        p = self._holdings[code].position
        state = {"volume": p.volume, "base_cost_price": p.base_cost_price, "open_date": p.open_date.isoformat() if p.open_date else None,
                 "profit_triggered": p.profit_triggered, "highest_price": p.highest_price,
                 "stop_loss_price": p.stop_loss_price, "used_add_levels": list(p.used_add_levels)}
        self._db.execute("INSERT OR REPLACE INTO position_state(key, value) VALUES(?, ?)",
                         (f"gone:{code}", json.dumps(state)))

    def _restore_rule_state(self, position: Position) -> None:
        row = self._db.query_one("SELECT value FROM position_state WHERE key=?", (f"gone:{position.stock_code}",))
        if row is None:
            return
        state = json.loads(row["value"])
        self._drop_rule_state(position.stock_code)
        if state.get("volume") != position.volume:  # another holding than the one that vanished: a new episode
            return
        position.base_cost_price = state["base_cost_price"]
        position.open_date = date.fromisoformat(state["open_date"]) if state["open_date"] else position.open_date
        position.profit_triggered = bool(state["profit_triggered"])
        position.highest_price = max(position.highest_price, state["highest_price"])
        position.stop_loss_price = state["stop_loss_price"]
        position.used_add_levels = tuple(state["used_add_levels"])
        log.warning("%s 持仓重新出现，恢复其止盈止损状态（已止盈：%s，最高价 %.3f）", position.stock_code,
                    "是" if position.profit_triggered else "否", position.highest_price)

    def _drop_rule_state(self, code: str) -> None:
        self._db.execute("DELETE FROM position_state WHERE key=?", (f"gone:{code}",))

    def _change_rule_state(self, code: str, **changes) -> None:
        with self._lock:
            holding = self._holdings.get(code)
            if holding is None:
                return
            p = holding.position
            if all(getattr(p, key) == value for key, value in changes.items()):
                return
            for key, value in changes.items():
                setattr(p, key, value)
            self._persist_now(code)

    def _roll_if_new_day(self) -> None:
        today = self._clock.today()
        if today != self._rolled_day:
            self._roll(today)

    def _roll(self, today: date) -> None:
        if self._rolled_day is not None and today <= self._rolled_day:
            return
        released = []
        if self._clock.is_trading_day(today):
            for code, holding in self._holdings.items():
                sellable = holding.position.volume - holding.frozen
                if holding.position.available != sellable:
                    holding.position.available = sellable
                    released.append(code)
        try:
            with self._db.transaction() as conn:
                adjusted = self._ex_rights_at_roll(conn, today) if self._clock.is_trading_day(today) else []
                for code in released:
                    self._write_or_delete(conn, code, self._holdings[code])
                conn.execute("INSERT INTO position_state(key, value) VALUES('rolled_day', ?) "
                             "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (today.isoformat(),))
        except BaseException:
            self._reload()  # an adjustment must not stay in memory when its marker was not committed
            raise
        self._rolled_day = today
        self._dirty.difference_update(released)
        self._dirty.difference_update(adjusted)
        if adjusted:
            self._bump()
        if released:
            log.info("T+1 解冻：%s 起 %s 可卖", today, "、".join(released))
            self._bump()

    def _persist_now(self, code: str) -> None:
        with self._db.transaction() as conn:
            self._write_or_delete(conn, code, self._holdings.get(code))
        self._dirty.discard(code)
        self._bump()

    def _touch(self, code: str) -> None:
        self._dirty.add(code)
        self._bump()

    def _bump(self) -> None:
        self.data_version += 1
        self._changed.notify_all()

    def _snapshot(self, code: str) -> Position:
        holding = self._holdings.get(code)
        return holding.position.copy() if holding else Position(code)

    @staticmethod
    def _refresh_derived(p: Position) -> None:
        if p.current_price > 0:
            p.market_value = _cents(p.current_price * p.volume)
            p.profit_ratio = _profit_ratio(p.current_price, p.cost_price)

    # ---- persistence
    def _write_or_delete(self, conn, code: str, holding: Optional[_Holding]) -> None:
        if holding is None:
            conn.execute("DELETE FROM positions WHERE stock_code=?", (code,))
            return
        p = holding.position
        conn.execute(
            "INSERT OR REPLACE INTO positions(stock_code, stock_name, volume, available, cost_price, base_cost_price,"
            " current_price, market_value, profit_ratio, last_update, open_date, profit_triggered, highest_price,"
            " stop_loss_price, used_add_levels, cost_amount, frozen) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (p.stock_code, p.stock_name, p.volume, p.available, p.cost_price, p.base_cost_price, p.current_price,
             p.market_value, p.profit_ratio, p.last_update.isoformat(sep=" ") if p.last_update else None,
             p.open_date.isoformat() if p.open_date else None, int(p.profit_triggered), p.highest_price,
             p.stop_loss_price, json.dumps(list(p.used_add_levels)), holding.cost_amount, holding.frozen))

    def _reload(self) -> None:
        self._holdings.clear()
        self._dirty.clear()
        self._rolled_day = self._load()

    def _load(self) -> Optional[date]:
        for row in self._db.query("SELECT * FROM positions"):
            position = Position(
                stock_code=row["stock_code"], stock_name=row["stock_name"], volume=row["volume"],
                available=row["available"], cost_price=row["cost_price"], base_cost_price=row["base_cost_price"],
                current_price=row["current_price"], market_value=row["market_value"],
                profit_ratio=row["profit_ratio"],
                last_update=datetime.fromisoformat(row["last_update"]) if row["last_update"] else None,
                open_date=date.fromisoformat(row["open_date"]) if row["open_date"] else None,
                profit_triggered=bool(row["profit_triggered"]), highest_price=row["highest_price"],
                stop_loss_price=row["stop_loss_price"],
                used_add_levels=tuple(json.loads(row["used_add_levels"])))
            self._holdings[position.stock_code] = _Holding(position, row["cost_amount"], row["frozen"])
        for row in self._db.query("SELECT value FROM position_state WHERE key LIKE 'ex_rights:%'"):
            detail = json.loads(row["value"])
            code, day = detail["stock_code"], date.fromisoformat(detail["ex_date"])
            if code not in self._ex_today or self._ex_today[code][0] < day:
                self._ex_today[code] = (day, detail["factor"])
        row = self._db.query_one("SELECT value FROM position_state WHERE key='rolled_day'")
        return date.fromisoformat(row["value"]) if row else None


ADJUSTED_LEVELS = ("highest_price", "cost_price", "base_cost_price", "stop_loss_price")


def _ex_key(action: CorporateAction) -> str:
    return f"ex_rights:{action.key}"


RULE_STATE_FIELDS = {"highest_price", "profit_triggered", "base_cost_price", "used_add_levels", "open_date"}


def _cents(value: float) -> float:
    return float(Decimal(repr(value)).quantize(CENTS, rounding=ROUND_HALF_UP))


def _cost_price(cost_amount: float, volume: int) -> float:
    """Average cost per share incl. buy fees (computed in Decimal from the cent-exact basis)."""
    if volume <= 0:
        return 0.0
    return float(Decimal(repr(cost_amount)) / volume)


def _profit_ratio(price: float, cost: float) -> float:
    """Percent, 2 decimals."""
    if cost <= 0:
        return 0.0
    return float((Decimal(repr(price)) / Decimal(repr(cost)) * 100 - 100).quantize(CENTS, rounding=ROUND_HALF_UP))
