"""Attribute questions in training and validation: prompts, per-attribute metrics, the level spec.

An attribute sample (``task_type: "attribute"``, e.g. "How would you rate the color of this
painting?" answered "The color of the painting is good.") trains exactly like a score sample:
CE on its answer without the level token, KL between its own soft target (``level_probs``, the
Score-Based Distribution Estimation of that attribute's score) and the model at its level
position. The rest lives here, apart from the total score's path:

* the scoring prompt of each attribute: the picture, then the attribute's canonical question
  (``artquant_data.attribute_spec``), rendered with the training template and ending with the
  attribute's stem, so validation reads the position training taught;
* reading a validation file's attribute samples, grouped by attribute;
* SRCC, PLCC, KRCC and MAE per attribute (keys ``"<id>/srcc"``...) and their mean over the
  attributes (``"attribute_mean/srcc"``...), which ``validation.best_on: attribute_mean`` uses;
* the scorer spec written beside a trained model (``artquant_spec.json``, an
  ``artquant_model.ScorerSpec``, what ``ArtQuant.from_pretrained`` reads): level words and
  values, the total's question and one question per trained attribute (by id: its question,
  stem and full prompt as ``raw_prompt``).

Example:
    >>> from artquant_train.config import TemplateConfig
    >>> prompt = attribute_prompt("Color", TemplateConfig(system="", image_first=False))
    >>> print(prompt)
    USER: <|image|>
    How would you rate the color of this painting? ASSISTANT: The color of the painting is
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artquant_train.config import LevelsConfig, TemplateConfig, TrainConfig
from artquant_train.conversation import render_rounds
from artquant_train.errors import EmptyDatasetError
from artquant_train.validation import ValItem, metrics_of, read_validation_objects

#: Key prefix of the mean over attributes in validation records.
ATTRIBUTE_MEAN = "attribute_mean"
#: Metrics reported per attribute and averaged over attributes.
ATTRIBUTE_METRICS = ("srcc", "plcc", "krcc", "mae")
#: What this trainer wrote beside a model before ``artquant_spec.json`` (``SPEC_FILE``); no
#: longer written, still read by ``artquant_model.read_spec`` when a folder has only it.
LEVEL_SPEC_FILE = "level_spec.json"
#: File written beside a trained model's weights: its level words, values and questions.
SPEC_FILE = "artquant_spec.json"
#: Fewest validation items an attribute needs for a correlation.
MIN_ATTRIBUTE_ITEMS = 3


@dataclass(frozen=True)
class AttributeQuestion:
    """How one attribute is asked and read.

    Attributes:
        id: column-safe id (``light_and_shadow``).
        name: the attribute's name as the data carries it (``Light and shadow``).
        question: the canonical question.
        stem: the answer up to the level word.
        prompt: the full scoring prompt (one ``<|image|>``), ending with the stem; the level
            word's logits are read at its end.
    """

    id: str
    name: str
    question: str
    stem: str
    prompt: str


def attribute_prompt(name: str, template: TemplateConfig, override: str | None = None) -> str:
    """The scoring prompt of an attribute: the picture, its question, then its stem.

    Args:
        name: the attribute's name or id (looked up in ``artquant_data``'s table; a name
            outside it gets the table's templates).
        template: the training template; the prompt is rendered as training renders an
            attribute sample (system prompt, roles, separator), picture first.
        override: ``validation.attribute_prompt``, a string with ``{question}`` and ending with
            ``{stem}``, used instead of the template when given.

    Returns:
        The prompt string.
    """
    return attribute_question(name, template, override).prompt


def attribute_question(
    name: str, template: TemplateConfig, override: str | None = None
) -> AttributeQuestion:
    """The :class:`AttributeQuestion` of an attribute (see :func:`attribute_prompt`)."""
    from artquant_data import IMAGE_TOKEN, attribute_spec

    spec = attribute_spec(name)
    if override is not None:
        prompt = override.format(question=spec.question, stem=spec.stem)
    else:
        turns = [
            {"from": "human", "value": f"{IMAGE_TOKEN}\n{spec.question}"},
            {"from": "gpt", "value": spec.stem},
        ]
        head, stem = render_rounds(turns, template)[0]
        prompt = f"{head} {stem}"
    return AttributeQuestion(spec.id, name, spec.question, spec.stem, prompt)


def read_attribute_items(path: str | Path, image_root: Path | None) -> dict[str, list[ValItem]]:
    """The attribute samples of a validation file, grouped by attribute name.

    A validation file made by ``artquant-data prepare ... --tasks score,attribute`` holds score
    samples (the total) and attribute samples (``task_type: "attribute"``, ``attribute``,
    ``gt_score``); only the latter are read here.

    Args:
        path: the file (JSON list or JSON Lines).
        image_root: folder relative image paths are under (``None``: the file's folder).

    Returns:
        ``{attribute name: items}`` in file order (empty without attribute samples).

    Raises:
        EmptyDatasetError: an attribute has fewer than 3 items (no correlation).
        SampleError, MissingImageError: see
            :func:`~artquant_train.validation.read_validation_objects`.
    """
    grouped: dict[str, list[ValItem]] = {}
    for obj, item in read_validation_objects(path, image_root, task="attribute"):
        grouped.setdefault(str(obj.get("attribute")), []).append(item)
    few = {name: len(items) for name, items in grouped.items() if len(items) < MIN_ATTRIBUTE_ITEMS}
    if few:
        raise EmptyDatasetError(
            f"validation file {path}: attribute(s) {few} have fewer than {MIN_ATTRIBUTE_ITEMS} "
            "samples, too few for a correlation"
        )
    return grouped


def attribute_metrics(
    predictions: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]
) -> dict[str, float]:
    """Per-attribute SRCC, PLCC, KRCC, MAE and their means over the attributes.

    Args:
        predictions: attribute id -> predicted scores.
        targets: attribute id -> human scores (same keys and lengths).

    Returns:
        ``{"<id>/srcc": ..., "<id>/plcc": ..., "<id>/krcc": ..., "<id>/mae": ..., "<id>/n": ...,
        "attribute_mean/srcc": ...}``. A mean is NaN when the metric is undefined for any
        attribute (e.g. a constant prediction), so such a validation never wins ``best/``.

    Example:
        >>> m = attribute_metrics({"a": np.array([1.0, 2, 3]), "b": np.array([3.0, 1, 2])},
        ...                       {"a": np.array([1.0, 2, 3]), "b": np.array([1.0, 2, 3])})
        >>> [round(m[k], 6) for k in ("a/srcc", "b/srcc", "attribute_mean/srcc")]
        [1.0, -0.5, 0.25]
    """
    out: dict[str, float] = {}
    for ident, pred in predictions.items():
        metrics = metrics_of(np.asarray(pred), np.asarray(targets[ident]))
        for name in ATTRIBUTE_METRICS:
            out[f"{ident}/{name}"] = metrics[name]
        out[f"{ident}/n"] = float(len(pred))
    for name in ATTRIBUTE_METRICS:
        values = [out[f"{ident}/{name}"] for ident in predictions]
        finite = values and all(math.isfinite(v) for v in values)
        out[f"{ATTRIBUTE_MEAN}/{name}"] = float(np.mean(values)) if finite else float("nan")
    return out


def level_spec_document(
    levels: LevelsConfig, prompt: str, questions: Iterable[AttributeQuestion]
) -> dict[str, Any]:
    """How to read every score a trained model gives (written as ``artquant_spec.json`` by
    :func:`write_level_spec`, through ``artquant_model.spec_from_trainer_document``).

    Args:
        levels: level words and values (``levels``).
        prompt: the total score's prompt (what validation scores with).
        questions: one per trained attribute.

    Returns:
        ``{"name", "words", "values", "scale", "prompt", "questions": [{"id", "name",
        "question", "stem", "prompt"}, ...]}``; ``scale`` is ``[min(values), max(values)]``.
    """
    values = [float(v) for v in levels.values]
    defaults = LevelsConfig()
    same = levels.words == defaults.words and tuple(values) == defaults.values
    return {
        "name": "artquant" if same else "custom",
        "words": list(levels.words),
        "values": values,
        "scale": [min(values), max(values)],
        "prompt": prompt,
        "questions": [asdict(question) for question in questions],
    }


def write_level_spec(folder: Path, document: Mapping[str, Any]) -> Path:
    """Write the document as ``artquant_spec.json`` (an ``artquant_model.ScorerSpec``: the
    total and every trained attribute's question, each with the prompt validation scored
    with) into ``folder`` and return its path.

    Raises:
        ValueError: The document is no valid spec (see :func:`questions_and_level_spec`, which
            checks it when a run starts).
    """
    from artquant_model import spec_from_trainer_document

    return spec_from_trainer_document(document).save(folder)


def ordered_attributes(names: Iterable[str]) -> list[str]:
    """Attribute names in the table's order (APDDv2's columns), others after them, sorted.

    Example:
        >>> ordered_attributes(["Mood", "Brushwork", "Color"])
        ['Color', 'Mood', 'Brushwork']
    """
    from artquant_data import APDDV2_ATTRIBUTES

    rank = {name: index for index, name in enumerate(APDDV2_ATTRIBUTES)}
    unique = set(names)
    return sorted(unique, key=lambda n: (rank.get(n, len(rank)), n))


def questions_and_level_spec(
    config: TrainConfig,
    trained: Iterable[str],
    validated: Iterable[str],
    total_prompt: str,
) -> tuple[dict[str, AttributeQuestion], dict[str, Any]]:
    """The question of every attribute a run trains or validates, and its level spec.

    Args:
        config: the run configuration (``data.template``, ``validation.attribute_prompt``,
            ``levels``).
        trained: attribute names of the training samples trained on their level word.
        validated: attribute names of the validation file.
        total_prompt: the total score's prompt.

    Returns:
        ``({name: AttributeQuestion}, level spec document)``; the level spec lists the trained
        attributes only, in the table's order.

    Raises:
        ValueError: two attribute names share an id (the backbone's ``check_spec`` checks the
            whole release spec once the run knows its backbone).
    """
    trained_names = ordered_attributes(trained)
    every = ordered_attributes([*trained_names, *validated])
    check_attribute_ids(every)
    template, override = config.data.template, config.validation.attribute_prompt
    questions = {name: attribute_question(name, template, override) for name in every}
    document = level_spec_document(
        config.levels, total_prompt, [questions[name] for name in trained_names]
    )
    return questions, document


def check_attribute_ids(names: Sequence[str]) -> None:
    """Refuse two attribute names that share an id, or an id that clashes with the mean's key.

    Raises:
        ValueError: naming the clashing names.
    """
    from artquant_data import attribute_spec

    seen: dict[str, str] = {}
    for name in names:
        ident = attribute_spec(name).id
        if ident == ATTRIBUTE_MEAN or ident in seen:
            other = seen.get(ident, ATTRIBUTE_MEAN)
            raise ValueError(
                f"attribute names {other!r} and {name!r} share the id {ident!r}; rename one"
            )
        seen[ident] = name


__all__ = [
    "ATTRIBUTE_MEAN",
    "ATTRIBUTE_METRICS",
    "LEVEL_SPEC_FILE",
    "SPEC_FILE",
    "AttributeQuestion",
    "attribute_metrics",
    "attribute_prompt",
    "attribute_question",
    "check_attribute_ids",
    "level_spec_document",
    "ordered_attributes",
    "questions_and_level_spec",
    "read_attribute_items",
    "write_level_spec",
]
