"""Typed, frozen records of rated artworks, as every loader returns them."""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Split = Literal["train", "val", "test"]
"""Split names; loaders map a dataset's own names (APDDv2's ``valid``) onto these."""

_SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


def normalise_split(name: str) -> Split:
    """Map a split name (``train``/``valid``/``validation``/``val``/``test``...) onto :data:`Split`.

    Args:
        name: A split name, case-insensitive.

    Returns:
        ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        ValueError: For an unknown name.

    Example:
        >>> normalise_split("valid")
        'val'
    """
    key = str(name).strip().lower()
    if key not in _SPLIT_ALIASES:
        raise ValueError(f"unknown split {name!r}; allowed: {sorted(_SPLIT_ALIASES)}")
    return _SPLIT_ALIASES[key]  # type: ignore[return-value]


def check_relative_image_path(path: str) -> str:
    """Validate an image reference: relative, POSIX separators, never leaving its root.

    Args:
        path: The reference, e.g. ``"oil/0001.jpg"``.

    Returns:
        The normalised reference (backslashes turned into slashes, ``./`` removed).

    Raises:
        ValueError: If it is empty, absolute, or contains ``..``.
    """
    text = str(path).strip().replace("\\", "/")
    if not text:
        raise ValueError("image path is empty")
    pure = PurePosixPath(text)
    if pure.is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise ValueError(f"image path must be relative to the image root, got {path!r}")
    if ".." in pure.parts:
        raise ValueError(f"image path must not contain '..' (escapes the image root): {path!r}")
    return pure.as_posix()


class HierarchicalDescription(BaseModel):
    """ArtQuant's three-level aesthetic description (RAD): perception, cognition, emotion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    perception: str = Field(description="Colour, line, composition, light and shadow.")
    cognition: str | None = Field(default=None, description="Subject, symbolism, technique.")
    emotion: str | None = Field(default=None, description="Mood, atmosphere, resonance.")

    @field_validator("perception")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("perception must not be empty")
        return value

    @property
    def depth(self) -> int:
        """How many levels are present: 1 (perception), 2 (+cognition) or 3 (+emotion)."""
        if self.cognition is None:
            return 1
        return 2 if self.emotion is None else 3

    def as_text(self) -> str:
        """The description as one answer text, one paragraph per present level."""
        parts = [self.perception, self.cognition, self.emotion]
        return "\n\n".join(p.strip() for p in parts if p is not None and p.strip())


class ArtRecord(BaseModel):
    """One rated artwork.

    Attributes:
        image: Path of the image relative to an image root (POSIX separators).
        score: Mean score on ``scale``.
        scale: ``(low, high)`` of the score scale, e.g. ``(0, 10)``.
        std: Rater standard deviation on ``scale``, where known.
        n_ratings: Number of ratings, where known.
        votes: Vote histogram (counts per rating bin), where known.
        attributes: Per-attribute scores; ``None`` means "not rated" (never 0).
        attribute_scale: ``(low, high)`` of the attribute scores.
        category: Dataset category, e.g. APDDv2's ``"oil painting*romanticism*landscapes"``.
        split: ``"train"``, ``"val"`` or ``"test"`` where the dataset defines one.
        source: Dataset name, e.g. ``"apddv2"``.
        comment: Free-text human comment.
        description: Hierarchical description, where one is attached.

    Example:
        >>> ArtRecord(image="a.jpg", score=6.5, scale=(0, 10), source="mine").normalised_score
        0.65
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str
    score: float
    scale: tuple[float, float] = (0.0, 10.0)
    std: float | None = None
    n_ratings: int | None = Field(default=None, ge=0)
    votes: tuple[int, ...] | None = None
    attributes: dict[str, float | None] = Field(default_factory=dict)
    attribute_scale: tuple[float, float] | None = None
    category: str | None = None
    split: Split | None = None
    source: str = "custom"
    comment: str | None = None
    description: HierarchicalDescription | None = None

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        return check_relative_image_path(value)

    @field_validator("split", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return normalise_split(str(value)) if isinstance(value, str) else value

    @field_validator("votes")
    @classmethod
    def _votes(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and any(v < 0 for v in value):
            raise ValueError(f"votes must be non-negative counts, got {value}")
        return value

    @model_validator(mode="after")
    def _check(self) -> ArtRecord:
        low, high = self.scale
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"scale must be finite with low < high, got {self.scale}")
        if not math.isfinite(self.score):
            raise ValueError(f"score must be finite, got {self.score} for {self.image!r}")
        if not low <= self.score <= high:
            raise ValueError(f"score {self.score} of {self.image!r} is outside scale {self.scale}")
        if self.std is not None and not (math.isfinite(self.std) and self.std >= 0):
            raise ValueError(f"std must be finite and >= 0, got {self.std} for {self.image!r}")
        for name, val in self.attributes.items():
            if val is not None and not math.isfinite(val):
                raise ValueError(f"attribute {name!r} of {self.image!r} is not finite: {val}")
        return self

    @property
    def image_id(self) -> str:
        """The image file name without directories and extension (``"a/b/x.jpg"`` -> ``"x"``)."""
        return PurePosixPath(self.image).stem

    @property
    def normalised_score(self) -> float:
        """The score mapped onto [0, 1]."""
        low, high = self.scale
        return (self.score - low) / (high - low)

    def score_on(self, low: float, high: float) -> float:
        """The score linearly mapped onto another scale.

        Args:
            low: New scale minimum.
            high: New scale maximum.

        Returns:
            The rescaled score (exactly ``score`` when the scale is the record's own).
        """
        if (float(low), float(high)) == self.scale:
            return self.score  # no round trip through [0, 1]: ids and gt_score stay verbatim
        return low + self.normalised_score * (high - low)

    def std_on(self, low: float, high: float) -> float | None:
        """The rater std on another scale (``None`` where unknown)."""
        if self.std is None:
            return None
        return self.std * (high - low) / (self.scale[1] - self.scale[0])

    def rated_attributes(self) -> dict[str, float]:
        """Only the attributes that were rated."""
        return {k: v for k, v in self.attributes.items() if v is not None}


__all__ = [
    "ArtRecord",
    "HierarchicalDescription",
    "Split",
    "check_relative_image_path",
    "normalise_split",
]
