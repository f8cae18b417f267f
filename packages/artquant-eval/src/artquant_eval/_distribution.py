"""Distances between predicted and target distributions over ordered score levels.

A model such as ArtQuant predicts, per image, probabilities over K level words (excellent ...
bad); the training targets are soft distributions over the same levels. Each argument is an
``(N, K)`` array (or one ``(K,)`` distribution) whose rows are non-negative and sum to 1.

With ``t`` the target row and ``p`` the predicted row (natural logarithms):

* ``kl_divergence``: ``KL(t || p) = sum_k t_k log(t_k / p_k)`` (terms with ``t_k = 0`` are 0;
  infinite where ``p_k = 0 < t_k``, unless ``eps`` smooths ``p``).
* ``js_divergence``: ``JS = KL(t || m) / 2 + KL(p || m) / 2`` with ``m = (t + p) / 2``;
  symmetric, at most ``log 2``. It is the square of ``scipy.spatial.distance.jensenshannon``.
* ``wasserstein_distance``: the earth mover's distance with the level values as positions,
  ``sum_j |P_j - T_j| (v_(j+1) - v_(j))`` over the levels sorted by value, ``P``/``T`` the
  cumulative masses; it is in score units and equals ``scipy.stats.wasserstein_distance``.

Each returns the mean over rows by default (``reduction="mean"``), or one value per row
(``reduction="none"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import rel_entr

from artquant_eval._validation import MetricInputError

ROW_SUM_TOLERANCE = 1e-6
_REDUCTIONS = ("mean", "none")


def as_distributions(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """Validate and return an ``(N, K)`` float64 array of probability rows.

    Args:
        values: ``(N, K)`` rows or a single ``(K,)`` distribution.
        name: The argument's name, for error messages.

    Returns:
        The rows as a 2-D float64 array.

    Raises:
        MetricInputError: Not 1-D/2-D numbers, fewer than 2 levels, no rows, a negative or
            non-finite entry, or a row whose sum differs from 1 by more than 1e-6.
    """
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"{name} must be numbers of shape (N, K): {exc}") from exc
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise MetricInputError(f"{name} must have shape (N, K) or (K,); got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] < 2:
        raise MetricInputError(
            f"{name} needs at least one row and two levels; got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise MetricInputError(f"{name} row {row} holds NaN or inf: {array[row].tolist()}")
    if np.any(array < 0):
        row = int(np.flatnonzero((array < 0).any(axis=1))[0])
        raise MetricInputError(
            f"{name} row {row} has a negative probability: {array[row].tolist()}"
        )
    sums = array.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if bad.size:
        raise MetricInputError(
            f"each row of {name} must sum to 1 (tolerance {ROW_SUM_TOLERANCE:g}); "
            f"{bad.size} row(s) do not, first row {int(bad[0])} sums to {sums[bad[0]]:.8g}"
        )
    return array


def as_distribution_pairs(
    pred_probs: ArrayLike, target_probs: ArrayLike, n: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Validate the predicted and target distributions paired with ``n`` scores.

    Args:
        pred_probs: Predicted level distributions, ``(n, K)``.
        target_probs: Target level distributions, ``(n, K)``.
        n: The number of (prediction, target) score pairs they belong to.

    Returns:
        Both as ``(n, K)`` float64 arrays.

    Raises:
        MetricInputError: A bad distribution (see :func:`as_distributions`), or the shapes
            differ from each other or from ``(n, K)``.
    """
    pp = as_distributions(pred_probs, "pred_probs")
    tp = as_distributions(target_probs, "target_probs")
    if pp.shape != tp.shape or pp.shape[0] != n:
        raise MetricInputError(
            f"pred_probs and target_probs must both have shape ({n}, K); got "
            f"{pp.shape} and {tp.shape}"
        )
    return pp, tp


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    p = as_distributions(pred, "pred")
    t = as_distributions(target, "target")
    if p.shape != t.shape:
        raise MetricInputError(
            f"pred and target distributions must have the same shape; got {p.shape} and {t.shape}"
        )
    return p, t


def _reduce(values: NDArray[np.float64], reduction: str) -> float | NDArray[np.float64]:
    if reduction == "mean":
        return float(values.mean())
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be one of {_REDUCTIONS}; got {reduction!r}")


def kl_divergence(
    pred: ArrayLike, target: ArrayLike, *, eps: float = 0.0, reduction: str = "mean"
) -> float | NDArray[np.float64]:
    """Kullback-Leibler divergence ``KL(target || pred)`` in nats.

    Args:
        pred: Predicted distributions, ``(N, K)`` or ``(K,)``; rows sum to 1.
        target: Target distributions of the same shape.
        eps: Smoothing of ``pred``: ``(pred + eps) / (1 + K * eps)``, which keeps the
            divergence finite where ``pred`` puts no mass on a level the target uses.
        reduction: ``"mean"`` over rows (a float) or ``"none"`` (one value per row).

    Returns:
        The divergence, >= 0 (``inf`` where ``pred`` is 0 on a target level and ``eps=0``).

    Raises:
        MetricInputError: Bad shapes or rows (see :func:`as_distributions`).
        ValueError: ``eps`` is negative or ``reduction`` unknown.

    Example:
        >>> round(kl_divergence([0.5, 0.5], [0.9, 0.1]), 6)
        0.368064
    """
    if not (eps >= 0 and np.isfinite(eps)):
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    p, t = _pair(pred, target)
    if eps:
        p = (p + eps) / (1.0 + p.shape[1] * eps)
    return _reduce(rel_entr(t, p).sum(axis=1), reduction)


def js_divergence(
    pred: ArrayLike, target: ArrayLike, *, reduction: str = "mean"
) -> float | NDArray[np.float64]:
    """Jensen-Shannon divergence in nats (symmetric, finite, at most ``log 2``).

    Args:
        pred: Predicted distributions, ``(N, K)`` or ``(K,)``; rows sum to 1.
        target: Target distributions of the same shape.
        reduction: ``"mean"`` over rows (a float) or ``"none"`` (one value per row).

    Returns:
        The divergence in ``[0, log 2]``.

    Raises:
        MetricInputError: Bad shapes or rows (see :func:`as_distributions`).
        ValueError: ``reduction`` unknown.

    Example:
        >>> round(js_divergence([1.0, 0.0], [0.0, 1.0]), 6)  # log 2
        0.693147
    """
    p, t = _pair(pred, target)
    m = 0.5 * (p + t)
    values = 0.5 * rel_entr(t, m).sum(axis=1) + 0.5 * rel_entr(p, m).sum(axis=1)
    return _reduce(np.maximum(values, 0.0), reduction)


def wasserstein_distance(
    pred: ArrayLike,
    target: ArrayLike,
    values: Sequence[float] | ArrayLike,
    *,
    reduction: str = "mean",
) -> float | NDArray[np.float64]:
    """Earth mover's (Wasserstein-1) distance over ordered levels placed at ``values``.

    Args:
        pred: Predicted distributions, ``(N, K)`` or ``(K,)``; rows sum to 1.
        target: Target distributions of the same shape.
        values: The K level values, in the column order of ``pred``/``target`` (any order,
            e.g. ArtQuant's ``(10, 7.5, 5, 3.5, 1)``); they must be finite and distinct.
        reduction: ``"mean"`` over rows (a float) or ``"none"`` (one value per row).

    Returns:
        The distance in the units of ``values``, >= 0.

    Raises:
        MetricInputError: Bad shapes or rows, or ``values`` of the wrong length, non-finite
            or repeated.
        ValueError: ``reduction`` unknown.

    Example:
        >>> wasserstein_distance([1, 0, 0], [0, 0, 1], values=[10, 5, 1])
        9.0
    """
    p, t = _pair(pred, target)
    try:
        positions = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(f"values must be K numbers: {exc}") from exc
    if positions.shape != (p.shape[1],):
        raise MetricInputError(
            f"values must hold one number per level ({p.shape[1]}); got shape {positions.shape}"
        )
    if not np.all(np.isfinite(positions)) or np.unique(positions).size != positions.size:
        raise MetricInputError(f"values must be finite and distinct; got {positions.tolist()}")
    order = np.argsort(positions)
    gaps = np.diff(positions[order])
    cumulative_gap = np.cumsum(p[:, order] - t[:, order], axis=1)[:, :-1]
    return _reduce(np.abs(cumulative_gap) @ gaps, reduction)


__all__ = [
    "ROW_SUM_TOLERANCE",
    "as_distribution_pairs",
    "as_distributions",
    "js_divergence",
    "kl_divergence",
    "wasserstein_distance",
]
