"""The VQEG logistic fits: parameter recovery, warm starts and errors."""

from __future__ import annotations

import numpy as np
import pytest

from artquant_eval import (
    ConstantInputError,
    LogisticFit,
    TooFewPairsError,
    fit_logistic,
    logistic4,
    logistic5,
)


def test_logistic4_formula() -> None:
    x = np.array([-1.0, 0.5, 2.0])
    b1, b2, b3, b4 = 9.0, 1.0, 0.5, -0.8  # only |b4| counts
    expected = (b1 - b2) / (1 + np.exp(-(x - b3) / abs(b4))) + b2
    np.testing.assert_allclose(logistic4(x, b1, b2, b3, b4), expected, rtol=1e-15)


def test_logistic5_formula() -> None:
    x = np.array([-1.0, 0.5, 2.0])
    b1, b2, b3, b4, b5 = 4.0, 1.3, 0.2, 0.5, 1.0
    expected = b1 * (0.5 - 1 / (1 + np.exp(b2 * (x - b3)))) + b4 * x + b5
    np.testing.assert_allclose(logistic5(x, b1, b2, b3, b4, b5), expected, rtol=1e-14)


def test_logistic_functions_do_not_overflow() -> None:
    x = np.array([-1e6, 1e6])
    with np.errstate(all="raise"):
        np.testing.assert_allclose(logistic4(x, 10.0, 0.0, 0.0, 1.0), [0.0, 10.0])
        np.testing.assert_allclose(logistic5(x, 2.0, 1.0, 0.0, 0.0, 0.0), [-1.0, 1.0])


@pytest.mark.parametrize(
    "params",
    [(9.0, 1.0, 0.4, 0.7), (1.0, 9.0, -0.5, 1.2), (100.0, 20.0, 50.0, 8.0)],
    ids=["rising", "falling", "shifted-scale"],
)
def test_logistic4_recovers_known_parameters(params: tuple[float, ...]) -> None:
    rng = np.random.default_rng(0)
    b3, b4 = params[2], params[3]
    x = rng.uniform(b3 - 5 * b4, b3 + 5 * b4, 600)
    noise = 0.01 * abs(params[0] - params[1])
    y = logistic4(x, *params) + rng.normal(0, noise, x.size)
    fit = fit_logistic(x, y, "logistic4")
    assert fit.kind == "logistic4"
    assert fit.n == 600
    np.testing.assert_allclose(fit.params, params, rtol=0.02, atol=0.02 * abs(b4))
    assert fit.rmse == pytest.approx(noise, rel=0.1)


@pytest.mark.parametrize(
    "params",
    [(8.0, 1.5, 0.3, 0.2, 4.0), (-6.0, 2.0, -1.0, 0.0, 5.0)],
    ids=["rising", "falling"],
)
def test_logistic5_recovers_known_parameters(params: tuple[float, ...]) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-4, 4, 800)
    y = logistic5(x, *params) + rng.normal(0, 0.02, x.size)
    fit = fit_logistic(x, y, "logistic5")
    np.testing.assert_allclose(fit.params, params, rtol=0.02, atol=0.02)
    assert fit.params[1] > 0  # canonical sign of the (b1, b2) pair


def test_logistic5_sign_canonicalisation_keeps_the_curve() -> None:
    x = np.linspace(-3, 3, 40)
    np.testing.assert_allclose(
        logistic5(x, 3.0, -2.0, 0.1, 0.2, 1.0), logistic5(x, -3.0, 2.0, 0.1, 0.2, 1.0)
    )


def test_warm_start_gives_the_same_fit() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=300)
    y = logistic4(x, 5.0, 1.0, 0.2, 0.5) + rng.normal(0, 0.1, 300)
    cold = fit_logistic(x, y)
    warm = fit_logistic(x, y, initial=cold)
    also = fit_logistic(x, y, initial=list(cold.params))
    np.testing.assert_allclose(warm.params, cold.params, rtol=1e-6)
    np.testing.assert_allclose(also.params, cold.params, rtol=1e-6)


def test_fit_is_scale_invariant() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    y = logistic4(x, 5.0, 1.0, 0.2, 0.5) + rng.normal(0, 0.1, 300)
    base = fit_logistic(x, y)
    scaled = fit_logistic(1000 * x + 7, y * 1e-3)
    mapped = scaled(1000 * x + 7) * 1e3
    np.testing.assert_allclose(mapped, base(x), rtol=1e-5, atol=1e-6)


def test_fit_errors() -> None:
    with pytest.raises(ValueError, match="fit must be None or one of"):
        fit_logistic([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], "logistic3")
    with pytest.raises(TooFewPairsError, match="a logistic5 fit needs at least 6 pairs; got 5"):
        fit_logistic([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], "logistic5")
    with pytest.raises(ConstantInputError, match="pred is constant"):
        fit_logistic([2, 2, 2, 2, 2, 2], [1, 2, 3, 4, 5, 6])
    with pytest.raises(ValueError, match="initial must hold 4 parameters"):
        fit_logistic([1, 2, 3, 4, 5], [1, 2, 4, 4, 5], initial=[1.0, 2.0])


def test_logistic_fit_record_validation_and_round_trip() -> None:
    fit = LogisticFit("logistic4", (10.0, 0.0, 0.0, 1.0), rmse=0.5, n=10)
    assert LogisticFit.from_dict(fit.to_dict()) == fit
    with pytest.raises(ValueError, match="kind must be one of"):
        LogisticFit("cubic", (1.0,), rmse=0.0, n=1)
    with pytest.raises(ValueError, match="logistic5 takes 5 parameters; got 4"):
        LogisticFit("logistic5", (1.0, 2.0, 3.0, 4.0), rmse=0.0, n=1)
