"""Distribution distances against scipy, and their input checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from artquant_eval import MetricInputError, js_divergence, kl_divergence, wasserstein_distance

ARTQUANT_VALUES = (10.0, 7.5, 5.0, 3.5, 1.0)  # column order of the level words, not sorted


def _rows(rng: np.random.Generator, n: int, k: int, zeros: bool = False) -> np.ndarray:
    rows = rng.dirichlet(np.ones(k), size=n)
    if zeros:
        rows[rng.random((n, k)) < 0.3] = 0.0
        rows[:, 0] += 1e-3  # keep every row non-empty
        rows /= rows.sum(axis=1, keepdims=True)
    return rows


def test_kl_equals_scipy_entropy() -> None:
    rng = np.random.default_rng(0)
    pred, target = _rows(rng, 50, 5), _rows(rng, 50, 5, zeros=True)
    per_row = kl_divergence(pred, target, reduction="none")
    expected = [stats.entropy(t, p) for p, t in zip(pred, target, strict=True)]
    np.testing.assert_allclose(per_row, expected, rtol=1e-12, atol=1e-15)
    assert kl_divergence(pred, target) == pytest.approx(float(np.mean(expected)), rel=1e-12)


def test_kl_is_infinite_where_pred_misses_target_mass_unless_smoothed() -> None:
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == float("inf")
    smoothed = kl_divergence([1.0, 0.0], [0.5, 0.5], eps=1e-3)
    p = (np.array([1.0, 0.0]) + 1e-3) / (1 + 2e-3)
    assert smoothed == pytest.approx(stats.entropy([0.5, 0.5], p), rel=1e-12)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        kl_divergence([1.0, 0.0], [0.5, 0.5], eps=-1.0)


def test_js_equals_squared_scipy_jensenshannon() -> None:
    rng = np.random.default_rng(1)
    pred, target = _rows(rng, 40, 5, zeros=True), _rows(rng, 40, 5, zeros=True)
    per_row = js_divergence(pred, target, reduction="none")
    expected = [jensenshannon(p, t) ** 2 for p, t in zip(pred, target, strict=True)]
    np.testing.assert_allclose(per_row, expected, rtol=1e-10, atol=1e-15)
    assert js_divergence([0.3, 0.7], [0.3, 0.7]) == 0.0


def test_wasserstein_equals_scipy_with_level_values_as_positions() -> None:
    rng = np.random.default_rng(2)
    pred, target = _rows(rng, 60, 5), _rows(rng, 60, 5, zeros=True)
    per_row = wasserstein_distance(pred, target, ARTQUANT_VALUES, reduction="none")
    expected = [
        stats.wasserstein_distance(ARTQUANT_VALUES, ARTQUANT_VALUES, p, t)
        for p, t in zip(pred, target, strict=True)
    ]
    np.testing.assert_allclose(per_row, expected, rtol=1e-12, atol=1e-12)


def test_wasserstein_of_point_masses_is_the_value_gap() -> None:
    # all mass on "excellent" (10) against all on "poor" (3.5)
    assert wasserstein_distance([1, 0, 0, 0, 0], [0, 0, 0, 1, 0], ARTQUANT_VALUES) == 6.5


def test_single_row_and_mean_reduction() -> None:
    value = js_divergence([0.2, 0.8], [0.6, 0.4])
    assert isinstance(value, float)
    assert value == pytest.approx(jensenshannon([0.2, 0.8], [0.6, 0.4]) ** 2, rel=1e-12)
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'none'\)"):
        js_divergence([0.2, 0.8], [0.6, 0.4], reduction="sum")


@pytest.mark.parametrize(
    ("pred", "message"),
    [
        ([[0.5, 0.6]], r"each row of pred must sum to 1 .*row 0 sums to 1\.1"),
        ([[0.5, 0.5], [1.2, -0.2]], "pred row 1 has a negative probability"),
        ([[0.5, np.nan]], "pred row 0 holds NaN or inf"),
        ([1.0], r"at least one row and two levels; got shape \(1, 1\)"),
        (np.ones((2, 2, 2)) / 2, r"shape \(N, K\) or \(K,\)"),
        ([["a", "b"]], r"must be numbers of shape \(N, K\)"),
    ],
)
def test_distribution_validation(pred: object, message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        kl_divergence(pred, np.full_like(np.zeros((1, 2)), 0.5))  # type: ignore[arg-type]


def test_shape_mismatch_and_bad_values() -> None:
    with pytest.raises(MetricInputError, match=r"same shape; got \(1, 2\) and \(1, 3\)"):
        js_divergence([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(MetricInputError, match=r"one number per level \(3\)"):
        wasserstein_distance([0.2, 0.3, 0.5], [0.2, 0.3, 0.5], values=[1, 2])
    with pytest.raises(MetricInputError, match="finite and distinct"):
        wasserstein_distance([0.2, 0.3, 0.5], [0.2, 0.3, 0.5], values=[1, 2, 2])
