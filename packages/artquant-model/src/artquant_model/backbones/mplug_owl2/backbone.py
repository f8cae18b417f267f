"""mPLUG-Owl2 as a :class:`~artquant_model.backbones.Backbone`: today's scoring path, unchanged.

Scores go through :func:`artquant_model.scoring.score_pixel_values` with a
:class:`~artquant_model.scoring.PromptPrefixCache` (the prompt's text before the picture is
computed once), exactly as before the backbone layer existed. A spec question's prompt is the
``raw_prompt`` when it has one (Q-Align's presets), else mPLUG-Owl2's conversation format built
from the question and stem, ``"USER: {prompt}\\n<|image|> ASSISTANT: {stem}"``, which for
ArtQuant's spec is byte for byte ArtQuant's scoring prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from artquant_model._prompts import DEFAULT_IMAGE_TOKEN, DESCRIBE_PROMPT
from artquant_model.backbones._base import Backbone
from artquant_model.backbones.mplug_owl2.processing_mplug_owl2 import (
    MPLUGOwl2Processor,
    load_tokenizer,
    tokenizer_image_token,
)
from artquant_model.levels import LevelScores, LevelSpec, level_scores
from artquant_model.spec import (
    ARTQUANT_SPEC,
    TOTAL,
    Question,
    ScorerSpec,
    question_from_raw_prompt,
    read_spec,
)

if TYPE_CHECKING:
    from artquant_model.scoring import PromptPrefixCache


def mplug_owl2_prompt(question: Question) -> str:
    """The complete mPLUG-Owl2 prompt of a spec question (see the module docstring).

    Example:
        >>> from artquant_model._prompts import ARTQUANT_SCORE_PROMPT
        >>> mplug_owl2_prompt(ARTQUANT_SPEC.question()) == ARTQUANT_SCORE_PROMPT
        True
    """
    if question.raw_prompt is not None:
        return question.raw_prompt
    return f"USER: {question.prompt}\n{DEFAULT_IMAGE_TOKEN} ASSISTANT: {question.stem}"


def spec_from_level_spec(levels: LevelSpec) -> ScorerSpec:
    """A ``ScorerSpec`` scoring exactly as a ``LevelSpec`` does on mPLUG-Owl2.

    The full prompt becomes the question's ``raw_prompt``; ``prompt`` and ``stem`` (used by
    chat-template backbones only) are read from it: the text between ``USER:`` and the
    picture, and the text after ``ASSISTANT:``.

    Example:
        >>> from artquant_model.levels import QALIGN_LEVELS
        >>> spec_from_level_spec(QALIGN_LEVELS).question().stem
        'The quality of the image is'
    """
    return ScorerSpec(
        name=levels.name,
        words=levels.words,
        values=levels.values,
        scale=levels.scale,
        questions={TOTAL: question_from_raw_prompt(levels.prompt)},
    )


class MPLUGOwl2Backbone(Backbone):
    """An ``MPLUGOwl2ForCausalLM`` (LoRA merged) with its processor and a scorer spec.

    Level ids are looked up as ArtQuant's ``iqa_eval.py`` does (each word one token on its own,
    :meth:`artquant_model.LevelSpec.token_ids`), which keeps every score of the original.
    """

    family: ClassVar[str] = "mplug_owl2"
    model_types: ClassVar[tuple[str, ...]] = ("mplug_owl2",)

    def __init__(
        self, model: Any, processor: MPLUGOwl2Processor, spec: ScorerSpec = ARTQUANT_SPEC
    ) -> None:
        super().__init__(model, processor.tokenizer, processor.image_processor, spec)
        self.processor = processor
        from artquant_model.scoring import PromptPrefixCache

        #: The prompt's text before the picture, computed once (see ``PromptPrefixCache``).
        self.prefix_cache: PromptPrefixCache | None = PromptPrefixCache()
        #: The text before the picture of each other prompt (see ``score_questions``).
        self.question_prefix_caches: dict[tuple[int, ...], PromptPrefixCache] = {}
        self._level_specs: dict[str, LevelSpec] = {}
        self._prompt_ids: dict[str, torch.Tensor] = {}
        self._level_ids: dict[str, list[int]] = {}
        for name in spec.questions:
            self.level_ids(name)  # checked at load

    @classmethod
    def from_pretrained(
        cls,
        path: Any,
        *,
        base: Any = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        attn_implementation: str = "sdpa",
        spec: ScorerSpec | None = None,
        tokenizer: Any = None,
    ) -> MPLUGOwl2Backbone:
        """Load with :func:`artquant_model.load_model` (full folders and LoRA releases).

        Args:
            tokenizer: A folder or file with ``tokenizer.model``/``tokenizer.json``; default the
                checkpoint's, then the base's.
            (the rest as :meth:`Backbone.from_pretrained`; ``spec`` defaults to ArtQuant's.)
        """
        from pathlib import Path

        from artquant_model.loading import load_model

        model = load_model(
            path, base=base, dtype=dtype, device=device, attn_implementation=attn_implementation
        )
        folders = [Path(path)] + ([Path(base)] if base is not None else [])
        if tokenizer is None:
            tokenizer = next(
                (
                    f
                    for f in folders
                    if (f / "tokenizer.model").is_file() or (f / "tokenizer.json").is_file()
                ),
                None,
            )
            if tokenizer is None:
                raise FileNotFoundError(f"no tokenizer.model or tokenizer.json in {folders}")
        processor_dir = next(
            (f for f in folders if (f / "preprocessor_config.json").is_file()), folders[0]
        )
        processor = MPLUGOwl2Processor.from_pretrained(
            processor_dir, tokenizer=load_tokenizer(tokenizer)
        )
        if spec is None:
            spec = next((s for s in map(read_spec, folders) if s is not None), ARTQUANT_SPEC)
        return cls(model.eval(), processor, spec)

    def level_spec(self, question: str = TOTAL) -> LevelSpec:
        """The ``LevelSpec`` (words, values, scale, full prompt) of a spec question."""
        if question not in self._level_specs:
            spec = self.spec
            self._level_specs[question] = LevelSpec(
                name=spec.name,
                words=spec.words,
                values=spec.values,
                scale=spec.scale,
                prompt=mplug_owl2_prompt(spec.question(question)),
            )
        return self._level_specs[question]

    def prompt_ids(self, question: str = TOTAL) -> torch.Tensor:
        """``[L]`` ids of the question's full prompt, -200 where the picture goes."""
        if question not in self._prompt_ids:
            prompt = self.level_spec(question).prompt
            self._prompt_ids[question] = torch.tensor(
                tokenizer_image_token(prompt, self.tokenizer), dtype=torch.long
            )
        return self._prompt_ids[question]

    def level_ids(self, question: str = TOTAL) -> list[int]:
        """Each level word's single token (see the class docstring)."""
        if question not in self._level_ids:
            self._level_ids[question] = self.level_spec(question).token_ids(self.tokenizer)
        return self._level_ids[question]

    def score(self, pixels: Any, *, question: str = TOTAL) -> LevelScores:
        """Score ``[N, 3, S, S]`` pixels with one forward pass (prompt prefix cached)."""
        from artquant_model.scoring import score_pixel_values

        levels = self.level_spec(question)
        count = int(pixels.shape[0])
        return score_pixel_values(
            self.model,
            self.prompt_ids(question).unsqueeze(0).expand(count, -1).to(self.device),
            # pinned pixels (from decode workers) copy asynchronously; then cast on the device
            pixels.to(self.device, non_blocking=True).to(self.dtype),
            torch.tensor(self.level_ids(question), device=self.device),
            torch.tensor(list(levels.values), dtype=torch.float64),
            open_set=False,
            prefix_cache=self.prefix_cache,
        )

    def score_questions(
        self, pixels: Any, questions: Sequence[str] | None = None
    ) -> dict[str, LevelScores]:
        """Score ``[N, 3, S, S]`` pixels with several questions (see
        :meth:`Backbone.score_questions`), the pictures encoded once.

        The vision tower and abstractor run once per picture for all questions. Questions whose
        prompts put the picture first (the trainer's attribute prompts, ``"... USER:
        <|image|>\\nHow would you rate the color of this painting? ASSISTANT: The color of the
        painting is"``) also share the picture's keys and values and every token before the
        question: only each question's own tokens run, batched over pictures x questions
        (:func:`artquant_model.scoring.question_level_logits`). A question-first prompt
        (ArtQuant's release) runs its whole text on the shared picture features.
        """
        from artquant_model.scoring import _plain_causal_lm, question_level_logits

        names = self.question_names(questions)
        if len(names) < 2 or _plain_causal_lm(self.model) is None:
            return super().score_questions(pixels, names)
        logits = question_level_logits(
            self.model,
            [self.prompt_ids(name) for name in names],
            pixels.to(self.device, non_blocking=True).to(self.dtype),
            [self.level_ids(name) for name in names],
            self.question_prefix_caches,
        )
        out: dict[str, LevelScores] = {}
        for name, rows in zip(names, logits, strict=True):
            closed = level_scores(rows, self.spec.values)
            out[name] = LevelScores(
                score=closed.score, std=closed.std, probs=closed.probs, logits=rows
            )
        return out

    def generate(
        self, pixels: Any, prompt: str | None = None, *, max_new_tokens: int = 512
    ) -> list[int]:
        """Greedy answer ids for one picture; ``prompt`` is a full mPLUG-Owl2 prompt with
        ``<|image|>`` (default :data:`artquant_model.DESCRIBE_PROMPT`)."""
        text = DESCRIBE_PROMPT if prompt is None else prompt
        if text.count(DEFAULT_IMAGE_TOKEN) != 1:
            raise ValueError(
                f"prompt must hold {DEFAULT_IMAGE_TOKEN!r} exactly once, where the image goes; "
                f"got {text!r}"
            )
        if int(pixels.shape[0]) != 1:
            raise ValueError(f"generate takes one picture, got {int(pixels.shape[0])}")
        ids = torch.tensor([tokenizer_image_token(text, self.tokenizer)])
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids.to(self.device),
                images=pixels.to(self.device, self.dtype),
                attention_mask=torch.ones_like(ids).to(self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
            )
        return [int(t) for t in out[0, ids.shape[1] :].tolist()]


__all__ = ["MPLUGOwl2Backbone", "mplug_owl2_prompt", "spec_from_level_spec"]
