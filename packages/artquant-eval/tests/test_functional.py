"""Score metrics against scipy/numpy references, and every input check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from artquant_eval import (
    ConstantInputError,
    MetricInputError,
    TooFewPairsError,
    binary_accuracy,
    krcc,
    mae,
    mse,
    plcc,
    rmse,
    srcc,
)

TOL = 1e-12
CORRELATIONS = [srcc, plcc, krcc]
ALL_METRICS = [srcc, plcc, krcc, rmse, mae, mse]


def _tied_pairs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores on a coarse grid, so that both sides carry many ties, positively related."""
    pred = np.round(rng.normal(5.0, 2.0, n) * 2) / 2
    target = np.round(pred + rng.normal(0.0, 1.5, n))
    return pred, target


@pytest.mark.parametrize("n", [3, 4, 5, 8, 31, 200, 2_000])
def test_correlations_equal_scipy_with_ties(n: int) -> None:
    rng = np.random.default_rng(n)
    checked = 0
    for _ in range(25):
        pred, target = _tied_pairs(rng, n)
        if np.ptp(pred) == 0 or np.ptp(target) == 0:
            continue
        assert abs(srcc(pred, target) - stats.spearmanr(pred, target).statistic) <= TOL
        assert abs(plcc(pred, target) - stats.pearsonr(pred, target).statistic) <= TOL
        assert abs(krcc(pred, target) - stats.kendalltau(pred, target).statistic) <= TOL
        checked += 1
    assert checked >= 20
    if n >= 31:  # the data really hold ties on both sides
        assert np.unique(pred).size < n
        assert np.unique(target).size < n


def test_correlations_equal_scipy_continuous_and_negative() -> None:
    rng = np.random.default_rng(7)
    pred = rng.normal(size=5_000)
    target = -pred + rng.normal(size=5_000)
    assert abs(srcc(pred, target) - stats.spearmanr(pred, target).statistic) <= TOL
    assert abs(plcc(pred, target) - stats.pearsonr(pred, target).statistic) <= TOL
    assert abs(krcc(pred, target) - stats.kendalltau(pred, target).statistic) <= TOL
    assert srcc(pred, target) < -0.5


def test_krcc_extreme_orders() -> None:
    x = np.arange(100.0)
    assert krcc(x, x) == 1.0
    assert krcc(x, -x) == -1.0
    two_levels = np.tile([0.0, 1.0], 50)
    assert krcc(x, two_levels) == pytest.approx(stats.kendalltau(x, two_levels).statistic, abs=TOL)


def test_plcc_accepts_lists_and_integer_arrays() -> None:
    assert plcc([1, 2, 3], [2, 4, 7]) == pytest.approx(
        stats.pearsonr([1, 2, 3], [2, 4, 7]).statistic, abs=TOL
    )
    assert srcc(np.array([3, 1, 2]), (30, 10, 20)) == pytest.approx(1.0, abs=TOL)


def test_error_metrics_equal_numpy() -> None:
    rng = np.random.default_rng(3)
    pred, target = rng.normal(size=500), rng.normal(size=500)
    diff = pred - target
    assert mse(pred, target) == pytest.approx(float(np.mean(diff**2)), rel=1e-14)
    assert rmse(pred, target) == pytest.approx(math.sqrt(np.mean(diff**2)), rel=1e-14)
    assert mae(pred, target) == pytest.approx(float(np.mean(np.abs(diff))), rel=1e-14)
    assert mae([1.0], [3.0]) == 2.0  # one pair is enough for an error


def test_binary_accuracy_counts_agreement() -> None:
    pred = np.array([4.9, 5.0, 6.0, 2.0, 8.0])
    target = np.array([5.0, 4.0, 7.0, 1.0, 4.99])
    # good = >= 5: pred [F, T, T, F, T], target [T, F, T, F, F] -> agree on items 2 and 3
    assert binary_accuracy(pred, target, 5.0) == pytest.approx(2 / 5)
    assert binary_accuracy(pred, target, threshold=0.0) == 1.0


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), "high", None])
def test_binary_accuracy_rejects_bad_threshold(threshold: object) -> None:
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        binary_accuracy([1, 2, 3], [1, 2, 3], threshold)  # type: ignore[arg-type]


@pytest.mark.parametrize("metric", CORRELATIONS)
@pytest.mark.parametrize("which", ["pred", "target"])
def test_constant_input_raises_a_specific_error(metric, which: str) -> None:
    varying, constant = [1.0, 2.0, 3.0, 4.0], [2.5, 2.5, 2.5, 2.5]
    args = (constant, varying) if which == "pred" else (varying, constant)
    with pytest.raises(ConstantInputError, match=rf"{which} is constant .*equal 2\.5"):
        metric(*args)


def test_constant_input_is_a_metric_input_error() -> None:
    assert issubclass(ConstantInputError, MetricInputError)
    assert issubclass(MetricInputError, ValueError)


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_length_mismatch(metric) -> None:
    with pytest.raises(MetricInputError, match="same length; got 4 predictions and 3 targets"):
        metric([1, 2, 3, 4], [1, 2, 3])


@pytest.mark.parametrize("metric", ALL_METRICS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_raises_by_default(metric, bad: float) -> None:
    with pytest.raises(MetricInputError, match=r"1 pair\(s\) hold NaN or infinite.*target\[2\]"):
        metric([1, 2, 3, 4, 5], [1, 3, bad, 2, 5])


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_non_finite_omitted_on_request(metric) -> None:
    pred = [1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]
    target = [1.0, 3.0, 2.0, float("inf"), 4.0, 6.5]
    kept_p, kept_t = [1.0, 2.0, 5.0, 6.0], [1.0, 3.0, 4.0, 6.5]
    assert metric(pred, target, nan_policy="omit") == pytest.approx(metric(kept_p, kept_t), abs=TOL)


def test_unknown_nan_policy() -> None:
    with pytest.raises(ValueError, match=r"nan_policy must be one of \('raise', 'omit'\)"):
        srcc([1, 2, 3], [1, 2, 3], nan_policy="propagate")


@pytest.mark.parametrize("metric", CORRELATIONS)
def test_fewer_than_three_pairs(metric) -> None:
    with pytest.raises(TooFewPairsError, match="at least 3 pairs; got 2"):
        metric([1, 2], [2, 1])


def test_too_few_pairs_after_dropping_says_so() -> None:
    with pytest.raises(TooFewPairsError, match=r"got 2 \(2 non-finite pair\(s\) were dropped\)"):
        srcc([1, 2, np.nan, 4], [1, np.nan, 3, 4], nan_policy="omit")


def test_error_metrics_need_one_pair() -> None:
    with pytest.raises(TooFewPairsError, match="at least 1 pairs; got 0"):
        rmse([], [])


@pytest.mark.parametrize(
    ("pred", "message"),
    [
        ([[1, 2], [3, 4]], r"pred must be 1-D; got an array of shape \(2, 2\)"),
        (5.0, r"pred must be 1-D; got an array of shape \(\)"),
        (["a", "b", "c"], "could not convert it to float"),
    ],
)
def test_shape_and_type_errors(pred: object, message: str) -> None:
    with pytest.raises(MetricInputError, match=message):
        srcc(pred, [1, 2, 3])  # type: ignore[arg-type]


def test_plcc_rejects_unknown_fit() -> None:
    with pytest.raises(
        ValueError, match=r"fit must be None or one of \('logistic4', 'logistic5'\)"
    ):
        plcc([1, 2, 3, 4], [1, 2, 3, 4], fit="cubic")


def test_fitted_plcc_beats_raw_on_a_saturating_relation() -> None:
    rng = np.random.default_rng(11)
    pred = rng.uniform(-4, 4, 400)
    target = 10 / (1 + np.exp(-1.5 * pred)) + rng.normal(0, 0.2, 400)
    raw = plcc(pred, target)
    for fit in ("logistic4", "logistic5"):
        fitted = plcc(pred, target, fit=fit)
        assert fitted > raw + 0.02
        assert fitted > 0.99
    # the monotonic mapping never changes the rank order
    assert srcc(pred, target) == pytest.approx(stats.spearmanr(pred, target).statistic, abs=TOL)
