"""Backtest results for people: summary metrics (returns, drawdown, Sharpe, win rate), the output files
(trades.csv, equity.csv, summary.json, equity.png) and the printed summary table."""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Optional

import backtest_chart
import perf_stats
from backtest_chart import ChartJob, EquityChart
from backtest_engine import EngineResult
from models import Side

TRADE_COLUMNS = ("date", "stock_code", "side", "price", "volume", "amount", "fees", "rule")
EQUITY_COLUMNS = ("date", "cash", "market_value", "total")
ChartStarter = Callable[[Path, EquityChart], ChartJob]


@dataclass(frozen=True)
class Summary:
    start: date
    end: date
    trading_days: int
    initial_capital: float
    final_equity: float
    total_return: float
    annualized_return: float
    max_drawdown: float  # positive fraction of the running peak
    sharpe: Optional[float]  # mean / population std of daily returns × √252; None when undefined (flat)
    trade_count: int
    buy_count: int
    sell_count: int
    closed_episodes: int
    winning_episodes: int
    win_rate: Optional[float]  # winning / closed episodes; None without a closed episode
    fees_paid: float
    open_positions: int
    stocks: int
    skipped_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["start"], values["end"] = self.start.isoformat(), self.end.isoformat()
        return values


def summarize(result: EngineResult, stocks: int, skipped_files: Optional[list[str]] = None) -> Summary:
    """Metrics of one run. Daily returns are taken on the total equity from one close to the next, starting
    at the first close (DESIGN §7); the annualised return compounds over 252 trading days a year."""
    if not result.equity:
        raise ValueError("回测区间内没有交易日，无法计算结果")
    totals = [point.total for point in result.equity]
    metrics = perf_stats.equity_metrics(result.initial_capital, totals)
    wins = perf_stats.win_stats(result.closed_episodes)
    buys = sum(1 for trade in result.trades if trade.side is Side.BUY)
    return Summary(
        start=result.equity[0].day, end=result.equity[-1].day, trading_days=len(totals),
        initial_capital=round(result.initial_capital, 2), final_equity=round(totals[-1], 2), **metrics,
        trade_count=len(result.trades), buy_count=buys, sell_count=len(result.trades) - buys, **wins,
        fees_paid=round(result.fees_paid, 2), open_positions=len(result.open_positions), stocks=stocks,
        skipped_files=list(skipped_files or []))


def fills_of(result: EngineResult) -> list[perf_stats.Fill]:
    """The run's trades in the shape the shared statistics take (the 收益 page rebuilds the same from records)."""
    return [perf_stats.Fill(t.day, t.stock_code, t.side.value, t.volume, t.amount, t.fees, t.rule.value)
            for t in result.trades]


def write_outputs(out_dir: Path, result: EngineResult, summary: Summary, extra: Optional[dict[str, Any]] = None,
                  plot: bool = True, begin_chart: ChartStarter = backtest_chart.drawn_here) -> list[Path]:
    """Write trades.csv, equity.csv, summary.json (summary + `extra`) and, with `plot`, equity.png, begun
    first so that a ChartHelper's process draws it while the other files are written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chart_job = begin_chart(out_dir / "equity.png", equity_chart(result, summary)) if plot else None
    written = [out_dir / "trades.csv", out_dir / "equity.csv", out_dir / "summary.json"]
    with open(written[0], "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRADE_COLUMNS)
        for trade in result.trades:
            writer.writerow((trade.day.isoformat(), trade.stock_code, trade.side.value, _money(trade.price),
                             trade.volume, _money(trade.amount), _money(trade.fees), trade.rule.value))
    with open(written[1], "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(EQUITY_COLUMNS)
        for point in result.equity:
            writer.writerow((point.day.isoformat(), _money(point.cash), _money(point.market_value),
                             _money(point.total)))
    document = {**summary.to_dict(), **(extra or {})}
    written[2].write_text(json.dumps(document, ensure_ascii=False, indent=2), encoding="utf-8")
    if chart_job is not None:
        written.append(chart_job())
    return written


def equity_chart(result: EngineResult, summary: Summary) -> EquityChart:
    """What equity.png shows of a run."""
    totals = [point.total for point in result.equity]
    return EquityChart(days=[point.day.isoformat() for point in result.equity], totals=totals,
                       drawdowns=perf_stats.drawdowns(result.initial_capital, totals),
                       initial_capital=result.initial_capital, start=summary.start.isoformat(),
                       end=summary.end.isoformat(), total_return=summary.total_return,
                       max_drawdown=summary.max_drawdown)


def format_table(summary: Summary, elapsed: Optional[float] = None) -> str:
    """The summary as an aligned two-column table with Chinese labels."""
    rows = [
        ("回测区间", f"{summary.start} ~ {summary.end}（{summary.trading_days} 个交易日）"),
        ("股票数", f"{summary.stocks}" + (f"（跳过 {len(summary.skipped_files)} 个文件）" if summary.skipped_files else "")),
        ("初始资金", f"{summary.initial_capital:,.2f}"),
        ("期末权益", f"{summary.final_equity:,.2f}"),
        ("总收益率", _percent(summary.total_return)),
        ("年化收益率", _percent(summary.annualized_return)),
        ("最大回撤", _percent(summary.max_drawdown)),
        ("夏普比率", "—" if summary.sharpe is None else f"{summary.sharpe:.2f}"),
        ("交易笔数", f"{summary.trade_count}（买 {summary.buy_count} / 卖 {summary.sell_count}）"),
        ("已结束持仓周期", f"{summary.closed_episodes}（盈利 {summary.winning_episodes}）"),
        ("胜率", "—" if summary.win_rate is None else _percent(summary.win_rate)),
        ("手续费合计", f"{summary.fees_paid:,.2f}"),
        ("期末持仓", f"{summary.open_positions} 只"),
    ]
    if elapsed is not None:
        rows.append(("耗时", f"{elapsed:.2f} 秒"))
    width = max(_display_width(label) for label, _ in rows)
    lines = ["回测结果", "-" * (width + 40)]
    lines += [f"{label}{' ' * (width - _display_width(label))}  {value}" for label, value in rows]
    return "\n".join(lines)


# ---- helpers ----------------------------------------------------------------------------------------

def _money(value: float) -> str:
    return f"{value:.2f}" if abs(value - round(value, 2)) < 1e-9 else f"{value:.3f}"


def _percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def _display_width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)
