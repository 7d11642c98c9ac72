"""The backtest's equity-curve PNG, drawn by a helper process started together with the run.

Importing matplotlib costs about 0.45 s of CPU, half the whole CLI time of 240 stocks × 1,395 days. The helper
imports it on the second core while the backtest runs, then waits for the curve on its stdin; only the
drawing itself (~0.1 s) is left after the run. If the helper cannot start, dies, or overruns, the chart is
drawn in this process instead, so the PNG is always written when asked for.
This module is also the helper's program: `python backtesting/chart.py` (it imports nothing of the project)."""
from __future__ import annotations

import functools
import json
import os
import logging
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Callable, Optional, Sequence

log = logging.getLogger(__name__)

HELPER_TIMEOUT_SECONDS = 60.0  # a helper slower than this is killed and the chart drawn here
CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC", "SimHei", "Microsoft YaHei",
             "PingFang SC")
CJK_FONT_FILES = ("wqy-microhei", "notosanscjk", "sourcehansans", "simhei", "msyh", "pingfang")  # file names


@dataclass(frozen=True)
class EquityChart:
    """What the chart shows, as plain JSON-able values (it crosses a pipe to the helper)."""

    days: list[str]  # ISO dates
    totals: list[float]
    drawdowns: list[float]  # positive fractions of the running peak
    initial_capital: float
    start: str
    end: str
    total_return: float
    max_drawdown: float
    benchmark: list[float] = field(default_factory=list)  # the index scaled to the initial capital, or empty
    benchmark_name: str = ""


ChartJob = Callable[[], Path]  # finishes one chart and returns the PNG's path


def drawn_here(path: Path, chart: EquityChart) -> ChartJob:
    """A chart drawn in this process when its job is run."""
    return functools.partial(draw, path, chart)


def draw(path: Path, chart: EquityChart) -> Path:
    """Equity curve and drawdown as a PNG (matplotlib's Agg canvas; no GUI, no pyplot state)."""
    from datetime import date

    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    font = cjk_font()
    labels = _labels(font is not None)
    days = [date.fromisoformat(day) for day in chart.days]
    with matplotlib.rc_context(font_settings(font)):
        figure = Figure(figsize=(11, 6), dpi=100)
        FigureCanvasAgg(figure)
        top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        top.plot(days, chart.totals, color="#c0392b", linewidth=1.2, label=labels["equity"])
        if chart.benchmark:
            top.plot(days, chart.benchmark, color="#7f8c8d", linewidth=1.0,
                     label=labels["benchmark"].format(name=chart.benchmark_name))
            top.legend(loc="upper left")
        top.axhline(chart.initial_capital, color="#7f8c8d", linewidth=0.8, linestyle="--")
        top.set_ylabel(labels["equity"])
        top.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        top.set_title(labels["title"].format(start=chart.start, end=chart.end, ret=chart.total_return * 100,
                                             dd=chart.max_drawdown * 100))
        top.grid(alpha=0.3)
        bottom.fill_between(days, [-d * 100 for d in chart.drawdowns], 0, color="#2980b9", alpha=0.4)
        bottom.set_ylabel(labels["drawdown"])
        bottom.grid(alpha=0.3)
        figure.autofmt_xdate()
        # fixed margins instead of tight_layout(): that lays the figure out by drawing it once more
        figure.subplots_adjust(left=0.11, right=0.98, top=0.93, bottom=0.13, hspace=0.08)
        figure.savefig(path)
    return Path(path)


@functools.lru_cache(maxsize=1)
def cjk_font() -> Optional[str]:
    """The first installed font that has Chinese glyphs, or None (looked up once per process). matplotlib lists
    the fonts it found when it first ran; a Chinese font installed since is looked for among the system's font
    files (~15 ms)."""
    from matplotlib import font_manager

    found = _first_cjk(font_manager.fontManager.ttflist)
    if found is None:
        for file in font_manager.findSystemFonts():
            if any(part in Path(file).name.lower() for part in CJK_FONT_FILES):
                font_manager.fontManager.addfont(file)
        found = _first_cjk(font_manager.fontManager.ttflist)
    return found


def font_settings(font: Optional[str]) -> dict:
    """matplotlib settings that draw text in `font` (a cjk_font() answer), DejaVu Sans for what it lacks."""
    return {"font.family": "sans-serif", "font.sans-serif": [font, "DejaVu Sans"] if font else ["DejaVu Sans"],
            "axes.unicode_minus": False}


def _warm_up() -> None:
    """Everything draw() needs before it has data: the imports, the font list, and one small figure with the
    labels' glyphs (the first text drawn with a Chinese font loads it: ~0.2 s)."""
    import io

    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib import ticker  # noqa: F401

    font = cjk_font()
    with matplotlib.rc_context(font_settings(font)):
        figure = Figure(figsize=(2, 1), dpi=50)
        FigureCanvasAgg(figure)
        figure.subplots().set_title("".join(_labels(font is not None).values()))
        figure.savefig(io.BytesIO(), format="png")


def _first_cjk(fonts) -> Optional[str]:
    available = {entry.name for entry in fonts}
    return next((name for name in CJK_FONTS if name in available), None)


def _labels(chinese: bool) -> dict[str, str]:
    if chinese:
        return {"title": "回测权益曲线 {start} ~ {end}  总收益 {ret:.2f}%  最大回撤 {dd:.2f}%",
                "equity": "总资产（元）", "drawdown": "回撤（%）", "benchmark": "基准 {name}（同起点）"}
    # Without a CJK font Chinese would render as empty boxes.
    return {"title": "Equity {start} ~ {end}  return {ret:.2f}%  max drawdown {dd:.2f}%",
            "equity": "Total assets (CNY)", "drawdown": "Drawdown (%)", "benchmark": "Benchmark {name} (same start)"}


class ChartHelper:
    """The helper process of one run: `start()` it before the work, `begin()` the chart when the run is done,
    `close()` it in any case (or use it as a context manager). `ChartHelper(None)` draws in this process."""

    def __init__(self, process: Optional[subprocess.Popen], timeout: float = HELPER_TIMEOUT_SECONDS):
        self._process = process
        self._timeout = timeout

    @property
    def process(self) -> Optional[subprocess.Popen]:
        """The helper while it has not been handed a chart (None after `begin()` or `close()`)."""
        return self._process

    @classmethod
    def start(cls, command: Optional[Sequence[str]] = None, timeout: float = HELPER_TIMEOUT_SECONDS) -> "ChartHelper":
        command = list(command or [sys.executable, str(Path(__file__).resolve())])
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace")
        except OSError as exc:
            log.warning("无法启动画图子进程（%s），改在本进程中画资金曲线", exc)
            process = None
        return cls(process, timeout)

    def begin(self, path: Path, chart: EquityChart) -> ChartJob:
        """Hands the chart to the helper, which draws it while the caller writes its other files; the returned
        job waits for the PNG (drawn here instead when the helper fails)."""
        path = Path(path).resolve()
        process, self._process = self._process, None
        if process is None:
            return drawn_here(path, chart)
        try:
            process.stdin.write(json.dumps({"path": str(path), "chart": asdict(chart)}) + "\n")  # ASCII JSON
            process.stdin.flush()
        except (OSError, ValueError) as exc:
            log.warning("画图子进程无法接收数据（%s），改在本进程中画", exc)
            _stop(process)
            return drawn_here(path, chart)
        return functools.partial(self._finish, process, path, chart)

    def _finish(self, process: subprocess.Popen, path: Path, chart: EquityChart) -> Path:
        try:
            _, errors = process.communicate(timeout=self._timeout)
            if process.returncode == 0 and path.is_file():
                return path
            log.warning("画图子进程失败（退出码 %s）：%s；改在本进程中画", process.returncode,
                        (errors or "").strip()[-300:])
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            log.warning("画图子进程无响应（%s），改在本进程中画", exc)
            _stop(process)
        return draw(path, chart)

    def close(self) -> None:
        """Ends a helper that was never asked to draw (the run failed, or wrote no files)."""
        if self._process is not None:
            process, self._process = self._process, None
            _stop(process)

    def __enter__(self) -> "ChartHelper":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    try:
        process.communicate(timeout=5)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass


def serve(requests: IO[str]) -> int:
    """The helper's program: import matplotlib now, then draw the one chart that arrives on `requests` (an
    empty line or end of input, e.g. the parent gone, ends it without drawing)."""
    _warm_up()  # while the parent still computes
    line = requests.readline()
    if not line.strip():
        return 0
    request = json.loads(line)
    draw(Path(request["path"]), EquityChart(**request["chart"]))
    return 0


if __name__ == "__main__":
    status = serve(sys.stdin)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # the PNG is written and closed; tearing matplotlib down would only delay the parent
