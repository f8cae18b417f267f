"""Training curves from a run folder's ``metrics.jsonl`` and ``validation.jsonl``.

Example:
    >>> figure = plot_training("runs/apddv2", "runs/apddv2/training_curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from artquant_train.attributes import ATTRIBUTE_MEAN
from artquant_train.errors import TrainError


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            steps.append(float(record["step"]))
            values.append(float(value))
    return steps, values


def _attribute_ids(records: list[dict[str, Any]]) -> list[str]:
    """Attribute ids with a ``<id>/srcc`` series, in first-seen order (the mean excluded)."""
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            ident, _, metric = key.partition("/")
            if metric == "srcc" and ident != ATTRIBUTE_MEAN:
                seen.setdefault(ident)
    return list(seen)


def _plot_attributes(axis: Any, validations: list[dict[str, Any]], attributes: list[str]) -> None:
    for ident in attributes:
        x, y = _series(validations, f"{ident}/srcc")
        axis.plot(x, y, marker=".", linewidth=1.0, label=ident)
    x, y = _series(validations, f"{ATTRIBUTE_MEAN}/srcc")
    axis.plot(x, y, color="black", linewidth=2.2, marker="o", label="mean")
    axis.set(title="validation SRCC per attribute", xlabel="optimizer step", ylabel="SRCC")
    axis.legend(fontsize=7, ncol=2 if len(attributes) > 5 else 1)


def plot_training(output_dir: str | Path, path: str | Path | None = None) -> Any:
    """Plot loss terms, learning rate and validation metrics of a run.

    Args:
        output_dir: the run folder (``run.output_dir``).
        path: where to save the figure (PNG, PDF, SVG...); ``None`` only returns it.

    Returns:
        The matplotlib ``Figure``: losses, learning rate, validation of the total and, when
        the run validated attributes, a fourth panel with each attribute's SRCC and their mean.

    Raises:
        TrainError: matplotlib is not installed (``pip install 'artquant-train[plot]'``), or
            the folder has no ``metrics.jsonl``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise TrainError("plotting needs matplotlib: pip install 'artquant-train[plot]'") from exc
    folder = Path(output_dir)
    steps = _read_lines(folder / "metrics.jsonl")
    if not steps:
        raise TrainError(f"no metrics.jsonl with steps in {folder}")
    validations = _read_lines(folder / "validation.jsonl")

    attributes = _attribute_ids(validations)
    panels = 4 if attributes else 3
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2))
    losses, rate, quality = axes[:3]
    x, y = _series(steps, "loss")
    # Length-grouped batches are often all-score or all-description, so the total jumps
    # between ~0.05 x score terms and ~description CE; a running mean shows the trend.
    losses.plot(x, y, label="total", color="tab:blue", linewidth=0.6, alpha=0.4)
    window = max(1, min(10, len(y) // 5))
    running = [
        sum(y[max(0, i - window + 1) : i + 1]) / len(y[max(0, i - window + 1) : i + 1])
        for i in range(len(y))
    ]
    losses.plot(x, running, label=f"total (mean of {window})", color="tab:blue", linewidth=1.8)
    for key, label, color in (
        ("ce_description", "description CE", "tab:orange"),
        ("ce_score", "score CE (no level)", "tab:green"),
        ("kl", "level KL", "tab:red"),
    ):
        x, y = _series(steps, key)
        if x:
            losses.plot(x, y, label=label, color=color, linewidth=1.0)
    losses.set(title="training loss", xlabel="optimizer step", ylabel="nats")
    losses.legend(fontsize=8)
    x, y = _series(steps, "lr")
    rate.plot(x, y, color="tab:gray")
    rate.set(title="learning rate", xlabel="optimizer step")
    rate.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for key in ("srcc", "plcc", "krcc"):
        x, y = _series(validations, key)
        if x:
            quality.plot(x, y, marker="o", label=key.upper())
    quality.set(title="validation", xlabel="optimizer step", ylabel="correlation")
    x, y = _series(validations, "mae")
    if x:
        error_axis = quality.twinx()
        error_axis.plot(x, y, marker="s", linestyle="--", color="tab:red", label="MAE")
        error_axis.set_ylabel("MAE", color="tab:red")
    if any(_series(validations, key)[0] for key in ("srcc", "plcc", "krcc")):
        quality.legend(fontsize=8, loc="center right")
    elif not validations:
        quality.text(
            0.5, 0.5, "no validation data", ha="center", va="center", transform=quality.transAxes
        )
    if attributes:
        _plot_attributes(axes[3], validations, attributes)
    figure.tight_layout()
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


__all__ = ["plot_training"]
