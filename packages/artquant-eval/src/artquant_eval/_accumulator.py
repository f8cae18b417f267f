"""``MetricAccumulator``: gather predictions batch by batch, then evaluate once."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from artquant_eval._distribution import as_distribution_pairs
from artquant_eval._report import EvalReport, evaluate
from artquant_eval._validation import MetricInputError, as_vectors

logger = logging.getLogger(__name__)


class MetricAccumulator:
    """Collects (prediction, target) pairs across batches and processes.

    It stores the pairs (a few numbers per image) and computes the report in one go through
    :func:`evaluate`, because rank correlations cannot be accumulated from partial sums. Every
    batch must carry the same optional fields as the first one (``ids``, ``groups``,
    distributions). With ids, a pair seen twice with the same values is kept once, which
    absorbs the samples a distributed sampler repeats to even out its shards; the same id with
    different values is an error.

    Args:
        **evaluate_options: Defaults for :meth:`compute`, passed to :func:`evaluate`
            (``fit``, ``threshold``, ``level_values``, ``bootstrap``, ``nan_policy`` ...).

    Example:
        >>> acc = MetricAccumulator(fit=None)
        >>> acc.update([1.0, 2.0], [1.5, 2.5])
        >>> other = MetricAccumulator()
        >>> other.update([3.0, 4.0], [2.9, 4.2])
        >>> acc.merge(other)
        >>> report = acc.compute()
        >>> report.n, report.srcc
        (4, 1.0)
    """

    def __init__(self, **evaluate_options: Any) -> None:
        for key in ("pred", "target", "ids", "groups", "pred_probs", "target_probs"):
            if key in evaluate_options:
                raise TypeError(f"{key!r} is data: pass it to update(), not the constructor")
        self._options = evaluate_options
        self.reset()

    def reset(self) -> None:
        """Forget every pair gathered so far (the options are kept)."""
        self._pred: list[NDArray[np.float64]] = []
        self._target: list[NDArray[np.float64]] = []
        self._ids: list[str] = []
        self._groups: list[str] = []
        self._pred_probs: list[NDArray[np.float64]] = []
        self._target_probs: list[NDArray[np.float64]] = []
        self._fields: tuple[bool, bool, bool] | None = None

    def __len__(self) -> int:
        """Pairs gathered so far (before de-duplication by id)."""
        return sum(batch.size for batch in self._pred)

    def update(
        self,
        pred: ArrayLike,
        target: ArrayLike,
        ids: ArrayLike | None = None,
        groups: ArrayLike | None = None,
        *,
        pred_probs: ArrayLike | None = None,
        target_probs: ArrayLike | None = None,
    ) -> None:
        """Add one batch of pairs.

        Args:
            pred: Predicted scores of the batch, 1-D (a 0-d scalar counts as one pair).
            target: Target scores, same length.
            ids: Optional id per pair.
            groups: Optional group label per pair.
            pred_probs: Optional predicted level distributions ``(B, K)``.
            target_probs: Target level distributions ``(B, K)``, given with ``pred_probs``.

        Raises:
            MetricInputError: Lengths differ, bad distributions, or the batch carries
                different optional fields from the first batch.
        """
        p, t = as_vectors(np.atleast_1d(pred), np.atleast_1d(target))
        if (pred_probs is None) != (target_probs is None):
            raise MetricInputError("pass both pred_probs and target_probs, or neither")
        fields = (ids is not None, groups is not None, pred_probs is not None)
        if self._fields is not None and fields != self._fields:
            names = ("ids", "groups", "pred_probs/target_probs")
            expected = [n for n, f in zip(names, self._fields, strict=True) if f] or ["none"]
            raise MetricInputError(
                f"every batch must carry the same optional fields as the first one "
                f"({', '.join(expected)}); this batch has "
                f"{', '.join(n for n, f in zip(names, fields, strict=True) if f) or 'none'}"
            )
        id_batch = self._labels(ids, "ids", p.size)
        group_batch = self._labels(groups, "groups", p.size)
        if pred_probs is not None and target_probs is not None:
            pp, tp = as_distribution_pairs(pred_probs, target_probs, p.size)
            self._pred_probs.append(pp)
            self._target_probs.append(tp)
        # Only a batch that passed every check fixes the fields of later ones.
        self._fields = fields
        self._pred.append(p)
        self._target.append(t)
        self._ids.extend(id_batch)
        self._groups.extend(group_batch)

    @staticmethod
    def _labels(values: ArrayLike | None, name: str, n: int) -> list[str]:
        if values is None:
            return []
        labels = [str(v) for v in np.atleast_1d(np.asarray(values, dtype=object)).reshape(-1)]
        if len(labels) != n:
            raise MetricInputError(f"{name} must hold one entry per pair ({n}); got {len(labels)}")
        return labels

    def merge(self, other: MetricAccumulator) -> None:
        """Add every pair gathered by ``other`` (e.g. another process's accumulator).

        Raises:
            TypeError: ``other`` is not a MetricAccumulator.
            MetricInputError: The two carry different optional fields.
        """
        if not isinstance(other, MetricAccumulator):
            raise TypeError(f"can only merge a MetricAccumulator; got {type(other).__name__}")
        if other._fields is None:
            return
        if self._fields is not None and other._fields != self._fields:
            raise MetricInputError(
                "cannot merge accumulators carrying different optional fields "
                f"(ids, groups, distributions): {self._fields} vs {other._fields}"
            )
        self._fields = other._fields
        self._pred.extend(other._pred)
        self._target.extend(other._target)
        self._ids.extend(other._ids)
        self._groups.extend(other._groups)
        self._pred_probs.extend(other._pred_probs)
        self._target_probs.extend(other._target_probs)

    def arrays(self) -> dict[str, Any]:
        """The gathered data as :func:`evaluate` keyword arguments, duplicates by id removed.

        Raises:
            MetricInputError: Nothing was gathered, or an id repeats with different values.
        """
        if self._fields is None:
            raise MetricInputError("the accumulator is empty: call update() first")
        data: dict[str, Any] = {
            "pred": np.concatenate(self._pred),
            "target": np.concatenate(self._target),
        }
        has_ids, has_groups, has_probs = self._fields
        if has_ids:
            data["ids"] = list(self._ids)
        if has_groups:
            data["groups"] = list(self._groups)
        if has_probs:
            data["pred_probs"] = np.concatenate(self._pred_probs)
            data["target_probs"] = np.concatenate(self._target_probs)
        if has_ids:
            data = self._deduplicate(data)
        return data

    @staticmethod
    def _deduplicate(data: dict[str, Any]) -> dict[str, Any]:
        first: dict[str, int] = {}
        keep: list[int] = []
        for index, key in enumerate(data["ids"]):
            seen = first.get(key)
            if seen is None:
                first[key] = index
                keep.append(index)
                continue
            same = all(
                np.array_equal(data[name][seen], data[name][index], equal_nan=True)
                for name in ("pred", "target", "pred_probs", "target_probs")
                if name in data
            ) and ("groups" not in data or data["groups"][seen] == data["groups"][index])
            if not same:
                raise MetricInputError(
                    f"id {key!r} was gathered twice with different values: "
                    f"pred {data['pred'][seen]} vs {data['pred'][index]}, target "
                    f"{data['target'][seen]} vs {data['target'][index]}"
                )
        if len(keep) < len(data["ids"]):
            logger.info("dropped %d repeated id(s)", len(data["ids"]) - len(keep))
        index_array = np.asarray(keep, dtype=np.intp)
        return {
            name: [value[i] for i in keep] if isinstance(value, list) else value[index_array]
            for name, value in data.items()
        }

    def compute(self, **evaluate_options: Any) -> EvalReport:
        """Evaluate everything gathered so far.

        Args:
            **evaluate_options: Override the constructor's options for this call.

        Returns:
            The :class:`EvalReport` of :func:`evaluate` on all pairs.

        Raises:
            MetricInputError: Nothing gathered, conflicting duplicate ids, or anything
                :func:`evaluate` rejects.
        """
        return evaluate(**self.arrays(), **{**self._options, **evaluate_options})


__all__ = ["MetricAccumulator"]
