"""PNG plots of a parameter search (matplotlib's Agg canvas, no GUI state): optimisation history, the objective
against each parameter, the parameters' importance, and the out-of-sample equity of the best set (the whole
period without walk-forward)."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Optional

from backtesting.chart import cjk_font, font_settings

INFEASIBLE_BELOW = -1.0e5  # values under this are infeasible trials; left off the charts


def plot_all(out: Path, folds: list[Any], objective: str,
             importance: Optional[dict[str, dict[str, float]]] = None) -> list[Path]:
    plots = [_history(out / "optimization_history.png", folds, objective),
             _parameters(out / "objective_vs_params.png", folds, objective),
             _equity(out / "best_equity.png", folds)]
    if importance and any(importance.values()):
        plots.append(_importance(out / "param_importance.png", importance))
    return plots


def _importance(path: Path, importance: dict[str, dict[str, float]]) -> Path:
    """One horizontal bar per parameter (fANOVA importance, summing to 1 within a study), one group per fold."""
    names = sorted({name for values in importance.values() for name in values})
    figure, axes, chinese = _figure(size=(8, 1.2 + 0.6 * len(names) * max(1, len(importance))))
    ax = axes[0][0]
    studies = [study for study, values in importance.items() if values]
    height = 0.8 / len(studies)
    for offset, study in enumerate(studies):
        ax.barh([i + offset * height for i in range(len(names))],
                [importance[study].get(name, 0.0) for name in names], height=height, label=study)
    ax.set_yticks([i + height * (len(studies) - 1) / 2 for i in range(len(names))])
    ax.set_yticklabels(names)
    ax.set_xlabel("重要性（合计 1）" if chinese else "importance (sums to 1)")
    ax.set_title("参数重要性" if chinese else "Parameter importance")
    ax.grid(alpha=0.3, axis="x")
    if len(studies) > 1:
        ax.legend()
    figure.tight_layout()
    figure.savefig(path)
    return path


def _figure(rows: int = 1, cols: int = 1, size=(10, 5)):
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    font = cjk_font()
    matplotlib.rcParams.update(font_settings(font))
    figure = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, cols, squeeze=False)
    return figure, axes, font is not None


def _values(fold) -> list[tuple[int, float]]:
    return [(row["number"], row["value"]) for row in fold.trials
            if row["state"] == "COMPLETE" and row["value"] is not None and row["value"] > INFEASIBLE_BELOW]


def _history(path: Path, folds, objective: str) -> Path:
    figure, axes, chinese = _figure()
    ax = axes[0][0]
    for fold in folds:
        points = _values(fold)
        if not points:
            continue
        numbers, values = zip(*points)
        best, running = [], float("-inf")
        for value in values:
            running = max(running, value)
            best.append(running)
        ax.scatter(numbers, values, s=12, label=fold.name)
        ax.plot(numbers, best, linewidth=1.2)
    ax.set_xlabel("试验序号" if chinese else "trial")
    ax.set_ylabel(objective)
    ax.set_title("优化历史（点：每次试验，线：至今最佳）" if chinese else "Optimisation history (dots: trials, line: best so far)")
    ax.grid(alpha=0.3)
    if len(folds) > 1:
        ax.legend()
    figure.tight_layout()
    figure.savefig(path)
    return path


def _parameters(path: Path, folds, objective: str) -> Path:
    names = sorted({key[6:] for fold in folds for row in fold.trials for key in row if key.startswith("param:")})
    figure, axes, chinese = _figure(1, max(1, len(names)), size=(4 * max(1, len(names)), 4))
    for ax, name in zip(axes[0], names):
        xs, ys = [], []
        for fold in folds:
            for row in fold.trials:
                value = row.get("value")
                if row["state"] == "COMPLETE" and value is not None and value > INFEASIBLE_BELOW:
                    xs.append(str(row[f"param:{name}"]) if isinstance(row[f"param:{name}"], (list, bool, str))
                              else row[f"param:{name}"])
                    ys.append(value)
        ax.scatter(xs, ys, s=12)
        ax.set_xlabel(name)
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
    figure.suptitle("目标值与各参数" if chinese else "Objective against each parameter")
    figure.tight_layout()
    figure.savefig(path)
    return path


def _equity(path: Path, folds) -> Path:
    figure, axes, chinese = _figure()
    ax = axes[0][0]
    for fold in folds:
        if fold.test_equity:
            days = [date.fromisoformat(d) for d, _ in fold.test_equity]
            ax.plot(days, [total for _, total in fold.test_equity], linewidth=1.2, label=fold.name)
    sample = any(f.test is not None for f in folds)
    if chinese:
        ax.set_title("最佳参数的样本外权益" if sample else "最佳参数的权益（全区间）")
    else:
        ax.set_title("Out-of-sample equity of the best set" if sample else "Equity of the best set (whole period)")
    ax.grid(alpha=0.3)
    if len(folds) > 1:
        ax.legend()
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path)
    return path
