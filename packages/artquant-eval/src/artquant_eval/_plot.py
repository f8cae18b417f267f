"""Scatter plot of predictions against targets, with the fitted logistic curve.

matplotlib is optional (the ``plot`` extra) and imported only when a plot is drawn.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from artquant_eval._fitting import LogisticFit, fit_logistic
from artquant_eval._report import EvalReport
from artquant_eval._validation import (
    ConstantInputError,
    LogisticFitError,
    MetricInputError,
    TooFewPairsError,
    as_pair,
    as_vector,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from artquant_eval._attributes import AttributeEvaluation

logger = logging.getLogger(__name__)

_MAX_COLOURED_GROUPS = 10


def _figure_class() -> Any:
    try:
        module = importlib.import_module("matplotlib.figure")
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib, which artquant-eval installs only with its 'plot' "
            "extra: pip install 'artquant-eval[plot]' (or uv add 'artquant-eval[plot]')"
        ) from exc
    return module.Figure


def scatter_plot(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    report: EvalReport | None = None,
    fit: str | None = "logistic4",
    path: str | Path | None = None,
    title: str | None = None,
    xlabel: str = "prediction",
    ylabel: str = "target",
    groups: ArrayLike | None = None,
) -> Figure:
    """Draw target against prediction, the fitted logistic curve and the metrics.

    Uses ``matplotlib.figure.Figure`` directly (no pyplot), so it changes no global backend
    and works without a display.

    Args:
        pred: Predicted scores, 1-D.
        target: Target scores, 1-D.
        report: The :func:`evaluate` report of the same data: its metrics go in the title and
            its fitted mapping (if any) is drawn. Without it only the fit is computed here.
        fit: The logistic form to draw when ``report`` carries none; None for no curve.
        path: Where to save the figure (PNG, SVG, PDF... by suffix); None to only return it.
        title: First title line; the metrics follow on a second line.
        xlabel: Label of the prediction axis.
        ylabel: Label of the target axis.
        groups: Optional label per pair; with at most 10 distinct labels each group gets its
            own colour (more would not be told apart, so they share one).

    Returns:
        The matplotlib Figure.

    Raises:
        ImportError: matplotlib is not installed (install the ``plot`` extra).
        MetricInputError: Bad input, as for the metrics.
    """
    figure_class = _figure_class()
    p_all, t_all = as_vector(pred, "pred"), as_vector(target, "target")
    labels = None
    if groups is not None:
        labels = np.asarray([str(g) for g in np.asarray(groups, dtype=object).reshape(-1)])
        if labels.size != p_all.size:
            raise MetricInputError(
                f"groups must hold one label per pair ({p_all.size}); got {labels.size}"
            )
    p, t, _ = as_pair(p_all, t_all, nan_policy="omit", min_pairs=1)
    if labels is not None:
        labels = labels[np.isfinite(p_all) & np.isfinite(t_all)]
    figure = figure_class(figsize=(6.4, 5.6), dpi=120, layout="constrained")
    ax = figure.subplots()
    alpha = float(np.clip(300.0 / max(p.size, 1), 0.15, 0.8))
    names = sorted(set(labels.tolist())) if labels is not None else []
    if labels is not None and 1 < len(names) <= _MAX_COLOURED_GROUPS:
        for name in names:
            mask = labels == name
            ax.scatter(p[mask], t[mask], s=12, alpha=alpha, edgecolors="none", label=name)
    else:
        ax.scatter(p, t, s=12, alpha=alpha, color="tab:blue", edgecolors="none", label="pairs")

    mapping: LogisticFit | None = report.logistic if report is not None else None
    if mapping is None and fit is not None:
        try:
            mapping = fit_logistic(p, t, fit)
        except (ConstantInputError, TooFewPairsError, LogisticFitError) as exc:
            logger.warning("no fitted curve drawn: %s", exc)
    if mapping is not None:
        grid = np.linspace(p.min(), p.max(), 300)
        ax.plot(grid, mapping(grid), color="black", linewidth=2, label=f"{mapping.kind} fit")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    legend = ax.legend(loc="upper left", fontsize=8)
    for handle in legend.legend_handles:  # faded points stay readable in the legend
        if handle is not None:
            handle.set_alpha(1.0)

    lines = [title] if title else []
    if report is not None:
        parts = [f"n={report.n}"]
        for name, label in (
            ("srcc", "SRCC"),
            ("plcc", "PLCC"),
            ("plcc_fitted", "PLCC-fit"),
            ("krcc", "KRCC"),
            ("rmse", "RMSE"),
        ):
            value = getattr(report, name)
            parts.append(f"{label}={'undef.' if value is None else f'{value:.3f}'}")
        lines.append("  ".join(parts))
    if lines:
        ax.set_title("\n".join(lines), fontsize=10)
    if path is not None:
        figure.savefig(path)
        logger.info("wrote %s", path)
    return figure


def attribute_plot(
    evaluation: AttributeEvaluation,
    *,
    path: str | Path | None = None,
    title: str | None = None,
) -> Figure:
    """One figure of the per-attribute correlations, with their bootstrap intervals.

    Each attribute is a row; SRCC, PLCC and KRCC are points side by side with the interval as
    a horizontal bar (none without bootstrap); the row's label gives the pairs evaluated and
    the rows skipped for an empty label. A dashed line marks each correlation's mean.

    Args:
        evaluation: The result of :func:`evaluate_attributes`.
        path: Where to save the figure (format by suffix); None to only return it.
        title: Title; default "Per-attribute correlations".

    Returns:
        The matplotlib Figure.

    Raises:
        ImportError: matplotlib is not installed (install the ``plot`` extra).
    """
    from artquant_eval._attributes import ATTRIBUTE_CORRELATIONS

    figure_class = _figure_class()
    results = list(evaluation.attributes.values())
    height = 1.2 + 0.45 * max(len(results), 1)
    figure = figure_class(figsize=(7.2, height), dpi=120, layout="constrained")
    ax = figure.subplots()
    rows = np.arange(len(results))[::-1]  # the first attribute on top
    offsets = {"srcc": 0.22, "plcc": 0.0, "krcc": -0.22}
    colours = {"srcc": "tab:blue", "plcc": "tab:orange", "krcc": "tab:green"}
    for metric in ATTRIBUTE_CORRELATIONS:
        ys, xs, lows, highs = [], [], [], []
        for row, result in zip(rows, results, strict=True):
            value = None if result.report is None else getattr(result.report, metric)
            if value is None:
                continue
            ci = result.report.intervals.get(metric) if result.report is not None else None
            ys.append(row + offsets[metric])
            xs.append(value)
            lows.append(value - ci.low if ci else 0.0)
            highs.append(ci.high - value if ci else 0.0)
        ax.errorbar(
            xs, ys, xerr=[lows, highs], fmt="o", markersize=4, capsize=2,
            color=colours[metric], label=metric.upper(),
        )  # fmt: skip
        if metric in evaluation.mean:
            ax.axvline(evaluation.mean[metric], color=colours[metric], linestyle="--", alpha=0.5)
    ax.set_yticks(rows)
    ax.set_yticklabels(
        [f"{r.id} (n={r.n}, {r.skipped_no_label} unlabelled)" for r in results], fontsize=8
    )
    ax.set_xlabel("correlation with the labels (bars: bootstrap interval; dashed: mean)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title or "Per-attribute correlations", fontsize=10)
    if path is not None:
        figure.savefig(path)
        logger.info("wrote %s", path)
    return figure


__all__ = ["attribute_plot", "scatter_plot"]
