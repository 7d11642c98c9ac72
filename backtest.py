"""Backtest of the trading rules on historical daily bars: the command line and `run_backtest()`, which load
the parameters (config.py defaults, a JSON file, KEY=VALUE overrides), the bars, run the engine and write
the results. Usage: python backtest.py --data DIR [--codes …] [--start] [--end] [--out DIR];
`python backtest.py optimize …` (backtest_optimize.py) and `python backtest.py compare …` (backtest_compare.py)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, Optional, Sequence, TextIO

import config
import market_rules
from backtest_chart import ChartHelper
from backtest_data import DataProblem, st_codes_in
from backtest_engine import BacktestEngine, EngineResult, Slippage, StartingState
from backtest_market import MarketData, default_cache_dir, load_market
from backtest_report import Benchmark, Summary, format_details, format_table, summarize, write_outputs
from persistence.config_store import ConfigError
from core.models import DataUnavailable, TradingError

DEFAULT_OUT = "backtest_out"
PROGRESS_DELAY_SECONDS = 2.0  # runs shorter than this show no progress bar


@dataclass
class BacktestRun:
    result: EngineResult
    summary: Summary
    problems: list[DataProblem]
    settings: dict[str, Any]
    changed_settings: dict[str, Any]
    output_files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # load, run, write


def build_settings(params_file: Optional[str | Path] = None, assignments: Iterable[str] = (),
                   base: Optional[Mapping[str, Any]] = None) -> tuple[dict[str, Any], list[str]]:
    """config.py defaults (or `base`), overridden by a JSON object file, then by KEY=VALUE assignments
    (VALUE is JSON: -0.08, true, [1.0, 0.9]; anything else is text). Returns (values, warnings).
    Raises ConfigError with a Chinese reason per key when a value or the combination is invalid."""
    overrides: dict[str, Any] = {}
    if params_file is not None:
        overrides.update(_read_params_file(Path(params_file)))
    for assignment in assignments:
        key, value = _parse_assignment(assignment)
        overrides[key] = value
    values = {**(base if base is not None else config.DEFAULTS), **config.coerce_all(overrides)}
    result = config.validate(values)
    if not result.ok:
        raise ConfigError(result.errors)
    return values, result.warnings


def run_backtest(data: str | Path, settings: Optional[Mapping[str, Any]] = None,
                 codes: Optional[Sequence[str]] = None, start: Optional[date] = None, end: Optional[date] = None,
                 out: Optional[str | Path] = None, plot: bool = True,
                 progress: Optional[Callable[[int, int], None]] = None, cache_dir: Optional[str | Path] = None,
                 workers: Optional[int] = None, market: Optional[MarketData] = None,
                 load_progress: Optional[Callable[[int, int], None]] = None,
                 stock_params: Optional[Mapping[str, Mapping[str, Any]]] = None,
                 starting: Optional[StartingState] = None, no_entry: Collection[str] = (),
                 slippage: Optional[Slippage] = None, benchmark: Optional[Benchmark] = None) -> BacktestRun:
    """Load bars from `data` (CSV folder or TDX folder; or use `market`, already loaded), run the rules, and
    write the output files into `out` when given. `settings` is a full mapping of config values (default:
    config.py's). `cache_dir` keeps validated bars between runs; `workers` processes read the files.
    `starting` and `no_entry` are the engine's (an account's state and the codes it never enters); `slippage`
    makes fills worse than the path price; `benchmark` adds the index line and the excess return."""
    values = dict(settings if settings is not None else config.DEFAULTS)
    validation = config.validate(values)
    if not validation.ok:
        raise ConfigError(validation.errors)
    if start is not None and end is not None and start > end:
        raise TradingError("BACKTEST_BAD_PERIOD", f"开始日期 {start} 晚于结束日期 {end}")
    began = time.perf_counter()
    helper = ChartHelper.start() if out is not None and plot else ChartHelper(None)  # matplotlib loads meanwhile
    with helper as chart:
        loaded = market if market is not None else load_market(data, codes, cache_dir, workers, load_progress,
                                                               values["BACKTEST_CACHE_MAX_MB"])
        if not loaded.codes:
            details = "；".join(problem.describe() for problem in loaded.problems[:5])
            raise DataUnavailable("BACKTEST_NO_STOCKS", f"没有可用的股票数据：{details}")
        loaded_at = time.perf_counter()
        engine = BacktestEngine(loaded, values, start, end, progress=progress, stock_params=stock_params,
                                starting=starting, no_entry=no_entry, st_codes=st_codes_in(data), slippage=slippage)
        if not engine.days:
            raise TradingError("BACKTEST_NO_DAYS", f"所选区间 {start or '开始'} ~ {end or '结束'} 内没有行情数据")
        result = engine.run()
        ran_at = time.perf_counter()
        summary = summarize(result, len(loaded.codes), loaded.skipped_sources, benchmark)
        changed = {key: value for key, value in values.items() if value != config.DEFAULTS.get(key)}
        run = BacktestRun(result, summary, loaded.problems, values, changed)
        if out is not None:
            extra = {"parameters_changed": changed, **({"stock_params": dict(stock_params)} if stock_params else {}),
                     "data_problems": [problem.describe() for problem in loaded.problems],
                     "slippage": {"ticks": slippage.ticks, "bps": slippage.bps} if slippage else None}
            run.output_files = write_outputs(Path(out), result, summary, extra, plot=plot, begin_chart=chart.begin,
                                             benchmark=benchmark)
    run.seconds = {"load": loaded_at - began, "run": ran_at - loaded_at, "write": time.perf_counter() - ran_at}
    return run


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
        import backtest_optimize

        return backtest_optimize.main(argv[1:], stdout, stderr)
    if argv[:1] == ["compare"]:
        import backtest_compare

        return backtest_compare.main(argv[1:], stdout, stderr)
    if argv[:2] == ["cache", "clear"]:
        return _clear_cache(argv[2:], stdout)
    args = _parser().parse_args(argv)
    if __name__ == "__main__":  # a process of its own: TA-Lib need not load pandas (see the function)
        from backtest_engine import preload_talib_without_pandas

        preload_talib_without_pandas()
    try:
        settings, warnings = build_settings(args.params, args.set or ())
    except ConfigError as exc:
        for key, message in exc.errors.items():
            print(f"参数错误 {key}：{message}", file=stderr)
        return 2
    for warning in warnings:
        print(f"参数提醒：{warning}", file=stderr)
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
        run = run_backtest(args.data, settings, codes, args.start, args.end, args.out, plot=not args.no_plot,
                           progress=ProgressBar(stderr), cache_dir=cache, workers=args.workers,
                           load_progress=ProgressBar(stderr, label="读取行情", unit="个文件"),
                           stock_params=stock_params, slippage=args.slippage, benchmark=benchmark)
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
    from backtest_market import clear_cache

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


def read_stock_params(path: str | Path, settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-stock overrides from a JSON file {code: {KEY: value}}, with the keys and checks of stock_params.py:
    each stock's values must be valid together with the run's settings. ConfigError names every problem."""
    from core.stock_params import STOCK_KEYS

    raw = _read_params_file(Path(path))
    result: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for code_text, overrides in raw.items():
        try:
            code = market_rules.normalize_code(code_text)
        except ValueError as exc:
            errors[str(code_text)] = str(exc)
            continue
        if not isinstance(overrides, dict):
            errors[code] = "个股参数必须是 {参数名: 值} 对象"
            continue
        unknown = [key for key in overrides if key not in STOCK_KEYS]
        if unknown:
            errors[code] = f"{', '.join(unknown)} 不能按个股设置"
            continue
        try:
            coerced = config.coerce_all(overrides)
        except ConfigError as exc:
            errors.update({f"{code}:{k}": v for k, v in exc.errors.items()})
            continue
        checked = config.validate({**settings, **coerced})
        if not checked.ok:
            errors.update({f"{code}:{k}": v for k, v in checked.errors.items()})
            continue
        result[code] = coerced
    if errors:
        raise ConfigError(errors)
    return result


def _read_params_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError({"--params": f"无法读取参数文件 {path}：{exc}"}) from None
    except json.JSONDecodeError as exc:
        raise ConfigError({"--params": f"参数文件 {path} 不是有效的 JSON：{exc}"}) from None
    if not isinstance(document, dict):
        raise ConfigError({"--params": f"参数文件 {path} 必须是 JSON 对象 {{\"参数名\": 值}}"})
    return document


def _parse_assignment(text: str) -> tuple[str, Any]:
    key, separator, raw = text.partition("=")
    key = key.strip()
    if not separator or not key:
        raise ConfigError({text: f"--set 的格式应为 KEY=VALUE：{text}"})
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw.strip()


def _print_problems(problems: list[DataProblem], stream: TextIO, limit: int = 20) -> None:
    for problem in problems[:limit]:
        print(f"数据问题：{problem.describe()}", file=stream)
    if len(problems) > limit:
        print(f"……另有 {len(problems) - limit} 条数据问题，见 summary.json", file=stream)


if __name__ == "__main__":
    sys.exit(main())
