"""Backtest of the trading rules on historical daily bars: the command line; `run_backtest()` (the parameters,
the bars, the engine, the output files) lives in backtesting/run.py and is imported here.
Usage: python backtest.py --data DIR [--codes …] [--start] [--end] [--out DIR];
`python backtest.py optimize …` (backtesting/optimize.py) and `python backtest.py compare …` (backtesting/compare.py)."""
from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path
from typing import Callable, Optional, Sequence, TextIO

import market_rules
from backtesting.data import DataProblem
from backtesting.engine import Slippage
from backtesting.market import default_cache_dir
from backtesting.report import Benchmark, format_details, format_table
from backtesting.data import load_events
from backtesting.run import BacktestRun, build_settings, read_stock_params, run_backtest
from persistence.config_store import ConfigError
from core.models import TradingError

__all__ = ["BacktestRun", "ProgressBar", "build_settings", "main", "parse_slippage", "read_stock_params", "run_backtest"]

DEFAULT_OUT = "backtest_out"
PROGRESS_DELAY_SECONDS = 2.0  # runs shorter than this show no progress bar


class ProgressBar:
    """A one-line progress bar on a stream, shown only once a run has lasted `delay` seconds."""

    def __init__(self, stream: TextIO, delay: float = PROGRESS_DELAY_SECONDS,
                 timer: Callable[[], float] = time.monotonic, width: int = 30, label: str = "回测进度",
                 unit: str = "天"):
        self._stream, self._delay, self._timer, self._width = stream, delay, timer, width
        self._label, self._unit = label, unit
        self._started = timer()
        self._last_drawn = -1.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = self._timer()
        if now - self._started < self._delay or (done < total and now - self._last_drawn < 0.2):
            return
        self._last_drawn = now
        filled = int(self._width * done / max(total, 1))
        self._stream.write(f"\r{self._label} [{'#' * filled}{'.' * (self._width - filled)}] {done}/{total} {self._unit}")
        if done >= total:
            self._stream.write("\n")
        self._stream.flush()
        self.shown = True


def main(argv: Optional[Sequence[str]] = None, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["optimize"]:
        import backtesting.optimize as backtest_optimize

        return backtest_optimize.main(argv[1:], stdout, stderr)
    if argv[:1] == ["compare"]:
        import backtesting.compare as backtest_compare

        return backtest_compare.main(argv[1:], stdout, stderr)
    if argv[:2] == ["cache", "clear"]:
        return _clear_cache(argv[2:], stdout)
    args = _parser().parse_args(argv)
    if __name__ == "__main__":  # a process of its own: TA-Lib need not load pandas (see the function)
        from backtesting.engine import preload_talib_without_pandas

        preload_talib_without_pandas()
    try:
        settings, warnings = build_settings(args.params, args.set or ())
    except ConfigError as exc:
        for key, message in exc.errors.items():
            print(f"参数错误 {key}：{message}", file=stderr)
        return 2
    for warning in warnings:
        print(f"参数提醒：{warning}", file=stderr)
    try:  # issue 28: the same T+0 list and listing dates as the daemon (T0_ETF_FILE, LISTING_DATES_FILE)
        market_rules.use_instrument_data(market_rules.instrument_data_from_config(settings))
    except ValueError as exc:
        print(f"回测失败：{exc}", file=stderr)
        return 2
    try:
        stock_params = read_stock_params(args.stock_params, settings) if args.stock_params else None
    except ConfigError as exc:
        for key, message in exc.errors.items():
            print(f"个股参数错误 {key}：{message}", file=stderr)
        return 2
    codes = [code for item in (args.codes or []) for code in item.split(",") if code.strip()] or None
    began = time.perf_counter()
    try:
        benchmark = Benchmark.read(args.benchmark) if args.benchmark else None
        cache = None if args.no_cache else (args.cache or default_cache_dir())
        events = load_events(args.events) if args.events else None  # issue 28: raw bars + ex-rights events
        run = run_backtest(args.data, settings, codes, args.start, args.end, args.out, plot=not args.no_plot,
                           progress=ProgressBar(stderr), cache_dir=cache, workers=args.workers,
                           load_progress=ProgressBar(stderr, label="读取行情", unit="个文件"),
                           stock_params=stock_params, slippage=args.slippage, benchmark=benchmark, events=events)
    except (TradingError, ConfigError, ValueError) as exc:
        print(f"回测失败：{exc}", file=stderr)
        return 2
    _print_problems(run.problems, stderr)
    print(format_table(run.summary, time.perf_counter() - began), file=stdout)
    print(format_details(run.summary), file=stdout)
    print(f"结果已写入 {Path(args.out).resolve()}：" + "、".join(p.name for p in run.output_files), file=stdout)
    return 0


# ---- helpers ----------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="用历史日线回测止损、止盈、补仓和 MACD 买入规则（DESIGN §7 的撮合语义）")
    parser.add_argument("--data", required=True, help="日线目录：<代码>.csv（date,open,high,low,close,volume）或通达信目录（含 vipdoc）")
    parser.add_argument("--codes", nargs="+", help="只回测这些股票（空格或逗号分隔），默认目录中全部")
    parser.add_argument("--start", type=_date, help="开始日期 YYYY-MM-DD")
    parser.add_argument("--end", type=_date, help="结束日期 YYYY-MM-DD")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"结果目录（默认 {DEFAULT_OUT}）")
    parser.add_argument("--params", help="参数 JSON 文件：{\"STOP_LOSS_RATIO\": -0.08, ...}，覆盖 config.py 默认值")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="覆盖单个参数，可重复，如 --set ENABLE_MA_FILTER=false")
    parser.add_argument("--stock-params", help="个股参数 JSON 文件：{\"600036.SH\": {\"STOP_LOSS_RATIO\": -0.05}, ...}，"
                                               "只覆盖该股票（与守护进程的个股参数相同的键和校验）")
    parser.add_argument("--events", help="除权除息事件 CSV（code,ex_date,cash_per_share,shares_per_share），"
                                         "用于不复权日线：除权日开盘前按因子调整持仓价位、送股与现金红利")
    parser.add_argument("--no-plot", action="store_true", help="不生成 equity.png")
    parser.add_argument("--cache", help="校验后行情的缓存目录（按文件内容索引），默认 ~/.cache/miniqmt-backtest")
    parser.add_argument("--no-cache", action="store_true", help="不使用也不写入行情缓存")
    parser.add_argument("--workers", type=int, help="并行读取行情文件的进程数（默认 CPU 核数）")
    parser.add_argument("--benchmark", help="基准指数日线 CSV（含 date、close 列，如沪深300），报告基准收益与超额收益并画在权益图上")
    parser.add_argument("--slippage", type=parse_slippage, help="成交滑点：如 2t（2 个最小价位）或 5bp（万分之五），"
                                                               "买入价更高、卖出价更低，用于检验结果对成交价的敏感度")
    return parser


def parse_slippage(text: str) -> Slippage:
    """`2t` (ticks) or `5bp` / `5bps` (basis points)."""
    cleaned = text.strip().lower()
    try:
        if cleaned.endswith("bps") or cleaned.endswith("bp"):
            bps = float(cleaned.rstrip("s")[:-2])
            if 0 <= bps <= 1000:
                return Slippage(bps=bps)
        elif cleaned.endswith("t") and int(cleaned[:-1]) >= 0:
            return Slippage(ticks=int(cleaned[:-1]))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"滑点格式应为 N t（最小价位数）或 N bp（基点，0~1000）：{text}")


def _clear_cache(argv: Sequence[str], stdout: TextIO) -> int:
    """`backtest.py cache clear [--cache DIR]`: empties the validated-bars cache."""
    from backtesting.market import clear_cache

    parser = argparse.ArgumentParser(prog="backtest.py cache clear", description="清空回测行情缓存")
    parser.add_argument("--cache", help="缓存目录，默认 ~/.cache/miniqmt-backtest")
    args = parser.parse_args(argv)
    cache = Path(args.cache or default_cache_dir())
    removed, freed = clear_cache(cache) if cache.is_dir() else (0, 0)
    print(f"已清空回测行情缓存 {cache}：删除 {removed} 个文件，释放 {freed / 1024 / 1024:.1f} MB", file=stdout)
    return 0


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"日期格式应为 YYYY-MM-DD：{text}") from None


def _print_problems(problems: list[DataProblem], stream: TextIO, limit: int = 20) -> None:
    for problem in problems[:limit]:
        print(f"数据问题：{problem.describe()}", file=stream)
    if len(problems) > limit:
        print(f"……另有 {len(problems) - limit} 条数据问题，见 summary.json", file=stream)


if __name__ == "__main__":
    sys.exit(main())
