"""Shared fixtures: the reference material in ``<repo>/../shared`` (or ``$ARTQUANT_SHARED``),
and a direct, slow transcription of the original Score-Based Distribution Estimation."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits


def shared_dir() -> Path:
    """Where the reference material lives; it may not exist (a user's fresh clone)."""
    override = os.environ.get("ARTQUANT_SHARED")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / ".." / "shared"


def _shared_data(name: str) -> Path:
    path = shared_dir() / "data" / name
    if not path.is_dir():
        pytest.skip(f"../shared not found: {path} is absent (set ARTQUANT_SHARED to point at it)")
    return path


@pytest.fixture(scope="session")
def apddv2_dir() -> Path:
    return _shared_data("apddv2")


@pytest.fixture(scope="session")
def baid_dir() -> Path:
    return _shared_data("baid")


def original_estimate(score: float, values: tuple[float, ...] = (10.0, 7.5, 5, 3.5, 1.0)):
    """The notebook's ``get_score``: scipy.stats.norm + scipy.optimize.minimize, per score.

    Returns ``(level_probs, (mu, sigma))``.
    """
    from scipy.optimize import minimize
    from scipy.stats import norm

    def objective(params):
        mu, sigma = params
        level_prob = norm.pdf(values, loc=mu, scale=sigma)
        level_prob = level_prob / level_prob.sum()
        return abs(np.inner(level_prob, np.array(values)) - score)

    # one BLAS thread: the same numbers, without OpenBLAS wake-ups on a busy CI machine
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", RuntimeWarning)
        result = minimize(objective, [score, 1], bounds=[(-10, 10), (0.001, 1000)])
        mu, sigma = result.x
        level_prob = norm.pdf(values, loc=mu, scale=sigma).clip(0, 1)
        return level_prob / level_prob.sum(), (mu, sigma)


@pytest.fixture(scope="session")
def original() -> Callable[..., tuple[np.ndarray, tuple[float, float]]]:
    return original_estimate
