"""Monotonic logistic mappings (VQEG) from predictions to the target scale.

Image quality and aesthetics papers report PLCC after mapping the predictions through a fitted
logistic function, so that a model is not penalised for a monotonic but non-linear relation to
the human scores (VQEG, "Final report ... FR-TV Phase II", 2003; Sheikh et al., "A statistical
evaluation of recent full reference image quality assessment algorithms", TIP 2006).

Two forms are provided, with ``x`` the prediction:

* ``logistic4``: ``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2`` -- the two asymptotes
  ``b1`` (as x grows) and ``b2``, the midpoint ``b3`` and the width ``|b4|``.
* ``logistic5``: ``f(x) = b1 * (1/2 - 1 / (1 + exp(b2 * (x - b3)))) + b4 * x + b5`` -- a centred
  logistic of height ``b1`` and slope ``b2`` plus a linear term. ``(b1, b2)`` and
  ``(-b1, -b2)`` give the same curve; fits are reported with ``b2 > 0``.

The fit runs by least squares (Levenberg-Marquardt, ``scipy.optimize.least_squares``, with
analytic Jacobians) on standardised data, from several
data-driven starting points (asymptotes at the target's extremes, the midpoint at the median
prediction, the direction from the sign of the linear correlation); the start with the lowest
residual is polished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit

from artquant_eval._validation import (
    LogisticFitError,
    as_pair,
    as_vector,
    check_min_pairs,
    check_not_constant,
)

logger = logging.getLogger(__name__)

LogisticKind = Literal["logistic4", "logistic5"]
LOGISTIC_KINDS: tuple[str, ...] = ("logistic4", "logistic5")
_N_PARAMS = {"logistic4": 4, "logistic5": 5}
#: MINPACK's default relative tolerance (``ftol`` and ``xtol``), used for point estimates.
DEFAULT_TOLERANCE = 1.49012e-08
# Evaluation budgets: a short screen of every start, then a long polish of the best one.
_SCREEN_NFEV = 100
_POLISH_NFEV = 2_000
_WARM_NFEV = 200


def logistic4(x: ArrayLike, b1: float, b2: float, b3: float, b4: float) -> NDArray[np.float64]:
    """The 4-parameter VQEG logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``.

    Args:
        x: Predictions.
        b1: Asymptote as ``x`` grows.
        b2: Asymptote as ``x`` falls.
        b3: Midpoint (where the curve is halfway between ``b2`` and ``b1``).
        b4: Width; only its absolute value is used.

    Returns:
        The mapped values, float64.

    Example:
        >>> float(logistic4(0.0, 10.0, 0.0, 0.0, 1.0))
        5.0
    """
    z = (np.asarray(x, dtype=np.float64) - b3) / np.abs(b4)
    return np.asarray((b1 - b2) * expit(z) + b2, dtype=np.float64)


def logistic5(
    x: ArrayLike, b1: float, b2: float, b3: float, b4: float, b5: float
) -> NDArray[np.float64]:
    """The 5-parameter logistic ``b1 * (1/2 - 1 / (1 + exp(b2 * (x - b3)))) + b4 * x + b5``.

    Args:
        x: Predictions.
        b1: Height of the logistic part.
        b2: Slope of the logistic part.
        b3: Its centre.
        b4: Slope of the linear part.
        b5: Offset.

    Returns:
        The mapped values, float64.

    Example:
        >>> float(logistic5(2.0, 4.0, 1.0, 2.0, 0.5, 1.0))
        2.0
    """
    z = np.asarray(x, dtype=np.float64)
    # 1/2 - 1/(1 + exp(u)) == expit(u) - 1/2, written with expit so large |u| cannot overflow.
    return np.asarray(b1 * (expit(b2 * (z - b3)) - 0.5) + b4 * z + b5, dtype=np.float64)


_FUNCTIONS: dict[str, Callable[..., NDArray[np.float64]]] = {
    "logistic4": logistic4,
    "logistic5": logistic5,
}


def _jacobian4(
    x: NDArray[np.float64], b1: float, b2: float, b3: float, b4: float
) -> NDArray[np.float64]:
    width = abs(b4)
    z = (x - b3) / width
    s = expit(z)
    slope = (b1 - b2) * s * (1.0 - s)
    return np.stack(
        [s, 1.0 - s, -slope / width, -slope * z / width * (1.0 if b4 >= 0 else -1.0)], axis=1
    )


def _jacobian5(
    x: NDArray[np.float64], b1: float, b2: float, b3: float, b4: float, b5: float
) -> NDArray[np.float64]:
    s = expit(b2 * (x - b3))
    slope = b1 * s * (1.0 - s)
    return np.stack([s - 0.5, slope * (x - b3), -slope * b2, x, np.ones_like(x)], axis=1)


# Analytic Jacobians: finite differences scale their step with the parameter, so a parameter
# starting at (or near) zero would never move.
_JACOBIANS: dict[str, Callable[..., NDArray[np.float64]]] = {
    "logistic4": _jacobian4,
    "logistic5": _jacobian5,
}


@dataclass(frozen=True)
class LogisticFit:
    """A fitted monotonic mapping from predictions to the target scale.

    Attributes:
        kind: ``"logistic4"`` or ``"logistic5"``.
        params: The fitted ``(b1, ..., bk)`` in the formula of ``kind`` (see the module).
        rmse: Root mean squared residual of the fit on its data.
        n: The number of pairs it was fitted on.

    Example:
        >>> fit = LogisticFit("logistic4", (10.0, 0.0, 0.0, 1.0), rmse=0.0, n=3)
        >>> fit([0.0]).tolist()
        [5.0]
    """

    kind: str
    params: tuple[float, ...]
    rmse: float
    n: int

    def __post_init__(self) -> None:
        if self.kind not in _FUNCTIONS:
            raise ValueError(f"kind must be one of {LOGISTIC_KINDS}; got {self.kind!r}")
        if len(self.params) != _N_PARAMS[self.kind]:
            raise ValueError(
                f"{self.kind} takes {_N_PARAMS[self.kind]} parameters; got {len(self.params)}"
            )

    def __call__(self, x: ArrayLike) -> NDArray[np.float64]:
        """Map predictions ``x`` to the target scale."""
        return _FUNCTIONS[self.kind](x, *self.params)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {"kind": self.kind, "params": list(self.params), "rmse": self.rmse, "n": self.n}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogisticFit:
        """Rebuild a fit written by :meth:`to_dict`."""
        return cls(
            kind=str(data["kind"]),
            params=tuple(float(v) for v in data["params"]),
            rmse=float(data["rmse"]),
            n=int(data["n"]),
        )


def check_fit_kind(kind: object) -> str:
    """Return ``kind`` if it names a logistic form, else raise a ValueError listing them."""
    if kind not in _FUNCTIONS:
        raise ValueError(f"fit must be None or one of {LOGISTIC_KINDS}; got {kind!r}")
    return str(kind)


def _to_standard(kind: str, params: Sequence[float], stats: tuple[float, ...]) -> list[float]:
    """Express parameters on the original scale in the standardised coordinates."""
    mx, sx, my, sy = stats
    if kind == "logistic4":
        b1, b2, b3, b4 = params
        return [(b1 - my) / sy, (b2 - my) / sy, (b3 - mx) / sx, abs(b4) / sx]
    b1, b2, b3, b4, b5 = params
    return [b1 / sy, b2 * sx, (b3 - mx) / sx, b4 * sx / sy, (b5 - my + b4 * mx) / sy]


def _from_standard(kind: str, a: Sequence[float], stats: tuple[float, ...]) -> tuple[float, ...]:
    """Map standardised-coordinate parameters back to the original scale."""
    mx, sx, my, sy = stats
    if kind == "logistic4":
        a1, a2, a3, a4 = a
        return (my + sy * a1, my + sy * a2, mx + sx * a3, sx * abs(a4))
    a1, a2, a3, a4, a5 = a
    if a2 < 0:  # same curve, canonical sign
        a1, a2 = -a1, -a2
    return (sy * a1, a2 / sx, mx + sx * a3, sy * a4 / sx, my + sy * a5 - sy * a4 * mx / sx)


def _default_starts(kind: str, x: NDArray[np.float64], y: NDArray[np.float64]) -> list[list[float]]:
    """Data-driven starting points in standardised coordinates."""
    direction = 1.0 if float(np.dot(x, y)) >= 0 else -1.0
    lo, hi = float(y.min()), float(y.max())
    centres = [float(np.median(x)), *(float(q) for q in np.quantile(x, [0.25, 0.75]))]
    widths = [1.0, 0.3, 3.0]
    starts: list[list[float]] = []
    for centre in centres:
        for width in widths:
            if kind == "logistic4":
                top, bottom = (hi, lo) if direction > 0 else (lo, hi)
                starts.append([top, bottom, centre, width])
            else:
                starts.append([(hi - lo) * direction, 1.0 / width, centre, 0.0, float(y.mean())])
    return starts


def _solve(
    kind: str,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    start: Sequence[float],
    tol: float,
    max_nfev: int,
) -> tuple[NDArray[np.float64], float] | None:
    """Levenberg-Marquardt from one start; the parameters and SSE, or None if not finite.

    Running out of evaluations is not a failure: the point reached is still a valid (if
    unpolished) mapping, and the caller compares residuals.
    """
    # Imported here: scipy.optimize is the slowest import of the package and only fits need it.
    from scipy.optimize import least_squares

    function, jacobian = _FUNCTIONS[kind], _JACOBIANS[kind]
    try:
        with np.errstate(all="ignore"):
            result = least_squares(
                lambda a: function(x, *a) - y,
                np.asarray(start, dtype=np.float64),
                jac=lambda a: jacobian(x, *a),
                method="lm",
                ftol=tol,
                xtol=tol,
                max_nfev=max_nfev,
            )
    except (ValueError, FloatingPointError, np.linalg.LinAlgError):
        return None
    params = np.asarray(result.x, dtype=np.float64)
    residual = function(x, *params) - y
    sse = float(np.dot(residual, residual))
    if not (np.isfinite(sse) and np.all(np.isfinite(params))):
        return None
    return params, sse


def _fit_standard(
    kind: str,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    starts: list[list[float]],
    tol: float,
) -> tuple[NDArray[np.float64], float] | None:
    """Screen every start briefly, then polish the best; its parameters and SSE, or None.

    On data that is close to linear the logistic's optimum lies at infinite width and the
    solver keeps creeping towards it; the short screen keeps that cost bounded per start.
    """
    screened = [
        result
        for start in starts
        if (result := _solve(kind, x, y, start, tol, _SCREEN_NFEV)) is not None
    ]
    if not screened:
        return None
    best = min(screened, key=lambda result: result[1])
    polished = _solve(kind, x, y, best[0].tolist(), tol, _POLISH_NFEV)
    return polished if polished is not None and polished[1] <= best[1] else best


def fit_logistic(
    pred: ArrayLike,
    target: ArrayLike,
    kind: str = "logistic4",
    *,
    initial: LogisticFit | Sequence[float] | None = None,
    nan_policy: str = "raise",
    tol: float = DEFAULT_TOLERANCE,
) -> LogisticFit:
    """Fit the VQEG monotonic logistic mapping from ``pred`` to ``target``.

    Args:
        pred: Predictions (the ``x`` of the mapping).
        target: Targets the mapping should reproduce.
        kind: ``"logistic4"`` or ``"logistic5"``; formulas in the module docstring.
        initial: Parameters (or a previous fit) to start from; the data-driven starts are used
            only if this start fails. Bootstrap resamples pass the full-data fit here.
        nan_policy: ``"raise"`` or ``"omit"`` for NaN/inf pairs.
        tol: Relative tolerance on the residual and the parameters (``ftol`` and ``xtol`` of
            the Levenberg-Marquardt solver). On near-linear data the logistic drifts towards
            an infinite width and the default tolerance costs many iterations; the bootstrap
            refits use 1e-6, which moves the fitted PLCC by well under 1e-5.

    Returns:
        The fitted :class:`LogisticFit`.

    Raises:
        ValueError: ``kind`` is not a known form.
        MetricInputError: Bad input (see :func:`artquant_eval.srcc`).
        TooFewPairsError: Fewer pairs than the form has parameters (or fewer than 3).
        ConstantInputError: ``pred`` or ``target`` is constant.
        LogisticFitError: No start converged to a finite solution.

    Example:
        >>> import numpy as np
        >>> x = np.linspace(-3, 3, 50)
        >>> fit = fit_logistic(x, logistic4(x, 9.0, 1.0, 0.5, 0.8))
        >>> [round(b, 4) for b in fit.params]
        [9.0, 1.0, 0.5, 0.8]
    """
    kind = check_fit_kind(kind)
    n_params = _N_PARAMS[kind]
    x, y, dropped = as_pair(pred, target, nan_policy=nan_policy)
    check_min_pairs(x.size, max(3, n_params + 1), dropped, what=f"a {kind} fit")
    check_not_constant(x, "pred", f"a {kind} fit")
    check_not_constant(y, "target", f"a {kind} fit")

    stats = (float(x.mean()), float(x.std()), float(y.mean()), float(y.std()))
    xs, ys = (x - stats[0]) / stats[1], (y - stats[2]) / stats[3]
    best = None
    if initial is not None:
        params = initial.params if isinstance(initial, LogisticFit) else tuple(initial)
        start = list(as_vector(params, "initial"))
        if len(start) != n_params:
            raise ValueError(f"initial must hold {n_params} parameters for {kind}; got {start}")
        # A warm start is already close (a bootstrap resample of the same data): one bounded
        # run, no multi-start screen and no long polish.
        best = _solve(kind, xs, ys, _to_standard(kind, start, stats), tol, _WARM_NFEV)
    if best is None:
        best = _fit_standard(kind, xs, ys, _default_starts(kind, xs, ys), tol)
    if best is None:
        raise LogisticFitError(
            f"the {kind} fit did not converge from any starting point on {x.size} pairs; "
            "try the other form or report the raw PLCC (fit=None)"
        )
    a, sse = best
    result = LogisticFit(
        kind=kind,
        params=tuple(float(v) for v in _from_standard(kind, a.tolist(), stats)),
        rmse=float(np.sqrt(sse / x.size) * stats[3]),
        n=int(x.size),
    )
    logger.debug("fitted %s: params=%s rmse=%.4g", kind, result.params, result.rmse)
    return result


__all__ = [
    "DEFAULT_TOLERANCE",
    "LOGISTIC_KINDS",
    "LogisticFit",
    "LogisticKind",
    "check_fit_kind",
    "fit_logistic",
    "logistic4",
    "logistic5",
]
