"""Score metrics as pure functions of two paired 1-D array-likes.

Formulas, with ``p`` the predictions, ``t`` the targets and ``n`` the number of pairs:

* PLCC (Pearson): ``sum((p - mean p)(t - mean t)) / sqrt(sum((p - mean p)^2) sum((t - mean t)^2))``,
  optionally after mapping ``p`` through a fitted logistic (see :mod:`artquant_eval._fitting`).
* SRCC (Spearman): the Pearson correlation of the ranks, ties sharing their average rank.
* KRCC (Kendall tau-b): ``(C - D) / sqrt((n0 - n1)(n0 - n2))`` with ``C``/``D`` the concordant
  and discordant pairs, ``n0 = n(n-1)/2`` and ``n1``/``n2`` the pairs tied in ``p``/``t``;
  counted in ``O(n log^2 n)`` by sorting.
* MSE ``mean((p - t)^2)``, RMSE ``sqrt(MSE)``, MAE ``mean(|p - t|)``.
* Binary accuracy: ``mean([p >= threshold] == [t >= threshold])`` (AVA-style good/bad split).

Correlations need at least 3 pairs and raise :class:`ConstantInputError` when either side is
constant: the correlation is undefined there, and no number is returned in its place.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from artquant_eval._fitting import LogisticFit, check_fit_kind, fit_logistic
from artquant_eval._validation import LogisticFitError, as_pair, check_not_constant

MIN_CORRELATION_PAIRS = 3


def _pearson(x: NDArray[np.float64], y: NDArray[np.float64], what: str) -> float:
    """Pearson correlation of validated, non-constant vectors."""
    check_not_constant(x, "pred", what)
    check_not_constant(y, "target", what)
    xm = x - x.mean()
    ym = y - y.mean()
    # Dividing by the norms before the dot product keeps the products in range for large inputs.
    r = float(np.dot(xm / np.linalg.norm(xm), ym / np.linalg.norm(ym)))
    return max(-1.0, min(1.0, r))


def plcc(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    fit: str | None = None,
    nan_policy: str = "raise",
) -> float:
    """Pearson linear correlation coefficient, raw or after a VQEG logistic mapping.

    Args:
        pred: Predicted scores, 1-D.
        target: Target scores, 1-D, paired with ``pred`` by position.
        fit: ``None`` for the raw correlation, ``"logistic4"`` or ``"logistic5"`` to first
            map ``pred`` through the fitted monotonic logistic (:func:`fit_logistic`).
        nan_policy: ``"raise"`` (default) rejects NaN/inf; ``"omit"`` drops those pairs.

    Returns:
        The correlation in [-1, 1].

    Raises:
        MetricInputError: Not 1-D, different lengths, or NaN/inf with ``nan_policy="raise"``.
        TooFewPairsError: Fewer than 3 pairs (or fewer than the fit's parameters + 1).
        ConstantInputError: ``pred`` or ``target`` (or the fitted mapping) is constant.
        LogisticFitError: The logistic fit did not converge.

    Example:
        >>> round(plcc([1, 2, 3, 4], [1.1, 1.9, 3.2, 3.8]), 6)
        0.990847
    """
    if fit is not None:
        fit = check_fit_kind(fit)
    p, t, _ = as_pair(pred, target, nan_policy=nan_policy, min_pairs=MIN_CORRELATION_PAIRS)
    if fit is None:
        return _pearson(p, t, "PLCC")
    return mapped_plcc(fit_logistic(p, t, fit), p, t)


def mapped_plcc(
    mapping: LogisticFit, pred: NDArray[np.float64], target: NDArray[np.float64]
) -> float:
    """Pearson correlation of ``mapping(pred)`` with ``target`` (validated inputs)."""
    mapped = mapping(pred)
    if mapped.min() == mapped.max():
        raise LogisticFitError(
            f"the fitted {mapping.kind} mapping is flat over the predictions, so the fitted "
            "PLCC is undefined"
        )
    return _pearson(mapped, target, f"PLCC after a {mapping.kind} fit")


def srcc(pred: ArrayLike, target: ArrayLike, *, nan_policy: str = "raise") -> float:
    """Spearman rank-order correlation coefficient (average ranks for ties).

    Args:
        pred: Predicted scores, 1-D.
        target: Target scores, 1-D, paired with ``pred`` by position.
        nan_policy: ``"raise"`` (default) rejects NaN/inf; ``"omit"`` drops those pairs.

    Returns:
        The correlation in [-1, 1]; equal to ``scipy.stats.spearmanr``.

    Raises:
        MetricInputError: Not 1-D, different lengths, or NaN/inf with ``nan_policy="raise"``.
        TooFewPairsError: Fewer than 3 pairs.
        ConstantInputError: ``pred`` or ``target`` is constant.

    Example:
        >>> srcc([1, 2, 3, 4], [10, 30, 20, 40])
        0.8
    """
    p, t, _ = as_pair(pred, target, nan_policy=nan_policy, min_pairs=MIN_CORRELATION_PAIRS)
    check_not_constant(p, "pred", "SRCC")
    check_not_constant(t, "target", "SRCC")
    return _pearson(average_ranks(p), average_ranks(t), "SRCC")


def average_ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-based ranks, tied values sharing the mean of their positions (``rankdata`` "average").

    Written on numpy alone so that importing the package does not pull in ``scipy.stats``.
    """
    n = values.size
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts_group = np.empty(n, dtype=bool)
    starts_group[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts_group[1:])
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], n)
    ranks = np.empty(n, dtype=np.float64)
    # positions start..end-1 hold ranks start+1..end, whose mean is (start + 1 + end) / 2
    ranks[order] = ((starts + 1 + ends) / 2.0)[group]
    return ranks


def _dense_ranks(values: NDArray[np.float64] | NDArray[np.int64]) -> NDArray[np.int64]:
    """0-based dense ranks (equal values share a rank)."""
    _, inverse = np.unique(values, return_inverse=True)
    return np.asarray(inverse, dtype=np.int64).reshape(-1)


def _tied_pairs(ranks: NDArray[np.int64]) -> int:
    counts = np.bincount(ranks)
    return int((counts * (counts - 1) // 2).sum())


def _count_inversions(ranks: NDArray[np.int64]) -> int:
    """Pairs ``i < j`` with ``ranks[i] > ranks[j]``, counted level by level as in merge sort.

    At the level of block width ``w``, each right half-block is compared with its left
    half-block: sorting ``block_id * (n + 1) + rank`` keeps blocks apart and ranks ordered, and
    ``searchsorted`` counts the left elements above each right element. Vectorised, so the cost
    is ``O(n log^2 n)`` inside numpy rather than ``O(n^2)`` in Python.
    """
    n = ranks.size
    position = np.arange(n, dtype=np.int64)
    total = 0
    width = 1
    while width < n:
        block = position // (2 * width)
        is_left = (position // width) % 2 == 0
        left_keys = np.sort(block[is_left] * (n + 1) + ranks[is_left])
        right_block = block[~is_left]
        right_keys = right_block * (n + 1) + ranks[~is_left]
        # left elements of the same block with a larger rank:
        # (end of this block's left keys) - (first left key above this element)
        block_end = np.searchsorted(left_keys, (right_block + 1) * (n + 1), side="left")
        above = np.searchsorted(left_keys, right_keys, side="right")
        total += int((block_end - above).sum())
        width *= 2
    return total


def krcc(pred: ArrayLike, target: ArrayLike, *, nan_policy: str = "raise") -> float:
    """Kendall rank correlation coefficient, tau-b (corrected for ties).

    Args:
        pred: Predicted scores, 1-D.
        target: Target scores, 1-D, paired with ``pred`` by position.
        nan_policy: ``"raise"`` (default) rejects NaN/inf; ``"omit"`` drops those pairs.

    Returns:
        Tau-b in [-1, 1]; equal to ``scipy.stats.kendalltau`` (its default variant ``"b"``).

    Raises:
        MetricInputError: Not 1-D, different lengths, or NaN/inf with ``nan_policy="raise"``.
        TooFewPairsError: Fewer than 3 pairs.
        ConstantInputError: ``pred`` or ``target`` is constant.

    Example:
        >>> round(krcc([1, 2, 3, 4], [10, 30, 20, 40]), 6)
        0.666667
    """
    p, t, _ = as_pair(pred, target, nan_policy=nan_policy, min_pairs=MIN_CORRELATION_PAIRS)
    check_not_constant(p, "pred", "KRCC")
    check_not_constant(t, "target", "KRCC")
    rp, rt = _dense_ranks(p), _dense_ranks(t)
    # Sorted by (p, t), a discordant pair is exactly an inversion of t: pairs tied in p are
    # in t order (not counted) and pairs tied in t are not strict inversions.
    order = np.lexsort((rt, rp))
    discordant = _count_inversions(rt[order])
    n = p.size
    n0 = n * (n - 1) // 2
    tied_p = _tied_pairs(rp)
    tied_t = _tied_pairs(rt)
    tied_both = _tied_pairs(_dense_ranks(rp * (int(rt.max()) + 1) + rt))
    concordant_minus_discordant = n0 - tied_p - tied_t + tied_both - 2 * discordant
    tau = concordant_minus_discordant / math.sqrt(n0 - tied_p) / math.sqrt(n0 - tied_t)
    return max(-1.0, min(1.0, tau))


def mse(pred: ArrayLike, target: ArrayLike, *, nan_policy: str = "raise") -> float:
    """Mean squared error ``mean((pred - target)^2)``.

    Args:
        pred: Predicted scores, 1-D.
        target: Target scores, 1-D, on the same scale.
        nan_policy: ``"raise"`` (default) rejects NaN/inf; ``"omit"`` drops those pairs.

    Returns:
        The error, >= 0.

    Raises:
        MetricInputError: Not 1-D, different lengths, or NaN/inf with ``nan_policy="raise"``.
        TooFewPairsError: No pairs.

    Example:
        >>> mse([1, 2, 3], [1, 2, 5])
        1.3333333333333333
    """
    p, t, _ = as_pair(pred, target, nan_policy=nan_policy, min_pairs=1)
    diff = p - t
    return float(np.dot(diff, diff) / diff.size)


def rmse(pred: ArrayLike, target: ArrayLike, *, nan_policy: str = "raise") -> float:
    """Root mean squared error ``sqrt(mean((pred - target)^2))``.

    Args:
        pred: Predicted scores, 1-D.
        target: Target scores, 1-D, on the same scale.
        nan_policy: ``"raise"`` (default) rejects NaN/inf; ``"omit"`` drops those pairs.

    Returns:
        The error, >= 0, in the units of the scores.

    Raises:
        MetricInputError: Not 1-D, different lengths, or NaN/inf with ``nan_policy="raise"``.
        TooFewPairsError: No pairs.

    Example:
        >>> rmse([1, 2, 3, 4], [1, 2, 3, 6])
        1.0
    """
    return math.sqrt(mse(pred, target, nan_policy=nan_policy))


def mae(pred: ArrayLike, target: ArrayLike, *, nan_policy: str = "raise") -> float:
    """Mean absolute error ``mean(|pred - target|)``.

    Args:
        pred: Predicted scores, 1-D.
        target: Target scores, 1-D, on the same scale.
        nan_policy: ``"raise"`` (default) rejects NaN/inf; ``"omit"`` drops those pairs.

    Returns:
        The error, >= 0, in the units of the scores.

    Raises:
        MetricInputError: Not 1-D, different lengths, or NaN/inf with ``nan_policy="raise"``.
        TooFewPairsError: No pairs.

    Example:
        >>> mae([1, 2, 3, 4], [1, 2, 3, 6])
        0.5
    """
    p, t, _ = as_pair(pred, target, nan_policy=nan_policy, min_pairs=1)
    return float(np.abs(p - t).mean())


def binary_accuracy(
    pred: ArrayLike, target: ArrayLike, threshold: float, *, nan_policy: str = "raise"
) -> float:
    """Share of pairs on the same side of ``threshold`` (AVA-style good/bad classification).

    A score counts as "good" when it is ``>= threshold``; the accuracy is the fraction of
    pairs whose prediction and target agree on good/bad. AVA uses a threshold of 5 on its
    1-10 scale.

    Args:
        pred: Predicted scores, 1-D.
        target: Target scores, 1-D, on the same scale as ``pred``.
        threshold: The good/bad boundary, a finite number.
        nan_policy: ``"raise"`` (default) rejects NaN/inf; ``"omit"`` drops those pairs.

    Returns:
        The accuracy in [0, 1].

    Raises:
        ValueError: ``threshold`` is not a finite number.
        MetricInputError: Not 1-D, different lengths, or NaN/inf with ``nan_policy="raise"``.
        TooFewPairsError: No pairs.

    Example:
        >>> binary_accuracy([4.0, 6.0, 5.5, 2.0], [3.0, 7.0, 4.5, 5.0], threshold=5.0)
        0.5
    """
    try:
        level = float(threshold)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"threshold must be a finite number; got {threshold!r}") from exc
    if not math.isfinite(level):
        raise ValueError(f"threshold must be a finite number; got {threshold!r}")
    p, t, _ = as_pair(pred, target, nan_policy=nan_policy, min_pairs=1)
    return float(np.mean((p >= level) == (t >= level)))


__all__ = [
    "MIN_CORRELATION_PAIRS",
    "binary_accuracy",
    "krcc",
    "mae",
    "mse",
    "plcc",
    "rmse",
    "srcc",
]
