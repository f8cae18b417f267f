"""Dataset statistics (pure) and their figure (matplotlib, optional)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artquant_data._distribution import (
    ARTQUANT_LEVEL_VALUES,
    LEVEL_NAMES,
    estimate_level_distribution,
    hard_level,
)
from artquant_data._records import ArtRecord

_SPLIT_ORDER = ("train", "val", "test", "none")


def dataset_stats(
    records: Sequence[ArtRecord],
    *,
    bins: int = 20,
    levels: bool = True,
    values: Sequence[float] = ARTQUANT_LEVEL_VALUES,
    names: Sequence[str] = LEVEL_NAMES,
    progress: bool = False,
) -> dict[str, Any]:
    """Counts, score summary, score histogram and level summary per split.

    Args:
        records: The records (scores are mapped onto 0–10 for the level summary).
        bins: Histogram bins over each record scale.
        levels: Also estimate level distributions (Score-Based Distribution Estimation) and
            report their mean per split and the hard-level counts.
        values: Level values.
        names: Level words.
        progress: Progress bar for the estimation.

    Returns:
        A JSON-ready dict: ``{"total": n, "splits": {split: {...}}}``.

    Raises:
        ValueError: If ``bins`` is not a positive integer, or the records mix score scales.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    scales = {r.scale for r in records}
    if len(scales) > 1:
        raise ValueError(f"records mix score scales {sorted(scales)}; load one dataset at a time")
    scale = scales.pop() if scales else (0.0, 10.0)
    edges = np.linspace(scale[0], scale[1], bins + 1)
    groups: dict[str, list[ArtRecord]] = {}
    for r in records:
        groups.setdefault(r.split or "none", []).append(r)
    out: dict[str, Any] = {"total": len(records), "scale": list(scale), "splits": {}}
    for split in sorted(groups, key=lambda s: _SPLIT_ORDER.index(s)):
        recs = groups[split]
        scores = np.array([r.score for r in recs], dtype=np.float64)
        hist, _ = np.histogram(scores, bins=edges)
        entry: dict[str, Any] = {
            "count": len(recs),
            "score_mean": float(scores.mean()),
            "score_std": float(scores.std()),
            "score_min": float(scores.min()),
            "score_max": float(scores.max()),
            "distinct_scores": int(np.unique(scores).shape[0]),
            "histogram": {"edges": edges.tolist(), "counts": hist.tolist()},
        }
        rated = Counter(k for r in recs for k, v in r.attributes.items() if v is not None)
        if rated:
            entry["attributes_rated"] = dict(sorted(rated.items()))
        if levels:
            on10 = np.array([r.score_on(0.0, 10.0) for r in recs])
            probs = estimate_level_distribution(on10, values, progress=progress)
            hard = Counter(hard_level(float(s), values, names) for s in on10)
            entry["hard_levels"] = {n: hard.get(n, 0) for n in names}
            entry["mean_level_probs"] = dict(zip(names, probs.mean(axis=0).tolist(), strict=True))
            entry["mean_top_prob"] = float(probs.max(axis=1).mean())
        out["splits"][split] = entry
    return out


def format_stats(stats: dict[str, Any]) -> str:
    """A short plain-text table of :func:`dataset_stats` output."""
    lines = [f"{'split':<6} {'count':>7} {'mean':>6} {'std':>6} {'min':>6} {'max':>6}  levels"]
    for split, e in stats["splits"].items():
        levels = ""
        if "mean_level_probs" in e:
            levels = " ".join(f"{k}={v:.3f}" for k, v in e["mean_level_probs"].items())
        lines.append(
            f"{split:<6} {e['count']:>7} {e['score_mean']:>6.3f} {e['score_std']:>6.3f}"
            f" {e['score_min']:>6.3f} {e['score_max']:>6.3f}  {levels}"
        )
    lines.append(f"total  {stats['total']:>7}")
    return "\n".join(lines)


def plot_stats(stats: dict[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    """Save a figure: score histogram per split, and mean level distribution per split.

    Args:
        stats: Output of :func:`dataset_stats`.
        path: Image file to write (format from the extension).
        title: Figure title.

    Returns:
        The path written.

    Raises:
        ImportError: If matplotlib is missing (install ``artquant-data[plot]``).
    """
    try:
        # the object-oriented API: no pyplot state, no backend switch for the caller
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'artquant-data[plot]'") from exc
    splits = stats["splits"]
    has_levels = any("mean_level_probs" in e for e in splits.values())
    fig = Figure(figsize=(11 if has_levels else 6, 4))
    axes = fig.subplots(1, 2 if has_levels else 1)
    axes = list(np.ravel(np.asarray(axes, dtype=object)))
    ax = axes[0]
    for split, e in splits.items():
        edges = np.array(e["histogram"]["edges"])
        counts = np.array(e["histogram"]["counts"], dtype=float)
        density = counts / max(counts.sum(), 1) / np.diff(edges)
        ax.stairs(density, edges, label=f"{split} (n={e['count']})", linewidth=1.6)
    ax.set_xlabel(f"score ({stats['scale'][0]:g}–{stats['scale'][1]:g})")
    ax.set_ylabel("density")
    ax.set_title("Score distribution per split")
    ax.legend()
    if has_levels:
        ax = axes[1]
        names = list(next(iter(splits.values()))["mean_level_probs"])
        width = 0.8 / len(splits)
        x = np.arange(len(names))
        for i, (split, e) in enumerate(splits.items()):
            ax.bar(
                x + i * width - 0.4 + width / 2,
                list(e["mean_level_probs"].values()),
                width,
                label=split,
            )
        ax.set_xticks(x, names)
        ax.set_ylabel("mean probability")
        ax.set_title("Mean estimated level distribution")
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


__all__ = ["dataset_stats", "format_stats", "plot_stats"]
