"""Build training samples (score, description, attribute) from records, seeded."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np

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
"""Attribute prompts (ours; the original never trained on attributes)."""
ATTRIBUTE_ANSWER = "The {attribute} of the painting is {level}."
"""Attribute answer; ``{attribute}`` is the attribute phrase, ``{level}`` the level word."""

ATTRIBUTE_PHRASES: dict[str, str] = {
    "Theme and logic": "theme and logic",
    "Creativity": "creativity",
    "Layout and composition": "layout and composition",
    "Space and perspective": "space and perspective",
    "The sense of order": "sense of order",
    "Light and shadow": "light and shadow",
    "Color": "color",
    "Details and texture": "details and texture",
    "The overall": "overall effect",
    "Mood": "mood",
}
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


def build_attribute_samples(
    records: Iterable[ArtRecord],
    *,
    attributes: Sequence[str] | None = None,
    seed: int = 0,
    values: Sequence[float] = ARTQUANT_LEVEL_VALUES,
    names: Sequence[str] = LEVEL_NAMES,
    target_scale: tuple[float, float] = (0.0, 10.0),
    phrases: Mapping[str, str] | None = None,
) -> list[TrainingSample]:
    """Attribute samples ("How would you rate the color of this painting?").

    One sample per record and rated attribute (``None`` means not rated: no sample). The
    level distribution is Score-Based Distribution Estimation of the attribute score mapped
    onto ``target_scale``; the answer is ``"The {phrase} of the painting is {level}."``.

    Args:
        records: The records.
        attributes: Attribute names to use; default every attribute of each record.
        seed: Seed of the prompt choice.
        values: Level values.
        names: Level words.
        target_scale: Scale the level values live on.
        phrases: Attribute name -> phrase; default :data:`ATTRIBUTE_PHRASES`, else the
            lower-cased name.

    Returns:
        The samples, record by record, attributes in record order.

    Raises:
        ValueError: If a record with rated attributes has no ``attribute_scale``.

    Example:
        >>> rec = ArtRecord(image="a.jpg", score=6.0, attributes={"Color": 8.2, "Mood": None},
        ...                 attribute_scale=(0, 10))
        >>> [s.answer for s in build_attribute_samples([rec])]
        ['The color of the painting is excellent.']
    """
    phrase_map = dict(ATTRIBUTE_PHRASES if phrases is None else phrases)
    wanted = None if attributes is None else list(attributes)
    rows: list[tuple[ArtRecord, str, float]] = []
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
            rows.append((rec, name, target))
    targets = np.array([t for _, _, t in rows], dtype=np.float64)
    probs = estimate_level_distribution(targets, values) if rows else np.zeros((0, len(values)))
    rng = random.Random(seed)
    samples = []
    for (rec, name, target), p in zip(rows, probs, strict=True):
        phrase = phrase_map.get(name, name.lower())
        level = hard_level(target, values, names)
        samples.append(
            TrainingSample(
                id=f"{rec.image}->{name}->{_format_score(target)}",
                image=rec.image,
                conversations=(
                    _human(rng.choice(ATTRIBUTE_PROMPTS).format(attribute=phrase)),
                    _gpt(ATTRIBUTE_ANSWER.format(attribute=phrase, level=level)),
                ),
                task_type="attribute",
                gt_score=float(target),
                level_probs=tuple(float(x) for x in p),
                attribute=name,
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
