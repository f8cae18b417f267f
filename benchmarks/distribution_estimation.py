"""Benchmark: Score-Based Distribution Estimation on the BAID / APDDv2 training scores.

Times ``artquant_data.estimate_level_distribution`` (exact batched replay of the original
L-BFGS-B) on every training score, times the original notebook procedure (scipy.stats.norm +
scipy.optimize.minimize per score) on a sample and extrapolates, and checks that both give
the same probabilities on that sample. Prints one JSON line per measurement, then a table.

Usage::

    uv run python benchmarks/distribution_estimation.py [--shared ../shared] [--sample 300]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm
from threadpoolctl import threadpool_limits

import artquant_data as aq

VALUES = (10.0, 7.5, 5, 3.5, 1.0)


def original_get_score(score: float) -> np.ndarray:
    """The notebook's procedure, written out directly (the slow reference)."""

    def objective(params: np.ndarray) -> float:
        mu, sigma = params
        level_prob = norm.pdf(VALUES, loc=mu, scale=sigma)
        level_prob = level_prob / level_prob.sum()
        return float(abs(np.inner(level_prob, np.array(VALUES)) - score))

    result = minimize(objective, [score, 1], bounds=[(-10, 10), (0.001, 1000)])
    level_prob = norm.pdf(VALUES, loc=result.x[0], scale=result.x[1]).clip(0, 1)
    return level_prob / level_prob.sum()


def _scores(path: Path, column: str) -> np.ndarray:
    with open(path, encoding="utf-8") as fh:
        return np.array([float(row[column]) for row in csv.DictReader(fh)])


def bench(name: str, scores: np.ndarray, sample: int, repeats: int) -> dict[str, object]:
    """Time the fast path on all scores and the original on a sample; compare them."""
    fast_times, fast_cpu = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fast = aq.estimate_level_distribution(scores)
        fast_times.append(time.perf_counter() - start)
        fast_cpu.append(time.process_time() - cpu)
    idx = np.random.default_rng(0).choice(
        scores.shape[0], size=min(sample, scores.shape[0]), replace=False
    )
    # one BLAS thread for the original too (the fast path does the same): on a shared 2-core
    # machine OpenBLAS thread wake-ups otherwise dominate both
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", RuntimeWarning)
        start, cpu = time.perf_counter(), time.process_time()
        ref = np.stack([original_get_score(float(scores[i])) for i in idx])
        ref_time = time.perf_counter() - start
        ref_cpu = time.process_time() - cpu
    per_score = ref_time / idx.shape[0]
    per_score_cpu = ref_cpu / idx.shape[0]
    return {
        "dataset": name,
        "n_scores": int(scores.shape[0]),
        "n_distinct": int(np.unique(scores).shape[0]),
        "fast_wall_s_best": round(min(fast_times), 3),
        "fast_wall_s_all": [round(t, 3) for t in fast_times],
        "fast_cpu_s_best": round(min(fast_cpu), 3),
        "original_wall_s_per_score": round(per_score, 6),
        "original_cpu_s_per_score": round(per_score_cpu, 6),
        "original_cpu_s_extrapolated": round(per_score_cpu * scores.shape[0], 1),
        "speedup_cpu": round(per_score_cpu * scores.shape[0] / min(fast_cpu), 1),
        "checked_sample": int(idx.shape[0]),
        "max_abs_diff_vs_original": float(np.abs(fast[idx] - ref).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_shared = os.environ.get(
        "ARTQUANT_SHARED", str(Path(__file__).resolve().parents[1] / ".." / "shared")
    )
    parser.add_argument("--shared", type=Path, default=Path(default_shared))
    parser.add_argument("--sample", type=int, default=300, help="scores run through the original")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of the fast path")
    args = parser.parse_args()
    data = args.shared / "data"
    env = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": __import__("scipy").__version__,
        "artquant_data": aq.__version__,
    }
    print(json.dumps({"environment": env}))
    results = []
    for name, path, column in (
        ("baid-train", data / "baid" / "train_set.csv", "score"),
        ("apddv2-train", data / "apddv2" / "split_train.csv", "Score"),
    ):
        if not path.is_file():
            print(json.dumps({"dataset": name, "skipped": f"{path} not found"}))
            continue
        result = bench(name, _scores(path, column), args.sample, args.repeats)
        results.append(result)
        print(json.dumps(result))
    print()
    header = ("dataset", "scores", "distinct", "fast wall s", "fast CPU s", "orig CPU s*", "x")
    print("{:<14} {:>7} {:>8} {:>11} {:>10} {:>11} {:>6}  max |diff|".format(*header))
    for r in results:
        print(
            f"{r['dataset']:<14} {r['n_scores']:>7} {r['n_distinct']:>8}"
            f" {r['fast_wall_s_best']:>11.2f} {r['fast_cpu_s_best']:>10.2f}"
            f" {r['original_cpu_s_extrapolated']:>11.1f} {r['speedup_cpu']:>6.1f}"
            f"  {r['max_abs_diff_vs_original']:.1e}"
        )
    print("* the original on a sample, extrapolated to all scores (CPU seconds, one core)")


if __name__ == "__main__":
    main()
