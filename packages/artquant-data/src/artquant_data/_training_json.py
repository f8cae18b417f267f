"""Training samples and the training JSON files, ours and the original ArtQuant/DeQA-Score's.

The original format (``apdd_score.json``, ``apdd_description.json``; DeQA-Score's soft-label
files) is a JSON list of objects:

* score sample: ``id``, ``image``, ``gt_score``, ``level_probs`` (excellent..bad),
  ``conversations``; no ``task_type`` (the original reads a missing one as ``"score"``);
  DeQA-Score adds keys such as ``gt_score_norm``, ``level_probs_org``, ``std``, ``std_norm``;
* description sample: ``id``, ``image``, ``task_type: "description"``, ``conversations``.

Our format is the same list with ``task_type`` always written and optional ``attribute`` and
``source`` keys; it also allows ``task_type: "attribute"``, which the original trainer cannot
read (its score loss looks for "The quality of the painting is" in every non-description
answer), so attribute samples refuse to be written in the original format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from artquant_data._jsonio import parse_json, read_text

TaskType = Literal["score", "description", "attribute"]
"""What a sample teaches: a score answer, a description, or an attribute score answer."""
TrainingFormat = Literal["artquant", "original"]
"""``"artquant"`` (ours) or ``"original"`` (ArtQuant / DeQA-Score)."""

IMAGE_TOKEN = "<|image|>"
"""The image placeholder in a human turn (mPLUG-Owl2's ``DEFAULT_IMAGE_TOKEN``)."""

# Key order of written objects: the notebook's (id, image, gt_score, level_probs,
# conversations) and DeQA-Score's (id, image, gt_score, gt_score_norm, level_probs_org,
# level_probs, std, std_norm, conversations) are both subsequences, so files from either tool
# are written back byte for byte. Keys not listed here follow at the end, in read order.
_KEY_ORDER = (
    "id",
    "image",
    "task_type",
    "gt_score",
    "gt_score_norm",
    "level_probs_org",
    "level_probs",
    "std",
    "std_norm",
    "attribute",
    "source",
    "conversations",
)
_KNOWN_KEYS = (
    "id",
    "image",
    "task_type",
    "gt_score",
    "level_probs",
    "attribute",
    "source",
    "conversations",
)


class Turn(BaseModel):
    """One conversation turn: ``{"from": "human" | "gpt", "value": text}``.

    The speaker is the ``from_`` attribute (``from`` is a Python keyword) and ``"from"`` in
    JSON.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    from_: Literal["human", "gpt"] = Field(alias="from")
    value: str

    @property
    def role(self) -> str:
        """The speaker, ``"human"`` or ``"gpt"`` (same as ``from_``)."""
        return self.from_

    def to_json(self) -> dict[str, str]:
        """The turn as the JSON object the original code reads."""
        return {"from": self.from_, "value": self.value}


class TrainingSample(BaseModel):
    """One training sample, in either training-JSON format.

    Attributes:
        id: Sample id; the original uses ``"<image>-><score>"``.
        image: Image path relative to the training image folder (``None``: text only).
        conversations: Human turn (prompt + ``"\\n<|image|>"``) and gpt answer.
        task_type: ``"score"``, ``"description"`` or ``"attribute"``.
        gt_score: The human score the answer is about (score and attribute samples).
        level_probs: Soft target over the levels, best first (score and attribute samples).
        attribute: The attribute name of an attribute sample.
        source: Dataset name.
        extra: Any further keys read from a file (e.g. DeQA-Score's ``std``), written back.

    Example:
        >>> s = TrainingSample(id="a.jpg->6.5", image="a.jpg", conversations=[
        ...     {"from": "human", "value": "Rate the quality of this painting.\\n<|image|>"},
        ...     {"from": "gpt", "value": "The quality of the painting is good."}],
        ...     gt_score=6.5, level_probs=[0.003, 0.605, 0.376, 0.017, 0.0])
        >>> s.answer
        'The quality of the painting is good.'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    image: str | None
    conversations: tuple[Turn, ...] = Field(min_length=2)
    task_type: TaskType = "score"
    gt_score: float | None = None
    level_probs: tuple[float, ...] | None = None
    attribute: str | None = None
    source: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("conversations")
    @classmethod
    def _turns(cls, turns: tuple[Turn, ...]) -> tuple[Turn, ...]:
        if turns[0].from_ != "human" or turns[-1].from_ != "gpt":
            raise ValueError("conversations must start with a human turn and end with a gpt turn")
        return turns

    @field_validator("gt_score")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"gt_score must be finite, got {value}")
        return value

    @property
    def prompt(self) -> str:
        """The first human turn's text."""
        return self.conversations[0].value

    @property
    def answer(self) -> str:
        """The last gpt turn's text."""
        return self.conversations[-1].value

    def to_json(self, format: TrainingFormat = "artquant") -> dict[str, Any]:
        """The sample as a JSON object in the given format.

        Args:
            format: ``"artquant"`` or ``"original"``.

        Returns:
            A dict ready for ``json.dumps``.

        Raises:
            ValueError: If the sample cannot be expressed in the original format (an
                attribute sample, or a score sample without ``level_probs``).
        """
        out: dict[str, Any] = {"id": self.id}
        if self.image is not None:
            out["image"] = self.image
        if format == "original":
            if self.task_type == "attribute":
                raise ValueError(
                    f"sample {self.id!r}: attribute samples cannot be written in the original"
                    " format (its trainer treats them as quality scores); use format='artquant'"
                )
            if self.task_type == "description":
                out["task_type"] = "description"
            elif self.level_probs is None or self.gt_score is None:
                raise ValueError(
                    f"sample {self.id!r}: a score sample needs gt_score and level_probs in the"
                    " original format"
                )
        elif format == "artquant":
            out["task_type"] = self.task_type
        else:
            raise ValueError(f"format must be 'artquant' or 'original', got {format!r}")
        if self.gt_score is not None:
            out["gt_score"] = self.gt_score
        if self.level_probs is not None:
            out["level_probs"] = list(self.level_probs)
        if format == "artquant":
            if self.attribute is not None:
                out["attribute"] = self.attribute
            if self.source is not None:
                out["source"] = self.source
        out["conversations"] = [t.to_json() for t in self.conversations]
        for key, value in self.extra.items():
            out.setdefault(key, value)
        rank = {k: i for i, k in enumerate(_KEY_ORDER)}
        ordered = sorted(out, key=lambda k: rank.get(k, len(rank)))  # stable for the rest
        return {k: out[k] for k in ordered}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrainingSample:
        """Build a sample from a JSON object of either format (unknown keys go to ``extra``).

        Args:
            obj: The object.

        Returns:
            The sample.

        Raises:
            ValueError: If required keys are missing or values are invalid.
        """
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in ("id", "conversations") if k not in obj]
        if missing:
            raise ValueError(f"missing key(s) {missing}; present: {sorted(obj)}")
        fields = {k: obj[k] for k in _KNOWN_KEYS if k in obj}
        fields.setdefault("image", None)
        fields["id"] = str(fields["id"])
        extra = {k: v for k, v in obj.items() if k not in _KNOWN_KEYS}
        return cls(**fields, extra=extra)


def read_training_json(path: str | Path) -> list[TrainingSample]:
    """Read a training file in our format or the original ArtQuant / DeQA-Score format.

    Accepts a JSON list of objects (both formats) or JSON Lines. A sample without
    ``task_type`` is a score sample, as in the original.

    Args:
        path: The file.

    Returns:
        The samples, in file order.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: On invalid JSON or an invalid sample (naming its index and id).

    Example:
        >>> samples = read_training_json("apdd_score.json")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training file not found: {path}")
    text = read_text(path)
    # a JSON list (the original tools) or JSON Lines, whatever the file's extension
    objects = parse_json(text, path, lines=not text.lstrip().startswith("["))
    samples = []
    for i, obj in enumerate(objects):
        try:
            samples.append(TrainingSample.from_json(obj))
        except (ValidationError, ValueError) as exc:
            ident = obj.get("id") if isinstance(obj, dict) else None
            raise ValueError(f"{path} sample {i} (id {ident!r}): {exc}") from exc
    return samples


def write_training_json(
    samples: Iterable[TrainingSample],
    path: str | Path,
    format: TrainingFormat = "artquant",
    *,
    indent: int | None = 4,
) -> Path:
    """Write samples as a JSON list, in our format or the original's.

    The original format is what ArtQuant's ``SingleDataset`` and DeQA-Score read: a JSON list
    (``indent=4`` like the original tools), score samples without ``task_type``, description
    samples with ``task_type: "description"``, and no keys the original does not know apart
    from extras read from an original file.

    Args:
        samples: The samples.
        path: Output file (parent folders are created).
        format: ``"artquant"`` or ``"original"``.
        indent: JSON indentation (``None`` for one line).

    Returns:
        The path written.

    Raises:
        ValueError: If ``format`` is unknown or a sample cannot be expressed in it; nothing is
            written then.
    """
    if format not in ("artquant", "original"):
        raise ValueError(f"format must be 'artquant' or 'original', got {format!r}")
    objects = [s.to_json(format) for s in samples]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # The original tools write ``json.dumps(list, indent=4)``: ASCII escapes, no final newline.
    original = format == "original"
    text = json.dumps(objects, indent=indent, ensure_ascii=original) + ("" if original else "\n")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


__all__ = [
    "IMAGE_TOKEN",
    "TaskType",
    "TrainingFormat",
    "TrainingSample",
    "Turn",
    "read_training_json",
    "write_training_json",
]
