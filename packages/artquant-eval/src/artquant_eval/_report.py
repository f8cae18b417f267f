"""``evaluate``: every metric at once, with bootstrap intervals and per-group reports."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from artquant_eval._distribution import (
    as_distribution_pairs,
    js_divergence,
    kl_divergence,
    wasserstein_distance,
)
from artquant_eval._fitting import DEFAULT_TOLERANCE, LogisticFit, check_fit_kind, fit_logistic
from artquant_eval._functional import (
    MIN_CORRELATION_PAIRS,
    binary_accuracy,
    krcc,
    mae,
    mapped_plcc,
    mse,
    plcc,
    rmse,
    srcc,
)
from artquant_eval._validation import (
    ConstantInputError,
    LogisticFitError,
    MetricInputError,
    TooFewPairsError,
    as_vector,
    as_vectors,
    check_min_pairs,
    finite_mask,
)

logger = logging.getLogger(__name__)

#: The scalar metrics of a report, in display order.
METRICS: tuple[str, ...] = (
    "srcc",
    "plcc",
    "plcc_fitted",
    "krcc",
    "rmse",
    "mae",
    "mse",
    "accuracy",
    "kl",
    "js",
    "wasserstein",
)
_LABELS = {
    "srcc": "SRCC",
    "plcc": "PLCC",
    "plcc_fitted": "PLCC ({fit})",
    "krcc": "KRCC",
    "rmse": "RMSE",
    "mae": "MAE",
    "mse": "MSE",
    "accuracy": "Accuracy (>= {threshold:g})",
    "kl": "KL(target||pred)",
    "js": "JS",
    "wasserstein": "Wasserstein",
}
# Refits on bootstrap resamples start from the full-data fit and need less precision.
BOOTSTRAP_FIT_TOLERANCE = 1e-6
# Errors that make one metric undefined on otherwise valid data: recorded, not raised.
_UNDEFINED_ERRORS = (ConstantInputError, TooFewPairsError, LogisticFitError)


@dataclass(frozen=True)
class ConfidenceInterval:
    """A percentile bootstrap confidence interval.

    Attributes:
        low: Lower bound, the ``(1 - confidence) / 2`` quantile of the resampled values.
        high: Upper bound, the ``(1 + confidence) / 2`` quantile.
        confidence: The nominal coverage, e.g. 0.95.
        n_resamples: Resamples on which the metric was defined (those drawing a constant
            input are skipped).
    """

    low: float
    high: float
    confidence: float
    n_resamples: int


@dataclass(frozen=True)
class LargestError:
    """One of the pairs with the largest absolute error ``|pred - target|``."""

    id: str
    pred: float
    target: float
    abs_error: float


@dataclass(frozen=True)
class EvalReport:
    """The result of :func:`evaluate`: a frozen, JSON-serialisable record.

    A metric is ``None`` when it was not requested (``accuracy`` without a threshold, the
    distribution metrics without distributions, ``plcc_fitted`` with ``fit=None``) or when it
    is undefined on this data; in the second case :attr:`undefined` holds the reason (for
    example a constant input, which has no correlation). No metric is ever NaN.

    Attributes:
        n: Pairs evaluated (after dropping non-finite ones).
        n_dropped: Pairs dropped for NaN/inf under ``nan_policy="omit"``.
        srcc: Spearman rank-order correlation.
        plcc: Pearson correlation of the raw predictions.
        plcc_fitted: Pearson correlation after the logistic mapping named by :attr:`fit`.
        krcc: Kendall tau-b.
        rmse: Root mean squared error of the raw predictions.
        mae: Mean absolute error.
        mse: Mean squared error.
        accuracy: Binary accuracy at :attr:`threshold`.
        kl: Mean ``KL(target || pred)`` of the level distributions.
        js: Mean Jensen-Shannon divergence of the level distributions.
        wasserstein: Mean earth mover's distance of the level distributions.
        fit: The logistic form behind :attr:`plcc_fitted`, or None.
        logistic: The fitted mapping itself, or None.
        threshold: The good/bad threshold of :attr:`accuracy`, or None.
        intervals: Bootstrap confidence intervals by metric name (empty without bootstrap).
        undefined: The reason for each metric that was requested but is undefined.
        groups: A report per group label (without nested groups), sorted by label.
        largest_errors: The pairs with the largest absolute error, when ids were given.
    """

    n: int
    n_dropped: int = 0
    srcc: float | None = None
    plcc: float | None = None
    plcc_fitted: float | None = None
    krcc: float | None = None
    rmse: float | None = None
    mae: float | None = None
    mse: float | None = None
    accuracy: float | None = None
    kl: float | None = None
    js: float | None = None
    wasserstein: float | None = None
    fit: str | None = None
    logistic: LogisticFit | None = None
    threshold: float | None = None
    intervals: Mapping[str, ConfidenceInterval] = field(default_factory=dict)
    undefined: Mapping[str, str] = field(default_factory=dict)
    groups: Mapping[str, EvalReport] = field(default_factory=dict)
    largest_errors: tuple[LargestError, ...] = ()

    def metrics(self) -> dict[str, float]:
        """The defined metrics, by name, in display order."""
        values = {name: getattr(self, name) for name in METRICS}
        return {name: value for name, value in values.items() if value is not None}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary; :meth:`from_dict` rebuilds the report from it."""
        return {
            "n": self.n,
            "n_dropped": self.n_dropped,
            **{name: getattr(self, name) for name in METRICS},
            "fit": self.fit,
            "logistic": None if self.logistic is None else self.logistic.to_dict(),
            "threshold": self.threshold,
            "intervals": {
                name: {
                    "low": ci.low,
                    "high": ci.high,
                    "confidence": ci.confidence,
                    "n_resamples": ci.n_resamples,
                }
                for name, ci in self.intervals.items()
            },
            "undefined": dict(self.undefined),
            "groups": {label: report.to_dict() for label, report in self.groups.items()},
            "largest_errors": [
                {"id": e.id, "pred": e.pred, "target": e.target, "abs_error": e.abs_error}
                for e in self.largest_errors
            ],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as a JSON string (``allow_nan=False``: no metric is ever NaN)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalReport:
        """Rebuild a report from :meth:`to_dict` output (or parsed :meth:`to_json`).

        Raises:
            ValueError: A required key is missing or an unknown key is present.
        """
        known = {
            "n",
            "n_dropped",
            *METRICS,
            "fit",
            "logistic",
            "threshold",
            "intervals",
            "undefined",
            "groups",
            "largest_errors",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown report keys {unknown}; known keys: {sorted(known)}")
        if "n" not in data:
            raise ValueError("a report needs the key 'n'")

        def opt_float(value: Any) -> float | None:
            return None if value is None else float(value)

        return cls(
            n=int(data["n"]),
            n_dropped=int(data.get("n_dropped", 0)),
            **{name: opt_float(data.get(name)) for name in METRICS},
            fit=data.get("fit"),
            logistic=None
            if data.get("logistic") is None
            else LogisticFit.from_dict(data["logistic"]),
            threshold=opt_float(data.get("threshold")),
            intervals={
                name: ConfidenceInterval(
                    low=float(ci["low"]),
                    high=float(ci["high"]),
                    confidence=float(ci["confidence"]),
                    n_resamples=int(ci["n_resamples"]),
                )
                for name, ci in data.get("intervals", {}).items()
            },
            undefined={str(k): str(v) for k, v in data.get("undefined", {}).items()},
            groups={
                str(label): cls.from_dict(report)
                for label, report in data.get("groups", {}).items()
            },
            largest_errors=tuple(
                LargestError(
                    id=str(e["id"]),
                    pred=float(e["pred"]),
                    target=float(e["target"]),
                    abs_error=float(e["abs_error"]),
                )
                for e in data.get("largest_errors", [])
            ),
        )

    @classmethod
    def from_json(cls, text: str) -> EvalReport:
        """Rebuild a report from :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))

    def _label(self, name: str) -> str:
        return _LABELS[name].format(fit=self.fit, threshold=self.threshold or 0.0)

    def to_table(self) -> str:
        """A plain-text table: the metrics (with intervals), undefined ones, then groups.

        Example:
            >>> print(EvalReport(n=4, srcc=0.8, plcc=0.75).to_table())
            n = 4
            metric   value
            SRCC    0.8000
            PLCC    0.7500
        """
        head = f"n = {self.n}" + (f" ({self.n_dropped} dropped: NaN/inf)" if self.n_dropped else "")
        rows = []
        for name in METRICS:
            value = getattr(self, name)
            if value is None:
                continue
            ci = self.intervals.get(name)
            interval = (
                f"[{ci.low:.4f}, {ci.high:.4f}]  ({ci.confidence:.0%}, {ci.n_resamples} resamples)"
                if ci
                else ""
            )
            rows.append((self._label(name), f"{value:.4f}", interval))
        lines = [head]
        if rows:
            width = max(len("metric"), *(len(r[0]) for r in rows))
            num = max(len("value"), *(len(r[1]) for r in rows))
            has_ci = any(r[2] for r in rows)
            lines.append(
                f"{'metric':<{width}}  {'value':>{num}}" + ("  bootstrap CI" if has_ci else "")
            )
            lines.extend(
                f"{label:<{width}}  {value:>{num}}" + (f"  {ci}" if ci else "")
                for label, value, ci in rows
            )
        lines.extend(f"undefined {name}: {reason}" for name, reason in self.undefined.items())
        if self.largest_errors:
            lines.append("largest errors |pred - target|:")
            lines.extend(
                f"  {e.id}  pred {e.pred:.4g}  target {e.target:.4g}  error {e.abs_error:.4g}"
                for e in self.largest_errors
            )
        if self.groups:
            lines.append("")
            lines.append(self._groups_table())
        return "\n".join(lines)

    def _groups_table(self) -> str:
        columns = [
            name
            for name in ("srcc", "plcc", "plcc_fitted", "krcc", "rmse", "mae", "accuracy")
            if any(getattr(r, name) is not None for r in self.groups.values())
        ]
        headers = ["group", "n", *(self._label(c) for c in columns)]
        body = [
            [
                label,
                str(report.n),
                *(
                    "-" if getattr(report, c) is None else f"{getattr(report, c):.4f}"
                    for c in columns
                ),
            ]
            for label, report in self.groups.items()
        ]
        widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]

        def render(row: list[str]) -> str:
            first = f"{row[0]:<{widths[0]}}"
            cells = zip(row[1:], widths[1:], strict=True)
            return "  ".join([first, *(f"{cell:>{w}}" for cell, w in cells)])

        lines = [render(headers), *(render(row) for row in body)]
        if any("-" in row[2:] for row in body):
            lines.append("('-': undefined for that group, e.g. a constant input or < 3 pairs)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()


@dataclass(frozen=True)
class _Inputs:
    """Validated, aligned inputs of one evaluation."""

    pred: NDArray[np.float64]
    target: NDArray[np.float64]
    pred_probs: NDArray[np.float64] | None
    target_probs: NDArray[np.float64] | None


def _metric_functions(
    fit: str | None,
    threshold: float | None,
    level_values: NDArray[np.float64] | None,
    has_distributions: bool,
) -> dict[str, Callable[[_Inputs, LogisticFit | None], float]]:
    """The metrics requested by the options, each computed by the public functions."""
    functions: dict[str, Callable[[_Inputs, LogisticFit | None], float]] = {
        "srcc": lambda d, _: srcc(d.pred, d.target),
        "plcc": lambda d, _: plcc(d.pred, d.target),
        "krcc": lambda d, _: krcc(d.pred, d.target),
        "rmse": lambda d, _: rmse(d.pred, d.target),
        "mae": lambda d, _: mae(d.pred, d.target),
        "mse": lambda d, _: mse(d.pred, d.target),
    }
    if fit is not None:
        functions["plcc_fitted"] = lambda d, start: _fitted_plcc(d, fit, start)
    if threshold is not None:
        functions["accuracy"] = lambda d, _: binary_accuracy(d.pred, d.target, threshold)
    if has_distributions:
        functions["kl"] = lambda d, _: float(kl_divergence(*_distributions(d)))
        functions["js"] = lambda d, _: float(js_divergence(*_distributions(d)))
        if level_values is not None:
            functions["wasserstein"] = lambda d, _: float(
                wasserstein_distance(*_distributions(d), level_values)
            )
    return functions


def _distributions(data: _Inputs) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if data.pred_probs is None or data.target_probs is None:
        raise MetricInputError("no level distributions were given")
    return data.pred_probs, data.target_probs


def _fitted_plcc(data: _Inputs, fit: str, start: LogisticFit | None) -> float:
    tol = DEFAULT_TOLERANCE if start is None else BOOTSTRAP_FIT_TOLERANCE
    return _mapped_plcc(data, fit_logistic(data.pred, data.target, fit, initial=start, tol=tol))


def _mapped_plcc(data: _Inputs, mapping: LogisticFit) -> float:
    return mapped_plcc(mapping, data.pred, data.target)


def _compute(
    data: _Inputs,
    functions: Mapping[str, Callable[[_Inputs, LogisticFit | None], float]],
    start: LogisticFit | None,
) -> tuple[dict[str, float], dict[str, str]]:
    values: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for name, function in functions.items():
        try:
            values[name] = function(data, start)
        except _UNDEFINED_ERRORS as exc:
            reasons[name] = str(exc)
    return values, reasons


def _subset(data: _Inputs, index: NDArray[np.intp]) -> _Inputs:
    return _Inputs(
        pred=data.pred[index],
        target=data.target[index],
        pred_probs=None if data.pred_probs is None else data.pred_probs[index],
        target_probs=None if data.target_probs is None else data.target_probs[index],
    )


def _bootstrap(
    data: _Inputs,
    functions: Mapping[str, Callable[[_Inputs, LogisticFit | None], float]],
    start: LogisticFit | None,
    n_resamples: int,
    seed: int,
    confidence: float,
) -> dict[str, ConfidenceInterval]:
    """Percentile intervals from ``n_resamples`` resamples of the pairs with replacement."""
    rng = np.random.default_rng(seed)
    n = data.pred.size
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(n_resamples):
        index = rng.integers(0, n, size=n)
        values, _ = _compute(_subset(data, index), functions, start)
        for name, value in values.items():
            samples[name].append(value)
    tail = (1.0 - confidence) / 2.0
    intervals = {}
    for name, values_list in samples.items():
        if len(values_list) < 2:
            continue
        low, high = np.quantile(np.asarray(values_list), [tail, 1.0 - tail])
        intervals[name] = ConfidenceInterval(
            low=float(low), high=float(high), confidence=confidence, n_resamples=len(values_list)
        )
    return intervals


def _largest_errors(
    data: _Inputs, ids: Sequence[str] | None, top_k: int
) -> tuple[LargestError, ...]:
    if ids is None or top_k <= 0:
        return ()
    errors = np.abs(data.pred - data.target)
    order = np.argsort(-errors, kind="stable")[:top_k]
    return tuple(
        LargestError(
            id=ids[i],
            pred=float(data.pred[i]),
            target=float(data.target[i]),
            abs_error=float(errors[i]),
        )
        for i in order
    )


def _report(
    data: _Inputs,
    ids: Sequence[str] | None,
    *,
    n_dropped: int,
    fit: str | None,
    threshold: float | None,
    level_values: NDArray[np.float64] | None,
    bootstrap: int,
    seed: int,
    confidence: float,
    top_k: int,
    groups: Mapping[str, EvalReport] | None = None,
) -> EvalReport:
    has_distributions = data.pred_probs is not None
    functions = _metric_functions(fit, threshold, level_values, has_distributions)
    n = data.pred.size
    try:
        check_min_pairs(n, MIN_CORRELATION_PAIRS, n_dropped, what="a report")
    except TooFewPairsError as exc:
        values: dict[str, float] = {}
        reasons = dict.fromkeys(functions, str(exc))
        logistic = None
        intervals: dict[str, ConfidenceInterval] = {}
    else:
        # The full-data fit is kept in the report and starts every bootstrap refit.
        logistic = None
        point_functions = dict(functions)
        if fit is not None:
            try:
                logistic = fit_logistic(data.pred, data.target, fit)
            except _UNDEFINED_ERRORS:
                pass  # plcc_fitted then refits and records the reason
            else:
                fitted = logistic
                point_functions["plcc_fitted"] = lambda d, _: _mapped_plcc(d, fitted)
        values, reasons = _compute(data, point_functions, logistic)
        intervals = (
            _bootstrap(
                data,
                {name: f for name, f in functions.items() if name in values},
                logistic,
                bootstrap,
                seed,
                confidence,
            )
            if bootstrap > 0
            else {}
        )
    return EvalReport(
        n=n,
        n_dropped=n_dropped,
        **values,
        fit=fit,
        logistic=logistic,
        threshold=threshold,
        intervals=intervals,
        undefined=reasons,
        groups=dict(groups or {}),
        largest_errors=_largest_errors(data, ids, top_k),
    )


def _as_labels(values: ArrayLike | Sequence[Any], name: str, n: int) -> list[str]:
    labels = [str(v) for v in np.asarray(values, dtype=object).reshape(-1)]
    if len(labels) != n:
        raise MetricInputError(f"{name} must hold one label per pair ({n}); got {len(labels)}")
    return labels


def evaluate(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    ids: Sequence[Any] | ArrayLike | None = None,
    groups: Sequence[Any] | ArrayLike | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
    fit: str | None = "logistic4",
    threshold: float | None = None,
    pred_probs: ArrayLike | None = None,
    target_probs: ArrayLike | None = None,
    level_values: Sequence[float] | ArrayLike | None = None,
    nan_policy: str = "raise",
    top_k: int = 5,
) -> EvalReport:
    """Compute every metric of a set of predictions, with optional intervals and groups.

    Each metric goes through the public function of the same name (:func:`srcc`,
    :func:`plcc`, ...). A metric that is undefined on this data (a constant input, a logistic
    fit that does not converge, a group with fewer than 3 pairs) is ``None`` in the report
    with the reason in ``report.undefined``; malformed input raises.

    Args:
        pred: Predicted scores, 1-D.
        target: Target scores, 1-D, paired with ``pred`` by position.
        ids: Optional unique id per pair; enables ``largest_errors``.
        groups: Optional label per pair (a category, an attribute...); each label gets its own
            report in ``report.groups``, computed the same way.
        bootstrap: Number of bootstrap resamples for percentile confidence intervals; 0 for
            none. Resampling is over pairs, with replacement.
        seed: Seed of the resampling; the same seed gives the same intervals.
        confidence: Coverage of the intervals, in (0, 1).
        fit: Logistic form for ``plcc_fitted`` (``"logistic4"``, ``"logistic5"``) or None.
        threshold: Good/bad threshold for ``accuracy``; None leaves accuracy out.
        pred_probs: Optional predicted level distributions ``(N, K)``, rows summing to 1.
        target_probs: Target level distributions, same shape; needed with ``pred_probs``.
        level_values: The K level values, for the Wasserstein distance.
        nan_policy: ``"raise"`` rejects NaN/inf scores; ``"omit"`` drops those pairs and
            counts them in ``n_dropped``.
        top_k: How many largest errors to list when ``ids`` are given.

    Returns:
        The :class:`EvalReport`.

    Raises:
        MetricInputError: Mismatched lengths, NaN/inf (with ``nan_policy="raise"``),
            duplicate ids, bad distributions, or only one of ``pred_probs``/``target_probs``.
        TooFewPairsError: Fewer than 3 pairs overall.
        ValueError: A bad option (``fit``, ``bootstrap``, ``confidence``, ``nan_policy``).

    Example:
        >>> report = evaluate([1.0, 2.0, 3.0, 4.0, 5.0], [1.2, 1.9, 3.4, 3.9, 5.2], fit=None)
        >>> report.n, report.srcc, round(report.plcc, 4)
        (5, 1.0, 0.9907)
        >>> EvalReport.from_json(report.to_json()) == report
        True
    """
    if fit is not None:
        fit = check_fit_kind(fit)
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int | np.integer) or bootstrap < 0:
        raise ValueError(f"bootstrap must be an integer >= 0; got {bootstrap!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    if threshold is not None and not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be a finite number or None; got {threshold!r}")

    p, t = as_vectors(pred, target)
    id_list = None if ids is None else _as_labels(ids, "ids", p.size)
    if id_list is not None and len(set(id_list)) != len(id_list):
        duplicates = sorted(i for i, count in Counter(id_list).items() if count > 1)
        raise MetricInputError(
            f"ids must be unique; {len(duplicates)} repeated, e.g. {duplicates[:5]}"
        )
    group_list = None if groups is None else _as_labels(groups, "groups", p.size)
    if (pred_probs is None) != (target_probs is None):
        raise MetricInputError("pass both pred_probs and target_probs, or neither")
    pp = tp = None
    if pred_probs is not None and target_probs is not None:
        pp, tp = as_distribution_pairs(pred_probs, target_probs, p.size)
    values = None
    if level_values is not None:
        values = as_vector(level_values, "level_values")
        if pp is not None and values.size != pp.shape[1]:
            raise MetricInputError(
                f"level_values must hold one value per level ({pp.shape[1]}); got {values.size}"
            )

    mask = finite_mask(p, t, nan_policy)
    n_dropped = 0
    if mask is not None:
        n_dropped = int(mask.size - mask.sum())
        keep = np.flatnonzero(mask)
        logger.info("dropping %d pair(s) holding NaN/inf (nan_policy='omit')", n_dropped)
        p, t = p[keep], t[keep]
        pp = None if pp is None else pp[keep]
        tp = None if tp is None else tp[keep]
        id_list = None if id_list is None else [id_list[i] for i in keep]
        group_list = None if group_list is None else [group_list[i] for i in keep]
    check_min_pairs(p.size, MIN_CORRELATION_PAIRS, n_dropped, what="evaluate")

    data = _Inputs(pred=p, target=t, pred_probs=pp, target_probs=tp)
    options: dict[str, Any] = {
        "fit": fit,
        "threshold": None if threshold is None else float(threshold),
        "level_values": values,
        "bootstrap": int(bootstrap),
        "seed": seed,
        "confidence": float(confidence),
        "top_k": top_k,
    }
    group_reports: dict[str, EvalReport] = {}
    if group_list is not None:
        labels = np.asarray(group_list, dtype=object)
        for label in sorted(set(group_list)):
            index = np.flatnonzero(labels == label)
            group_ids = None if id_list is None else [id_list[i] for i in index]
            group_reports[label] = _report(_subset(data, index), group_ids, n_dropped=0, **options)
    report = _report(data, id_list, n_dropped=n_dropped, groups=group_reports, **options)
    for name, reason in report.undefined.items():
        logger.warning("%s is undefined: %s", name, reason)
    return report


__all__ = ["METRICS", "ConfidenceInterval", "EvalReport", "LargestError", "evaluate"]
