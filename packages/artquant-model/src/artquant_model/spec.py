"""The scorer spec: level words and values, the questions with their answer stems, resolution.

A trained ArtQuant model carries its spec in a small JSON file in its folder
(:data:`SPEC_FILENAME`, ``artquant_spec.json``), so that a release scores on its own scale and
with its own prompt without flags. A folder without one (a base model used zero-shot) gets
:data:`ARTQUANT_SPEC`: the question "How would you rate the quality of this painting?", the
answer stem "The quality of the painting is", the five words with values 10, 7.5, 5, 3.5, 1, the
chat template's own default system prompt and the image processor's native resolution.

The spec names its questions: ``"total"`` (always present, the score) and, for models trained on
attributes, any number of others ("color", "light_and_shadow", ...), each with its own prompt
and stem, all read on the same level words and values.

Example:
    >>> ARTQUANT_SPEC.question().stem
    'The quality of the painting is'
    >>> ARTQUANT_SPEC.words
    ('excellent', 'good', 'fair', 'poor', 'bad')
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from artquant_model._prompts import DEFAULT_IMAGE_TOKEN, QALIGN_SCORE_PROMPT
from artquant_model.levels import (
    check_finite_values,
    check_level_words,
    check_levels_on_scale,
)

logger = logging.getLogger(__name__)

#: The spec's file name inside a model folder.
SPEC_FILENAME = "artquant_spec.json"
#: What artquant-train wrote before it wrote :data:`SPEC_FILENAME` (read when that is absent).
LEGACY_LEVEL_SPEC_FILENAME = "level_spec.json"
#: The name of the question whose answer is the score.
TOTAL = "total"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Question(BaseModel):
    """One scoring question: what is asked and how the answer starts.

    Attributes:
        prompt: The user's question, shown after the picture (chat-template backbones).
        stem: The start of the assistant's answer; the next token is read as the level word.
        raw_prompt: Optional complete prompt in the backbone's own conversation format, with
            ``<|image|>`` where the picture goes and ending with the stem, for backbones without
            a chat template (mPLUG-Owl2). None: built from ``prompt`` and ``stem``.

    Example:
        >>> Question(prompt="How is the color?", stem="The color of the painting is").stem
        'The color of the painting is'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str = Field(min_length=1)
    stem: str = Field(min_length=1)
    raw_prompt: str | None = None

    @field_validator("stem")
    @classmethod
    def _stem_clean(cls, stem: str) -> str:
        if stem != stem.rstrip():
            raise ValueError(
                f"the stem {stem!r} must not end in whitespace: the level word follows it with "
                "its own leading space"
            )
        return stem

    @field_validator("raw_prompt")
    @classmethod
    def _one_image(cls, raw: str | None) -> str | None:
        if raw is not None and raw.count(DEFAULT_IMAGE_TOKEN) != 1:
            raise ValueError(
                f"raw_prompt must hold {DEFAULT_IMAGE_TOKEN!r} exactly once, it holds "
                f"{raw.count(DEFAULT_IMAGE_TOKEN)}"
            )
        return raw


class Resolution(BaseModel):
    """How pictures are sized for a backbone whose token count depends on the picture's size.

    Attributes:
        mode: ``"native"``: the image processor's own resizing (each picture keeps its aspect
            ratio; its pixel count is clamped to ``[min_pixels, max_pixels]``), so token counts
            differ between pictures; ``"fixed"``: every picture is padded to a square with the
            mean colour and resized to ``size`` x ``size``, so every picture gives the same
            tokens.
        size: The side in pixels for ``"fixed"`` (rounded by the backbone to its patch grid).
        min_pixels: For ``"native"``: the least pixels after resizing (None: the processor's).
        max_pixels: For ``"native"``: the most pixels after resizing (None: the processor's).

    Example:
        >>> Resolution(mode="fixed", size=448).size
        448
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["native", "fixed"] = "native"
    size: int | None = Field(default=None, ge=1)
    min_pixels: int | None = Field(default=None, ge=1)
    max_pixels: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Resolution:
        if self.mode == "fixed":
            if self.size is None:
                raise ValueError("resolution mode 'fixed' needs size (pixels per side)")
            if self.min_pixels is not None or self.max_pixels is not None:
                raise ValueError("min_pixels/max_pixels apply only to resolution mode 'native'")
        else:
            if self.size is not None:
                raise ValueError("size applies only to resolution mode 'fixed'")
            if (
                self.min_pixels is not None
                and self.max_pixels is not None
                and self.min_pixels > self.max_pixels
            ):
                raise ValueError(
                    f"min_pixels {self.min_pixels} is larger than max_pixels {self.max_pixels}"
                )
        return self


class ScorerSpec(BaseModel):
    """Level words, values, scale, questions and resolution of a scorer (frozen, validated).

    Attributes:
        name: A short identifier ("artquant").
        words: The level words, best first, without spaces (the tokenizer's leading space is
            added when their ids are looked up after the stem).
        values: The value of each word.
        scale: ``(min, max)`` of the score; every value lies inside.
        questions: By name; ``"total"`` is required (the score). Names are lower-case
            identifiers (``[a-z][a-z0-9_]*``), so they can become column names.
        system_prompt: The system message; None keeps the chat template's own default.
        resolution: Picture sizing (see :class:`Resolution`); mPLUG-Owl2 always uses its fixed
            448 px and ignores it.

    Raises:
        pydantic.ValidationError: (a ``ValueError``) for unequal counts, duplicate or blank
            words, non-finite values, values outside ``scale``, no ``"total"`` question or a bad
            question name.

    Example:
        >>> fixed = Resolution(mode="fixed", size=448)
        >>> spec = ARTQUANT_SPEC.model_copy(update={"resolution": fixed})
        >>> spec.resolution.mode
        'fixed'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    words: tuple[str, ...] = Field(min_length=2)
    values: tuple[float, ...] = Field(min_length=2)
    scale: tuple[float, float]
    questions: dict[str, Question]
    system_prompt: str | None = None
    resolution: Resolution = Resolution()

    @field_validator("words")
    @classmethod
    def _words_clean(cls, words: tuple[str, ...]) -> tuple[str, ...]:
        return check_level_words(words)

    @field_validator("values")
    @classmethod
    def _values_finite(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        return check_finite_values(values)

    @field_validator("questions")
    @classmethod
    def _questions(cls, questions: dict[str, Question]) -> dict[str, Question]:
        if TOTAL not in questions:
            raise ValueError(
                f"questions must include {TOTAL!r} (the score); got {sorted(questions)}"
            )
        bad = [name for name in questions if not _NAME.match(name)]
        if bad:
            raise ValueError(
                f"question names {bad} are not lower-case identifiers ([a-z][a-z0-9_]*)"
            )
        return questions

    @model_validator(mode="after")
    def _consistent(self) -> ScorerSpec:
        check_levels_on_scale(self.words, self.values, self.scale)
        return self

    def question(self, name: str = TOTAL) -> Question:
        """The question called ``name``.

        Raises:
            KeyError: No such question; the message lists the spec's questions.
        """
        try:
            return self.questions[name]
        except KeyError:
            raise KeyError(
                f"spec {self.name!r} has no question {name!r}; it has {sorted(self.questions)}"
            ) from None

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the spec as ``folder/artquant_spec.json``; returns the file's path."""
        path = Path(folder) / SPEC_FILENAME
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ScorerSpec:
        """Read a spec file.

        Raises:
            ValueError: The file is not valid JSON or not a valid spec (names the file).
        """
        text = Path(path).read_text(encoding="utf-8")
        try:
            return cls.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as error:
            raise ValueError(f"{os.fspath(path)} is not a valid ArtQuant spec: {error}") from error


def question_from_raw_prompt(prompt: str) -> Question:
    """A question whose ``raw_prompt`` is a full mPLUG-Owl2 prompt; ``prompt`` and ``stem``
    (used by chat-template backbones only) are read from it: the text between ``USER:`` and
    the picture, and the text after ``ASSISTANT:``.

    Example:
        >>> question_from_raw_prompt("USER: Rate it.\\n<|image|> ASSISTANT: It is").stem
        'It is'
    """
    before, _, after = prompt.partition(DEFAULT_IMAGE_TOKEN)
    return Question(
        prompt=before.replace("USER:", "").strip() or "How would you rate this image?",
        stem=after.rsplit("ASSISTANT:", 1)[-1].strip() or "The answer is",
        raw_prompt=prompt,
    )


def spec_from_trainer_document(document: Mapping[str, Any]) -> ScorerSpec:
    """The ``ScorerSpec`` of artquant-train's level-spec document (``level_spec.json``).

    The document holds ``name``, ``words``, ``values``, ``scale``, the total's full mPLUG-Owl2
    ``prompt`` and ``questions``: one ``{"id", "name", "question", "stem", "prompt"}`` per
    trained attribute. Each prompt becomes its question's ``raw_prompt``; the total's question
    and stem are read from its prompt (the text between ``USER:`` and the picture, and the
    text after ``ASSISTANT:``).

    Raises:
        ValueError: A missing field or an invalid spec (bad words, an id that is not a
            lower-case identifier, a prompt without exactly one ``<|image|>``).

    Example:
        >>> doc = {"name": "artquant", "words": ["good", "bad"], "values": [10, 1],
        ...        "scale": [1, 10], "prompt": "USER: Rate it.\\n<|image|> ASSISTANT: It is",
        ...        "questions": [{"id": "color", "name": "Color", "question": "Color?",
        ...                       "stem": "The color is", "prompt": "USER: <|image|>\\nColor? "
        ...                       "ASSISTANT: The color is"}]}
        >>> spec = spec_from_trainer_document(doc)
        >>> sorted(spec.questions), spec.question().stem
        (['color', 'total'], 'It is')
    """
    try:
        questions = {TOTAL: question_from_raw_prompt(str(document["prompt"]))}
        for entry in document.get("questions", []):
            questions[str(entry["id"])] = Question(
                prompt=entry["question"], stem=entry["stem"], raw_prompt=entry["prompt"]
            )
        return ScorerSpec(
            name=document["name"],
            words=tuple(document["words"]),
            values=tuple(document["values"]),
            scale=tuple(document["scale"]),
            questions=questions,
        )
    except (KeyError, TypeError, ValidationError) as error:
        raise ValueError(f"not a valid artquant-train level spec: {error}") from error


def read_spec(folder: str | os.PathLike[str]) -> ScorerSpec | None:
    """The spec a model folder carries (``artquant_spec.json``), or None when it has none.

    A folder written by an older artquant-train carries ``level_spec.json`` instead; it is
    read (:func:`spec_from_trainer_document`) when ``artquant_spec.json`` is absent.
    """
    path = Path(folder) / SPEC_FILENAME
    if path.is_file():
        return ScorerSpec.from_file(path)
    legacy = Path(folder) / LEGACY_LEVEL_SPEC_FILENAME
    if not legacy.is_file():
        return None
    logger.info("%s has no %s; reading its older %s", folder, SPEC_FILENAME, legacy.name)
    try:
        return spec_from_trainer_document(json.loads(legacy.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValueError) as error:
        raise ValueError(f"{os.fspath(legacy)}: {error}") from error


#: ArtQuant's zero-shot spec for any chat-template backbone (see the module docstring).
ARTQUANT_SPEC = ScorerSpec(
    name="artquant",
    words=("excellent", "good", "fair", "poor", "bad"),
    values=(10.0, 7.5, 5.0, 3.5, 1.0),
    scale=(1.0, 10.0),
    questions={
        TOTAL: Question(
            prompt="How would you rate the quality of this painting?",
            stem="The quality of the painting is",
        )
    },
)
#: Q-Align's scorer (0-1) and one-align's `score()` (1-5): the Q-Align quality prompt; on
#: mPLUG-Owl2 their original prompt string is used as it is.
QALIGN_SPEC = ScorerSpec(
    name="qalign",
    words=ARTQUANT_SPEC.words,
    values=(1.0, 0.75, 0.5, 0.25, 0.0),
    scale=(0.0, 1.0),
    questions={
        TOTAL: Question(
            prompt="How would you rate the quality of this image?",
            stem="The quality of the image is",
            raw_prompt=QALIGN_SCORE_PROMPT,
        )
    },
)
ONEALIGN_SPEC = QALIGN_SPEC.model_copy(
    update={"name": "onealign", "values": (5.0, 4.0, 3.0, 2.0, 1.0), "scale": (1.0, 5.0)}
)
_APDDV2_PHRASES = (
    ("theme_and_logic", "theme and logic"),
    ("creativity", "creativity"),
    ("layout_and_composition", "layout and composition"),
    ("space_and_perspective", "space and perspective"),
    ("the_sense_of_order", "sense of order"),
    ("light_and_shadow", "light and shadow"),
    ("color", "color"),
    ("details_and_texture", "details and texture"),
    ("the_overall", "overall effect"),
    ("mood", "mood"),
)
#: APDDv2's ten attributes as zero-shot questions, by their column-safe ids, in the label CSV's
#: order: "How would you rate the {phrase} of this painting?" answered "The {phrase} of the
#: painting is". The same questions and stems as ``artquant_data.APDDV2_ATTRIBUTE_SPECS``
#: (artquant-train's tests check that the two agree); kept here because the model and the SDK
#: do not depend on artquant-data.
APDDV2_ATTRIBUTE_QUESTIONS: dict[str, Question] = {
    ident: Question(
        prompt=f"How would you rate the {phrase} of this painting?",
        stem=f"The {phrase} of the painting is",
    )
    for ident, phrase in _APDDV2_PHRASES
}
#: The specs by name (the SDK's and CLI's ``levels`` presets).
SPEC_PRESETS: dict[str, ScorerSpec] = {
    spec.name: spec for spec in (ARTQUANT_SPEC, QALIGN_SPEC, ONEALIGN_SPEC)
}


__all__ = [
    "APDDV2_ATTRIBUTE_QUESTIONS",
    "ARTQUANT_SPEC",
    "LEGACY_LEVEL_SPEC_FILENAME",
    "ONEALIGN_SPEC",
    "QALIGN_SPEC",
    "SPEC_FILENAME",
    "SPEC_PRESETS",
    "TOTAL",
    "Question",
    "Resolution",
    "ScorerSpec",
    "question_from_raw_prompt",
    "read_spec",
    "spec_from_trainer_document",
]
