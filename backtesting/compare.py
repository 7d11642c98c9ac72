"""Does my account do what the backtest says? (issue 20) `python backtest.py compare --account DATA_DIR --data
DIR [--start --end]` backtests the period the account traded with the account's effective parameters (config.py
+ the overrides in its config.db) and matches the backtest's trades to the account's fills one by one:

- matched: same day, stock, side and rule; the price difference is the slippage (CNY and bps, + = a cost); or
  shifted: the same stock, side and rule within SHIFT_DAYS days;
- missing in the account, with the recorded cause: the signal expired, was rejected (with its reason), its order
  timed out or was cancelled without a fill, the position's entry never happened in the account, or no signal
  was recorded at all;
- extra in the account: a manual trade, a grid trade, a watch task, an order-file line, or a rule trade the
  backtest did not make;
- and, for what is left, the chain back to where the two diverged: an earlier trade of the same holding that
  filled at another price or on another day (so every later trigger of that holding moves), or a rule parameter
  changed in the account during the period.

The account is read only (SQLite opened read-only); nothing in it changes."""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sqlite3
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, TextIO

import config
import market_rules
import strategy
from backtesting.engine import StartingState, Trade
from core.models import Position, Rule, Side

MATCHED = "matched"
SHIFTED = "shifted"  # the same trade on another day (within SHIFT_DAYS)
# causes of a backtest trade missing in the account
SIGNAL_EXPIRED = "signal_expired"
SIGNAL_REJECTED = "signal_rejected"
ORDER_TIMED_OUT = "order_timed_out"
NO_SIGNAL = "no_signal"
FOLLOWS_MISSING = "follows_missing_entry"  # a later trade of a backtest position the account never opened
# causes of an account trade the backtest did not make
MANUAL = "manual"
GRID = "grid"
WATCH = "watch"
ORDER_FILE = "order_file"
UNEXPLAINED = "unexplained"
# causes found by following the chain back (either side)
DIVERGED = "diverged_upstream"  # an earlier trade of the same holding filled at another price / day
PARAM_CHANGED = "parameter_changed"  # a rule parameter changed in the account before this trade
SHIFT_DAYS = 10  # calendar days
CAUSE_LABELS = {MATCHED: "一致", SHIFTED: "日期不同", FOLLOWS_MISSING: "该持仓的买入未在账户发生", SIGNAL_EXPIRED: "信号过期未执行", SIGNAL_REJECTED: "信号被拒绝",
                ORDER_TIMED_OUT: "委托超时/撤单未成交", NO_SIGNAL: "账户未记录信号", MANUAL: "手动交易", GRID: "网格交易",
                WATCH: "盯盘任务", ORDER_FILE: "委托文件", DIVERGED: "同一持仓上游成交不同而分叉",
                PARAM_CHANGED: "期间参数有变更", UNEXPLAINED: "回测中没有的规则交易"}
ACCOUNT_DBS = ("sim_trading.db", "trading.db")
RESULT_DIR = "backtest_compare"  # inside the account's data dir by default: the web page 「回测对比」 reads it


@dataclass(frozen=True)
class AccountTrade:
    """One order's fills in the account (partial fills summed; price = amount / volume)."""

    day: date
    stock_code: str
    side: str
    rule: str
    volume: int
    amount: float
    client_id: str

    @property
    def price(self) -> float:
        return round(self.amount / self.volume, 4) if self.volume else 0.0


@dataclass
class ComparedTrade:
    kind: str  # matched / missing / extra
    cause: str
    day: str
    stock_code: str
    side: str
    rule: str
    backtest_volume: Optional[int] = None
    backtest_price: Optional[float] = None
    account_volume: Optional[int] = None
    account_price: Optional[float] = None
    slippage_cny: Optional[float] = None  # + = the account did worse than the backtest
    slippage_bps: Optional[float] = None
    amount: float = 0.0  # the traded (or untraded) amount in CNY
    reason: str = ""


@dataclass
class Comparison:
    start: date
    end: date
    rows: list[ComparedTrade] = field(default_factory=list)
    starting: dict[str, Any] = field(default_factory=dict)  # the backtest's starting cash and positions

    def summary(self) -> dict[str, dict[str, float]]:
        """Per cause: trade count, amount in CNY and, for matched trades, the slippage cost."""
        result: dict[str, dict[str, float]] = {}
        for row in self.rows:
            entry = result.setdefault(row.cause, {"count": 0, "amount": 0.0, "slippage_cny": 0.0})
            entry["count"] += 1
            entry["amount"] = round(entry["amount"] + row.amount, 2)
            if row.slippage_cny is not None:
                entry["slippage_cny"] = round(entry["slippage_cny"] + row.slippage_cny, 2)
        return {cause: result[cause] for cause in CAUSE_LABELS if cause in result}


# ---- reading the account (read only) ---------------------------------------------------------------------

@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection, closed on leaving (sqlite3's own `with` only ends a transaction)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        yield connection
    finally:
        connection.close()


def _rows(connection: sqlite3.Connection, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
    """The rows, or none when the table does not exist in this account's database (an older or a live one)."""
    try:
        return connection.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []


def account_db(data_dir: Path) -> Path:
    for name in ACCOUNT_DBS:
        if (data_dir / name).exists():
            return data_dir / name
    raise FileNotFoundError(f"{data_dir} 中没有账户数据库（{' 或 '.join(ACCOUNT_DBS)}）")


def effective_settings(data_dir: Path) -> dict[str, Any]:
    """config.py defaults with the account's persisted web overrides (config.db `system_config`); an override
    the daemon would ignore (unknown key, invalid value) is ignored here too."""
    values = dict(config.DEFAULTS)
    path = data_dir / "config.db"
    if not path.exists():
        return values
    with _connect(path) as connection:
        rows = _rows(connection, "SELECT key, value FROM system_config")
    for row in rows:
        param = config.PARAMS_BY_KEY.get(row["key"])
        try:
            candidate = {**values, row["key"]: config.coerce_value(param, json.loads(row["value"]))}
        except (AttributeError, ValueError, TypeError):
            continue
        if config.validate(candidate).ok:
            values = candidate
    return values


def account_stock_params(db: Path) -> dict[str, dict[str, Any]]:
    """The account's per-stock overrides (table `stock_params`, issue 17), as the backtest's `stock_params`;
    an unreadable value is left out, as the daemon would."""
    with _connect(db) as connection:
        rows = _rows(connection, "SELECT stock_code, key, value FROM stock_params")
    result: dict[str, dict[str, Any]] = {}
    for row in rows:
        param = config.PARAMS_BY_KEY.get(row["key"])
        try:
            result.setdefault(row["stock_code"], {})[row["key"]] = config.coerce_value(param, json.loads(row["value"]))
        except (AttributeError, ValueError, TypeError):
            continue
    return result


def account_trades(db: Path) -> list[AccountTrade]:
    """Fills grouped by order; the rule is the order's origin rule (a re-priced sell keeps its first rule)."""
    with _connect(db) as connection:
        rows = connection.execute(
            "SELECT t.trading_day, t.stock_code, t.side, t.volume, t.amount, t.client_id, t.strategy,"
            " o.origin_rule FROM trade_records t LEFT JOIN orders o ON o.client_id = t.client_id ORDER BY t.id"
        ).fetchall()
    grouped: dict[tuple, list] = {}
    for row in rows:
        rule = row["origin_rule"] or row["strategy"]
        key = (row["trading_day"], row["stock_code"], row["side"], rule, row["client_id"])
        volume, amount = grouped.get(key, (0, 0.0))
        grouped[key] = (volume + int(row["volume"]), amount + float(row["amount"]))
    return [AccountTrade(date.fromisoformat(day), code, side, _rule_name(rule), volume, round(amount, 2), client)
            for (day, code, side, rule, client), (volume, amount) in grouped.items()]


def starting_state(db: Path, start: date, settings: Mapping[str, Any]) -> tuple[StartingState, str]:
    """The account as it stood before `start`, and where its cash came from (Chinese, for the summary).
    Positions: every fill before `start` replayed through the functions the position manager books fills with
    (strategy.apply_buy/apply_sell), so cost, open date, first take-profit and add levels are the account's own.
    Cash: the simulated account's initial cash and those fills; else (a live account) the latest daily
    snapshot before `start` and the fills after it; else SIMULATION_BALANCE and the fills."""
    with _connect(db) as connection:
        initial = next(iter(_rows(connection, "SELECT initial_balance FROM sim_account WHERE id=1")), None)
        snapshot = next(iter(_rows(connection, "SELECT day, cash + frozen_cash AS cash FROM account_snapshots"
                                               " WHERE day<? ORDER BY day DESC LIMIT 1", (start.isoformat(),))), None)
        fills = connection.execute(
            "SELECT t.trading_day, t.stock_code, t.side, t.price, t.volume, t.amount, t.fees,"
            " COALESCE(o.origin_rule, t.strategy) AS rule, s.level_index FROM trade_records t"
            " LEFT JOIN orders o ON o.client_id = t.client_id LEFT JOIN signals s ON s.id = o.signal_id"
            " WHERE t.trading_day < ? ORDER BY t.id", (start.isoformat(),)).fetchall()
    if initial is not None:
        cash, counted_after, source = float(initial["initial_balance"]), "", "模拟账户的初始资金"
    elif snapshot is not None:
        cash, counted_after, source = float(snapshot["cash"]), snapshot["day"], f"账户 {snapshot['day']} 收盘快照的现金"
    else:
        cash, counted_after, source = float(settings["SIMULATION_BALANCE"]), "", "参数 SIMULATION_BALANCE，账户没有初始资金记录"
    positions: dict[str, Position] = {}
    for fill in fills:
        _book(positions, fill)
        if fill["trading_day"] > counted_after:  # a snapshot's cash already holds its day's fills
            signed = -(float(fill["amount"]) + float(fill["fees"])) if fill["side"] == Side.BUY.value \
                else float(fill["amount"]) - float(fill["fees"])
            cash += signed
    held = tuple(position for position in positions.values() if position.volume > 0)
    return StartingState(round(cash, 2), held), source


def _book(positions: dict[str, Position], fill: sqlite3.Row) -> None:
    """Books one fill into `positions`. A sell of more than the recorded buys (a position the account held before
    its records, e.g. found at the broker) leaves that stock out: its size and cost are unknown."""
    code, volume, day = fill["stock_code"], int(fill["volume"]), date.fromisoformat(fill["trading_day"])
    held = positions.get(code)
    if fill["side"] == Side.BUY.value:
        level = fill["level_index"] if _rule_name(fill["rule"]) == Rule.ADD_POSITION.value else None
        positions[code] = strategy.apply_buy(held, code, float(fill["price"]), volume, float(fill["fees"]), day, level)
    elif held is not None and held.volume >= volume:
        rule = Rule.TAKE_PROFIT if fill["rule"] == Rule.TAKE_PROFIT.value else Rule.MANUAL  # only this one marks
        positions[code] = strategy.apply_sell(held.copy(available=held.volume), volume, rule)
    else:
        positions.pop(code, None)


def account_blacklist(db: Path) -> set[str]:
    """The stocks the account never buys by a rule (table `stock_blacklist`, issue 17)."""
    with _connect(db) as connection:
        return {row["stock_code"] for row in _rows(connection, "SELECT stock_code FROM stock_blacklist")}


def account_period(db: Path) -> Optional[tuple[date, date]]:
    with _connect(db) as connection:
        days = connection.execute(
            "SELECT MIN(d), MAX(d) FROM (SELECT trading_day AS d FROM trade_records"
            " UNION ALL SELECT substr(created_at, 1, 10) FROM signals)").fetchone()
    if days[0] is None:
        return None
    return date.fromisoformat(days[0]), date.fromisoformat(days[1])


def _signals(db: Path) -> dict[tuple[str, str, str], list[sqlite3.Row]]:
    """Signals by (day, code, rule), oldest first."""
    with _connect(db) as connection:
        rows = connection.execute("SELECT * FROM signals ORDER BY id").fetchall()
    found: dict[tuple[str, str, str], list[sqlite3.Row]] = defaultdict(list)
    for row in rows:
        found[(row["created_at"][:10], row["stock_code"], _rule_name(row["rule"]))].append(row)
    return found


def _orders_of_signal(db: Path) -> dict[int, list[sqlite3.Row]]:
    with _connect(db) as connection:
        rows = connection.execute("SELECT * FROM orders WHERE signal_id IS NOT NULL ORDER BY seq").fetchall()
    found: dict[int, list[sqlite3.Row]] = defaultdict(list)
    for row in rows:
        found[int(row["signal_id"])].append(row)
    return found


def _rule_name(rule: str) -> str:
    return "dynamic_take_profit" if rule == "dynamic_stop" else rule  # rows written before issue 20


# ---- matching ---------------------------------------------------------------------------------------------

def compare(backtest_trades: Iterable[Trade], account: Sequence[AccountTrade], db: Path, start: date,
            end: date) -> Comparison:
    """Match one by one on (day, stock, side, rule); explain what is left on either side."""
    open_account: dict[tuple, list[AccountTrade]] = defaultdict(list)
    for trade in account:
        if start <= trade.day <= end:
            open_account[(trade.day, trade.stock_code, trade.side, trade.rule)].append(trade)
    signals, orders = _signals(db), _orders_of_signal(db)
    result = Comparison(start, end)
    backtest_by_row: list[Trade] = []
    for trade in backtest_trades:
        backtest_by_row.append(trade)
        key = (trade.day, trade.stock_code, trade.side.value, trade.rule.value)
        candidates = open_account.get(key)
        if candidates:
            result.rows.append(_matched(trade, candidates.pop(0)))
        else:
            result.rows.append(_missing(trade, signals, orders))
    leftovers = [trade for trades in open_account.values() for trade in trades]
    leftovers = _pair_shifted(result.rows, backtest_by_row, leftovers)
    _mark_followers(result.rows, backtest_by_row)
    result.rows.extend(_extra(trade) for trade in leftovers)
    result.rows.sort(key=lambda row: (row.day, row.stock_code, row.kind not in ("matched", "shifted")))
    _trace_divergence(result.rows)
    _trace_parameter_changes(result.rows, _rule_parameter_changes(db.parent / "config.db", start, end))
    return result


def _trace_divergence(rows: list[ComparedTrade]) -> None:
    """An unexplained trade (or a missing one without a signal record) of a holding whose earlier trade filled
    at another price or on another day is that trade's consequence: every later trigger of the holding (cost,
    highest price, add levels) moved with it. The reason names the upstream trade. The note ends when the
    backtest's holding is flat again (a new episode starts from the same place on both sides)."""
    upstream: dict[str, str] = {}
    volume: dict[str, int] = defaultdict(int)
    for row in rows:  # in time order
        code = row.stock_code
        if row.kind == "shifted" or (row.kind == "matched" and row.slippage_cny):
            upstream.setdefault(code, _divergence_note(row))
        elif code in upstream and row.cause in (UNEXPLAINED, NO_SIGNAL):
            row.cause, row.reason = DIVERGED, f"上游：{upstream[code]}" + (f"；{row.reason}" if row.reason else "")
        if row.backtest_volume and row.kind != "extra":
            volume[code] += row.backtest_volume if row.side == "buy" else -row.backtest_volume
            if volume[code] <= 0:
                volume[code] = 0
                upstream.pop(code, None)


def _divergence_note(row: ComparedTrade) -> str:
    if row.kind == "shifted":
        return f"{_label(row.rule)} {row.reason}"
    return f"{row.day} {_label(row.rule)} 账户成交价 {row.account_price:g}，回测 {row.backtest_price:g}"


def _trace_parameter_changes(rows: list[ComparedTrade], changes: list[sqlite3.Row]) -> None:
    """What is still unexplained after a rule parameter changed in the account: the backtest runs the period
    with one set (the account's current one), the account traded with the earlier value before the change."""
    for row in rows:
        if row.cause not in (UNEXPLAINED, NO_SIGNAL):
            continue
        before = [change for change in changes if change["time"][:10] <= row.day]
        if before:
            last = before[-1]
            row.cause = PARAM_CHANGED
            row.reason = f"{last['time'][:16].replace('T', ' ')} {last['key']}：{last['old_value']} → {last['new_value']}"


def _rule_parameter_changes(config_db: Path, start: date, end: date) -> list[sqlite3.Row]:
    """Changes of rule parameters (the keys the backtest uses) in the account's config history up to `end`."""
    if not config_db.exists():
        return []
    with _connect(config_db) as connection:
        rows = _rows(connection, "SELECT time, key, old_value, new_value FROM config_history WHERE time <= ? "
                                 "ORDER BY time, id", (f"{end.isoformat()}T23:59:59",))
    return [row for row in rows if row["key"] in _RULE_KEYS and row["time"][:10] >= start.isoformat()]


# config keys that change what the rules do (a change of a display or network setting explains no trade)
_RULE_KEYS = frozenset({
    "STOP_LOSS_RATIO", "INITIAL_TAKE_PROFIT_RATIO", "INITIAL_TAKE_PROFIT_RATIO_PERCENTAGE", "DYNAMIC_TAKE_PROFIT",
    "BUY_GRID_LEVELS", "POSITION_UNIT", "MAX_POSITION_VALUE", "MAX_TOTAL_POSITION_RATIO", "ENABLE_MACD_BUY",
    "ENABLE_MA_FILTER", "ENABLE_MACD_SELL", "ENABLE_ADD_POSITION", "ENABLE_DYNAMIC_STOP_PROFIT", "ENABLE_ALLOW_BUY",
    "ENABLE_ALLOW_SELL"})


def _label(rule: str) -> str:
    try:
        return Rule(rule).label
    except ValueError:
        return rule


def _pair_shifted(rows: list[ComparedTrade], trades: list[Trade], leftovers: list[AccountTrade]) -> list[AccountTrade]:
    """A missing backtest trade and an account trade of the same stock, side and rule a few days apart are one
    trade, shifted (e.g. a price reached between ticks on one side only); returns the account trades left."""
    for index, (row, trade) in enumerate(zip(rows, trades)):
        if row.kind != "missing":
            continue
        near = [t for t in leftovers if (t.stock_code, t.side, t.rule) == (trade.stock_code, trade.side.value,
                                                                             trade.rule.value)
                and abs((t.day - trade.day).days) <= SHIFT_DAYS]
        if not near:
            continue
        account = min(near, key=lambda t: (abs((t.day - trade.day).days), t.day))
        leftovers.remove(account)
        shifted = _matched(trade, account)
        shifted.kind, shifted.cause = "shifted", SHIFTED
        shifted.reason = f"账户成交日 {account.day}，回测 {trade.day}" + (
            f"（回测当日：{CAUSE_LABELS[row.cause]}：{row.reason}）" if row.cause != NO_SIGNAL else "")
        rows[index] = shifted
    return leftovers


def _mark_followers(rows: list[ComparedTrade], trades: list[Trade]) -> None:
    """Once a backtest entry is missing in the account, the rest of that backtest position (adds, exits)
    cannot happen there either: those rows without a signal get that cause instead of `no_signal`."""
    volume: dict[str, int] = defaultdict(int)
    absent: dict[str, str] = {}
    for row, trade in zip(rows, trades):
        code = trade.stock_code
        if volume[code] == 0:
            absent.pop(code, None)
            if row.kind == "missing" and trade.side.value == "buy":
                absent[code] = trade.day.isoformat()
        elif code in absent and row.kind == "missing" and row.cause == NO_SIGNAL:
            row.cause, row.reason = FOLLOWS_MISSING, f"回测于 {absent[code]} 买入，账户未买入"
        volume[code] += trade.volume if trade.side.value == "buy" else -trade.volume


def _matched(trade: Trade, account: AccountTrade) -> ComparedTrade:
    sign = 1 if trade.side.value == "buy" else -1  # paying more on a buy, receiving less on a sell: a cost
    difference = account.price - trade.price
    return ComparedTrade("matched", MATCHED, trade.day.isoformat(), trade.stock_code, trade.side.value,
                         trade.rule.value, trade.volume, trade.price, account.volume, account.price,
                         _no_negative_zero(round(sign * difference * account.volume, 2)),
                         _no_negative_zero(round(sign * difference / trade.price * 1e4, 2)), account.amount)


def _no_negative_zero(value: float) -> float:
    return value + 0.0  # -0.0 + 0.0 is 0.0: a zero difference is never shown as 「-0.00」


def _missing(trade: Trade, signals, orders) -> ComparedTrade:
    cause, reason = NO_SIGNAL, "当天该股票没有该规则的信号记录"
    for signal in signals.get((trade.day.isoformat(), trade.stock_code, trade.rule.value), []):
        status = signal["status"]
        if status == "expired":
            cause, reason = SIGNAL_EXPIRED, signal["reason"] or "信号过期"
        elif status == "rejected":
            cause, reason = SIGNAL_REJECTED, signal["reason"] or "信号被拒绝"
        elif status == "executed":
            placed = orders.get(int(signal["id"]), [])
            if placed and all(int(o["filled_volume"]) == 0 for o in placed):
                last = placed[-1]
                cause = ORDER_TIMED_OUT
                reason = f"委托 {last['client_id']} 状态 {last['status']}" + (f"：{last['reason']}" if last["reason"] else "")
    return ComparedTrade("missing", cause, trade.day.isoformat(), trade.stock_code, trade.side.value,
                         trade.rule.value, trade.volume, trade.price, amount=trade.amount, reason=reason)


def _extra(trade: AccountTrade) -> ComparedTrade:
    if trade.rule == "manual":
        cause = MANUAL
    elif trade.rule.startswith("grid"):
        cause = GRID
    elif trade.rule.startswith("watch"):
        cause = WATCH
    elif trade.rule == "order_file":
        cause = ORDER_FILE
    else:
        cause = UNEXPLAINED
    return ComparedTrade("extra", cause, trade.day.isoformat(), trade.stock_code, trade.side, trade.rule,
                         account_volume=trade.volume, account_price=trade.price, amount=trade.amount,
                         reason=f"委托 {trade.client_id}")


# ---- running it -------------------------------------------------------------------------------------------

def run_compare(account_dir: Path, data: Path, start: Optional[date] = None, end: Optional[date] = None,
                codes: Optional[Sequence[str]] = None, cache_dir: Optional[Path] = None) -> Comparison:
    """Backtest the account's period with its effective parameters, global and per stock, from the account's
    own state at the start (starting_state) over `codes` (default: the account's stock_pool.json, else every
    stock in `data`) plus the stocks it held then, with MACD entries only where the account makes them (in
    the pool, not blacklisted), then compare."""
    from backtesting.run import run_backtest

    db = account_db(account_dir)
    period = account_period(db)
    if period is None and (start is None or end is None):
        raise ValueError("账户没有成交或信号记录，请用 --start/--end 指定区间")
    start = start or period[0]
    end = end or period[1]
    if codes is None:
        pool = account_dir / "stock_pool.json"
        if pool.exists():
            document = json.loads(pool.read_text(encoding="utf-8"))
            codes = document.get("codes", document) if isinstance(document, dict) else document
    settings = effective_settings(account_dir)
    # issue 28: the account's own T+0 table and listing dates (ValueError names an unreadable file)
    market_rules.use_instrument_data(market_rules.instrument_data_from_config(settings))
    starting, source = starting_state(db, start, settings)
    held = [position.stock_code for position in starting.positions]
    no_entry = account_blacklist(db) | ({code for code in held if code not in codes} if codes is not None else set())
    run = run_backtest(data, settings, None if codes is None else list(dict.fromkeys([*codes, *held])), start, end,
                       plot=False, cache_dir=cache_dir, stock_params=account_stock_params(db) or None,
                       starting=starting, no_entry=no_entry)
    comparison = compare(run.result.trades, account_trades(db), db, start, end)
    comparison.starting = _starting_view(starting, source, run.result.initial_capital, run.result.unseeded)
    return comparison


def _starting_view(starting: StartingState, source: str, initial_capital: float, without_data: list[str]) -> dict:
    positions = [{"stock_code": p.stock_code, "volume": p.volume, "cost_price": round(p.cost_price, 4),
                  "open_date": p.open_date.isoformat() if p.open_date else None,
                  "profit_triggered": p.profit_triggered, "used_add_levels": list(p.used_add_levels)}
                 for p in starting.positions]
    return {"cash": starting.cash, "cash_source": source, "initial_capital": initial_capital, "positions": positions,
            "without_data": without_data}


def write_comparison(out: Path, comparison: Comparison) -> list[Path]:
    """compare.csv (one row per trade), compare_summary.json (per cause) and compare.json (both, for the
    web page)."""
    out.mkdir(parents=True, exist_ok=True)
    rows_path, summary_path, page_path = out / "compare.csv", out / "compare_summary.json", out / "compare.json"
    with open(rows_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(asdict(comparison.rows[0]).keys()) if comparison.rows
                                else ["kind", "cause"])
        writer.writeheader()
        writer.writerows(asdict(row) for row in comparison.rows)
    document = {"start": comparison.start.isoformat(), "end": comparison.end.isoformat(),
                "starting": comparison.starting, "causes": comparison.summary()}
    summary_path.write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
    page = {**document, "labels": CAUSE_LABELS, "rows": [asdict(row) for row in comparison.rows]}
    page_path.write_text(json.dumps(page, ensure_ascii=False), encoding="utf-8")
    return [rows_path, summary_path, page_path]


def format_comparison(comparison: Comparison) -> str:
    lines = [f"回测对比 {comparison.start} ~ {comparison.end}"]
    starting = comparison.starting
    if starting:
        held = "、".join(f"{p['stock_code']} {p['volume']} 股" for p in starting["positions"]) or "无"
        lines.append(f"  回测起点：现金 {starting['cash']:,.2f} 元（来源：{starting['cash_source']}），持仓 {held}")
        if starting["without_data"]:
            lines.append(f"  起点持仓中没有行情数据、未计入回测：{'、'.join(starting['without_data'])}")
    for cause, entry in comparison.summary().items():
        slip = f"，滑点成本 {entry['slippage_cny']:,.2f} 元" if cause == MATCHED else ""
        lines.append(f"  {CAUSE_LABELS[cause]}：{entry['count']} 笔，金额 {entry['amount']:,.2f} 元{slip}")
    matched = [row for row in comparison.rows if row.cause == MATCHED]  # same day: shifted ones would skew it
    if matched:
        bps = sorted(row.slippage_bps for row in matched)
        lines.append(f"  价格差（bps）：中位数 {bps[len(bps) // 2]:.1f}，最大 {bps[-1]:.1f}，最小 {bps[0]:.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str], stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="backtest.py compare", description="把账户的真实（或模拟）成交与同期回测逐笔对比")
    parser.add_argument("--account", required=True, help="守护进程的数据目录（含 sim_trading.db 或 trading.db）")
    parser.add_argument("--data", required=True, help="日线目录")
    parser.add_argument("--start", type=date.fromisoformat)
    parser.add_argument("--end", type=date.fromisoformat)
    parser.add_argument("--codes", nargs="+", help="回测的股票（默认账户目录的 stock_pool.json，否则全部）")
    parser.add_argument("--out", help=f"结果目录（默认 账户目录/{RESULT_DIR}，网页「回测对比」读取这里）")
    parser.add_argument("--cache", help="行情缓存目录")
    args = parser.parse_args(argv)
    try:
        comparison = run_compare(Path(args.account), Path(args.data), args.start, args.end, args.codes,
                                 Path(args.cache) if args.cache else None)
    except (FileNotFoundError, ValueError, sqlite3.Error) as exc:
        print(f"对比失败：{exc}", file=stderr)
        return 2
    written = write_comparison(Path(args.out) if args.out else Path(args.account) / RESULT_DIR, comparison)
    print(format_comparison(comparison), file=stdout)
    print("结果已写入 " + "、".join(str(p) for p in written), file=stdout)
    return 0
