"""The interface every backbone implements: what the SDK, the CLI and the trainer talk to.

A backbone owns a model, its tokenizer and its picture preprocessing, and a
:class:`~artquant_model.spec.ScorerSpec` (level words and values, the questions, resolution).
It does four things the rest of the product needs:

* ``image_processor(images, max_pixels=..., num_threads=...)``: pictures -> the backbone's pixel
  batch (a ``[N, 3, S, S]`` tensor for mPLUG-Owl2, a
  :class:`~artquant_model.backbones.hf_vlm.VisionBatch` for the Qwen-VL families). It is a
  picklable object, so decoding can run in worker processes; :func:`stack_pixels` joins single
  pictures into a batch.
* :meth:`Backbone.score`: one forward pass per batch, the level-word logits read at the answer
  position (only those rows of the LM head), scores in float64.
* :meth:`Backbone.score_questions`: several questions (the total and attributes) for one batch,
  the picture computed once; each question's scores equal :meth:`Backbone.score`'s.
* :meth:`Backbone.generate`: greedy description of one picture.
* :meth:`Backbone.level_ids`: the ids the score is read from, per question.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from artquant_model.levels import LevelScores
from artquant_model.spec import TOTAL, ScorerSpec


def stack_pixels(parts: Sequence[Any]) -> Any:
    """Join single pictures' pixels (tensors ``[3, S, S]`` or one-picture ``VisionBatch`` es)
    into one batch, in order."""
    if not parts:
        raise ValueError("no pictures to stack")
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(list(parts))
    return type(first).stack(parts)


class Backbone(ABC):
    """A scoring backbone: model + tokenizer + picture preprocessing + scorer spec.

    Attributes:
        family: The backbone family's name (``"mplug_owl2"``, ``"hf_vlm"``).
        model_types: The ``config.json`` ``model_type`` values this family loads.
        model: The ``torch.nn.Module``, in eval mode.
        tokenizer: Its tokenizer.
        image_processor: Pictures -> pixels (picklable callable).
        spec: Level words, values, questions and resolution.
    """

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]

    def __init__(self, model: Any, tokenizer: Any, image_processor: Any, spec: ScorerSpec) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.spec = spec

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype the model computes in."""
        for parameter in self.model.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
        raise ValueError("the model has no floating-point parameters")

    @classmethod
    @abstractmethod
    def from_pretrained(
        cls,
        path: Any,
        *,
        base: Any = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        attn_implementation: str = "sdpa",
        spec: ScorerSpec | None = None,
    ) -> Backbone:
        """Load from a local folder (full checkpoint or adapter over ``base``)."""

    @abstractmethod
    def level_ids(self, question: str = TOTAL) -> list[int]:
        """The K vocabulary ids the score of ``question`` is read from, in level order."""

    @abstractmethod
    def score(self, pixels: Any, *, question: str = TOTAL) -> LevelScores:
        """Score a batch of preprocessed pictures with one question.

        Args:
            pixels: From :attr:`image_processor` (or :func:`stack_pixels`).
            question: The spec's question to ask (``"total"``: the score).

        Returns:
            ``LevelScores``: ``score``/``std`` ``[N]``, ``probs`` and ``logits`` ``[N, K]``
            (float64 except the logits), on the CPU. Each row equals its batch-of-one result.
        """

    def question_names(self, questions: Sequence[str] | None = None) -> list[str]:
        """The spec's questions to ask, in order, without repeats (None: all of them).

        Raises:
            KeyError: A name the spec does not have; the message lists the spec's questions.
        """
        names = list(self.spec.questions) if questions is None else list(dict.fromkeys(questions))
        for name in names:
            self.spec.question(name)
        return names

    def score_questions(
        self, pixels: Any, questions: Sequence[str] | None = None
    ) -> dict[str, LevelScores]:
        """Score a batch with several of the spec's questions.

        This default asks them one after the other with :meth:`score`; the backbones override
        it to compute each picture (and, where the prompts put the picture first, everything
        before the question) once for all questions.

        Args:
            pixels: From :attr:`image_processor` (or :func:`stack_pixels`).
            questions: Spec question names (``"total"``, ``"color"``, ...); None: every one.

        Returns:
            ``{name: LevelScores}`` in the order asked; each equals ``score(pixels,
            question=name)`` (float32: within 1e-5).

        Raises:
            KeyError: A question the spec does not have.

        Example:
            >>> scores = backbone.score_questions(pixels, ["total", "color"])  # doctest: +SKIP
            >>> scores["color"].score  # doctest: +SKIP
        """
        return {name: self.score(pixels, question=name) for name in self.question_names(questions)}

    @abstractmethod
    def generate(
        self, pixels: Any, prompt: str | None = None, *, max_new_tokens: int = 512
    ) -> list[int]:
        """Greedy answer ids for one preprocessed picture and a prompt (None: describe it)."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids, special tokens dropped, stripped."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True)).strip()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({type(self.model).__name__}, device={self.device}, "
            f"dtype={self.dtype}, spec={self.spec.name!r})"
        )


__all__ = ["Backbone", "stack_pixels"]
