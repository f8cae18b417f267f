"""Build training samples (score, description, attribute) from records, seeded."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np

from artquant_data._attributes import APDDV2_ATTRIBUTE_SPECS, AttributeSpec, attribute_spec
from artquant_data._distribution import (
    ARTQUANT_LEVEL_VALUES,
    LEVEL_NAMES,
    estimate_level_distribution,
    hard_level,
    level_distribution_from_histogram,
    level_distribution_from_mean_std,
)
from artquant_data._records import ArtRecord
from artquant_data._training_json import IMAGE_TOKEN, TrainingSample, Turn

logger = logging.getLogger(__name__)

SCORE_PROMPTS: tuple[str, ...] = (
    "Rate the quality of this painting.",
    "How would you rate the quality of this painting?",
    "How would you judge the quality of this painting?",
    "How do you assess the quality of this painting?",
    "Could you evaluate the quality of this painting?",
    "What is your quality rating for this painting?",
    "Can you rate the quality of this painting?",
    "What do you think about the quality of this painting?",
    "Can you judge the quality of this painting?",
    "What's your opinion on the quality of this painting?",
)
"""The original ten score prompts (``preprocess.ipynb``), one drawn per sample."""
SCORE_ANSWER = "The quality of the painting is {level}."
"""The original score answer; ``{level}`` is the hard level word."""

ATTRIBUTE_PROMPTS: tuple[str, ...] = (
    "Rate the {attribute} of this painting.",
    "How would you rate the {attribute} of this painting?",
    "How would you judge the {attribute} of this painting?",
    "How do you assess the {attribute} of this painting?",
    "Could you evaluate the {attribute} of this painting?",
    "What is your rating of the {attribute} of this painting?",
    "Can you rate the {attribute} of this painting?",
    "What do you think about the {attribute} of this painting?",
    "Can you judge the {attribute} of this painting?",
    "What's your opinion on the {attribute} of this painting?",
)
"""Attribute prompts (ours; the original never trained on attributes). The second one is the
canonical scoring question (:attr:`AttributeSpec.question`). The picture comes first in an
attribute sample's human turn, so that one pass over the picture can serve every question."""
ATTRIBUTE_ANSWER = "{stem} {level}."
"""Attribute answer: the attribute's stem (:attr:`AttributeSpec.stem`) and the level word."""

ATTRIBUTE_PHRASES: dict[str, str] = {spec.name: spec.phrase for spec in APDDV2_ATTRIBUTE_SPECS}
"""How APDDv2's attribute names read inside a sentence ("the color of this painting")."""

DESCRIPTION_PROMPTS: tuple[str, ...] = (
    "Describe the aesthetics of this painting.",
    "Describe this painting from perception to cognition to emotion.",
    "What are the aesthetic qualities of this painting?",
    "Give a hierarchical aesthetic description of this painting.",
    "How would you describe the aesthetics of this painting?",
)
"""Description prompts (ours: the original's prompt text was not released)."""

Distribution = Literal["score", "mean_std", "histogram"]
"""Which soft target: Score-Based Distribution Estimation (the paper), DeQA or AVA style."""


def _human(prompt: str) -> Turn:
    return Turn.model_validate({"from": "human", "value": f"{prompt}\n{IMAGE_TOKEN}"})


def _human_picture_first(prompt: str) -> Turn:
    return Turn.model_validate({"from": "human", "value": f"{IMAGE_TOKEN}\n{prompt}"})


def _gpt(text: str) -> Turn:
    return Turn.model_validate({"from": "gpt", "value": text})


def _format_score(value: float) -> str:
    # the notebook's ``str(Score)`` of a float read by pandas: "1.833", "3.0"
    return str(float(value))


def _level_probs(
    records: Sequence[ArtRecord],
    targets: np.ndarray,
    values: Sequence[float],
    distribution: Distribution,
    target_scale: tuple[float, float],
) -> np.ndarray:
    if distribution == "score":
        return estimate_level_distribution(targets, values)
    if distribution == "mean_std":
        missing = [r.image for r in records if r.std is None]
        if missing:
            raise ValueError(
                f"distribution='mean_std' needs a std on every record; {len(missing)} lack one,"
                f" e.g. {missing[:3]}"
            )
        stds = np.array([r.std_on(*target_scale) for r in records], dtype=np.float64)
        return level_distribution_from_mean_std(targets, stds, values)
    if distribution == "histogram":
        rows = []
        for r in records:
            if r.votes is None:
                raise ValueError(f"distribution='histogram' needs votes; {r.image!r} has none")
            n = len(r.votes)
            # bin b of n spans the record's scale evenly; its score is mapped to target_scale
            bins = np.linspace(r.scale[0], r.scale[1], n) if n > 1 else np.array([r.score])
            low, high = r.scale
            bins = target_scale[0] + (bins - low) / (high - low) * (
                target_scale[1] - target_scale[0]
            )
            rows.append(level_distribution_from_histogram(r.votes, bins, values))
        return np.stack(rows) if rows else np.zeros((0, len(values)))
    raise ValueError(
        f"distribution must be 'score', 'mean_std' or 'histogram', got {distribution!r}"
    )


def build_score_samples(
    records: Iterable[ArtRecord],
    *,
    seed: int = 0,
    values: Sequence[float] = ARTQUANT_LEVEL_VALUES,
    names: Sequence[str] = LEVEL_NAMES,
    target_scale: tuple[float, float] = (0.0, 10.0),
    distribution: Distribution = "score",
) -> list[TrainingSample]:
    """Score samples as the original notebook builds them.

    For each record: ``gt_score`` is the score mapped onto ``target_scale`` (APDDv2 and BAID
    are already 0–10), ``level_probs`` its level distribution, the prompt one of the ten
    :data:`SCORE_PROMPTS` drawn with ``random.Random(seed)``, the answer
    ``"The quality of the painting is {hard level}."`` and the id ``"<image>-><score>"``.

    Args:
        records: The records.
        seed: Seed of the prompt choice; the same seed gives the same samples.
        values: Level values, aligned with ``names``.
        names: Level words, best first.
        target_scale: Scale the level values live on.
        distribution: ``"score"`` (the paper's Score-Based Distribution Estimation),
            ``"mean_std"`` (DeQA style, needs ``std``) or ``"histogram"`` (needs ``votes``,
            bins spread evenly over the record's scale).

    Returns:
        One sample per record, in order.

    Raises:
        ValueError: If the chosen distribution needs data a record lacks.

    Example:
        >>> rec = ArtRecord(image="a.jpg", score=7.5, source="demo")
        >>> build_score_samples([rec])[0].answer
        'The quality of the painting is good.'
    """
    recs = list(records)
    targets = np.array([r.score_on(*target_scale) for r in recs], dtype=np.float64)
    probs = _level_probs(recs, targets, values, distribution, target_scale)
    rng = random.Random(seed)
    samples = []
    for rec, target, p in zip(recs, targets, probs, strict=True):
        level = hard_level(float(target), values, names)
        samples.append(
            TrainingSample(
                id=f"{rec.image}->{_format_score(target)}",
                image=rec.image,
                conversations=(
                    _human(rng.choice(SCORE_PROMPTS)),
                    _gpt(SCORE_ANSWER.format(level=level)),
                ),
                task_type="score",
                gt_score=float(target),
                level_probs=tuple(float(x) for x in p),
                source=rec.source,
            )
        )
    return samples


def _attribute_specs(phrases: Mapping[str, str] | None) -> dict[str, AttributeSpec]:
    """Attribute name -> spec: the canonical table, or a phrase given for a name."""
    return {
        name: AttributeSpec.from_name(name, phrase=phrase, column=attribute_spec(name).column)
        for name, phrase in (phrases or {}).items()
    }


def build_attribute_samples(
    records: Iterable[ArtRecord],
    *,
    attributes: Sequence[str] | None = None,
    seed: int = 0,
    values: Sequence[float] = ARTQUANT_LEVEL_VALUES,
    names: Sequence[str] = LEVEL_NAMES,
    target_scale: tuple[float, float] = (0.0, 10.0),
    phrases: Mapping[str, str] | None = None,
    prompts: Sequence[str] = ATTRIBUTE_PROMPTS,
) -> list[TrainingSample]:
    """Attribute samples: the picture, then e.g. "How would you rate the color of this painting?".

    One sample per record and rated attribute; an attribute that is ``None`` (an empty cell:
    not rated for this painting) gives no sample and is never read as 0. Each attribute score
    is mapped from the record's ``attribute_scale`` onto ``target_scale`` (verbatim when they
    are equal, as for APDDv2's 0–10 attributes) and gets its own Score-Based Distribution
    Estimation. The human turn is ``"<|image|>\n<question>"`` (picture first), the answer
    ``"<stem> <level>."`` with the attribute's stem from :func:`attribute_spec`
    (``"The color of the painting is good."``).

    Args:
        records: The records.
        attributes: Attribute names to use; default every attribute of each record.
        seed: Seed of the prompt choice.
        values: Level values.
        names: Level words.
        target_scale: Scale the level values live on.
        phrases: Attribute name -> phrase, overriding the table's (or, for a name outside
            it, the lower-cased name).
        prompts: Question templates with ``{attribute}`` for the phrase, one drawn per
            sample; default the ten :data:`ATTRIBUTE_PROMPTS`.

    Returns:
        The samples, record by record, attributes in record order.

    Raises:
        ValueError: If a record with rated attributes has no ``attribute_scale``, or
            ``prompts`` is empty.

    Example:
        >>> rec = ArtRecord(image="a.jpg", score=6.0, attributes={"Color": 8.2, "Mood": None},
        ...                 attribute_scale=(0, 10))
        >>> [s.answer for s in build_attribute_samples([rec])]
        ['The color of the painting is excellent.']
    """
    if not prompts:
        raise ValueError("prompts must not be empty")
    overrides = _attribute_specs(phrases)
    wanted = None if attributes is None else list(attributes)
    rows: list[tuple[ArtRecord, AttributeSpec, float]] = []
    for rec in records:
        for name, value in rec.attributes.items():
            if value is None or (wanted is not None and name not in wanted):
                continue
            if rec.attribute_scale is None:
                raise ValueError(f"{rec.image!r} has attribute scores but no attribute_scale")
            low, high = rec.attribute_scale
            if (float(low), float(high)) == (float(target_scale[0]), float(target_scale[1])):
                target = value  # verbatim on its own scale
            else:
                span = target_scale[1] - target_scale[0]
                target = target_scale[0] + (value - low) / (high - low) * span
            rows.append((rec, overrides.get(name) or attribute_spec(name), target))
    targets = np.array([t for _, _, t in rows], dtype=np.float64)
    probs = estimate_level_distribution(targets, values) if rows else np.zeros((0, len(values)))
    rng = random.Random(seed)
    choices = list(prompts)
    samples = []
    for (rec, spec, target), p in zip(rows, probs, strict=True):
        level = hard_level(target, values, names)
        samples.append(
            TrainingSample(
                id=f"{rec.image}->{spec.name}->{_format_score(target)}",
                image=rec.image,
                conversations=(
                    _human_picture_first(rng.choice(choices).format(attribute=spec.phrase)),
                    _gpt(ATTRIBUTE_ANSWER.format(stem=spec.stem, level=level)),
                ),
                task_type="attribute",
                gt_score=float(target),
                level_probs=tuple(float(x) for x in p),
                attribute=spec.name,
                source=rec.source,
            )
        )
    return samples


def build_description_samples(
    records: Iterable[ArtRecord],
    *,
    seed: int = 0,
    prompts: Sequence[str] = DESCRIPTION_PROMPTS,
) -> list[TrainingSample]:
    """Description samples (``task_type: "description"``) from records that carry one.

    The answer is :meth:`HierarchicalDescription.as_text`. Records without a description give
    no sample; how many is logged.

    Args:
        records: The records.
        seed: Seed of the prompt choice.
        prompts: Prompts to draw from.

    Returns:
        One sample per record with a description.

    Raises:
        ValueError: If ``prompts`` is empty.
    """
    if not prompts:
        raise ValueError("prompts must not be empty")
    rng = random.Random(seed)
    samples = []
    without = 0
    for rec in records:
        if rec.description is None:
            without += 1
            continue
        samples.append(
            TrainingSample(
                id=f"{rec.image}->description",
                image=rec.image,
                conversations=(_human(rng.choice(list(prompts))), _gpt(rec.description.as_text())),
                task_type="description",
                source=rec.source,
            )
        )
    if without:
        logger.info("%d record(s) have no description and give no description sample", without)
    return samples


__all__ = [
    "ATTRIBUTE_ANSWER",
    "ATTRIBUTE_PHRASES",
    "ATTRIBUTE_PROMPTS",
    "DESCRIPTION_PROMPTS",
    "SCORE_ANSWER",
    "SCORE_PROMPTS",
    "build_attribute_samples",
    "build_description_samples",
    "build_score_samples",
]
