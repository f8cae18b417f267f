"""Per-attribute evaluation: ``score_<attribute>`` columns against APDDv2's attribute labels.

A scores file (``artquant score --attributes ...``) has one ``score_<id>`` column per attribute,
``<id>`` being the attribute's column-safe id (``light_and_shadow``). APDDv2's label CSV
(``APDDv2-10023.csv``, GB18030) has one column per attribute, empty where the attribute does
not apply to a painting's category. Each attribute is evaluated on the paintings that have both
a label and a prediction; the others are skipped and counted.

artquant-eval imports no other ArtQuant package, so the ten APDDv2 attributes are listed here
as well as in ``artquant_data`` (its canonical table); a test in artquant-train checks that the
two lists agree.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from artquant_eval._io import DataFileError, _index, _number
from artquant_eval._report import EvalReport, evaluate
from artquant_eval._validation import TooFewPairsError

#: APDDv2's ten attributes: column-safe id -> column of the label CSV, in the CSV's order.
APDDV2_ATTRIBUTE_COLUMNS: dict[str, str] = {
    "theme_and_logic": "Theme and logic",
    "creativity": "Creativity",
    "layout_and_composition": "Layout and composition",
    "space_and_perspective": "Space and perspective",
    "the_sense_of_order": "The sense of order",
    "light_and_shadow": "Light and shadow",
    "color": "Color",
    "details_and_texture": "Details and texture",
    "the_overall": "The overall",
    "mood": "Mood",
}
#: The correlations reported per attribute, averaged over attributes and drawn.
ATTRIBUTE_CORRELATIONS: tuple[str, ...] = ("srcc", "plcc", "krcc")
_MIN_PAIRS = 3


def attribute_id(name: str) -> str:
    """The column-safe id of an attribute name (the rule of ``artquant_data.attribute_id``).

    Lower-case; every run of characters other than ``a-z`` and ``0-9`` becomes one underscore;
    underscores at either end are dropped.

    Args:
        name: An attribute name, e.g. ``"Light and shadow"``.

    Returns:
        The id.

    Raises:
        ValueError: If the name holds no letter or digit.

    Example:
        >>> attribute_id("The sense of order")
        'the_sense_of_order'
    """
    ident = re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")
    if not ident:
        raise ValueError(f"attribute name {name!r} has no letter or digit to make an id from")
    return ident


def resolve_attributes(spec: str | Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Which attributes to evaluate: ``id -> label column``.

    Args:
        spec: ``None`` or ``"all"`` (APDDv2's ten); a comma-separated string or a list whose
            items are APDDv2 ids or names (``color``, ``Light and shadow``) or ``ID=COLUMN``
            for a label column of your own; or a mapping ``id -> column``.

    Returns:
        The attributes, in the given order (APDDv2's order for ``all``).

    Raises:
        ValueError: An unknown attribute (the message lists the known ids), a bad id, or a
            repeated one.

    Example:
        >>> resolve_attributes("color, Light and shadow, brush=Brushwork")
        {'color': 'Color', 'light_and_shadow': 'Light and shadow', 'brush': 'Brushwork'}
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
        return dict(APDDV2_ATTRIBUTE_COLUMNS)
    if isinstance(spec, Mapping):
        pairs = [(str(k), str(v)) for k, v in spec.items()]
    else:
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        pairs = []
        for raw in (str(i).strip() for i in items):
            if not raw:
                continue
            if "=" in raw:
                ident, column = (part.strip() for part in raw.split("=", 1))
                pairs.append((ident, column))
                continue
            ident = attribute_id(raw)
            if ident not in APDDV2_ATTRIBUTE_COLUMNS:
                raise ValueError(
                    f"unknown attribute {raw!r}; APDDv2's are {list(APDDV2_ATTRIBUTE_COLUMNS)} "
                    "(or give ID=COLUMN for a label column of your own)"
                )
            pairs.append((ident, APDDV2_ATTRIBUTE_COLUMNS[ident]))
    out: dict[str, str] = {}
    for ident, column in pairs:
        if attribute_id(ident) != ident:
            raise ValueError(
                f"attribute id {ident!r} is not column-safe; use {attribute_id(ident)!r}"
            )
        if ident in out:
            raise ValueError(f"attribute {ident!r} is asked for twice")
        out[ident] = column
    if not out:
        raise ValueError("no attribute to evaluate")
    return out


@dataclass(frozen=True)
class AttributeResult:
    """The evaluation of one attribute.

    Attributes:
        id: The attribute's column-safe id.
        column: The label column it was read from.
        pred_key: The prediction column (``score_<id>``).
        report: SRCC, PLCC, KRCC, errors and bootstrap intervals over the evaluated pairs;
            ``None`` when fewer than 3 pairs remain.
        skipped_no_label: Paintings with a prediction but an empty label cell (the attribute
            does not apply to them), left out.
        skipped_no_prediction: Paintings with a label but an empty prediction cell (e.g. an
            image that failed to load), left out.
        reason: Why ``report`` is ``None``.
    """

    id: str
    column: str
    pred_key: str
    report: EvalReport | None
    skipped_no_label: int
    skipped_no_prediction: int
    reason: str | None = None

    @property
    def n(self) -> int:
        """Pairs evaluated."""
        return 0 if self.report is None else self.report.n

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "id": self.id,
            "column": self.column,
            "pred_key": self.pred_key,
            "n": self.n,
            "skipped_no_label": self.skipped_no_label,
            "skipped_no_prediction": self.skipped_no_prediction,
            "reason": self.reason,
            "report": None if self.report is None else self.report.to_dict(),
        }


@dataclass(frozen=True)
class AttributeEvaluation:
    """Per-attribute results of :func:`evaluate_attributes`.

    Attributes:
        attributes: Results by attribute id, in the requested order.
        mean: Mean SRCC, PLCC and KRCC over the attributes where each is defined.
        missing: Target ids without any prediction row.
        extra: Prediction ids not in the target file.
    """

    attributes: Mapping[str, AttributeResult]
    mean: Mapping[str, float] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "attributes": {k: r.to_dict() for k, r in self.attributes.items()},
            "mean": dict(self.mean),
            "missing": list(self.missing),
            "extra": list(self.extra),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The evaluation as JSON (no NaN: undefined values are ``null``)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_table(self) -> str:
        """One row per attribute: pairs, skipped rows, SRCC/PLCC/KRCC with intervals.

        Example:
            >>> rep = EvalReport(n=3, srcc=0.5, plcc=0.6, krcc=0.33)
            >>> res = AttributeResult("color", "Color", "score_color", rep, 2, 0)
            >>> print(AttributeEvaluation({"color": res}, {"srcc": 0.5}).to_table())
            attribute  n  no label  no pred    SRCC    PLCC    KRCC
            color      3         2        0  0.5000  0.6000  0.3300
            mean                             0.5000
        """
        header = [
            "attribute",
            "n",
            "no label",
            "no pred",
            *(m.upper() for m in ATTRIBUTE_CORRELATIONS),
        ]
        rows = []
        for ident, result in self.attributes.items():
            cells = [
                ident,
                str(result.n),
                str(result.skipped_no_label),
                str(result.skipped_no_prediction),
            ]
            for metric in ATTRIBUTE_CORRELATIONS:
                cells.append(_cell(result.report, metric))
            rows.append(cells)
        mean_row = ["mean", "", "", ""] + [
            f"{self.mean[m]:.4f}" if m in self.mean else "" for m in ATTRIBUTE_CORRELATIONS
        ]
        table = [header, *rows, mean_row]
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]

        def render(row: list[str]) -> str:
            first = f"{row[0]:<{widths[0]}}"
            rest = (f"{c:>{w}}" for c, w in zip(row[1:], widths[1:], strict=True))
            return "  ".join([first, *rest]).rstrip()

        lines = [render(r) for r in table]
        lines.extend(
            f"{ident}: not evaluated: {result.reason}"
            for ident, result in self.attributes.items()
            if result.reason
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_table()


def _cell(report: EvalReport | None, metric: str) -> str:
    value = None if report is None else getattr(report, metric)
    if value is None:
        return "-"
    ci = None if report is None else report.intervals.get(metric)
    return f"{value:.4f}" + (f" [{ci.low:.3f}, {ci.high:.3f}]" if ci else "")


def evaluate_attributes(
    pred_records: Sequence[Mapping[str, Any]],
    target_records: Sequence[Mapping[str, Any]],
    attributes: str | Sequence[str] | Mapping[str, str] | None = None,
    *,
    pred_id_key: str = "image",
    target_id_key: str = "filename",
    match: str = "basename",
    pred_prefix: str = "score_",
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> AttributeEvaluation:
    """SRCC, PLCC and KRCC with bootstrap intervals for each attribute, joined by id.

    For each attribute, the paintings present in both files are taken; those whose label cell
    is empty (the attribute does not apply) or whose prediction cell is empty are skipped and
    counted. The rest go through :func:`evaluate` (no logistic fit; intervals from
    ``bootstrap`` resamples with ``seed``; NaN/inf predictions dropped and counted).

    Args:
        pred_records: Rows of the scores file, with ``score_<id>`` columns.
        target_records: Rows of the label file (APDDv2: ``APDDv2-10023.csv`` read as GB18030).
        attributes: Which ones (see :func:`resolve_attributes`); default APDDv2's ten.
        pred_id_key: Id column of the scores file.
        target_id_key: Id column of the label file (APDDv2: ``filename``).
        match: How ids are compared (``exact``, ``basename``, ``stem``; see ``join_by_id``).
        pred_prefix: Prefix of the prediction columns.
        bootstrap: Bootstrap resamples per attribute (0: no intervals).
        seed: Seed of the resampling (the same for every attribute).
        confidence: Coverage of the intervals.

    Returns:
        The :class:`AttributeEvaluation`.

    Raises:
        DataFileError: An id column is absent or repeats, no id is shared, the scores file has
            no column for a requested attribute (the message lists the ``score_*`` columns it
            has), the label file lacks an attribute's column, or a cell is not a number.
        ValueError: Bad ``attributes`` or ``match``.

    Example:
        >>> preds = [{"image": f"{i}.jpg", "score_color": s} for i, s in enumerate([1, 3, 2, 5])]
        >>> cells = ["2", "", "3", "8"]  # an empty cell: not rated
        >>> labels = [{"filename": f"{i}.png", "Color": c} for i, c in enumerate(cells)]
        >>> res = evaluate_attributes(preds, labels, "color", match="stem", bootstrap=0)
        >>> res.attributes["color"].n, res.attributes["color"].skipped_no_label
        (3, 1)
    """
    chosen = resolve_attributes(attributes)
    preds = _index(pred_records, pred_id_key, match, "prediction")
    targets = _index(target_records, target_id_key, match, "target")
    shared = [key for key in targets if key in preds]
    if not shared:
        raise DataFileError(
            f"no id is shared by the predictions ({len(preds)} ids, e.g. {list(preds)[:3]}) and "
            f"the targets ({len(targets)} ids, e.g. {list(targets)[:3]}) with match={match!r}"
        )
    pred_columns = set().union(*(r.keys() for r in pred_records))
    target_columns = set().union(*(r.keys() for r in target_records))
    results: dict[str, AttributeResult] = {}
    for ident, column in chosen.items():
        pred_key = f"{pred_prefix}{ident}"
        if pred_key not in pred_columns:
            have = sorted(c for c in pred_columns if str(c).startswith(pred_prefix))
            raise DataFileError(
                f"the scores file has no column {pred_key!r} for attribute {ident!r}; its "
                f"{pred_prefix}* columns are {have} (score with --attributes to get them)"
            )
        if column not in target_columns:
            raise DataFileError(
                f"the label file has no column {column!r} for attribute {ident!r}; its columns "
                f"are {sorted(target_columns)}"
            )
        results[ident] = _one_attribute(
            ident, column, pred_key, shared, preds, targets, bootstrap, seed, confidence
        )
    mean = {}
    for metric in ATTRIBUTE_CORRELATIONS:
        values = [getattr(r.report, metric) for r in results.values() if r.report is not None]
        defined = [v for v in values if v is not None and math.isfinite(v)]
        if defined:
            mean[metric] = float(np.mean(defined))
    return AttributeEvaluation(
        attributes=results,
        mean=mean,
        missing=tuple(key for key in targets if key not in preds),
        extra=tuple(key for key in preds if key not in targets),
    )


def _one_attribute(
    ident: str,
    column: str,
    pred_key: str,
    shared: Sequence[str],
    preds: Mapping[str, Mapping[str, Any]],
    targets: Mapping[str, Mapping[str, Any]],
    bootstrap: int,
    seed: int,
    confidence: float,
) -> AttributeResult:
    ids: list[str] = []
    pred: list[float] = []
    target: list[float] = []
    no_label = no_prediction = 0
    for key in shared:
        label = _number(targets[key], column, "target", key) if column in targets[key] else None
        if label is None:
            no_label += 1
            continue
        value = _number(preds[key], pred_key, "prediction", key) if pred_key in preds[key] else None
        if value is None:
            no_prediction += 1
            continue
        ids.append(key)
        pred.append(value)
        target.append(label)
    try:
        report = evaluate(
            pred,
            target,
            ids=ids,
            bootstrap=bootstrap,
            seed=seed,
            confidence=confidence,
            fit=None,
            nan_policy="omit",
        )
    except TooFewPairsError as exc:
        return AttributeResult(ident, column, pred_key, None, no_label, no_prediction, str(exc))
    return AttributeResult(ident, column, pred_key, report, no_label, no_prediction)


__all__ = [
    "APDDV2_ATTRIBUTE_COLUMNS",
    "ATTRIBUTE_CORRELATIONS",
    "AttributeEvaluation",
    "AttributeResult",
    "attribute_id",
    "evaluate_attributes",
    "resolve_attributes",
]
