"""MetricAccumulator: batches and merged shards give exactly evaluate() on the whole."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from artquant_eval import MetricAccumulator, MetricInputError, evaluate


@pytest.fixture
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    target = rng.uniform(1, 10, 120)
    probs = rng.dirichlet(np.ones(5), 120)
    return {
        "pred": target + rng.normal(0, 1, 120),
        "target": target,
        "ids": np.array([f"img{i:03d}" for i in range(120)]),
        "groups": np.where(target > 5, "high", "low"),
        "pred_probs": probs,
        "target_probs": np.roll(probs, 1, axis=1),
    }


def test_batches_equal_one_evaluate(data) -> None:
    acc = MetricAccumulator(
        fit="logistic5", bootstrap=20, seed=1, level_values=[10, 7.5, 5, 3.5, 1]
    )
    for start in range(0, 120, 32):
        batch = slice(start, start + 32)
        acc.update(
            data["pred"][batch],
            data["target"][batch],
            ids=data["ids"][batch],
            groups=data["groups"][batch],
            pred_probs=data["pred_probs"][batch],
            target_probs=data["target_probs"][batch],
        )
    assert len(acc) == 120
    expected = evaluate(
        **data, fit="logistic5", bootstrap=20, seed=1, level_values=[10, 7.5, 5, 3.5, 1]
    )
    assert acc.compute() == expected
    assert acc.compute(bootstrap=0).intervals == {}


def test_merge_of_shards_with_sampler_padding(data) -> None:
    """Two "processes", the second repeating two samples as a distributed sampler pads."""
    first, second = MetricAccumulator(fit=None), MetricAccumulator(fit=None)
    first.update(data["pred"][:60], data["target"][:60], ids=data["ids"][:60])
    padded = np.r_[np.arange(60, 120), [0, 1]]
    second.update(data["pred"][padded], data["target"][padded], ids=data["ids"][padded])
    first.merge(second)
    assert len(first) == 122
    report = first.compute()
    assert report == evaluate(data["pred"], data["target"], ids=data["ids"], fit=None)
    assert report.n == 120


def test_pickled_accumulator_merges(data) -> None:
    acc = MetricAccumulator()
    acc.update(data["pred"][:10], data["target"][:10])
    clone = pickle.loads(pickle.dumps(acc))
    acc.merge(clone)
    assert acc.compute(fit=None).n == 20


def test_scalar_updates(data) -> None:
    acc = MetricAccumulator(fit=None)
    for p, t in zip(data["pred"][:5], data["target"][:5], strict=True):
        acc.update(float(p), float(t))
    assert acc.compute() == evaluate(data["pred"][:5], data["target"][:5], fit=None)


def test_conflicting_duplicate_ids_are_rejected() -> None:
    acc = MetricAccumulator()
    acc.update([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], ids=["a", "b", "c"])
    acc.update([9.0], [1.0], ids=["a"])
    with pytest.raises(MetricInputError, match=r"id 'a' was gathered twice with different values"):
        acc.compute()


def test_batches_must_carry_the_same_fields() -> None:
    acc = MetricAccumulator()
    acc.update([1.0, 2.0], [1.0, 2.0], ids=["a", "b"])
    with pytest.raises(MetricInputError, match=r"same optional fields as the first one \(ids\)"):
        acc.update([3.0], [3.0])
    other = MetricAccumulator()
    other.update([3.0], [3.0], groups=["x"])
    with pytest.raises(MetricInputError, match="cannot merge accumulators carrying different"):
        acc.merge(other)


def test_accumulator_errors() -> None:
    acc = MetricAccumulator()
    with pytest.raises(MetricInputError, match="the accumulator is empty"):
        acc.compute()
    with pytest.raises(MetricInputError, match="same length; got 2 predictions and 1 targets"):
        acc.update([1.0, 2.0], [1.0])
    with pytest.raises(MetricInputError, match="pass both pred_probs and target_probs"):
        acc.update([1.0], [1.0], pred_probs=[[0.5, 0.5]])
    with pytest.raises(
        MetricInputError, match=r"must both have shape \(1, K\); got \(1, 2\) and \(2, 2\)"
    ):
        acc.update([1.0], [1.0], pred_probs=[[0.5, 0.5]], target_probs=[[0.5, 0.5], [1.0, 0.0]])
    with pytest.raises(MetricInputError, match=r"ids must hold one entry per pair \(2\)"):
        acc.update([1.0, 2.0], [1.0, 2.0], ids=["a"])
    with pytest.raises(TypeError, match="'ids' is data: pass it to update"):
        MetricAccumulator(ids=["a"])
    with pytest.raises(TypeError, match="can only merge a MetricAccumulator"):
        acc.merge([1, 2])  # type: ignore[arg-type]
    acc.update([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    acc.reset()
    assert len(acc) == 0
