"""Parameter search over backtests (issue 20): Optuna proposes parameter sets (TPE, grid or random), Dask runs
the backtests (a LocalCluster of K processes, or an existing scheduler: the same code path), results persist in
an Optuna SQLite storage so an interrupted search resumes without repeating finished trials.

Trials run in batches of a fixed size: the sampler sees the same history whatever the number of workers, so a
seed gives the same trials on one machine or on a cluster. Each worker process loads the bars once and keeps
them for every trial it runs. Walk-forward fits on one window and scores the best set on the next one."""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, TextIO

import config
import core.perf_stats as perf_stats
from backtesting.market import MarketData, default_cache_dir, load_market
from persistence.config_store import ConfigError

# "return" with --max-drawdown is the return under a drawdown cap
OBJECTIVES = ("sharpe", "sortino", "calmar", "return", "profit_factor")
SAMPLERS = ("tpe", "grid", "random")
INFEASIBLE = -1.0e6  # the value of a trial whose drawdown exceeds --max-drawdown (or whose metric is undefined)
COLLAPSE_RATIO = 0.5  # out-of-sample below half the in-sample objective (or ≤ 0 while in-sample > 0)
DEFAULT_BATCH = 4
GRID_STEPS = 5  # points per [low, high] range for the grid sampler


class OptimizeError(Exception):
    """A search that cannot start (bad space file, bad arguments); the message is for people."""


# ---- the search space -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dimension:
    name: str
    low: Optional[float] = None
    high: Optional[float] = None
    integer: bool = False
    choices: Optional[tuple[Any, ...]] = None

    @property
    def step(self) -> float:
        """A float range is searched on 1/100 of its order of magnitude ([-0.15, -0.05] → 0.001), so a set is
        printed and applied as a person would write it, never with 17 digits."""
        return 10.0 ** (math.floor(math.log10(float(self.high) - float(self.low))) - 2)

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high))
        step = self.step
        high = self.low + math.floor(round((self.high - self.low) / step, 6)) * step
        value = trial.suggest_float(self.name, float(self.low), _on_step(high, step), step=step)
        return _on_step(value, step)

    def grid(self, steps: int = GRID_STEPS) -> list[Any]:
        if self.choices is not None:
            return list(self.choices)
        if self.integer:
            return sorted({int(round(self.low + (self.high - self.low) * i / (steps - 1))) for i in range(steps)})
        return [round(self.low + (self.high - self.low) * i / (steps - 1), 10) for i in range(steps)]


def _on_step(value: float, step: float) -> float:
    return round(value, max(0, -math.floor(math.log10(step))))


def load_space(path: str | Path) -> list[Dimension]:
    """space.json: {"KEY": [low, high]} for a numeric range, {"KEY": [choice, ...]} otherwise."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise OptimizeError(f"无法读取参数空间文件 {path}：{exc}") from None
    if not isinstance(document, dict) or not document:
        raise OptimizeError(f"参数空间文件 {path} 应为非空 JSON 对象：{{\"参数名\": [下限, 上限] 或 [候选值, ...]}}")
    dimensions = []
    for name, spec in document.items():
        if name not in config.DEFAULTS:
            raise OptimizeError(f"参数空间中的 {name} 不是已知参数")
        if not isinstance(spec, list) or not spec:
            raise OptimizeError(f"参数 {name} 的取值应为 [下限, 上限] 或候选值列表")
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec)
        if numeric and len(spec) == 2:
            low, high = spec
            if low >= high:
                raise OptimizeError(f"参数 {name} 的下限 {low} 应小于上限 {high}")
            integer = all(isinstance(v, int) for v in spec) and isinstance(config.DEFAULTS[name], int) \
                and not isinstance(config.DEFAULTS[name], bool)
            dimensions.append(Dimension(name, low, high, integer))
        else:
            dimensions.append(Dimension(name, choices=tuple(_hashable(v) for v in spec)))
    return dimensions


def _hashable(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _plain(value: Any) -> Any:
    """A categorical choice back to its JSON value (lists were stored as JSON text)."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


# ---- one trial, run on a worker -------------------------------------------------------------------------

_MARKETS: dict[tuple, MarketData] = {}  # per worker process: the bars, loaded once
LOADS = {"count": 0}


def worker_market(data: str, codes: Optional[tuple[str, ...]], cache_dir: Optional[str],
                  cache_max_mb: Optional[float] = None) -> MarketData:
    key = (data, codes, cache_dir)
    market = _MARKETS.get(key)
    if market is None:
        market = load_market(data, codes, cache_dir, workers=1, cache_max_mb=cache_max_mb)
        _MARKETS[key] = market
        LOADS["count"] += 1
    return market


def run_trial(job: Mapping[str, Any]) -> dict[str, Any]:
    """Backtest one parameter set on one period; returns the metrics and the objective value."""
    from backtesting.run import run_backtest

    market = worker_market(job["data"], job["codes"], job["cache_dir"], job["base"].get("BACKTEST_CACHE_MAX_MB"))
    outcome: dict[str, Any] = {"pid": os.getpid(), "loads": LOADS["count"]}
    try:
        values = {**job["base"], **config.coerce_all({k: _plain(v) for k, v in job["params"].items()})}
    except ConfigError as exc:
        return {**outcome, "error": "；".join(f"{k}：{v}" for k, v in exc.errors.items())}
    check = config.validate(values)
    if not check.ok:
        return {**outcome, "error": "；".join(f"{k}：{v}" for k, v in check.errors.items())}
    start, end = (date.fromisoformat(d) if d else None for d in job["period"])
    run = run_backtest(job["data"], values, start=start, end=end, plot=False, market=market)
    summary = run.summary
    metrics = {"total_return": summary.total_return, "annualized_return": summary.annualized_return,
               "max_drawdown": summary.max_drawdown, "sharpe": summary.sharpe, "sortino": summary.sortino,
               "calmar": summary.calmar, "profit_factor": summary.profit_factor, "trades": summary.trade_count,
               "win_rate": summary.win_rate, "final_equity": summary.final_equity}
    outcome.update(metrics=metrics, value=objective_value(metrics, job["objective"], job["max_drawdown"]))
    if outcome["value"] == INFEASIBLE:
        outcome["infeasible"] = infeasible_reason(metrics, job["objective"], job["max_drawdown"])
    if job.get("equity"):
        outcome["equity"] = [(p.day.isoformat(), p.total) for p in run.result.equity]
    return outcome


def objective_value(metrics: Mapping[str, Any], objective: str, max_drawdown: Optional[float]) -> float:
    """sharpe, sortino, calmar (annualised return / max drawdown), total return or profit factor; INFEASIBLE past
    the drawdown limit or when the metric is undefined (flat equity has no Sharpe, no loss no profit factor)."""
    if max_drawdown is not None and metrics["max_drawdown"] > max_drawdown:
        return INFEASIBLE
    if objective == "return":
        value = metrics["total_return"]
    elif objective == "calmar":
        value = perf_stats.calmar(metrics["annualized_return"], metrics["max_drawdown"])
    else:
        value = metrics.get(objective)
    return INFEASIBLE if value is None or not math.isfinite(value) else round(float(value), 6)


def infeasible_reason(metrics: Mapping[str, Any], objective: str, max_drawdown: Optional[float]) -> str:
    """Why a trial cannot be a result (its penalty value is never shown as one)."""
    if max_drawdown is not None and metrics["max_drawdown"] > max_drawdown:
        return f"最大回撤 {metrics['max_drawdown'] * 100:.2f}% 超过上限 {max_drawdown * 100:.2f}%"
    return f"{objective} 无定义（如净值不变、无回撤）"


def is_feasible(trial) -> bool:
    import optuna

    return trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None and trial.value > INFEASIBLE


# ---- the driver -----------------------------------------------------------------------------------------

@dataclass
class SearchSettings:
    data: str
    space: list[Dimension]
    trials: int
    objective: str = "sharpe"
    max_drawdown: Optional[float] = None
    sampler: str = "tpe"
    seed: int = 0
    batch: int = DEFAULT_BATCH
    codes: Optional[tuple[str, ...]] = None
    cache_dir: Optional[str] = None
    base: dict[str, Any] = field(default_factory=lambda: dict(config.DEFAULTS))


@dataclass
class FoldResult:
    name: str
    train: tuple[Optional[str], Optional[str]]
    test: Optional[tuple[str, str]]
    best_params: dict[str, Any]
    best_value: float
    best_metrics: dict[str, Any]
    test_value: Optional[float] = None
    test_metrics: Optional[dict[str, Any]] = None
    test_equity: list[tuple[str, float]] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def collapsed(self) -> bool:
        if self.test_value is None:
            return False
        if self.best_value > 0:
            return self.test_value <= 0 or self.test_value < COLLAPSE_RATIO * self.best_value
        return False


class Search:
    """Runs studies through a Dask client: `submit(fn, job) -> future`, `gather(futures)`."""

    def __init__(self, settings: SearchSettings, client, storage: str,
                 progress: Optional[Callable[[str], None]] = None):
        self._settings = settings
        self._client = client
        self._storage = storage
        self._progress = progress or (lambda line: None)

    def study(self, name: str, period: tuple[Optional[str], Optional[str]]) -> FoldResult:
        import optuna

        s = self._settings
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name=name, storage=self._storage, direction="maximize",
                                    sampler=self._sampler(), load_if_exists=True)
        _fail_interrupted(study)
        done = sum(1 for t in study.trials if _finished(t))
        resumed_at, began = done, time.monotonic()
        while done < s.trials:
            # Reseeded from (seed, study, finished trials): a search resumed after a crash asks for exactly the
            # trials the uninterrupted one would have asked for at this point.
            study.sampler = self._sampler(_batch_seed(s.seed, name, done))
            asked = [study.ask() for _ in range(min(s.batch, s.trials - done))]
            params = [{d.name: d.suggest(trial) for d in s.space} for trial in asked]
            jobs = [self._job(p, period) for p in params]
            futures = [self._client.submit(run_trial, job, key=f"{name}-trial-{trial.number}", pure=False)
                       for job, trial in zip(jobs, asked)]
            for trial, outcome in zip(asked, self._client.gather(futures)):
                _tell(study, trial, outcome)
            done += len(asked)
            rate = (done - resumed_at) / max(time.monotonic() - began, 1e-9) * 60
            best = _best_value(study)
            self._progress(f"优化进度 [{name}] {done}/{s.trials} 次试验，最佳 {s.objective} = "
                           f"{_best_label(study, best)}，{rate:.1f} 次/分钟")
        return self._fold(study, name, period)

    def score(self, params: Mapping[str, Any], period: tuple[Optional[str], Optional[str]]) -> dict[str, Any]:
        job = self._job(dict(params), period, equity=True)
        return self._client.gather(self._client.submit(run_trial, job, pure=False))

    def _job(self, params, period, equity: bool = False) -> dict[str, Any]:
        s = self._settings
        return {"data": s.data, "codes": s.codes, "cache_dir": s.cache_dir, "base": s.base, "params": params,
                "period": period, "objective": s.objective, "max_drawdown": s.max_drawdown, "equity": equity}

    def _tidy(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Float parameters on their dimension's step (optuna stores low + k × step with binary noise)."""
        steps = {d.name: d.step for d in self._settings.space if d.choices is None and not d.integer}
        return {k: _on_step(v, steps[k]) if k in steps and isinstance(v, float) else v for k, v in params.items()}

    def _tidy_row(self, row: dict[str, Any]) -> dict[str, Any]:
        params = self._tidy({k[6:]: v for k, v in row.items() if k.startswith("param:")})
        return {**row, **{f"param:{k}": v for k, v in params.items()}}

    def _sampler(self, seed: Optional[int] = None):
        import optuna

        s = self._settings
        seed = s.seed if seed is None else seed
        if s.sampler == "grid":
            return optuna.samplers.GridSampler({d.name: d.grid() for d in s.space}, seed=seed)
        if s.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def _fold(self, study, name: str, period) -> FoldResult:
        import optuna

        rows = [self._tidy_row(_trial_row(t)) for t in study.trials if _finished(t)]
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            reasons = sorted({t.user_attrs["error"] for t in study.trials if t.user_attrs.get("error")})
            raise OptimizeError(f"{name}：没有成功完成的试验" + (f"（{'；'.join(reasons[:3])}）" if reasons else ""))
        feasible = [t for t in complete if is_feasible(t)]
        if not feasible:
            reasons = sorted({t.user_attrs.get("infeasible", "") for t in complete} - {""})
            raise OptimizeError(f"{name}：没有满足约束的参数组（{'；'.join(reasons[:3])}），未采用任何参数")
        best = max(feasible, key=lambda t: (t.value, -t.number))
        params = self._tidy({k: _plain(v) for k, v in best.params.items()})
        return FoldResult(name, period, None, params, best.value, dict(best.user_attrs.get("metrics", {})),
                          trials=rows)


def _batch_seed(seed: int, study_name: str, finished: int) -> int:
    """A stable seed per (search seed, study, position): walk-forward folds differ, reruns do not."""
    return zlib.crc32(f"{seed}:{study_name}:{finished}".encode())


def _finished(trial) -> bool:
    """Complete, or failed for a reason of its own (invalid parameters); not one a stopped search left."""
    import optuna

    state = trial.state
    return state == optuna.trial.TrialState.COMPLETE or (
        state == optuna.trial.TrialState.FAIL and "error" in trial.user_attrs)


def _fail_interrupted(study) -> None:
    """Trials left running by a stopped search are closed as failed; their places are asked again."""
    import optuna

    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.RUNNING:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _tell(study, trial, outcome: Mapping[str, Any]) -> None:
    import optuna

    trial.set_user_attr("worker_pid", outcome["pid"])
    trial.set_user_attr("worker_loads", outcome["loads"])
    if "error" in outcome:
        trial.set_user_attr("error", outcome["error"])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    trial.set_user_attr("metrics", outcome["metrics"])
    if "infeasible" in outcome:
        trial.set_user_attr("infeasible", outcome["infeasible"])
    study.tell(trial, outcome["value"])


def _best_value(study) -> Optional[float]:
    """The best feasible value; a penalty is never shown as a result."""
    values = [t.value for t in study.trials if is_feasible(t)]
    return max(values) if values else None


def _best_label(study, best: Optional[float]) -> str:
    import optuna

    if best is not None:
        return f"{best:.4f}"
    complete = any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    return "—（尚无满足约束的参数组）" if complete else "—"


def _trial_row(trial) -> dict[str, Any]:
    metrics = trial.user_attrs.get("metrics", {})
    row = {"number": trial.number, "state": trial.state.name, "value": trial.value}
    row.update({f"param:{k}": _plain(v) for k, v in trial.params.items()})
    row.update(metrics)
    row["error"] = trial.user_attrs.get("error", "")
    row["infeasible"] = trial.user_attrs.get("infeasible", "")
    if row["infeasible"]:
        row["value"] = None  # the penalty is the sampler's, not a result
    row["worker_pid"] = trial.user_attrs.get("worker_pid")
    row["worker_loads"] = trial.user_attrs.get("worker_loads")  # data loads in that worker so far: 1
    return row


def walk_forward_periods(calendar: Sequence[date], folds: int) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """(train, test) periods: the calendar cut into folds + 1 equal windows, window k trains, k + 1 tests."""
    if folds < 1 or len(calendar) < 2 * (folds + 1):
        raise OptimizeError(f"交易日太少（{len(calendar)}），无法做 {folds} 段滚动验证")
    size = len(calendar) // (folds + 1)
    windows = [(calendar[i * size], calendar[(i + 1) * size - 1 if i < folds else len(calendar) - 1])
               for i in range(folds + 1)]
    return [((a.isoformat(), b.isoformat()), (c.isoformat(), d.isoformat()))
            for (a, b), (c, d) in zip(windows, windows[1:])]


def run_search(settings: SearchSettings, client, storage: str, study_name: str, walk_forward: int = 0,
               calendar: Sequence[date] = (), progress: Optional[Callable[[str], None]] = None) -> list[FoldResult]:
    """One study over the whole period, or one per walk-forward fold scored on the next window."""
    search = Search(settings, client, storage, progress)
    if not walk_forward:
        fold = search.study(study_name, (None, None))
        scored = search.score(fold.best_params, (None, None))
        fold.test_equity = scored.get("equity", [])
        return [fold]
    folds = []
    for index, (train, test) in enumerate(walk_forward_periods(calendar, walk_forward), 1):
        fold = search.study(f"{study_name}-wf{index}", train)
        scored = search.score(fold.best_params, test)
        fold.test = test
        fold.test_value = scored.get("value")
        fold.test_metrics = scored.get("metrics")
        fold.test_equity = scored.get("equity", [])
        folds.append(fold)
    return folds


# ---- output -----------------------------------------------------------------------------------------------

def write_results(out: Path, folds: list[FoldResult], settings: SearchSettings, storage: str, study_name: str,
                  plot: bool = True) -> list[Path]:
    """trials.csv, best_params.json, importance.json, walk_forward.csv (with folds) and the PNG plots."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    rows = [{"study": f.name, **row} for f in folds for row in f.trials]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(out / "trials.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    written.append(out / "trials.csv")
    last = folds[-1]
    best = {"objective": settings.objective, "value": last.best_value, "params": last.best_params,
            "metrics": last.best_metrics, "study": last.name, "storage": storage}
    (out / "best_params.json").write_text(json.dumps(best, ensure_ascii=False, indent=2), encoding="utf-8")
    written.append(out / "best_params.json")
    importance = {f.name: _importance(storage, f.name) for f in folds}
    (out / "importance.json").write_text(json.dumps(importance, ensure_ascii=False, indent=2), encoding="utf-8")
    written.append(out / "importance.json")
    if any(f.test is not None for f in folds):
        with open(out / "walk_forward.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(("fold", "train_start", "train_end", "test_start", "test_end", "in_sample",
                             "out_of_sample", "in_sample_return", "out_of_sample_return", "collapsed", "params"))
            for f in folds:
                writer.writerow((f.name, *f.train, *(f.test or ("", "")), f.best_value, f.test_value,
                                 f.best_metrics.get("total_return"), (f.test_metrics or {}).get("total_return"),
                                 "yes" if f.collapsed else "no", json.dumps(f.best_params, ensure_ascii=False)))
        written.append(out / "walk_forward.csv")
    if plot:
        import backtesting.optimize_plots as backtest_optimize_plots

        written += backtest_optimize_plots.plot_all(out, folds, settings.objective, importance)
    return written


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _importance(storage: str, name: str) -> dict[str, float]:
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    try:
        return {k: round(v, 6) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}  # too few distinct finished trials to tell


def format_report(folds: list[FoldResult], objective: str) -> str:
    lines = []
    for f in folds:
        lines.append(f"[{f.name}] 训练区间 {f.train[0] or '开始'} ~ {f.train[1] or '结束'}，最佳 {objective} = "
                     f"{f.best_value:.4f}，参数 {json.dumps(f.best_params, ensure_ascii=False)}")
        if f.test is not None:
            flag = "  ⚠ 样本外表现崩塌" if f.collapsed else ""
            lines.append(f"    样本内 {f.best_value:.4f} | 样本外 {f.test[0]} ~ {f.test[1]}：{f.test_value:.4f}"
                         f"（收益 {f.best_metrics.get('total_return', 0) * 100:.2f}% | "
                         f"{(f.test_metrics or {}).get('total_return', 0) * 100:.2f}%）{flag}")
    return "\n".join(lines)


# ---- applying the best set --------------------------------------------------------------------------------

def apply_best(params: Mapping[str, Any], data_dir: Path, confirm: Callable[[str], bool],
               stream: TextIO) -> bool:
    """Write `params` as web-visible overrides into the daemon's config.db (kept in its history, so the web
    page can roll them back), only after `confirm` agrees."""
    from persistence.config_store import ConfigStore
    from persistence.storage import Database

    changes = config.coerce_all({k: _plain(v) for k, v in params.items()})
    listing = "，".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in changes.items())
    if not confirm(f"将把以下参数写入 {data_dir / 'config.db'}：{listing}。确认写入？[y/N] "):
        print("未写入参数。", file=stream)
        return False
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(data_dir / "config.db")
    try:
        warnings = ConfigStore(db).update(changes, source="optimize")
    finally:
        db.close()
    for warning in warnings:
        print(f"参数提醒：{warning}", file=stream)
    print(f"已写入 {len(changes)} 个参数（可在网页「参数」历史中回滚）。运行中的守护进程需重启后生效。", file=stream)
    return True


# ---- command line -----------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backtest.py optimize", description="用 Optuna + Dask 搜索回测参数")
    p.add_argument("--data", required=True, help="日线目录")
    p.add_argument("--space", required=True, help="参数空间 JSON：{\"参数名\": [下限, 上限] 或 [候选值, ...]}")
    p.add_argument("--trials", type=int, required=True, help="试验次数（每段滚动验证各自的次数）")
    p.add_argument("--objective", choices=OBJECTIVES, default="sharpe",
                   help="目标：sharpe、sortino、calmar、return（配合 --max-drawdown 即回撤上限下的收益）、profit_factor")
    p.add_argument("--max-drawdown", type=float, help="最大回撤上限（如 0.2），超过的参数组视为不可行")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="每批同时提出的试验数（与工作进程数无关，保证可复现）")
    p.add_argument("--workers", type=int, default=2, help="本机 Dask 工作进程数（未给 --scheduler 时）")
    p.add_argument("--scheduler", help="已有的 Dask 调度器地址，如 tcp://127.0.0.1:8786")
    p.add_argument("--walk-forward", type=int, default=0, help="滚动验证段数：每段训练后在下一段样本外评分")
    p.add_argument("--out", default="optimize_out")
    p.add_argument("--storage", help="Optuna 存储（默认 OUT/optuna.db，中断后再次运行会续跑）")
    p.add_argument("--study", default="backtest", help="研究名称")
    p.add_argument("--codes", nargs="+")
    p.add_argument("--cache", help="行情缓存目录（默认 ~/.cache/miniqmt-backtest）")
    p.add_argument("--params", help="基础参数 JSON 文件")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="覆盖单个基础参数")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--apply", action="store_true", help="确认后把最佳参数写入守护进程的参数覆盖（带历史，可回滚）")
    p.add_argument("--data-dir", default="data", help="--apply 写入的守护进程数据目录")
    p.add_argument("--yes", action="store_true", help="--apply 时不再询问")
    return p


def open_client(scheduler: Optional[str], workers: int):
    """A Dask client: on the given scheduler, or on a LocalCluster of `workers` single-threaded processes
    bound to loopback. Returns (client, cluster or None)."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout=30)
        try:
            ship_project(client)
        except OptimizeError:
            client.close()
            raise
        return client, None
    cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0")
    return Client(cluster), cluster


PROJECT_DIR = Path(__file__).resolve().parents[1]


def project_modules() -> list[Path]:
    """The project's code as the workers need it: the top-level modules and every package's modules."""
    packages = sorted(init.parent for init in PROJECT_DIR.glob("*/__init__.py"))
    return sorted(PROJECT_DIR.glob("*.py")) + [module for package in packages for module in sorted(package.glob("*.py"))]


def ship_project(client) -> None:
    """Send this project's modules to the scheduler and the workers of an existing cluster (a zip put on their
    sys.path; the scheduler unpickles the tasks too), then check that every worker can import the trial code,
    before any trial runs: processes started elsewhere need no PYTHONPATH. Workers that join later do not get
    it: start them before the search."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for module in project_modules():
            archive.write(module, module.relative_to(PROJECT_DIR).as_posix())
    install = _installer(buffer.getvalue())
    try:
        client.run_on_scheduler(install)
        client.run(install)
    except Exception as exc:  # noqa: BLE001 - dask raises whatever the remote side raised
        raise OptimizeError(f"无法把项目代码发送到 Dask 调度器或工作进程：{exc}") from None
    answers = client.run(_worker_can_run_trials)
    missing = {worker: problem for worker, problem in answers.items() if problem}
    if not answers:
        raise OptimizeError("调度器上没有工作进程：请先在各台机器上启动 dask worker <调度器地址>")
    if missing:
        worker, problem = next(iter(missing.items()))
        raise OptimizeError(f"Dask 工作进程 {worker} 无法运行回测：{problem}（请在该机器上安装 requirements.txt 中的依赖）")


def _installer(bundle: bytes) -> Callable[[], str]:
    """A function pickled by value (the remote side cannot import this module yet) that writes the zip into
    its machine's temp folder, keyed by content, and puts it on sys.path."""
    import hashlib

    name = f"miniqmt-project-{hashlib.sha256(bundle).hexdigest()[:16]}.zip"

    def install() -> str:
        import os
        import sys as remote_sys
        import tempfile

        path = os.path.join(tempfile.gettempdir(), name)
        if not os.path.exists(path):
            scratch = f"{path}.{os.getpid()}.tmp"
            with open(scratch, "wb") as handle:
                handle.write(bundle)
            os.replace(scratch, path)
        if path not in remote_sys.path:
            remote_sys.path.insert(0, path)
        return path

    return install


def _worker_can_run_trials() -> str:
    """Runs on each worker: '' when the trial code and its dependencies import, else the reason."""
    try:
        import backtesting.optimize  # noqa: F401
        import backtesting.run  # noqa: F401
    except ImportError as exc:
        return f"缺少模块 {exc.name or exc}"
    return ""


def main(argv: Sequence[str], stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr,
         confirm: Optional[Callable[[str], bool]] = None) -> int:
    from backtesting.run import build_settings

    args = parser().parse_args(argv)
    try:
        base, _ = build_settings(args.params, args.set or ())
        space = load_space(args.space)
        if args.trials < 1 or args.batch < 1:
            raise OptimizeError("--trials 与 --batch 必须为正整数")
    except ConfigError as exc:
        print("参数错误：" + "；".join(f"{k}：{v}" for k, v in exc.errors.items()), file=stderr)
        return 2
    except OptimizeError as exc:
        print(f"优化失败：{exc}", file=stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{Path(args.storage or out / 'optuna.db').resolve()}"
    cache = str(Path(args.cache or default_cache_dir()).resolve())
    codes = tuple(sorted(c for item in (args.codes or []) for c in item.split(",") if c.strip())) or None
    settings = SearchSettings(str(Path(args.data).resolve()), space, args.trials, args.objective, args.max_drawdown,
                              args.sampler, args.seed, args.batch, codes, cache, base)
    calendar: list[date] = []
    if args.walk_forward:
        calendar = [d.item() for d in load_market(settings.data, codes, cache).calendar]
    began = time.monotonic()
    try:
        client, cluster = open_client(args.scheduler, args.workers)
    except OptimizeError as exc:
        print(f"优化失败：{exc}", file=stderr)
        return 2
    except OSError as exc:  # the scheduler cannot be reached
        print(f"优化失败：无法连接 Dask 调度器 {args.scheduler}：{exc}", file=stderr)
        return 2
    try:
        folds = run_search(settings, client, storage, args.study, args.walk_forward, calendar,
                           progress=lambda line: print(line, file=stderr, flush=True))
    except OptimizeError as exc:
        print(f"优化失败：{exc}", file=stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n已中断：完成的试验已保存在 {storage}，再次运行同一命令会从中断处继续。", file=stderr)
        return 130
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    written = write_results(out, folds, settings, storage, args.study, plot=not args.no_plot)
    print(format_report(folds, args.objective), file=stdout)
    total = sum(len(f.trials) for f in folds)
    print(f"共 {total} 次试验，用时 {time.monotonic() - began:.1f} 秒；结果：" + "、".join(p.name for p in written),
          file=stdout)
    if args.apply:
        ask = confirm or (lambda prompt: args.yes or input(prompt).strip().lower() in ("y", "yes"))
        apply_best(folds[-1].best_params, Path(args.data_dir), ask, stdout)
    return 0
