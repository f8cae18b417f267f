"""Plot images/s against batch size from ``score_throughput.py`` logs (one PNG).

Each log (``--log FILE`` of a run) becomes one colour: end to end from files (solid) and the
model alone (dashed), medians over repeats, with the one-image plain loop as a dotted horizontal
line and, when the log holds it, the FLOP ceiling at the nominal peak as a grey line. Needs
matplotlib (the ``plot`` extra of artquant-eval, or ``pip install matplotlib``).

Example::

    python benchmarks/plot.py benchmarks/out/cpu-small-cli-final.jsonl --out throughput.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "read_runs", "summarise"]


def read_runs(paths: Sequence[Path]) -> dict[str, list[dict[str, Any]]]:
    """The JSON records of each log, keyed by the log's file stem.

    Raises:
        ValueError: If a file holds no ``score_throughput`` record.
    """
    runs = {}
    for path in paths:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        records = [r for r in records if r.get("script") == "score_throughput"]
        if not records:
            raise ValueError(f"{path} holds no score_throughput records (pass a --log file)")
        runs[path.stem] = records
    return runs


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median images/s per batch size for ``e2e`` and ``model_only``, plus baseline and ceiling."""
    series: dict[str, dict[int, list[float]]] = {"e2e": {}, "model_only": {}}
    baseline, ceiling = None, None
    for row in records:
        kind = row.get("kind")
        if kind in series:
            series[kind].setdefault(int(row["batch_size"]), []).append(float(row["images_per_s"]))
        elif kind == "baseline_e2e":
            baseline = float(row["images_per_s"])
        elif kind == "flops" and row.get("device", "").startswith("cuda"):
            ceiling = row.get("ceiling_images_per_s")
    medians = {
        kind: {b: statistics.median(v) for b, v in sorted(by_batch.items())}
        for kind, by_batch in series.items()
    }
    return {**medians, "baseline": baseline, "ceiling": ceiling}


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", type=Path, nargs="+", help="JSONL files from --log")
    parser.add_argument("--out", type=Path, default=Path("throughput.png"))
    parser.add_argument("--labels", default=None, help="comma-separated names, one per log")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != len(args.logs):
        parser.error(f"--labels names {len(labels)} runs but {len(args.logs)} logs were given")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        parser.error("matplotlib is needed: pip install matplotlib (or artquant-eval[plot])")
    runs = read_runs(args.logs)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    batch_sizes: set[int] = set()
    for index, (stem, records) in enumerate(runs.items()):
        colour = f"C{index}"
        name = labels[index] if labels else stem
        summary = summarise(records)
        for kind, style, label in (("e2e", "-o", "end to end"), ("model_only", "--s", "model")):
            points = summary[kind]
            batch_sizes.update(points)
            if points:
                axes.plot(list(points), list(points.values()), style, color=colour,
                          label=f"{name}: {label}")  # fmt: skip
        if summary["baseline"] is not None:
            axes.axhline(summary["baseline"], color=colour, linestyle=":",
                         label=f"{name}: one image per forward, full logits")  # fmt: skip
        if summary["ceiling"] is not None:
            axes.axhline(summary["ceiling"], color="grey", linewidth=0.8,
                         label=f"FLOP ceiling ({summary['ceiling']:.0f} images/s)")  # fmt: skip
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted(batch_sizes), [str(b) for b in sorted(batch_sizes)])
    axes.set_xlabel("batch size")
    axes.set_ylabel("images / s")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    if args.title:
        axes.set_title(args.title, fontsize=9)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
