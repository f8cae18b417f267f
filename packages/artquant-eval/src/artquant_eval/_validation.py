"""Input checks shared by every metric, and the exceptions they raise."""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

logger = logging.getLogger(__name__)

NanPolicy = Literal["raise", "omit"]
_NAN_POLICIES = ("raise", "omit")


class MetricInputError(ValueError):
    """The input of a metric is unusable (wrong shape, lengths, values or too few pairs)."""


class ConstantInputError(MetricInputError):
    """A correlation is undefined because one of its inputs holds a single repeated value."""


class TooFewPairsError(MetricInputError):
    """Fewer (prediction, target) pairs than the metric needs."""


class LogisticFitError(RuntimeError):
    """The monotonic logistic mapping of a fitted PLCC could not be fitted."""


def as_vector(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """Convert an array-like to a 1-D float64 array, with errors that name ``name``."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise MetricInputError(
            f"{name} must be a 1-D sequence of numbers; could not convert it to float: {exc}"
        ) from exc
    if array.ndim != 1:
        raise MetricInputError(
            f"{name} must be 1-D; got an array of shape {array.shape}"
            + (" (flatten it or pass one column)" if array.ndim == 2 else "")
        )
    return array


def as_vectors(
    pred: ArrayLike, target: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convert ``pred`` and ``target`` with :func:`as_vector` and check their lengths match.

    Raises:
        MetricInputError: Either is not 1-D numbers, or their lengths differ.
    """
    p = as_vector(pred, "pred")
    t = as_vector(target, "target")
    if p.size != t.size:
        raise MetricInputError(
            f"pred and target must have the same length; got {p.size} predictions and "
            f"{t.size} targets"
        )
    return p, t


def check_nan_policy(nan_policy: str) -> None:
    """Raise unless ``nan_policy`` is one of the supported policies."""
    if nan_policy not in _NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {_NAN_POLICIES}; got {nan_policy!r}")


def finite_mask(
    pred: NDArray[np.float64], target: NDArray[np.float64], nan_policy: str
) -> NDArray[np.bool_] | None:
    """Return the mask of pairs to keep, or None when every pair is finite.

    Raises:
        MetricInputError: a value is NaN or infinite and ``nan_policy`` is ``"raise"``.
    """
    check_nan_policy(nan_policy)
    mask = np.isfinite(pred) & np.isfinite(target)
    if mask.all():
        return None
    if nan_policy == "raise":
        bad = np.flatnonzero(~mask)
        which = "pred" if not np.isfinite(pred[bad[0]]) else "target"
        value = pred[bad[0]] if which == "pred" else target[bad[0]]
        raise MetricInputError(
            f"{bad.size} pair(s) hold NaN or infinite values (first: {which}[{bad[0]}] = "
            f"{value}); clean the input or pass nan_policy='omit' to drop those pairs"
        )
    return mask


def as_pair(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    nan_policy: str = "raise",
    min_pairs: int = 1,
) -> tuple[NDArray[np.float64], NDArray[np.float64], int]:
    """Validate two paired 1-D inputs.

    Args:
        pred: Predictions.
        target: Targets (ground truth), paired with ``pred`` by position.
        nan_policy: ``"raise"`` rejects NaN/inf; ``"omit"`` drops every pair holding one.
        min_pairs: The fewest pairs the caller needs, counted after dropping.

    Returns:
        ``(pred, target, n_dropped)`` as float64 arrays of equal length.

    Raises:
        MetricInputError: Not 1-D, lengths differ, or NaN/inf under ``nan_policy="raise"``.
        TooFewPairsError: Fewer than ``min_pairs`` pairs remain.
    """
    p, t = as_vectors(pred, target)
    mask = finite_mask(p, t, nan_policy)
    dropped = 0
    if mask is not None:
        dropped = int(mask.size - mask.sum())
        logger.debug("dropped %d non-finite pair(s) of %d", dropped, mask.size)
        p, t = p[mask], t[mask]
    check_min_pairs(p.size, min_pairs, dropped)
    return p, t, dropped


def check_min_pairs(n: int, min_pairs: int, dropped: int = 0, what: str = "this metric") -> None:
    """Raise :class:`TooFewPairsError` when ``n < min_pairs``."""
    if n < min_pairs:
        extra = f" ({dropped} non-finite pair(s) were dropped)" if dropped else ""
        raise TooFewPairsError(f"{what} needs at least {min_pairs} pairs; got {n}{extra}")


def check_not_constant(values: NDArray[np.float64], name: str, what: str) -> None:
    """Raise :class:`ConstantInputError` when every element of ``values`` is equal."""
    if values.size and values.min() == values.max():
        raise ConstantInputError(
            f"{what} is undefined: {name} is constant (all {values.size} values equal "
            f"{_fmt(values[0])}), so its variance is zero"
        )


def _fmt(value: Any) -> str:
    return f"{float(value):.6g}"


__all__ = [
    "ConstantInputError",
    "LogisticFitError",
    "MetricInputError",
    "NanPolicy",
    "TooFewPairsError",
    "as_pair",
    "as_vector",
    "as_vectors",
    "check_min_pairs",
    "check_nan_policy",
    "check_not_constant",
    "finite_mask",
]
