"""Performance statistics with one definition for the backtest summary and the live account's 「收益」 page:
returns, drawdown, Sharpe, position episodes rebuilt from fills, win rate, fees, per-stock and per-rule figures.
Pure functions of numbers and fills; reading trades or equity from files or databases is the callers' job."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable, Optional, Sequence

TRADING_DAYS_PER_YEAR = 252


@dataclass(frozen=True)
class Fill:
    """One execution as the statistics need it; `rule` is the rule's value (e.g. 'stop_loss')."""

    day: date
    stock_code: str
    side: str  # 'buy' | 'sell'
    volume: int
    amount: float  # price × volume
    fees: float
    rule: str


@dataclass(frozen=True)
class EpisodeResult:
    """One position episode: from a buy into a flat position until flat again (the backtest's, or one rebuilt
    from an account's fills)."""

    stock_code: str
    open_date: date
    close_date: Optional[date]
    invested: float  # buy amounts + buy fees
    proceeds: float  # sell amounts − sell fees
    rules: tuple[str, ...] = ()  # every rule that traded in the episode, in first-use order (rebuilt ones)

    @property
    def profit(self) -> float:
        return round(self.proceeds - self.invested, 2)


# ---- equity ---------------------------------------------------------------------------------------------

def daily_returns(initial: float, totals: Sequence[float]) -> list[float]:
    """Return of each day's closing equity over the previous one, the first against `initial`."""
    return [now / before - 1 for before, now in zip([initial, *totals[:-1]], totals)]


def close_to_close_returns(totals: Sequence[float]) -> list[float]:
    """Daily returns from the first close on (DESIGN §7: the Sharpe ratio does not count the first day's
    move from the initial capital)."""
    return [now / before - 1 for before, now in zip(totals[:-1], totals[1:])]


def drawdowns(initial: float, totals: Sequence[float]) -> list[float]:
    """Each day's drawdown as a positive fraction of the running peak (the peak starts at `initial`)."""
    peak, result = initial, []
    for total in totals:
        peak = max(peak, total)
        result.append(1 - total / peak if peak > 0 else 0.0)
    return result


def max_drawdown(initial: float, totals: Sequence[float]) -> float:
    return max(drawdowns(initial, totals), default=0.0)


def sharpe(returns: Sequence[float]) -> Optional[float]:
    """Mean over population standard deviation of daily returns × √252 (risk-free 0, DESIGN §7); None when
    undefined."""
    if len(returns) < 2:
        return None
    mean = sum(returns) / len(returns)
    variance = sum((r - mean) ** 2 for r in returns) / len(returns)
    if variance <= 1e-24:
        return None
    return round(mean / math.sqrt(variance) * math.sqrt(TRADING_DAYS_PER_YEAR), 4)


def equity_metrics(initial: float, totals: Sequence[float]) -> dict[str, Any]:
    """total_return, annualized_return (compounded over 252 days a year), max_drawdown, sharpe."""
    if not totals:
        return {"total_return": 0.0, "annualized_return": 0.0, "max_drawdown": 0.0, "sharpe": None}
    growth = totals[-1] / initial
    annualized = _annualized(growth, len(totals))
    return {"total_return": round(growth - 1, 6),
            "annualized_return": None if annualized is None else round(annualized, 6),
            "max_drawdown": round(max_drawdown(initial, totals), 6),
            "sharpe": sharpe(close_to_close_returns(totals))}


def _annualized(growth: float, days: int) -> Optional[float]:
    """growth compounded to 252 days; None when beyond float range (a huge gain over a few days, e.g. against a
    tiny initial capital): a number no one can read, and an OverflowError would have failed the whole report."""
    if growth <= 0:
        return -1.0
    try:
        return growth ** (TRADING_DAYS_PER_YEAR / days) - 1
    except OverflowError:
        return None


def sortino(returns: Sequence[float]) -> Optional[float]:
    """Mean over the downside deviation (root mean square of the negative daily returns, over all days) × √252;
    None without a losing day."""
    if len(returns) < 2:
        return None
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    if downside <= 1e-12:
        return None
    return round(sum(returns) / len(returns) / downside * math.sqrt(TRADING_DAYS_PER_YEAR), 4)


def longest_drawdown_days(initial: float, totals: Sequence[float]) -> int:
    """The most consecutive trading days spent below a previous peak (the peak starts at `initial`)."""
    peak, longest, current = initial, 0, 0
    for total in totals:
        if total >= peak:
            peak, current = total, 0
        else:
            current += 1
            longest = max(longest, current)
    return longest


def monthly_returns(initial: float, days: Sequence[date], totals: Sequence[float]) -> dict[str, float]:
    """{'YYYY-MM': return} from each month's last close over the previous month's (the first over `initial`)."""
    month_ends: dict[str, float] = {}
    for day, total in zip(days, totals):
        month_ends[f"{day.year:04d}-{day.month:02d}"] = total
    result, before = {}, initial
    for month, total in month_ends.items():
        result[month] = round(total / before - 1, 6) if before > 0 else 0.0
        before = total
    return result


def trade_quality(episodes: Sequence[Any]) -> dict[str, Any]:
    """profit_factor (gross profit / gross loss of closed episodes), expectancy (mean profit per episode, CNY)
    and SQN (√N × mean / sample std of the episode profits); None where undefined."""
    profits = [episode.profit for episode in episodes]
    gains = sum(p for p in profits if p > 0)
    losses = -sum(p for p in profits if p < 0)
    expectancy = round(sum(profits) / len(profits), 2) if profits else None
    sqn = None
    if len(profits) >= 2:
        mean = sum(profits) / len(profits)
        std = math.sqrt(sum((p - mean) ** 2 for p in profits) / (len(profits) - 1))
        sqn = round(math.sqrt(len(profits)) * mean / std, 4) if std > 1e-12 else None
    return {"profit_factor": round(gains / losses, 4) if losses > 0 else None, "expectancy": expectancy,
            "sqn": sqn}


def calmar(annualized_return: Optional[float], max_drawdown_value: float) -> Optional[float]:
    if annualized_return is None or max_drawdown_value <= 0:
        return None
    return round(annualized_return / max_drawdown_value, 4)


# ---- episodes -------------------------------------------------------------------------------------------

def episodes_from_fills(fills: Iterable[Fill]) -> tuple[list[EpisodeResult], list[EpisodeResult]]:
    """(closed episodes in closing order, still-open episodes by stock) from fills in time order."""
    open_by_code: dict[str, dict[str, Any]] = {}
    closed: list[EpisodeResult] = []
    for fill in fills:
        state = open_by_code.get(fill.stock_code)
        if state is None:
            if fill.side != "buy":
                continue  # a sell of shares held before the history starts: no episode to attach it to
            state = open_by_code[fill.stock_code] = {"open": fill.day, "volume": 0, "invested": 0.0,
                                                     "proceeds": 0.0, "rules": []}
        if fill.rule not in state["rules"]:
            state["rules"].append(fill.rule)
        if fill.side == "buy":
            state["volume"] += fill.volume
            state["invested"] += fill.amount + fill.fees
        else:
            state["volume"] -= fill.volume
            state["proceeds"] += fill.amount - fill.fees
            if state["volume"] <= 0:
                closed.append(_episode(fill.stock_code, state, fill.day))
                del open_by_code[fill.stock_code]
    still_open = [_episode(code, state, None) for code, state in sorted(open_by_code.items())]
    return closed, still_open


def win_stats(episodes: Sequence[Any]) -> dict[str, Any]:
    """closed_episodes, winning_episodes (profit > 0; break-even is not a win), win_rate (None without any)."""
    winners = sum(1 for episode in episodes if episode.profit > 0)
    return {"closed_episodes": len(episodes), "winning_episodes": winners,
            "win_rate": round(winners / len(episodes), 6) if episodes else None}


def per_stock(episodes: Sequence[EpisodeResult]) -> list[dict[str, Any]]:
    """Realised P&L per stock over its closed episodes, best first."""
    rows: dict[str, dict[str, Any]] = {}
    for episode in episodes:
        row = rows.setdefault(episode.stock_code, {"stock_code": episode.stock_code, "episodes": 0, "wins": 0,
                                                   "realized_pnl": 0.0})
        row["episodes"] += 1
        row["wins"] += episode.profit > 0
        row["realized_pnl"] = round(row["realized_pnl"] + episode.profit, 2)
    return sorted(rows.values(), key=lambda r: (-r["realized_pnl"], r["stock_code"]))


def rule_stats(fills: Sequence[Fill], episodes: Sequence[EpisodeResult]) -> list[dict[str, Any]]:
    """Per rule: how often it traded (fills, volume, amount, fees), and the average realised profit and the
    win rate of the closed episodes it took part in (its outcome)."""
    rows: dict[str, dict[str, Any]] = {}
    for fill in fills:
        row = rows.setdefault(fill.rule, {"rule": fill.rule, "fills": 0, "volume": 0, "amount": 0.0, "fees": 0.0})
        row["fills"] += 1
        row["volume"] += fill.volume
        row["amount"] = round(row["amount"] + fill.amount, 2)
        row["fees"] = round(row["fees"] + fill.fees, 2)
    for rule, row in rows.items():
        involved = [e for e in episodes if rule in e.rules]
        row["episodes"] = len(involved)
        row["avg_episode_pnl"] = round(sum(e.profit for e in involved) / len(involved), 2) if involved else None
        row["win_rate"] = win_stats(involved)["win_rate"]
    return sorted(rows.values(), key=lambda r: (-r["fills"], r["rule"]))


def fees_paid(fills: Iterable[Fill]) -> float:
    return round(sum(fill.fees for fill in fills), 2)


def _episode(code: str, state: dict[str, Any], close_date: Optional[date]) -> EpisodeResult:
    return EpisodeResult(code, state["open"], close_date, round(state["invested"], 2), round(state["proceeds"], 2),
                         tuple(state["rules"]))
