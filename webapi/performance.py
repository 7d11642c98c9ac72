"""GET /api/performance: the 「收益」 page's figures — the daily equity curve from the account's own recorded
closes (plus today so far), daily P&L, drawdown, the realised P&L of every sell (partial ones included), and the
statistics of closed position episodes (周期统计) — computed with `core.perf_stats`, the same definitions as the
backtest summary."""
from __future__ import annotations

from datetime import date
from typing import Any, Iterable, Mapping, Optional

from flask import Blueprint, Response, request

import core.perf_stats as perf_stats
import webapi.requests as req
from core.models import RULE_LABELS, Rule, TradingError
from webapi.openapi import OBJ, document
from webapi.common import ok, state

blueprint = Blueprint("api_performance", __name__, url_prefix="/api")

MAX_EPISODES_SHOWN = 200


@blueprint.get("/performance")
@document("收益：每日权益曲线、每日盈亏、回撤，以及已实现盈亏、胜率、手续费、按股票和按规则的统计",
          query=req.HISTORY_QUERY, data=OBJ, tag="收益")
def performance() -> Response:
    unknown = sorted(set(request.args) - {f.name for f in req.HISTORY_QUERY})
    if unknown:
        raise req.bad_request(f"未知查询参数：{', '.join(unknown)}", "UNKNOWN_FIELD")
    start, end = req.parse_date_range(request.args.get("start"), request.args.get("end"))
    c = state().ctx
    today = c.clock.today()
    closes = [(s.day, s.total_asset) for s in (c.snapshots.history(start, end) if c.snapshots else [])]
    if (end is None or end >= today) and (not closes or closes[-1][0] < today) and c.clock.is_trading_day(today):
        try:
            closes.append((today, round(c.executor.account().total_asset, 2)))  # today so far, not yet recorded
        except TradingError:
            pass  # an unreachable broker: the curve ends at the last recorded close
    initial = (float(c.settings.get("SIMULATION_BALANCE")) if c.mode == "simulation" or not closes
               else closes[0][1])
    records = c.executor.trade_records(start=start, end=end)
    return ok(build_report(initial, closes, records, today))


def fills_from_records(records: Iterable[Mapping[str, Any]]) -> list[perf_stats.Fill]:
    """Trade records (order_journal rows) in time order as statistics fills."""
    ordered = sorted(records, key=lambda r: (str(r["trade_time"]), r.get("id", 0)))
    return [perf_stats.Fill(_day(r["trading_day"]), r["stock_code"], str(getattr(r["side"], "value", r["side"])),
                            int(r["volume"]), float(r["amount"]), float(r["fees"]), str(r["strategy"]))
            for r in ordered]


def build_report(initial: float, closes: list[tuple[date, float]], records: Iterable[Mapping[str, Any]],
                 today: Optional[date] = None) -> dict[str, Any]:
    """Everything the page shows, as plain JSON values."""
    totals = [total for _, total in closes]
    drawdowns = perf_stats.drawdowns(initial, totals)
    equity = [{"date": day.isoformat(), "total_asset": total, "pnl": round(total - before, 2),
               "drawdown": round(drawdown, 6), "partial": day == today}
              for (day, total), before, drawdown in zip(closes, [initial, *totals[:-1]], drawdowns)]
    records = list(records)
    fills = fills_from_records(records)
    closed, still_open = perf_stats.episodes_from_fills(fills)
    buys = sum(1 for f in fills if f.side == "buy")
    summary = {"initial_capital": round(initial, 2), "final_equity": totals[-1] if totals else None,
               "trading_days": len(totals), **perf_stats.equity_metrics(initial, totals),
               **perf_stats.win_stats(closed), "fees_paid": perf_stats.fees_paid(fills),
               "realized_pnl": sells_realized_pnl(records),
               "episode_realized_pnl": round(sum(e.profit for e in closed), 2), "trade_count": len(fills),
               "buy_count": buys, "sell_count": len(fills) - buys, "open_episodes": len(still_open)}
    rules = [{**row, "label": _rule_label(row["rule"])} for row in perf_stats.rule_stats(fills, closed)]
    episodes = [{"stock_code": e.stock_code, "open_date": e.open_date.isoformat(),
                 "close_date": e.close_date.isoformat() if e.close_date else None, "invested": e.invested,
                 "proceeds": e.proceeds, "profit": e.profit, "rules": [_rule_label(r) for r in e.rules]}
                for e in reversed(closed[-MAX_EPISODES_SHOWN:])]
    return {"summary": summary, "equity": equity, "per_stock": perf_stats.per_stock(closed), "rules": rules,
            "episodes": episodes}


def sells_realized_pnl(records: Iterable[Mapping[str, Any]]) -> float:
    """Realised P&L of every sell, partial ones included: the sum of the journal's own per-sell figure
    (proceeds − sell fees − the cost basis sold), unlike the closed episodes' total, which leaves out
    sells of a position still held."""
    return round(sum(float(r["realized_pnl"]) for r in records
                     if str(getattr(r["side"], "value", r["side"])) == "sell" and r.get("realized_pnl") is not None), 2)


def _rule_label(value: str) -> str:
    try:
        return RULE_LABELS[Rule(value)]
    except (ValueError, KeyError):
        return value


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
