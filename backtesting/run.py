"""One backtest run (issue 31 moved it out of the command line so backtesting/ never imports backtest.py):
`build_settings` (config.py defaults, a JSON file, KEY=VALUE overrides), `read_stock_params`, and `run_backtest`,
which loads the bars, runs the engine and writes the results."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, Optional, Sequence

import config
import market_rules
from backtesting.chart import ChartHelper
from backtesting.data import DataProblem, st_codes_in
from backtesting.engine import BacktestEngine, EngineResult, Slippage, StartingState
from backtesting.market import MarketData, load_market
from backtesting.report import Benchmark, Summary, summarize, write_outputs
from persistence.config_store import ConfigError
from core.models import DataUnavailable, TradingError

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
                 slippage: Optional[Slippage] = None, benchmark: Optional[Benchmark] = None,
                 events: Optional[Mapping[str, Sequence[Any]]] = None) -> BacktestRun:
    """Load bars from `data` (CSV folder or TDX folder; or use `market`, already loaded), run the rules, and
    write the output files into `out` when given. `settings` is a full mapping of config values (default:
    config.py's). `cache_dir` keeps validated bars between runs; `workers` processes read the files.
    `starting` and `no_entry` are the engine's (an account's state and the codes it never enters); `slippage`
    makes fills worse than the path price; `benchmark` adds the index line and the excess return; `events`
    (backtesting.data.load_events) are the ex-rights events of UNADJUSTED bars (issue 28)."""
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
                                starting=starting, no_entry=no_entry, st_codes=st_codes_in(data), slippage=slippage,
                                events=events)
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


def read_stock_params(path: str | Path, settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-stock overrides from a JSON file {code: {KEY: value}}, with the keys and checks of core/stock_params.py:
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
