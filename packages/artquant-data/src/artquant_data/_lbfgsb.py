"""Exact, batched replay of ArtQuant's Score-Based Distribution Estimation optimiser.

The original procedure (``preprocess/preprocess.ipynb``) calls
``scipy.optimize.minimize(objective, [s, 1], bounds=[(-10, 10), (0.001, 1000)])`` once per
score. With bounds and no ``jac`` that is L-BFGS-B with forward differences (absolute step
1e-8). The objective ``|E(mu, sigma) - s|`` has a kink at the solution, so the line search
usually ends "ABNORMAL" after about 165 evaluations; the final point therefore depends on the
whole path, and any change to the optimiser (analytic gradients, a different start, another
solver) moves the answer along the curve ``E(mu, sigma) = s`` by far more than 1e-5.

This module runs the *same* optimiser: scipy's compiled L-BFGS-B step routine
(``scipy.optimize._lbfgsb.setulb``), driven exactly as ``scipy.optimize._minimize_lbfgsb``
drives it (same tolerances, same iteration and evaluation limits, same finite-difference
steps and bound handling, same value caching), but for thousands of scores at once: each
round advances every unfinished problem to its next function request, and all requested
objective values and forward differences are computed in one vectorised numpy call. The
objective is computed with the same floating-point operations in the same order as
``scipy.stats.norm.pdf`` + ``ndarray.sum`` + ``np.inner`` do for five level values, so the
iterates are bit-identical to the reference wherever the BLAS kernel behind ``np.inner`` sums as
numpy does, and within a few 1e-6 elsewhere (a fused multiply-add kernel changes the last bits;
the tests check the tolerance, not the bits).

``setulb`` is private scipy API (stable since scipy 1.15's C translation). If it is missing
or has another signature, :func:`lbfgsb_available` is false and callers fall back to the
public ``scipy.optimize.minimize`` per score.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

MU_BOUNDS: tuple[float, float] = (-10.0, 10.0)
"""Bounds on the Gaussian mean used by the original notebook."""
SIGMA_BOUNDS: tuple[float, float] = (0.001, 1000.0)
"""Bounds on the Gaussian standard deviation used by the original notebook."""

# scipy's L-BFGS-B defaults (``_minimize_lbfgsb``); the notebook passes none of them.
_MAXCOR = 10
_FTOL = 2.2204460492503131e-09
_GTOL = 1e-5
_EPS = 1e-8
_MAXFUN = 15000
_MAXITER = 15000
_MAXLS = 20
_TASK_FG = 3
_TASK_NEW_X = 1
_TASK_STOP = 5
# ``scipy.stats._continuous_distns._norm_pdf_C``
_NORM_PDF_C = np.sqrt(2 * np.pi)

_SETULB_PARAMS = (
    "m", "x", "l", "u", "nbd", "f", "g", "factr", "pgtol", "wa", "iwa", "task", "lsave",
    "isave", "dsave", "maxls", "ln_task",
)  # fmt: skip


def _load_setulb() -> Callable[..., Any] | None:
    try:
        from scipy.optimize import _lbfgsb  # private, see the module docstring
    except ImportError:  # pragma: no cover - depends on the scipy build
        return None
    setulb = getattr(_lbfgsb, "setulb", None)
    if setulb is None:  # pragma: no cover
        return None
    doc = (getattr(setulb, "__doc__", "") or "").replace(" ", "")
    if "setulb(" + ",".join(_SETULB_PARAMS) + ")" not in doc:  # pragma: no cover
        logger.info("scipy's L-BFGS-B routine has an unknown signature; using minimize().")
        return None
    return setulb


_SETULB = _load_setulb()


def lbfgsb_available() -> bool:
    """Whether the batched exact replay can run with the installed scipy."""
    return _SETULB is not None


def gaussian_level_pdf(
    mu: NDArray[np.float64], sigma: NDArray[np.float64], values: NDArray[np.float64]
) -> NDArray[np.float64]:
    """``norm.pdf(values, loc=mu, scale=sigma)`` row-wise, with scipy's exact operation order.

    Args:
        mu: Means, shape ``(n,)``.
        sigma: Standard deviations (positive), shape ``(n,)``.
        values: Level values, shape ``(k,)``.

    Returns:
        Densities, shape ``(n, k)``.
    """
    z = (values[None, :] - mu[:, None]) / sigma[:, None]
    out: NDArray[np.float64] = np.exp(-(z**2) / 2.0) / _NORM_PDF_C / sigma[:, None]
    return out


def _row_sum(a: NDArray[np.float64]) -> NDArray[np.float64]:
    # Left-to-right, as numpy's sum does for fewer than eight elements.
    total = a[:, 0].copy()
    for j in range(1, a.shape[1]):
        total += a[:, j]
    return total


def _row_dot(a: NDArray[np.float64], values: NDArray[np.float64]) -> NDArray[np.float64]:
    # Left-to-right, as ``np.inner`` (BLAS ddot) does for short vectors.
    total = a[:, 0] * values[0]
    for j in range(1, a.shape[1]):
        total = total + a[:, j] * values[j]
    return total


def objective(
    mu: NDArray[np.float64],
    sigma: NDArray[np.float64],
    targets: NDArray[np.float64],
    values: NDArray[np.float64],
) -> NDArray[np.float64]:
    """The notebook's objective ``|sum_i p_i(mu, sigma) * l_i - s|``, vectorised.

    ``p`` is the Gaussian density at the level values, normalised to sum to one. Where every
    density underflows the result is NaN, as in the original.

    Args:
        mu: Means, shape ``(n,)``.
        sigma: Standard deviations, shape ``(n,)``.
        targets: Target scores ``s``, shape ``(n,)``.
        values: Level values, shape ``(k,)``.

    Returns:
        Objective values, shape ``(n,)``.
    """
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        pdf = gaussian_level_pdf(mu, sigma, values)
        probs = pdf / _row_sum(pdf)[:, None]
        return np.abs(_row_dot(probs, values) - targets)


def normalised_clipped_pdf(
    mu: NDArray[np.float64], sigma: NDArray[np.float64], values: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The notebook's output step: ``pdf.clip(0, 1) / sum`` (NaN where every density is 0)."""
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        pdf = np.clip(gaussian_level_pdf(mu, sigma, values), 0.0, 1.0)
        out: NDArray[np.float64] = pdf / _row_sum(pdf)[:, None]
        return out


def _fd_steps(x: NDArray[np.float64], lower: NDArray[np.float64], upper: NDArray[np.float64]):
    """Forward-difference steps of ``approx_derivative(method='2-point', abs_step=1e-8)``."""
    h = np.full_like(x, _EPS)
    sign = (x >= 0).astype(float) * 2 - 1
    dx = (x + h) - x
    # scipy falls back to a relative step where the absolute one vanishes
    h = np.where(dx == 0, np.finfo(np.float64).eps ** 0.5 * sign * np.maximum(1.0, np.abs(x)), h)
    # '1-sided' scheme: flip a step that leaves the box but fits on the other side
    moved = x + h
    violated = (moved < lower) | (moved > upper)
    fitting = np.abs(h) <= np.maximum(x - lower, upper - x)
    h = np.where(violated & fitting, -h, h)
    forward = ((upper - x) >= (x - lower)) & ~fitting
    backward = ((upper - x) < (x - lower)) & ~fitting
    h = np.where(forward, upper - x, h)
    h = np.where(backward, -(x - lower), h)
    return h


def _value_and_grad(
    x: NDArray[np.float64], targets: NDArray[np.float64], values: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Objective and its forward-difference gradient for rows ``x = [(mu, sigma), ...]``."""
    lower = np.array([MU_BOUNDS[0], SIGMA_BOUNDS[0]])
    upper = np.array([MU_BOUNDS[1], SIGMA_BOUNDS[1]])
    h = _fd_steps(x, lower[None, :], upper[None, :])
    n = x.shape[0]
    mu = np.concatenate([x[:, 0], x[:, 0] + h[:, 0], x[:, 0]])
    sigma = np.concatenate([x[:, 1], x[:, 1], x[:, 1] + h[:, 1]])
    f = objective(mu, sigma, np.concatenate([targets, targets, targets]), values)
    f0, f_mu, f_sigma = f[:n], f[n : 2 * n], f[2 * n :]
    with np.errstate(invalid="ignore"):
        grad = np.stack(
            [
                (f_mu - f0) / ((x[:, 0] + h[:, 0]) - x[:, 0]),
                (f_sigma - f0) / ((x[:, 1] + h[:, 1]) - x[:, 1]),
            ],
            axis=1,
        )
    return f0, grad


def fit_batch(
    targets: NDArray[np.float64], values: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Run the original L-BFGS-B fit for every target score, all problems in lockstep.

    Args:
        targets: Finite target scores, shape ``(n,)``.
        values: Level values, shape ``(k,)``.

    Returns:
        ``(mu, sigma)``, each shape ``(n,)``: the final iterates, equal to
        ``minimize(...).x`` of the original procedure (bit-identical with a numpy-order BLAS).

    Raises:
        RuntimeError: If the installed scipy lacks the routine (see :func:`lbfgsb_available`).
    """
    setulb = _SETULB
    if setulb is None:
        raise RuntimeError("scipy's L-BFGS-B routine is unavailable; use the minimize() path")
    n_problems = targets.shape[0]
    m, n = _MAXCOR, 2
    factr = _FTOL / np.finfo(float).eps
    low = np.array([MU_BOUNDS[0], SIGMA_BOUNDS[0]], dtype=np.float64)
    up = np.array([MU_BOUNDS[1], SIGMA_BOUNDS[1]], dtype=np.float64)
    nbd = np.full(n, 2, dtype=np.int32)  # both bounds present

    x0 = np.stack([targets, np.ones_like(targets)], axis=1)
    x0 = np.clip(x0, low, up)
    f_init, g_init = _value_and_grad(x0, targets, values)

    xs = [x0[i].copy() for i in range(n_problems)]
    fs: list[Any] = [np.array(0.0, dtype=np.float64) for _ in range(n_problems)]
    gs = [np.zeros(n, dtype=np.float64) for _ in range(n_problems)]
    # ScalarFunction's cache test is np.array_equal(x, last_x); list equality of the two
    # floats decides the same and is cheaper
    cache_x = [x0[i].tolist() for i in range(n_problems)]
    cache_f = [f_init[i] for i in range(n_problems)]
    cache_g = [g_init[i].copy() for i in range(n_problems)]
    nfev = [3] * n_problems  # one value + two differences in ScalarFunction's constructor
    n_iter = [0] * n_problems
    wa = np.zeros((n_problems, 2 * m * n + 5 * n + 11 * m * m + 8 * m), dtype=np.float64)
    iwa = np.zeros((n_problems, 3 * n), dtype=np.int32)
    task = np.zeros((n_problems, 2), dtype=np.int32)
    ln_task = np.zeros((n_problems, 2), dtype=np.int32)
    lsave = np.zeros((n_problems, 4), dtype=np.int32)
    isave = np.zeros((n_problems, 44), dtype=np.int32)
    dsave = np.zeros((n_problems, 29), dtype=np.float64)
    # one view per problem, made once
    wa_k, iwa_k, ln_k = list(wa), list(iwa), list(ln_task)
    lsave_k, isave_k, dsave_k = list(lsave), list(isave), list(dsave)

    pending = list(range(n_problems))
    while pending:
        requests: list[int] = []
        for k in pending:
            x, tk = xs[k], task[k]
            wa_, iwa_, lsave_, isave_, dsave_, ln_ = (
                wa_k[k],
                iwa_k[k],
                lsave_k[k],
                isave_k[k],
                dsave_k[k],
                ln_k[k],
            )
            while True:
                gs[k] = gs[k].astype(np.float64)
                setulb(
                    m, x, low, up, nbd, fs[k], gs[k], factr, _GTOL, wa_, iwa_, tk,
                    lsave_, isave_, dsave_, _MAXLS, ln_,
                )  # fmt: skip
                if tk[0] == _TASK_FG:
                    if x.tolist() == cache_x[k]:
                        fs[k], gs[k] = cache_f[k], cache_g[k]
                        continue
                    requests.append(k)
                    break
                if tk[0] == _TASK_NEW_X:
                    n_iter[k] += 1
                    if n_iter[k] >= _MAXITER:
                        tk[0], tk[1] = _TASK_STOP, 504
                    elif nfev[k] > _MAXFUN:
                        tk[0], tk[1] = _TASK_STOP, 502
                    continue
                break
        if requests:
            xr = np.stack([xs[k] for k in requests])
            f_new, g_new = _value_and_grad(xr, targets[requests], values)
            for j, k in enumerate(requests):
                cache_x[k] = xr[j].tolist()
                cache_f[k] = f_new[j]
                cache_g[k] = g_new[j].copy()
                fs[k], gs[k] = cache_f[k], cache_g[k]
                nfev[k] += 3
        pending = requests
    result = np.stack(xs)
    return result[:, 0].copy(), result[:, 1].copy()


__all__ = [
    "MU_BOUNDS",
    "SIGMA_BOUNDS",
    "fit_batch",
    "gaussian_level_pdf",
    "lbfgsb_available",
    "normalised_clipped_pdf",
    "objective",
]
