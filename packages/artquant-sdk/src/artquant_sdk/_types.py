"""Result types of the SDK."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["ScoreResult"]


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

    @model_validator(mode="after")
    def _check(self) -> ScoreResult:
        if self.level not in self.probs:
            raise ValueError(
                f"level {self.level!r} is not one of the level words {list(self.probs)}"
            )
        if not (math.isfinite(self.score) and math.isfinite(self.std)) or self.std < 0:
            raise ValueError(f"score {self.score} and std {self.std} must be finite, std >= 0")
        return self
