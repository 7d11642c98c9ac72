"""Parameter search over backtests (issue 20): Optuna proposes parameter sets (TPE, grid or random), Dask runs
the backtests (a LocalCluster of K processes, or an existing scheduler: the same code path), results persist in
an Optuna storage (a journal file by default: one appended line per finished trial) so an interrupted search
resumes without repeating finished trials.

Trials are asked in batches of a fixed size, of an in-memory study holding exactly the finished trials of the
earlier batches, so the sampler sees the same history whatever the number of workers, the timing or an earlier
interruption: a seed gives the same trials on one machine, on a cluster or after a resume. With --ask-ahead
batch b is asked once batch b - 2 is booked, while batch b - 1 runs (which then counts as running), so no worker
waits at the end of a batch, at the price of the sampler seeing one batch less. Finished trials are booked in
order, each in one storage write. Each worker process
loads the bars once and keeps them for every trial it runs. Walk-forward fits on one window and scores the best
set on the next one."""
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
import market_rules
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
_INSTRUMENTS: dict[str, tuple] = {}  # per worker process: the instrument files installed (issue 28)


def install_instruments(values: Mapping[str, Any]) -> None:
    """The search's T+0 table and listing dates (T0_ETF_FILE, LISTING_DATES_FILE) in this worker, read once per
    pair of files, so a trial sees the facts a plain backtest and the daemon see; ValueError names a bad file."""
    key = (str(values.get("T0_ETF_FILE") or ""), str(values.get("LISTING_DATES_FILE") or ""))
    if _INSTRUMENTS.get("installed") != key:
        market_rules.use_instrument_data(market_rules.instrument_data_from_config(values))
        _INSTRUMENTS["installed"] = key


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

    began, began_cpu = time.perf_counter(), time.thread_time()
    market = worker_market(job["data"], job["codes"], job["cache_dir"], job["base"].get("BACKTEST_CACHE_MAX_MB"))
    outcome: dict[str, Any] = {"pid": os.getpid(), "loads": LOADS["count"]}
    try:
        values = {**job["base"], **config.coerce_all({k: _plain(v) for k, v in job["params"].items()})}
    except ConfigError as exc:
        return {**outcome, "error": "；".join(f"{k}：{v}" for k, v in exc.errors.items())}
    check = config.validate(values)
    if not check.ok:
        return {**outcome, "error": "；".join(f"{k}：{v}" for k, v in check.errors.items())}
    try:
        install_instruments(values)
    except ValueError as exc:
        return {**outcome, "error": str(exc)}
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
    outcome["seconds"] = round(time.perf_counter() - began, 4)
    outcome["cpu_seconds"] = round(time.thread_time() - began_cpu, 4)
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
    ask_ahead: bool = False  # ask batch b while batch b - 1 runs (the sampler then lacks batch b - 1's results)
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


@dataclass
class SearchTiming:
    """Where a search's time went: the driver's own work (opening the study, asking, booking, reporting), wall
    clock and CPU of its thread, against the workers' backtests, over the trials run in this process (seconds)."""
    driver: float = 0.0
    driver_cpu: float = 0.0
    compute: float = 0.0
    compute_cpu: float = 0.0
    trials: int = 0

    def add(self, outcome: Mapping[str, Any]) -> None:
        self.compute += outcome.get("seconds") or 0.0
        self.compute_cpu += outcome.get("cpu_seconds") or 0.0
        self.trials += 1


class Search:
    """Runs studies through a Dask client: `submit(fn, job) -> future`, `gather(future)`, with the futures
    consumed through `dask.distributed.as_completed`."""

    def __init__(self, settings: SearchSettings, client, storage: str,
                 progress: Optional[Callable[[str], None]] = None, timing: Optional[SearchTiming] = None):
        self._settings = settings
        self._client = client
        self._storage = open_storage(storage)
        self._progress = progress or (lambda line: None)
        self.timing = timing if timing is not None else SearchTiming()
        self._lap = self._lap_cpu = 0.0

    def study(self, name: str, period: tuple[Optional[str], Optional[str]], keep_equity: bool = False) -> FoldResult:
        """Runs the missing trials of study `name` and returns its best set. With `keep_equity` every trial
        brings its equity curve back and the best one of this run is kept, so the best set is not run again."""
        import optuna
        from dask.distributed import as_completed

        s = self._settings
        clock = time.monotonic  # the driver's own time is everything but waiting for a worker
        self._lap, self._lap_cpu = clock(), time.thread_time()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name=name, storage=self._storage, direction="maximize",
                                    load_if_exists=True)  # the stored study never samples: see _plan_batch
        _fail_interrupted(study)
        booked = [t for t in study.get_trials(deepcopy=False) if _finished(t)]
        history = [_seen(t) for t in booked]  # slot i = the i-th finished trial, what a sampler sees of it
        planned = {slot: _seen(t, running=True) for slot, t in enumerate(booked)}
        resumed_at, began = len(history), time.monotonic()
        pending, outcomes, slot_of = as_completed(with_results=True), {}, {}  # results fetched in the background
        next_batch, best, ahead = resumed_at // s.batch, None, int(s.ask_ahead)
        while len(history) < s.trials:
            # Batch b is asked once batches < b (< b - 1 asking ahead) are booked; what the sampler sees is a pure
            # function of (seed, study, b).
            while next_batch * s.batch < s.trials and len(history) >= (next_batch - ahead) * s.batch:
                for slot, plan in self._plan_batch(name, next_batch, history, planned).items():
                    if slot >= len(history):  # a resumed batch: its booked trials stay as they are
                        planned[slot] = plan
                        future = self._client.submit(run_trial, self._job(self._tidy(plan.params), period, keep_equity),
                                                     key=f"{name}-trial-{slot}", pure=False)
                        slot_of[future.key] = slot
                        pending.add(future)
                next_batch += 1
            self._count_driver()
            future, outcome = next(pending)
            self._lap, self._lap_cpu = clock(), time.thread_time()
            outcomes[slot_of.pop(future.key)] = outcome
            while len(history) in outcomes:  # booked in slot order, whatever order the workers finish in
                slot = len(history)
                outcome = outcomes.pop(slot)
                history.append(_seen(_book(study, planned[slot], outcome)))
                self.timing.add(outcome)
                if keep_equity and "equity" in outcome and outcome.get("value", INFEASIBLE) > INFEASIBLE \
                        and (best is None or outcome["value"] > best[0]):
                    best = (outcome["value"], self._tidy(_plain_all(planned[slot].params)), outcome["equity"])
                done = len(history)
                if done % s.batch == 0 or done == s.trials:
                    rate = (done - resumed_at) / max(time.monotonic() - began, 1e-9) * 60
                    value = _best_of(history)
                    self._progress(f"优化进度 [{name}] {done}/{s.trials} 次试验，最佳 {s.objective} = "
                                   f"{_best_label(history, value)}，{rate:.1f} 次/分钟")
        fold = self._fold(study, name, period)
        if best is not None and best[1] == fold.best_params:
            fold.test_equity = best[2]
        self._count_driver()
        return fold

    def _count_driver(self) -> None:
        self.timing.driver += time.monotonic() - self._lap
        self.timing.driver_cpu += time.thread_time() - self._lap_cpu

    def _plan_batch(self, name: str, batch: int, history: list, planned: Mapping[int, Any]) -> dict[int, Any]:
        """The trials of batch `batch` (slot → a RUNNING FrozenTrial with its parameters), asked of an in-memory
        study that holds the finished trials of the earlier batches (asking ahead: of batches < batch - 1, and
        batch - 1 as running): whatever the timing, the number of workers or an earlier interruption, the same
        seed asks the same trials."""
        import optuna

        s = self._settings
        first = batch * s.batch
        # a grid keeps one order of its points for the whole study; the other samplers are reseeded per batch
        seed = _batch_seed(s.seed, name, 0 if s.sampler == "grid" else first)
        shadow = optuna.create_study(direction="maximize", sampler=self._sampler(seed))
        known = max(0, first - int(s.ask_ahead) * s.batch)
        shadow.add_trials(history[:known])
        shadow.add_trials(planned[slot] for slot in range(known, first))
        plans = {}
        for slot in range(first, min(first + s.batch, s.trials)):
            trial = shadow.ask()
            for dimension in s.space:
                dimension.suggest(trial)
            plans[slot] = _seen(shadow.get_trials(deepcopy=False)[trial.number], running=True)
        return plans

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
        params = self._tidy(_plain_all(best.params))
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


def _seen(trial, running: bool = False):
    """What a sampler sees of a trial (state, value, parameters, distributions, system attributes), in the form
    the storage gives it back, so a trial read from the storage after a restart equals the one just booked."""
    import optuna

    state = optuna.trial.TrialState.RUNNING if running else trial.state
    return optuna.trial.create_trial(
        state=state, value=trial.value if state == optuna.trial.TrialState.COMPLETE else None,
        params=dict(trial.params), distributions=dict(trial.distributions),
        system_attrs=json.loads(json.dumps(trial.system_attrs)))


def _book(study, plan, outcome: Mapping[str, Any]):
    """Stores one finished trial with its parameters, value and attributes in one storage write."""
    import optuna

    attrs = {"worker_pid": outcome["pid"], "worker_loads": outcome["loads"], "seconds": outcome.get("seconds")}
    if "error" in outcome:
        attrs["error"] = outcome["error"]
        state, value = optuna.trial.TrialState.FAIL, None
    else:
        attrs["metrics"] = outcome["metrics"]
        if "infeasible" in outcome:
            attrs["infeasible"] = outcome["infeasible"]
        state, value = optuna.trial.TrialState.COMPLETE, outcome["value"]
    trial = optuna.trial.create_trial(state=state, value=value, params=plan.params, distributions=plan.distributions,
                                      user_attrs=attrs, system_attrs=plan.system_attrs)
    study.add_trial(trial)
    return trial


def _plain_all(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in params.items()}


def _best_of(trials) -> Optional[float]:
    """The best feasible value; a penalty is never shown as a result."""
    values = [t.value for t in trials if is_feasible(t)]
    return max(values) if values else None


def _best_label(trials, best: Optional[float]) -> str:
    import optuna

    if best is not None:
        return f"{best:.4f}"
    complete = any(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
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
    row["worker_seconds"] = trial.user_attrs.get("seconds")  # the backtest's own time on the worker
    return row


JOURNAL_NAME = "optuna.log"
LEGACY_NAME = "optuna.db"  # the SQLite storage earlier versions kept in OUT: a search begun there continues there
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def storage_spec(given: Optional[str], out: Path) -> str:
    """--storage as a storage text: a database URL as given, a .db/.sqlite path as a SQLite URL, any other path a
    journal file; without it OUT/optuna.log (or OUT/optuna.db left by an earlier version)."""
    if given and "://" in given:
        return given
    path = Path(given) if given else out / JOURNAL_NAME
    if not given and (out / LEGACY_NAME).exists() and not path.exists():
        path = out / LEGACY_NAME
    if path.suffix.lower() in SQLITE_SUFFIXES:
        return f"sqlite:///{path.resolve()}"
    return str(path.resolve())


def open_storage(spec: str):
    """The Optuna storage for a storage text: a journal file is appended one line per finished trial, with an
    fsync, about 1 ms of the driver's time against tens of ms for a SQLite trial and ~1 s to open a SQLite study."""
    if "://" in spec:
        return spec
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    return JournalStorage(JournalFileBackend(spec, lock_obj=JournalFileOpenLock(spec)))


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
               calendar: Sequence[date] = (), progress: Optional[Callable[[str], None]] = None,
               timing: Optional[SearchTiming] = None) -> list[FoldResult]:
    """One study over the whole period, or one per walk-forward fold scored on the next window."""
    search = Search(settings, client, storage, progress, timing)
    if not walk_forward:
        fold = search.study(study_name, (None, None), keep_equity=True)
        if not fold.test_equity:  # the best set was found by an earlier, interrupted run
            fold.test_equity = search.score(fold.best_params, (None, None)).get("equity", [])
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

    study = optuna.load_study(study_name=name, storage=open_storage(storage))
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
    p.add_argument("--ask-ahead", action="store_true",
                   help="上一批还在运行时就提出下一批：工作进程不在批末等待（多进程时每分钟试验更多），"
                        "但采样器少看一批结果，试验次数少时找到的参数可能稍差；续跑须使用相同设置")
    p.add_argument("--workers", type=int, default=2, help="本机 Dask 工作进程数（未给 --scheduler 时）")
    p.add_argument("--scheduler", help="已有的 Dask 调度器地址，如 tcp://127.0.0.1:8786")
    p.add_argument("--walk-forward", type=int, default=0, help="滚动验证段数：每段训练后在下一段样本外评分")
    p.add_argument("--out", default="optimize_out")
    p.add_argument("--storage", help="Optuna 存储：日志文件路径（默认 OUT/optuna.log）、.db 文件路径（SQLite）或数据库 URL；"
                                     "中断后再次运行同一命令会续跑")
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
    """The project's code as the workers need it: the top-level modules and every package's files (modules and
    the data files shipped beside them, such as market/t0_etfs.csv)."""
    packages = sorted(init.parent for init in PROJECT_DIR.glob("*/__init__.py"))
    return sorted(PROJECT_DIR.glob("*.py")) + [item for package in packages for item in sorted(package.iterdir())
                                               if item.is_file() and item.suffix not in (".pyc", ".pyo")]


def ship_project(client) -> None:
    """Send this project's files to the scheduler and the workers of an existing cluster (unpacked into a folder
    put on their sys.path, so modules that read a file beside them work; the scheduler unpickles the tasks too),
    then check that every worker can import the trial code, before any trial runs: processes started elsewhere
    need no PYTHONPATH. Workers that join later do not get it: start them before the search."""
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
    """A function pickled by value (the remote side cannot import this module yet) that unpacks the zip into a
    folder of its machine's temp folder, keyed by content, and puts that folder on sys.path."""
    import hashlib

    name = f"miniqmt-project-{hashlib.sha256(bundle).hexdigest()[:16]}"

    def install() -> str:
        import io
        import os
        import shutil
        import sys as remote_sys
        import tempfile
        import zipfile

        path = os.path.join(tempfile.gettempdir(), name)
        if not os.path.isdir(path):
            scratch = tempfile.mkdtemp(prefix=f"{name}.", dir=tempfile.gettempdir())
            with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
                archive.extractall(scratch)
            try:
                os.rename(scratch, path)  # atomic: another process on this machine may have unpacked it first
            except OSError:
                shutil.rmtree(scratch, ignore_errors=True)
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
        market_rules.instrument_data_from_config(base)  # a bad T+0 table or listing file stops before any trial
        space = load_space(args.space)
        if args.trials < 1 or args.batch < 1:
            raise OptimizeError("--trials 与 --batch 必须为正整数")
    except ConfigError as exc:
        print("参数错误：" + "；".join(f"{k}：{v}" for k, v in exc.errors.items()), file=stderr)
        return 2
    except (OptimizeError, ValueError) as exc:  # ValueError: an unreadable T+0 table or listing file
        print(f"优化失败：{exc}", file=stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage_spec(args.storage, out)
    cache = str(Path(args.cache or default_cache_dir()).resolve())
    codes = tuple(sorted(c for item in (args.codes or []) for c in item.split(",") if c.strip())) or None
    settings = SearchSettings(str(Path(args.data).resolve()), space, args.trials, args.objective, args.max_drawdown,
                              args.sampler, args.seed, args.batch, args.ask_ahead, codes, cache, base)
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
