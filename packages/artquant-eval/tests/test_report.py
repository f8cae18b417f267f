"""evaluate(): agreement with the metric functions, bootstrap, groups, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from artquant_eval import (
    METRICS,
    EvalReport,
    MetricInputError,
    TooFewPairsError,
    binary_accuracy,
    evaluate,
    js_divergence,
    kl_divergence,
    krcc,
    mae,
    mse,
    plcc,
    rmse,
    srcc,
    wasserstein_distance,
)

VALUES = (10.0, 7.5, 5.0, 3.5, 1.0)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    target = np.round(rng.uniform(1, 10, 300), 1)
    pred = 10 / (1 + np.exp(-(target - 5.5) / 1.5)) + rng.normal(0, 0.6, 300)
    return pred, target


def test_report_equals_the_metric_functions(data) -> None:
    pred, target = data
    report = evaluate(pred, target, threshold=5.0)
    assert report.n == 300
    assert report.n_dropped == 0
    assert report.srcc == srcc(pred, target)
    assert report.plcc == plcc(pred, target)
    assert report.krcc == krcc(pred, target)
    assert report.rmse == rmse(pred, target)
    assert report.mae == mae(pred, target)
    assert report.mse == mse(pred, target)
    assert report.accuracy == binary_accuracy(pred, target, 5.0)
    assert report.plcc_fitted == pytest.approx(plcc(pred, target, fit="logistic4"), abs=1e-12)
    assert report.fit == "logistic4"
    assert report.logistic is not None
    assert report.srcc == pytest.approx(stats.spearmanr(pred, target).statistic, abs=1e-12)
    assert report.kl is None
    assert report.wasserstein is None
    assert report.undefined == {}


def test_report_distribution_metrics() -> None:
    rng = np.random.default_rng(1)
    pred_probs = rng.dirichlet(np.ones(5), 50)
    target_probs = rng.dirichlet(np.ones(5), 50)
    pred = pred_probs @ np.array(VALUES)
    target = target_probs @ np.array(VALUES)
    report = evaluate(
        pred,
        target,
        pred_probs=pred_probs,
        target_probs=target_probs,
        level_values=VALUES,
        bootstrap=20,
    )
    assert report.kl == pytest.approx(kl_divergence(pred_probs, target_probs), abs=1e-15)
    assert report.js == pytest.approx(js_divergence(pred_probs, target_probs), abs=1e-15)
    assert report.wasserstein == pytest.approx(
        wasserstein_distance(pred_probs, target_probs, VALUES), abs=1e-15
    )
    assert {"kl", "js", "wasserstein"} <= set(report.intervals)


def test_distribution_arguments_are_checked() -> None:
    probs = np.full((4, 5), 0.2)
    with pytest.raises(MetricInputError, match="pass both pred_probs and target_probs"):
        evaluate([1, 2, 3, 4], [1, 2, 3, 4], pred_probs=probs)
    with pytest.raises(MetricInputError, match=r"must both have shape \(4, K\)"):
        evaluate([1, 2, 3, 4], [1, 2, 3, 4], pred_probs=probs, target_probs=probs[:3])
    with pytest.raises(MetricInputError, match=r"one value per level \(5\); got 3"):
        evaluate(
            [1, 2, 3, 4], [1, 2, 3, 4], pred_probs=probs, target_probs=probs, level_values=[1, 2, 3]
        )


def test_bootstrap_is_reproducible_with_a_seed(data) -> None:
    pred, target = data
    first = evaluate(pred, target, bootstrap=60, seed=5, fit="logistic5")
    again = evaluate(pred, target, bootstrap=60, seed=5, fit="logistic5")
    other = evaluate(pred, target, bootstrap=60, seed=6, fit="logistic5")
    assert first.intervals == again.intervals
    assert first.intervals["srcc"] != other.intervals["srcc"]
    assert set(first.intervals) == {"srcc", "plcc", "plcc_fitted", "krcc", "rmse", "mae", "mse"}


def test_bootstrap_interval_is_the_percentile_interval(data) -> None:
    pred, target = data
    report = evaluate(pred, target, bootstrap=200, seed=3, confidence=0.9, fit=None)
    # the same resamples drawn by hand
    rng = np.random.default_rng(3)
    values = []
    for _ in range(200):
        index = rng.integers(0, pred.size, size=pred.size)
        values.append(stats.spearmanr(pred[index], target[index]).statistic)
    low, high = np.quantile(values, [0.05, 0.95])
    ci = report.intervals["srcc"]
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-12)
    assert ci.confidence == 0.9
    assert ci.n_resamples == 200
    assert ci.low < report.srcc < ci.high


def test_groups_match_evaluating_each_subset(data) -> None:
    pred, target = data
    labels = np.where(target > 5, "high", "low")
    labels[:3] = "tiny"
    report = evaluate(pred, target, groups=labels, fit=None)
    assert list(report.groups) == ["high", "low", "tiny"]
    for label in ("high", "low"):
        mask = labels == label
        group = report.groups[label]
        assert group.n == int(mask.sum())
        assert group.srcc == srcc(pred[mask], target[mask])
        assert group.rmse == rmse(pred[mask], target[mask])
        assert group.groups == {}
    tiny = report.groups["tiny"]
    assert tiny.n == 3
    assert tiny.srcc is not None
    assert report.srcc == srcc(pred, target)


def test_undefined_metrics_are_none_with_a_reason() -> None:
    pred = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    target = [3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    report = evaluate(pred, target, groups=["a", "a", "b", "b", "b", "b"])
    for name in ("srcc", "plcc", "plcc_fitted", "krcc"):
        assert getattr(report, name) is None
        assert "target is constant" in report.undefined[name]
    assert report.rmse == rmse(pred, target)  # still defined
    small = report.groups["a"]
    assert small.n == 2
    assert small.srcc is None
    assert small.rmse is None
    assert "at least 3 pairs; got 2" in small.undefined["srcc"]
    text = report.to_table()
    assert "undefined srcc: SRCC is undefined: target is constant" in text
    json.loads(report.to_json())  # no NaN anywhere
    assert "NaN" not in report.to_json()


def test_nan_policy_omit_counts_the_dropped_pairs(data) -> None:
    pred, target = data
    pred = pred.copy()
    pred[[4, 10]] = np.nan
    groups = np.arange(pred.size) % 2
    with pytest.raises(MetricInputError, match="nan_policy='omit'"):
        evaluate(pred, target)
    report = evaluate(pred, target, nan_policy="omit", groups=groups, ids=np.arange(300))
    keep = np.isfinite(pred)
    assert report.n == 298
    assert report.n_dropped == 2
    assert report.srcc == srcc(pred[keep], target[keep])
    assert report.groups["0"].n == 148  # both dropped pairs had even indices
    assert "(2 dropped: NaN/inf)" in report.to_table()


def test_input_errors() -> None:
    with pytest.raises(MetricInputError, match="same length; got 3 predictions and 4 targets"):
        evaluate([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(TooFewPairsError, match="evaluate needs at least 3 pairs; got 2"):
        evaluate([1, 2], [1, 2])
    with pytest.raises(MetricInputError, match=r"ids must be unique; 1 repeated, e.g. \['a'\]"):
        evaluate([1, 2, 3], [1, 2, 3], ids=["a", "b", "a"])
    with pytest.raises(MetricInputError, match=r"groups must hold one label per pair \(3\)"):
        evaluate([1, 2, 3], [1, 2, 3], groups=["a"])
    with pytest.raises(ValueError, match="bootstrap must be an integer >= 0"):
        evaluate([1, 2, 3], [1, 2, 3], bootstrap=-1)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        evaluate([1, 2, 3], [1, 2, 3], confidence=95)
    with pytest.raises(ValueError, match="fit must be None or one of"):
        evaluate([1, 2, 3], [1, 2, 3], fit="linear")


def test_largest_errors_need_ids(data) -> None:
    pred, target = data
    ids = [f"img{i}" for i in range(pred.size)]
    report = evaluate(pred, target, ids=ids, top_k=3)
    errors = np.abs(pred - target)
    worst = np.argsort(-errors)[:3]
    assert [e.id for e in report.largest_errors] == [ids[i] for i in worst]
    assert report.largest_errors[0].abs_error == pytest.approx(errors.max())
    assert evaluate(pred, target).largest_errors == ()


def test_json_round_trip_and_table(data) -> None:
    pred, target = data
    groups = np.where(target > 5, "high", "low")
    report = evaluate(
        pred, target, groups=groups, ids=range(300), bootstrap=10, threshold=5, fit="logistic5"
    )
    text = report.to_json()
    assert EvalReport.from_json(text) == report
    assert EvalReport.from_dict(json.loads(text)) == report
    assert json.loads(text)["groups"]["high"]["n"] == report.groups["high"].n
    table = str(report)
    for label in ("SRCC", "PLCC (logistic5)", "KRCC", "RMSE", "Accuracy (>= 5)", "high", "low"):
        assert label in table
    assert f"{report.srcc:.4f}" in table
    assert report.metrics().keys() <= set(METRICS)


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown report keys \['spearman'\]"):
        EvalReport.from_dict({"n": 3, "spearman": 0.5})
    with pytest.raises(ValueError, match="needs the key 'n'"):
        EvalReport.from_dict({"srcc": 0.5})


def test_report_is_frozen(data) -> None:
    report = evaluate(*data)
    with pytest.raises(AttributeError):
        report.srcc = 1.0  # type: ignore[misc]
