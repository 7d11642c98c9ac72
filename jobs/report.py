"""The daily report after the close: its figures (pure, from the day's records), the PNG equity chart
(matplotlib, no display) and one self-contained HTML file under `<data dir>/reports/` (the chart embedded as
base64, no external files), plus the short summary sent as a notification."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Optional

REPORT_PREFIX = "daily_report_"


@dataclass
class ReportData:
    day: date
    total_asset: float
    cash: float
    market_value: float
    day_pnl: Optional[float]
    trades: list[dict[str, Any]]  # trade_records rows of the day
    signals: list[dict[str, Any]]  # id, stock_code, rule_label, status, reason
    positions: list[dict[str, Any]]  # code, name, volume, price, cost, triggers {label: (price, distance %)}
    alarms: list[str]
    backups: list[str]
    equity: list[tuple[date, float]] = field(default_factory=list)  # snapshots up to the day
    status: str = ""  # TradingState.status_line(): 交易状态：运行 / 暂停 / 紧急停止 with the reason
    chores: str = ""  # issue 28 §3: the day's subscriptions, allotments and repo (chores.jobs.ChoreJobs.summary)

    @property
    def buy_amount(self) -> float:
        return round(sum(t["amount"] for t in self.trades if t["side"] == "buy"), 2)

    @property
    def sell_amount(self) -> float:
        return round(sum(t["amount"] for t in self.trades if t["side"] == "sell"), 2)

    @property
    def fees(self) -> float:
        return round(sum(t["fees"] for t in self.trades), 2)

    @property
    def realized_pnl(self) -> float:
        return round(sum(t["realized_pnl"] or 0.0 for t in self.trades), 2)

    def summary(self) -> str:
        pnl = "—" if self.day_pnl is None else f"{self.day_pnl:+.2f}"
        status = f"{self.status}；" if self.status else ""
        return (f"{self.day} 日报：{status}总资产 {self.total_asset:.2f} 元，当日盈亏 {pnl} 元；成交 {len(self.trades)} 笔"
                f"（买入 {self.buy_amount:.2f} 元，卖出 {self.sell_amount:.2f} 元，费用 {self.fees:.2f} 元，"
                f"已实现盈亏 {self.realized_pnl:+.2f} 元）；持仓 {len(self.positions)} 只；告警 {len(self.alarms)} 条"
                + (f"；{self.chores}" if self.chores else ""))


def distance(price: float, trigger: Optional[float]) -> Optional[float]:
    """Percent the price must move to reach `trigger` (negative = down)."""
    if not trigger or not price:
        return None
    return round((trigger / price - 1) * 100, 2)


def equity_png(points: list[tuple[date, float]]) -> bytes:
    """The equity curve as PNG bytes: matplotlib's Agg canvas, no pyplot (its global figure state is no place for a
    daemon's job thread), Chinese title when a Chinese font is installed (backtesting.chart's font lookup)."""
    import matplotlib
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from backtesting.chart import cjk_font, font_settings

    font = cjk_font()
    with matplotlib.rc_context(font_settings(font)):
        fig = Figure(figsize=(7, 2.6), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color="#1f6feb")
            if len(points) == 1:  # one day: a readable axis around it rather than matplotlib's default decade
                ax.set_xlim(points[0][0] - timedelta(days=3), points[0][0] + timedelta(days=3))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.set_title("总资产（元）" if font else "Equity (CNY)")  # without a Chinese font it would be empty boxes
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def render_html(data: ReportData, png: bytes) -> str:
    esc = html.escape

    def table(headers: list[str], rows: list[list[Any]]) -> str:
        if not rows:
            return "<p class=muted>无</p>"
        head = "".join(f"<th>{esc(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{esc('' if c is None else str(c))}</td>" for c in row) + "</tr>"
                       for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    pnl = "—" if data.day_pnl is None else f"{data.day_pnl:+.2f}"
    trades = [[t["trade_time"].strftime("%H:%M:%S") if hasattr(t["trade_time"], "strftime") else t["trade_time"],
               t["stock_code"], t.get("stock_name", ""), "买入" if t["side"] == "buy" else "卖出", t["strategy"],
               f"{t['price']:.2f}", t["volume"], f"{t['amount']:.2f}", f"{t['fees']:.2f}",
               "" if t["realized_pnl"] is None else f"{t['realized_pnl']:+.2f}"] for t in data.trades]
    signals = [[s["id"], s["stock_code"], s["rule_label"], s["status"], s["reason"]] for s in data.signals]
    positions = [[p["stock_code"], p["stock_name"], p["volume"], f"{p['price']:.2f}", f"{p['cost_price']:.3f}",
                  "；".join(f"{label} {price:.2f}（{dist:+.2f}%）" for label, (price, dist) in p["triggers"].items())]
                 for p in data.positions]
    image = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>每日报告 {data.day}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;margin:8px 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}th{{background:#f3f3f3}}.muted{{color:#888}}
.cards span{{display:inline-block;margin-right:24px}}</style></head><body>
<h1>每日报告 {data.day}</h1>
<p id="trading-state"><b>{esc(data.status)}</b></p>
<div class="cards"><span>总资产 <b id="total-asset">{data.total_asset:.2f}</b> 元</span>
<span>当日盈亏 <b id="day-pnl">{pnl}</b> 元</span><span>可用资金 {data.cash:.2f} 元</span>
<span>持仓市值 {data.market_value:.2f} 元</span></div>
<p>成交 <b id="trade-count">{len(data.trades)}</b> 笔；买入 <b id="buy-amount">{data.buy_amount:.2f}</b> 元；
卖出 <b id="sell-amount">{data.sell_amount:.2f}</b> 元；费用 <b id="fees">{data.fees:.2f}</b> 元；
已实现盈亏 <b id="realized-pnl">{data.realized_pnl:+.2f}</b> 元</p>
<img alt="资产曲线" src="data:image/png;base64,{image}">
<h2>当日成交</h2>{table(["时间", "代码", "名称", "方向", "规则", "价格", "数量", "金额", "费用", "已实现盈亏"], trades)}
<h2>交易信号</h2>{table(["编号", "代码", "规则", "状态", "原因"], signals)}
<h2>持仓与触发价距离</h2>{table(["代码", "名称", "持仓", "现价", "成本价", "触发价（距现价）"], positions)}
<h2>申购与逆回购</h2><p id="chores">{esc(data.chores) or "无"}</p>
<h2>当日告警</h2>{table(["告警"], [[a] for a in data.alarms])}
<h2>数据库备份</h2>{table(["备份"], [[b] for b in data.backups])}
</body></html>
"""


def write_report(reports_dir: Path, data: ReportData) -> Path:
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"{REPORT_PREFIX}{data.day.isoformat()}.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_html(data, equity_png(data.equity)), encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a report
    return path


def list_reports(reports_dir: Path) -> list[dict[str, Any]]:
    if not reports_dir.is_dir():
        return []
    return [{"day": p.stem.removeprefix(REPORT_PREFIX), "file": p.name, "size": p.stat().st_size}
            for p in sorted(reports_dir.glob(f"{REPORT_PREFIX}*.html"), reverse=True)]


def report_path(reports_dir: Path, day: str) -> Optional[Path]:
    """The report file of `day` (YYYY-MM-DD), or None; the name is rebuilt, never taken from the request."""
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        return None
    path = reports_dir / f"{REPORT_PREFIX}{parsed.isoformat()}.html"
    return path if path.is_file() else None
