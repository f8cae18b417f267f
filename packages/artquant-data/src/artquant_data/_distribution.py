"""Level distributions: Score-Based Distribution Estimation and its well-posed alternatives.

Three ways to turn human ratings into a soft target over the level words:

* :func:`estimate_level_distribution`: ArtQuant's Score-Based Distribution Estimation (paper
  §3.2), from a mean score alone. This is what the paper used for APDDv2, which has no rater
  std. It reproduces the original notebook's optimiser exactly (see ``_lbfgsb``).
* :func:`level_distribution_from_mean_std`: DeQA-Score style, from a mean and a rater std.
* :func:`level_distribution_from_histogram`: AVA style, re-binning a vote histogram onto the
  level values.

Plus the hard level of a score and the inverse maps (expected score and std of a distribution).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from artquant_data import _lbfgsb

logger = logging.getLogger(__name__)

LEVEL_NAMES: tuple[str, ...] = ("excellent", "good", "fair", "poor", "bad")
"""The level words, best first, in the order of ``level_probs``."""
ARTQUANT_LEVEL_VALUES: tuple[float, ...] = (10.0, 7.5, 5.0, 3.5, 1.0)
"""ArtQuant's level values on the 0–10 scale, aligned with :data:`LEVEL_NAMES`."""

_CHUNK = 512  # problems advanced in lockstep; keeps the optimiser workspaces in cache


def _as_values(values: Sequence[float] | ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] < 2:
        raise ValueError(
            f"values must be a 1-D sequence of at least 2 level values, got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"values must be finite, got {arr.tolist()}")
    if np.unique(arr).shape[0] != arr.shape[0]:
        raise ValueError(f"values must be distinct, got {arr.tolist()}")
    return arr


def _as_scores(scores: ArrayLike, what: str = "scores") -> NDArray[np.float64]:
    try:
        arr = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be numbers, got {scores!r}") from exc
    bad = ~np.isfinite(arr)
    if np.any(bad):
        first = np.argwhere(bad)[0]
        where = tuple(int(i) for i in first)
        raise ValueError(
            f"{what} must be finite; found {arr[tuple(first)]!r} at index {where}"
            f" ({int(bad.sum())} non-finite in total)"
        )
    return arr


def _one_hot_nearest(
    scores: NDArray[np.float64], values: NDArray[np.float64]
) -> NDArray[np.float64]:
    idx = np.argmin(np.abs(scores[:, None] - values[None, :]), axis=1)
    out = np.zeros((scores.shape[0], values.shape[0]))
    out[np.arange(scores.shape[0]), idx] = 1.0
    return out


def _fit_minimize(
    targets: NDArray[np.float64], values: NDArray[np.float64], progress: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The notebook's loop: one public ``scipy.optimize.minimize`` call per score."""
    from scipy.optimize import minimize

    mus = np.empty_like(targets)
    sigmas = np.empty_like(targets)
    bounds = [_lbfgsb.MU_BOUNDS, _lbfgsb.SIGMA_BOUNDS]
    for i, s in enumerate(tqdm(targets, disable=not progress, desc="L-BFGS-B", unit="score")):
        target = np.array([s])

        def objective(params: NDArray[np.float64], target: NDArray[np.float64] = target) -> float:
            mu, sigma = params
            return float(_lbfgsb.objective(np.array([mu]), np.array([sigma]), target, values)[0])

        result = minimize(objective, np.array([s, 1.0]), bounds=bounds)
        mus[i], sigmas[i] = result.x
    return mus, sigmas


def fit_level_gaussian(
    scores: ArrayLike,
    values: Sequence[float] | ArrayLike = ARTQUANT_LEVEL_VALUES,
    *,
    method: Literal["batched", "minimize"] = "batched",
    progress: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The Gaussian ``(mu*, sigma*)`` that Score-Based Distribution Estimation fits per score.

    The original minimises ``|sum_i p_i(mu, sigma) l_i - s|`` with L-BFGS-B from ``(s, 1)``,
    ``mu`` in [-10, 10] and ``sigma`` in [0.001, 1000], where ``p`` is the Gaussian density at
    the level values ``l`` normalised to sum to one. The problem is under-determined, so the
    answer is whatever point that optimiser stops at; both methods here stop at the same point.

    Args:
        scores: One score or an array of scores (any shape), on the scale of ``values``.
        values: Level values, in the order of the returned probabilities.
        method: ``"batched"`` (default) replays scipy's L-BFGS-B for many scores in lockstep
            (the original's numbers, about 30x faster); ``"minimize"`` calls
            ``scipy.optimize.minimize`` once per distinct score, like the notebook.
        progress: Show a progress bar.

    Returns:
        ``(mu, sigma)`` arrays with the shape of ``scores``.

    Raises:
        ValueError: If a score is not finite, ``values`` is invalid, or ``method`` is unknown.

    Example:
        >>> mu, sigma = fit_level_gaussian(7.5)
        >>> round(float(mu), 2), round(float(sigma), 2)
        (7.5, 1.0)
    """
    vals = _as_values(values)
    arr = _as_scores(scores)
    if method not in ("batched", "minimize"):
        raise ValueError(f"method must be 'batched' or 'minimize', got {method!r}")
    flat = arr.reshape(-1)
    # The fit is a deterministic function of the score: solve each distinct score once.
    unique, inverse = np.unique(flat, return_inverse=True)
    # L-BFGS-B calls BLAS on 2x2 problems; a multi-threaded BLAS only adds thread wake-ups,
    # which cost 5-10x on a busy machine. One thread changes no number.
    with threadpool_limits(limits=1, user_api="blas"):
        mus, sigmas = _fit_unique(unique, vals, method, progress)
    return mus[inverse].reshape(arr.shape), sigmas[inverse].reshape(arr.shape)


def _fit_unique(
    unique: NDArray[np.float64], vals: NDArray[np.float64], method: str, progress: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if method == "batched" and _lbfgsb.lbfgsb_available():
        mus = np.empty_like(unique)
        sigmas = np.empty_like(unique)
        starts = range(0, unique.shape[0], _CHUNK)
        bar = tqdm(total=unique.shape[0], disable=not progress, desc="L-BFGS-B", unit="score")
        with bar:
            for start in starts:
                stop = min(start + _CHUNK, unique.shape[0])
                mus[start:stop], sigmas[start:stop] = _lbfgsb.fit_batch(unique[start:stop], vals)
                bar.update(stop - start)
    else:
        mus, sigmas = _fit_minimize(unique, vals, progress)
    return mus, sigmas


def estimate_level_distribution(
    scores: ArrayLike,
    values: Sequence[float] | ArrayLike = ARTQUANT_LEVEL_VALUES,
    *,
    method: Literal["batched", "minimize"] = "batched",
    progress: bool = False,
) -> NDArray[np.float64]:
    """Score-Based Distribution Estimation (ArtQuant §3.2): a level distribution from a mean.

    Fits the Gaussian of :func:`fit_level_gaussian`, then returns its density at the level
    values, clipped to [0, 1] and normalised, exactly as the original notebook does. Scores
    beyond the end level values cannot be matched and saturate towards a one-hot on the end
    level (for ArtQuant's values, already from about 9.9 upwards and 1.0 downwards). Where the
    original would divide 0 by 0 (every density underflowing; not reached for ArtQuant's
    values) the result is a one-hot on the level nearest the score instead of NaN.

    Args:
        scores: One score or an array of scores (any shape), on the scale of ``values``.
        values: Level values; the output follows their order. Default ArtQuant's
            (10, 7.5, 5, 3.5, 1) for (excellent, good, fair, poor, bad).
        method: See :func:`fit_level_gaussian`.
        progress: Show a progress bar.

    Returns:
        Probabilities with shape ``np.shape(scores) + (len(values),)``, each row summing to 1.

    Raises:
        ValueError: If a score is not finite or ``values`` is invalid.

    Example:
        >>> estimate_level_distribution(7.5).round(3).tolist()
        [0.041, 0.919, 0.04, 0.0, 0.0]
    """
    vals = _as_values(values)
    arr = _as_scores(scores)
    mus, sigmas = fit_level_gaussian(arr, vals, method=method, progress=progress)
    flat_probs = _lbfgsb.normalised_clipped_pdf(mus.reshape(-1), sigmas.reshape(-1), vals)
    bad = ~np.all(np.isfinite(flat_probs), axis=1)
    if np.any(bad):
        logger.warning(
            "%d score(s) gave an all-zero density (e.g. %r); using a one-hot on the nearest level",
            int(bad.sum()),
            float(arr.reshape(-1)[bad][0]),
        )
        flat_probs[bad] = _one_hot_nearest(arr.reshape(-1)[bad], vals)
    return flat_probs.reshape((*arr.shape, vals.shape[0]))


def _bracketing_probs(
    means: NDArray[np.float64], values: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Mass split between the two level values around each mean, preserving the mean.

    Means beyond the end values go wholly to the end level.
    """
    order = np.argsort(values)
    sorted_vals = values[order]
    clipped = np.clip(means, sorted_vals[0], sorted_vals[-1])
    upper = np.clip(np.searchsorted(sorted_vals, clipped, side="left"), 1, len(sorted_vals) - 1)
    lower = upper - 1
    span = sorted_vals[upper] - sorted_vals[lower]
    w_upper = (clipped - sorted_vals[lower]) / span
    out_sorted = np.zeros((means.shape[0], values.shape[0]))
    rows = np.arange(means.shape[0])
    out_sorted[rows, lower] += 1.0 - w_upper
    out_sorted[rows, upper] += w_upper
    out = np.empty_like(out_sorted)
    out[:, order] = out_sorted
    return out


def _cdf_bin_edges(values: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    order = np.argsort(values)
    v = values[order]
    mids = (v[1:] + v[:-1]) / 2.0
    lo = np.concatenate([[v[0] - (v[1] - v[0]) / 2.0], mids])
    hi = np.concatenate([mids, [v[-1] + (v[-1] - v[-2]) / 2.0]])
    lo_out = np.empty_like(lo)
    hi_out = np.empty_like(hi)
    lo_out[order] = lo
    hi_out[order] = hi
    return lo_out, hi_out


def level_distribution_from_mean_std(
    mean: ArrayLike,
    std: ArrayLike,
    values: Sequence[float] | ArrayLike = ARTQUANT_LEVEL_VALUES,
    *,
    density: Literal["pdf", "cdf"] = "pdf",
    min_std: float = 0.2,
    max_residual: float = 0.1,
) -> NDArray[np.float64]:
    """DeQA-Score style soft label from a mean opinion score and the raters' std.

    Follows DeQA-Score's ``gen_soft_label.py``, generalised to any level values: the Gaussian
    ``N(mean, std)`` is evaluated at the level values (``density="pdf"``) or integrated over
    a bin around each value (``"cdf"``; bins end half-way to the neighbours), then corrected by
    ``alpha * p + beta`` so that it sums to one and its expectation is the mean; negatives are
    set to 0 and the result renormalised (DeQA leaves it unnormalised), which can leave a small
    error in the mean. Where ``std < min_std`` or the corrected expectation is still off by more
    than ``max_residual``, the mass is split between the two level values around the mean instead
    (exact mean). DeQA uses 0.2 and 0.1 on a 1–5 scale. The paper did *not* use this for
    APDDv2 (no rater std there); it is for data that has a std.

    Args:
        mean: Mean score(s), on the scale of ``values``.
        std: Rater standard deviation(s), same shape (or broadcastable), non-negative.
        values: Level values; the output follows their order.
        density: ``"pdf"`` (DeQA default, larger std) or ``"cdf"`` (small-std data).
        min_std: Below this std use the two-level split.
        max_residual: Above this mean error after correction use the two-level split.

    Returns:
        Probabilities with shape ``broadcast(mean, std).shape + (len(values),)``.

    Raises:
        ValueError: On non-finite input, a negative std, or an unknown ``density``.

    Example:
        >>> level_distribution_from_mean_std(3.25, 0.0, (5, 4, 3, 2, 1)).round(2).tolist()
        [0.0, 0.25, 0.75, 0.0, 0.0]
    """
    from scipy.stats import norm

    vals = _as_values(values)
    m_arr, s_arr = np.broadcast_arrays(_as_scores(mean, "mean"), _as_scores(std, "std"))
    if np.any(s_arr < 0):
        raise ValueError(f"std must be non-negative, got min {float(s_arr.min())!r}")
    if density not in ("pdf", "cdf"):
        raise ValueError(f"density must be 'pdf' or 'cdf', got {density!r}")
    shape = m_arr.shape
    means = m_arr.reshape(-1).astype(np.float64)
    stds = s_arr.reshape(-1).astype(np.float64)
    k = vals.shape[0]
    safe_std = np.where(stds > 0, stds, 1.0)
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        if density == "pdf":
            raw = norm.pdf(vals[None, :], loc=means[:, None], scale=safe_std[:, None])
        else:
            lo, hi = _cdf_bin_edges(vals)
            raw = norm.cdf(hi[None, :], means[:, None], safe_std[:, None]) - norm.cdf(
                lo[None, :], means[:, None], safe_std[:, None]
            )
        total = raw.sum(axis=1)
        weighted = raw @ vals
        # Solve alpha * total + k * beta = 1 and alpha * weighted + beta * sum(l) = mean.
        det = total * vals.sum() - k * weighted
        numer = vals.sum() - k * means
        # A raw distribution already centred on the mean needs no correction (0/0 otherwise).
        centred = np.abs(det) <= 1e-12 * np.maximum(np.abs(total * vals.sum()), 1e-300)
        alpha = np.where(centred, 1.0 / total, numer / np.where(centred, 1.0, det))
        beta = (1.0 - alpha * total) / k
        probs = np.maximum(alpha[:, None] * raw + beta[:, None], 0.0)
        # DeQA stops here; clipping negatives can leave a sum above 1, so renormalise
        probs = probs / probs.sum(axis=1, keepdims=True)
        residual = np.abs(probs @ vals - means)
    fallback = (stds < min_std) | ~np.isfinite(residual) | (residual > max_residual)
    fallback |= ~np.all(np.isfinite(probs), axis=1)
    if np.any(fallback):
        probs[fallback] = _bracketing_probs(means[fallback], vals)
    return probs.reshape((*shape, k))


def level_distribution_from_histogram(
    counts: ArrayLike,
    bin_values: Sequence[float] | ArrayLike | None = None,
    values: Sequence[float] | ArrayLike = ARTQUANT_LEVEL_VALUES,
) -> NDArray[np.float64]:
    """AVA style: re-bin a vote histogram onto the level values.

    Each vote for bin value ``b`` is split between the two level values around ``b`` by
    linear interpolation (a vote beyond the end values goes to the end level), so the result
    has the histogram's mean whenever every bin value lies inside the level range.

    Args:
        counts: Vote counts, shape ``(..., n_bins)``; non-negative, at least one vote per row.
        bin_values: The score of each bin; default ``1, 2, ..., n_bins`` (AVA's 1–10).
        values: Level values; the output follows their order.

    Returns:
        Probabilities with shape ``counts.shape[:-1] + (len(values),)``.

    Raises:
        ValueError: On negative or non-finite counts, a row without votes, or mismatched
            ``bin_values``.

    Example:
        >>> level_distribution_from_histogram([0, 0, 0, 0, 0, 1, 0, 0, 0, 0]).round(2).tolist()
        [0.0, 0.4, 0.6, 0.0, 0.0]
    """
    vals = _as_values(values)
    c = _as_scores(counts, "counts")
    if c.ndim == 0 or c.shape[-1] == 0:
        raise ValueError(f"counts must have a last axis of bins, got shape {c.shape}")
    if np.any(c < 0):
        raise ValueError(f"counts must be non-negative, got min {float(c.min())!r}")
    n_bins = c.shape[-1]
    if bin_values is None:
        bins = np.arange(1, n_bins + 1, dtype=np.float64)
    else:
        bins = _as_scores(bin_values, "bin_values").reshape(-1)
        if bins.shape[0] != n_bins:
            raise ValueError(f"bin_values has {bins.shape[0]} entries but counts has {n_bins} bins")
    flat = c.reshape(-1, n_bins)
    totals = flat.sum(axis=1)
    if np.any(totals <= 0):
        row = int(np.argwhere(totals <= 0)[0][0])
        raise ValueError(f"counts row {row} has no votes")
    rebin = _bracketing_probs(bins, vals)  # (n_bins, k): where each bin's votes go
    probs = (flat / totals[:, None]) @ rebin
    return probs.reshape((*c.shape[:-1], vals.shape[0]))


def hard_level(
    score: float,
    values: Sequence[float] = ARTQUANT_LEVEL_VALUES,
    names: Sequence[str] = LEVEL_NAMES,
) -> str:
    """The level word of a score, by the original thresholds at the level values.

    A score at or below the lowest value gets the lowest word; otherwise the word of the
    smallest level value that is >= the score; above every value, the highest word. For
    ArtQuant: <=1 bad, <=3.5 poor, <=5 fair, <=7.5 good, else excellent.

    Args:
        score: A finite score.
        values: Level values.
        names: The level words, aligned with ``values``.

    Returns:
        The level word.

    Raises:
        ValueError: If the score is not finite or ``names`` and ``values`` differ in length.

    Example:
        >>> hard_level(7.5), hard_level(7.51), hard_level(1.0)
        ('good', 'excellent', 'bad')
    """
    vals = _as_values(values)
    if len(names) != vals.shape[0]:
        raise ValueError(f"{len(names)} names for {vals.shape[0]} values")
    try:
        s = float(score)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"score must be a number, got {score!r}") from exc
    if not math.isfinite(s):
        raise ValueError(f"score must be finite, got {score!r}")
    for idx in np.argsort(vals):
        if s <= vals[idx]:
            return names[int(idx)]
    return names[int(np.argmax(vals))]


def _as_probs(probs: ArrayLike, k: int) -> NDArray[np.float64]:
    p = _as_scores(probs, "probs")
    if p.ndim == 0 or p.shape[-1] != k:
        raise ValueError(f"probs must have a last axis of {k} levels, got shape {p.shape}")
    if np.any(p < 0):
        raise ValueError(f"probs must be non-negative, got min {float(p.min())!r}")
    return p


def expected_score(
    probs: ArrayLike, values: Sequence[float] | ArrayLike = ARTQUANT_LEVEL_VALUES
) -> NDArray[np.float64] | float:
    """Expected score ``sum_i p_i l_i`` of level distribution(s) (rows renormalised).

    Args:
        probs: Probabilities, shape ``(..., len(values))``.
        values: Level values.

    Returns:
        A float for one distribution, else an array of shape ``probs.shape[:-1]``.

    Raises:
        ValueError: On a wrong last axis, negative or non-finite probabilities, or a zero row.

    Example:
        >>> expected_score([0.0, 1.0, 0.0, 0.0, 0.0])
        7.5
    """
    vals = _as_values(values)
    p = _as_probs(probs, vals.shape[0])
    total = p.sum(axis=-1)
    if np.any(total <= 0):
        raise ValueError("probs has a row that sums to 0")
    out = (p @ vals) / total
    return float(out) if out.ndim == 0 else out


def score_std(
    probs: ArrayLike, values: Sequence[float] | ArrayLike = ARTQUANT_LEVEL_VALUES
) -> NDArray[np.float64] | float:
    """Standard deviation ``sqrt(sum_i p_i (l_i - E)^2)`` of level distribution(s).

    Args:
        probs: Probabilities, shape ``(..., len(values))`` (rows renormalised).
        values: Level values.

    Returns:
        A float for one distribution, else an array of shape ``probs.shape[:-1]``.

    Raises:
        ValueError: As :func:`expected_score`.

    Example:
        >>> score_std([0.5, 0.0, 0.0, 0.0, 0.5])
        4.5
    """
    vals = _as_values(values)
    p = _as_probs(probs, vals.shape[0])
    mean = np.asarray(expected_score(p, vals))
    p = p / p.sum(axis=-1, keepdims=True)
    out = np.sqrt(np.sum(p * (vals - mean[..., None]) ** 2, axis=-1))
    return float(out) if out.ndim == 0 else out


__all__ = [
    "ARTQUANT_LEVEL_VALUES",
    "LEVEL_NAMES",
    "estimate_level_distribution",
    "expected_score",
    "fit_level_gaussian",
    "hard_level",
    "level_distribution_from_histogram",
    "level_distribution_from_mean_std",
    "score_std",
]
