"""Backtest results for people: summary metrics (returns, drawdown, Sharpe/Sortino/Calmar, trade quality, exposure,
refusals, a benchmark), the output files (trades.csv, equity.csv, summary.json, per-stock, per-rule and monthly
tables, equity.png) and the printed summary table."""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Optional

import backtesting.chart as backtest_chart
import core.perf_stats as perf_stats
from backtesting.chart import ChartJob, EquityChart
from backtesting.engine import REFUSAL_LABELS, EngineResult
from core.models import RULE_LABELS, Rule, Side

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
    annualized_return: Optional[float]  # None when it cannot be represented (a huge gain over a few days)
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
    sortino: Optional[float] = None
    calmar: Optional[float] = None  # annualised return / max drawdown
    profit_factor: Optional[float] = None  # gross profit / gross loss of closed episodes
    expectancy: Optional[float] = None  # mean profit per closed episode (CNY)
    sqn: Optional[float] = None
    longest_drawdown_days: int = 0  # trading days
    exposure: float = 0.0  # share of days ending with a position held
    refusals: dict[str, int] = field(default_factory=dict)  # reason -> stock-days refused
    monthly_returns: dict[str, float] = field(default_factory=dict)
    benchmark: Optional[dict[str, Any]] = None  # {"name", "total_return", "excess_return"}
    per_stock: list[dict[str, Any]] = field(default_factory=list)
    per_rule: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["start"], values["end"] = self.start.isoformat(), self.end.isoformat()
        return values


def summarize(result: EngineResult, stocks: int, skipped_files: Optional[list[str]] = None,
              benchmark: Optional["Benchmark"] = None) -> Summary:
    """Metrics of one run. Daily returns are taken on the total equity from one close to the next, starting
    at the first close (DESIGN §7); the annualised return compounds over 252 trading days a year."""
    if not result.equity:
        raise ValueError("回测区间内没有交易日，无法计算结果")
    totals = [point.total for point in result.equity]
    days = [point.day for point in result.equity]
    metrics = perf_stats.equity_metrics(result.initial_capital, totals)
    wins = perf_stats.win_stats(result.closed_episodes)
    buys = sum(1 for trade in result.trades if trade.side is Side.BUY)
    compared = None
    if benchmark is not None:
        line = benchmark.line(days, 1.0)
        compared = {"name": benchmark.name, "total_return": round(line[-1] - 1, 6),
                    "excess_return": round(metrics["total_return"] - (line[-1] - 1), 6)}
    return Summary(
        start=days[0], end=days[-1], trading_days=len(totals),
        initial_capital=round(result.initial_capital, 2), final_equity=round(totals[-1], 2), **metrics,
        trade_count=len(result.trades), buy_count=buys, sell_count=len(result.trades) - buys, **wins,
        fees_paid=round(result.fees_paid, 2), open_positions=len(result.open_positions), stocks=stocks,
        skipped_files=list(skipped_files or []),
        sortino=perf_stats.sortino(perf_stats.close_to_close_returns(totals)),
        calmar=perf_stats.calmar(metrics["annualized_return"], metrics["max_drawdown"]),
        **perf_stats.trade_quality(result.closed_episodes),
        longest_drawdown_days=perf_stats.longest_drawdown_days(result.initial_capital, totals),
        exposure=result.exposure, refusals=dict(result.refusals),
        monthly_returns=perf_stats.monthly_returns(result.initial_capital, days, totals), benchmark=compared,
        per_stock=perf_stats.per_stock(result.closed_episodes),
        per_rule=perf_stats.rule_stats(fills_of(result), perf_stats.episodes_from_fills(fills_of(result))[0]))


@dataclass(frozen=True)
class Benchmark:
    """An index's daily closes (`--benchmark FILE`: a CSV with `date` and `close` columns, such as the CSI 300)."""

    name: str
    closes: dict[date, float]

    @classmethod
    def read(cls, path: str | Path) -> "Benchmark":
        closes: dict[date, float] = {}
        try:
            with open(path, encoding="utf-8-sig", newline="") as handle:
                for row in csv.DictReader(handle):
                    closes[date.fromisoformat(row["date"].strip()[:10])] = float(row["close"])
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"无法读取基准文件 {path}：{exc}（需要 date 与 close 两列）") from None
        if not closes:
            raise ValueError(f"基准文件 {path} 中没有数据")
        return cls(Path(path).stem, dict(sorted(closes.items())))

    def line(self, days: list[date], start_value: float) -> list[float]:
        """The index over `days` scaled to `start_value` at the close before the first day (the run's own
        starting point); each day takes the index's last close on or before it."""
        known = list(self.closes)
        before = [d for d in known if d < days[0]]
        base = self.closes[before[-1]] if before else self.closes[known[0]]
        line, index, last = [], 0, base
        for day in days:
            while index < len(known) and known[index] <= day:
                last = self.closes[known[index]]
                index += 1
            line.append(start_value * last / base)
        return line


def fills_of(result: EngineResult) -> list[perf_stats.Fill]:
    """The run's trades in the shape the shared statistics take (the 收益 page rebuilds the same from records)."""
    return [perf_stats.Fill(t.day, t.stock_code, t.side.value, t.volume, t.amount, t.fees, t.rule.value)
            for t in result.trades]


def write_outputs(out_dir: Path, result: EngineResult, summary: Summary, extra: Optional[dict[str, Any]] = None,
                  plot: bool = True, begin_chart: ChartStarter = backtest_chart.drawn_here,
                  benchmark: Optional[Benchmark] = None) -> list[Path]:
    """Write trades.csv, equity.csv, summary.json (summary + `extra`), per_stock.csv, per_rule.csv,
    monthly_returns.csv and, with `plot`, equity.png, begun first so that a ChartHelper's process draws it while
    the other files are written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chart_job = begin_chart(out_dir / "equity.png", equity_chart(result, summary, benchmark)) if plot else None
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
    written.append(_write_rows(out_dir / "per_stock.csv", summary.per_stock))
    written.append(_write_rows(out_dir / "per_rule.csv", [{**row, "rule_label": _rule_label(row["rule"])}
                                                            for row in summary.per_rule]))
    written.append(_write_rows(out_dir / "monthly_returns.csv",
                               [{"month": month, "return": value} for month, value in summary.monthly_returns.items()]))
    if chart_job is not None:
        written.append(chart_job())
    return written


def equity_chart(result: EngineResult, summary: Summary, benchmark: Optional[Benchmark] = None) -> EquityChart:
    """What equity.png shows of a run (with the benchmark scaled to the initial capital when given)."""
    totals = [point.total for point in result.equity]
    line = benchmark.line([point.day for point in result.equity], result.initial_capital) if benchmark else []
    return EquityChart(days=[point.day.isoformat() for point in result.equity], totals=totals,
                       drawdowns=perf_stats.drawdowns(result.initial_capital, totals),
                       initial_capital=result.initial_capital, start=summary.start.isoformat(),
                       end=summary.end.isoformat(), total_return=summary.total_return,
                       max_drawdown=summary.max_drawdown, benchmark=[round(v, 2) for v in line],
                       benchmark_name=benchmark.name if benchmark else "")


def format_table(summary: Summary, elapsed: Optional[float] = None) -> str:
    """The summary as an aligned two-column table with Chinese labels."""
    rows = [
        ("回测区间", f"{summary.start} ~ {summary.end}（{summary.trading_days} 个交易日）"),
        ("股票数", f"{summary.stocks}" + (f"（跳过 {len(summary.skipped_files)} 个文件）" if summary.skipped_files else "")),
        ("初始资金", f"{summary.initial_capital:,.2f}"),
        ("期末权益", f"{summary.final_equity:,.2f}"),
        ("总收益率", _percent(summary.total_return)),
        ("年化收益率", "—" if summary.annualized_return is None else _percent(summary.annualized_return)),
        ("最大回撤", _percent(summary.max_drawdown)),
        ("夏普比率", _ratio(summary.sharpe)),
        ("索提诺比率", _ratio(summary.sortino)),
        ("卡玛比率", _ratio(summary.calmar)),
        ("最长回撤期", f"{summary.longest_drawdown_days} 个交易日"),
        ("持仓时间占比", _percent(summary.exposure)),
        ("交易笔数", f"{summary.trade_count}（买 {summary.buy_count} / 卖 {summary.sell_count}）"),
        ("已结束持仓周期", f"{summary.closed_episodes}（盈利 {summary.winning_episodes}）"),
        ("胜率", "—" if summary.win_rate is None else _percent(summary.win_rate)),
        ("盈利因子", _ratio(summary.profit_factor)),
        ("期望收益/周期", "—" if summary.expectancy is None else f"{summary.expectancy:,.2f}"),
        ("SQN", _ratio(summary.sqn)),
        ("手续费合计", f"{summary.fees_paid:,.2f}"),
        ("期末持仓", f"{summary.open_positions} 只"),
    ]
    if summary.benchmark is not None:
        rows[5:5] = [("基准收益", f"{_percent(summary.benchmark['total_return'])}（{summary.benchmark['name']}）"),
                     ("超额收益", _percent(summary.benchmark["excess_return"]))]
    refused = [f"{REFUSAL_LABELS[k]} {v}" for k, v in summary.refusals.items() if v]
    if refused:
        rows.append(("未成交次数", "，".join(refused) + "（按股票·日计）"))
    if elapsed is not None:
        rows.append(("耗时", f"{elapsed:.2f} 秒"))
    width = max(_display_width(label) for label, _ in rows)
    lines = ["回测结果", "-" * (width + 40)]
    lines += [f"{label}{' ' * (width - _display_width(label))}  {value}" for label, value in rows]
    return "\n".join(lines)


def format_details(summary: Summary, top: int = 5) -> str:
    """The monthly returns as a year × month table, the per-rule table and the best and worst stocks."""
    lines = ["", "月度收益（%）", "年份   " + "".join(f"{m:>7d}月" for m in range(1, 13)) + "     全年"]
    years: dict[str, dict[int, float]] = {}
    for month, value in summary.monthly_returns.items():
        years.setdefault(month[:4], {})[int(month[5:])] = value
    for year, months in years.items():
        growth = 1.0
        for value in months.values():
            growth *= 1 + value
        cells = "".join(f"{months[m] * 100:>8.2f}" if m in months else f"{'':>8}" for m in range(1, 13))
        lines.append(f"{year}  {cells}{(growth - 1) * 100:>9.2f}")
    if summary.per_rule:
        lines += ["", "按规则", "规则        成交笔数          成交金额  涉及周期    周期平均盈亏     胜率"]
        for row in summary.per_rule:
            win = "—" if row["win_rate"] is None else f"{row['win_rate'] * 100:.1f}%"
            average = "—" if row["avg_episode_pnl"] is None else f"{row['avg_episode_pnl']:,.2f}"
            label = _rule_label(row["rule"])
            lines.append(f"{label}{' ' * (10 - _display_width(label))}{row['fills']:>10}{row['amount']:>18,.2f}"
                         f"{row['episodes']:>10}{average:>16}{win:>9}")
    if summary.per_stock:
        best, worst = summary.per_stock[:top], summary.per_stock[-top:][::-1]
        lines += ["", f"已实现盈亏最好的 {len(best)} 只 / 最差的 {len(worst)} 只股票（全部见 per_stock.csv）"]
        lines += [f"  {row['stock_code']}  {row['realized_pnl']:>14,.2f}  （{row['episodes']} 个周期，盈利 {row['wins']}）"
                  for row in best]
        lines.append("  ……")
        lines += [f"  {row['stock_code']}  {row['realized_pnl']:>14,.2f}  （{row['episodes']} 个周期，盈利 {row['wins']}）"
                  for row in worst]
    return "\n".join(lines)


# ---- helpers ----------------------------------------------------------------------------------------

def _money(value: float) -> str:
    return f"{value:.2f}" if abs(value - round(value, 2)) < 1e-9 else f"{value:.3f}"


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _rule_label(rule: str) -> str:
    try:
        return RULE_LABELS[Rule(rule)]
    except (ValueError, KeyError):
        return rule


def _ratio(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.2f}"


def _percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def _display_width(text: str) -> int:
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)
