"""Result types of the SDK."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["AttributeScore", "ScoreResult"]


def _check_level(level: str, probs: dict[str, float], score: float, std: float) -> None:
    if level not in probs:
        raise ValueError(f"level {level!r} is not one of the level words {list(probs)}")
    if not (math.isfinite(score) and math.isfinite(std)) or std < 0:
        raise ValueError(f"score {score} and std {std} must be finite, std >= 0")


class AttributeScore(BaseModel):
    """One attribute's score of one image (APDDv2's "color", "light_and_shadow", ...).

    Read as the total is, with the attribute's own question and answer stem, on the same level
    words, values and scale.

    Attributes:
        score: The expected level value on the model's scale.
        std: The standard deviation of the level value under the level distribution.
        probs: Level word -> probability, in the model's level order.
        level: The most probable level word.

    Example:
        >>> AttributeScore(score=7.5, std=0.0, probs={"good": 1.0, "bad": 0.0}, level="good").level
        'good'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    score: float
    std: float
    probs: dict[str, float]
    level: str

    @model_validator(mode="after")
    def _check(self) -> AttributeScore:
        _check_level(self.level, self.probs, self.score, self.std)
        return self


class ScoreResult(BaseModel):
    """The score of one image, with its uncertainty and level distribution.

    Attributes:
        image: The image's id: its path for files, otherwise ``"<kind>#<index>"`` (for
            example ``"<PIL.Image>#0"``) or the PIL image's own ``filename``.
        score: The expected level value ``sum_k p_k * v_k`` on the model's scale.
        std: The standard deviation of the level value under the level distribution,
            ``sqrt(sum_k p_k * (v_k - score)**2)``; 0 when the model is certain.
        probs: Level word -> probability (closed-set softmax over the level words), in the
            model's level order (for ArtQuant: excellent, good, fair, poor, bad).
        level: The most probable level word.
        scale: ``(min, max)`` of the score: ``(1.0, 10.0)`` for ArtQuant, ``(1.0, 5.0)`` for
            OneAlign, ``(0.0, 1.0)`` for the Q-Align scorer.
        attributes: Attribute name -> :class:`AttributeScore`, for the attributes asked for
            (``ArtQuant.score(..., attributes=...)``); empty otherwise.

    Example:
        >>> r = ScoreResult(image="a.png", score=7.5, std=0.0, level="good",
        ...                 probs={"excellent": 0.0, "good": 1.0}, scale=(1.0, 10.0))
        >>> r.level, r.scale
        ('good', (1.0, 10.0))
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str
    score: float
    std: float
    probs: dict[str, float]
    level: str
    scale: tuple[float, float]
    attributes: dict[str, AttributeScore] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ScoreResult:
        _check_level(self.level, self.probs, self.score, self.std)
        return self
