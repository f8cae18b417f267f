"""Level words -> scores: the Q-Align / ArtQuant read-out as configuration.

A score is read at the answer position from the logits of K level words (ArtQuant: excellent,
good, fair, poor, bad): the closed-set softmax over those K logits, dotted with the level values
(ArtQuant: 10, 7.5, 5, 3.5, 1). The std is the spread of the level distribution around that
score, sqrt(sum_k p_k (v_k - score)^2), as ArtQuant's `get_score`. Everything is computed in
float64, as ArtQuant's `eval.py` does from the saved logits.

Example:
    >>> import torch
    >>> result = level_scores(torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0]]), ARTQUANT_LEVELS.values)
    >>> round(result.score.item(), 6), round(result.std.item(), 6)
    (5.4, 3.120897)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from transformers import PreTrainedTokenizerBase

from artquant_model._prompts import (
    ARTQUANT_SCORE_PROMPT,
    DEFAULT_IMAGE_TOKEN,
    QALIGN_SCORE_PROMPT,
)


def check_level_words(words: tuple[str, ...]) -> tuple[str, ...]:
    """``words`` unchanged if each is non-empty without whitespace and all are distinct.

    Raises:
        ValueError: naming the bad or repeated words.
    """
    for word in words:
        if not word or word != word.strip() or any(ch.isspace() for ch in word):
            raise ValueError(
                f"level word {word!r} must be non-empty without whitespace (the tokenizer "
                "adds the leading word boundary itself)"
            )
    duplicates = sorted({word for word in words if words.count(word) > 1})
    if duplicates:
        raise ValueError(f"level words must be distinct; repeated: {duplicates}")
    return words


def check_finite_values(values: tuple[float, ...]) -> tuple[float, ...]:
    """``values`` unchanged if all are finite.

    Raises:
        ValueError: naming the non-finite values.
    """
    bad = [value for value in values if not math.isfinite(value)]
    if bad:
        raise ValueError(f"level values must be finite, got {bad}")
    return values


def check_levels_on_scale(
    words: tuple[str, ...], values: tuple[float, ...], scale: tuple[float, float]
) -> None:
    """Check one value per word, a finite ``(min, max)`` scale and every value inside it.

    Raises:
        ValueError: naming the counts, the scale or the values outside it.
    """
    if len(words) != len(values):
        raise ValueError(
            f"{len(words)} level words {list(words)} but {len(values)} values "
            f"{list(values)}; the counts must be equal"
        )
    low, high = scale
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"scale must be finite (min, max) with min < max, got {scale}")
    outside = [value for value in values if not low <= value <= high]
    if outside:
        raise ValueError(f"level values {outside} lie outside scale {scale}")


class LevelSpec(BaseModel):
    """Level words, their values, the score range and the scoring prompt.

    Attributes:
        name: a short identifier ("artquant").
        words: the level words, best first; each must be a single token of the tokenizer.
        values: the value of each word (same count).
        scale: `(min, max)` of the score; every value must lie inside.
        prompt: the scoring prompt, with exactly one `<|image|>`; the answer position is its end.

    Raises:
        pydantic.ValidationError: (a `ValueError`) for unequal counts, duplicate or blank words,
            non-finite values, values outside `scale`, or a prompt without exactly one image.

    Example:
        >>> spec = LevelSpec(name="two", words=("good", "bad"), values=(1.0, 0.0),
        ...                  scale=(0.0, 1.0), prompt=QALIGN_SCORE_PROMPT)
        >>> spec.values
        (1.0, 0.0)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    words: tuple[str, ...] = Field(min_length=2)
    values: tuple[float, ...] = Field(min_length=2)
    scale: tuple[float, float]
    prompt: str

    @field_validator("words")
    @classmethod
    def _words_clean(cls, words: tuple[str, ...]) -> tuple[str, ...]:
        return check_level_words(words)

    @field_validator("values")
    @classmethod
    def _values_finite(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        return check_finite_values(values)

    @field_validator("prompt")
    @classmethod
    def _one_image(cls, prompt: str) -> str:
        count = prompt.count(DEFAULT_IMAGE_TOKEN)
        if count != 1:
            raise ValueError(
                f"the scoring prompt must hold exactly one {DEFAULT_IMAGE_TOKEN}, it holds {count}"
            )
        return prompt

    @model_validator(mode="after")
    def _consistent(self) -> LevelSpec:
        check_levels_on_scale(self.words, self.values, self.scale)
        return self

    def token_ids(self, tokenizer: PreTrainedTokenizerBase) -> list[int]:
        """The vocabulary id of each level word, checking that each is exactly one token.

        The word is tokenized on its own with BOS, as ArtQuant's `iqa_eval.py` does
        (`tokenizer([word]).input_ids[0][1]`); with SentencePiece's dummy prefix this is the same
        piece ("▁good") the word gets after "is" in the answer.

        Args:
            tokenizer: the model's tokenizer.

        Returns:
            The ids, in word order.

        Raises:
            ValueError: if a word is not a single token (the message lists its pieces) or two
                words share an id.

        Example:
            >>> from artquant_model.testing import tiny_tokenizer
            >>> len(ARTQUANT_LEVELS.token_ids(tiny_tokenizer()))
            5
        """
        ids: list[int] = []
        specials = {tokenizer.bos_token_id, tokenizer.eos_token_id}
        for word in self.words:
            tokens = [int(i) for i in tokenizer(word).input_ids if int(i) not in specials]
            if len(tokens) != 1 or tokens[0] == tokenizer.unk_token_id:
                pieces = tokenizer.convert_ids_to_tokens(tokens)
                raise ValueError(
                    f"level word {word!r} of spec {self.name!r} is not a single token of this "
                    f"tokenizer: it becomes {len(tokens)} tokens {pieces}; choose words that "
                    "are one token each"
                )
            ids.append(tokens[0])
        if len(set(ids)) != len(ids):
            raise ValueError(f"level words {list(self.words)} map to repeated ids {ids}")
        return ids


def first_token_ids(
    tokenizer: PreTrainedTokenizerBase, words: Sequence[str], stem: str
) -> list[int]:
    """The first token of each level word as the tokenizer writes it after ``stem``.

    ``stem + " " + word`` is tokenized and compared with ``stem`` alone: the token that follows
    the stem's tokens is the word's first token, with its leading space (" good"), which is the
    token the model must predict at the read position. This is how chat-template backbones
    (Qwen-VL) read levels; words of several tokens are allowed, only their first token counts.

    Args:
        tokenizer: The model's tokenizer.
        words: The level words, best first.
        stem: The answer stem, "The quality of the painting is".

    Returns:
        The K ids, in word order.

    Raises:
        ValueError: A word adds no token after the stem, the tokenizer merges the stem's end
            with a word (so no token boundary falls at the stem's end), or two words share a
            first token (the message names them).

    Example:
        >>> from artquant_model.testing import tiny_tokenizer
        >>> len(first_token_ids(tiny_tokenizer(), ("good", "bad"), "The quality is"))
        2
    """

    def encode(text: str) -> list[int]:
        return [int(i) for i in tokenizer(text, add_special_tokens=False).input_ids]

    base = encode(stem)
    ids: list[int] = []
    for word in words:
        full = encode(f"{stem} {word}")
        if full[: len(base)] != base:
            raise ValueError(
                f"the tokenizer joins the end of the stem {stem!r} with level word {word!r} "
                f"({full} does not start with the stem's {base}); end the stem at a word boundary"
            )
        if len(full) == len(base) or full[len(base)] == tokenizer.unk_token_id:
            raise ValueError(f"level word {word!r} gives no known token after the stem {stem!r}")
        ids.append(full[len(base)])
    shared: dict[int, list[str]] = {}
    for word, token in zip(words, ids, strict=True):
        shared.setdefault(token, []).append(word)
    clashes = {tuple(group): token for token, group in shared.items() if len(group) > 1}
    if clashes:
        described = "; ".join(
            f"{list(group)} all start with token {token} {tokenizer.convert_ids_to_tokens(token)!r}"
            for group, token in clashes.items()
        )
        raise ValueError(
            f"level words must start with distinct tokens after the stem {stem!r}: {described}"
        )
    return ids


#: ArtQuant: excellent/good/fair/poor/bad -> 10/7.5/5/3.5/1 on a 1-10 scale, ArtQuant's prompt.
ARTQUANT_LEVELS = LevelSpec(
    name="artquant",
    words=("excellent", "good", "fair", "poor", "bad"),
    values=(10.0, 7.5, 5.0, 3.5, 1.0),
    scale=(1.0, 10.0),
    prompt=ARTQUANT_SCORE_PROMPT,
)
#: Q-Align's scorer: 1/0.75/0.5/0.25/0 on 0-1, the Q-Align quality prompt.
QALIGN_LEVELS = LevelSpec(
    name="qalign",
    words=("excellent", "good", "fair", "poor", "bad"),
    values=(1.0, 0.75, 0.5, 0.25, 0.0),
    scale=(0.0, 1.0),
    prompt=QALIGN_SCORE_PROMPT,
)
#: one-align's `score()`: 5/4/3/2/1 on 1-5, the Q-Align quality prompt.
ONEALIGN_LEVELS = LevelSpec(
    name="onealign",
    words=("excellent", "good", "fair", "poor", "bad"),
    values=(5.0, 4.0, 3.0, 2.0, 1.0),
    scale=(1.0, 5.0),
    prompt=QALIGN_SCORE_PROMPT,
)
#: The presets by name.
LEVEL_PRESETS: dict[str, LevelSpec] = {
    spec.name: spec for spec in (ARTQUANT_LEVELS, QALIGN_LEVELS, ONEALIGN_LEVELS)
}


@dataclass(frozen=True)
class LevelScores:
    """Scores of a batch (tensors, float64 unless noted).

    Unpacks as `score, std, probs = level_scores(...)`.

    Attributes:
        score: [...] the expected level value.
        std: [...] sqrt(sum_k p_k (v_k - score)^2).
        probs: [..., K] closed-set level probabilities.
        logits: [..., K] the level logits as read (their own dtype), when known.
        open_set_probs: [..., K] full-vocabulary softmax probabilities of the level ids, not
            renormalised (ArtQuant `eval.py --use_openset_probs`), when computed.
    """

    score: torch.Tensor
    std: torch.Tensor
    probs: torch.Tensor
    logits: torch.Tensor | None = None
    open_set_probs: torch.Tensor | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.score, self.std, self.probs))


class LevelScore(BaseModel):
    """The score of one image, as plain Python numbers.

    Attributes:
        score: the expected level value.
        std: sqrt(sum_k p_k (v_k - score)^2).
        probs: closed-set probability per level word (word -> p), in level order.
        logits: the level logits as read.
        open_set_probs: full-vocabulary probability per level word (not renormalised).
        spec: the name of the `LevelSpec` used.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    score: float
    std: float
    probs: dict[str, float]
    logits: dict[str, float]
    open_set_probs: dict[str, float] | None = None
    spec: str


def _values_tensor(values: Sequence[float] | torch.Tensor, count: int) -> torch.Tensor:
    weights = torch.as_tensor(values, dtype=torch.float64).flatten()
    if weights.numel() != count:
        raise ValueError(
            f"got {count} level logits per row but {weights.numel()} values; they must match"
        )
    if not torch.isfinite(weights).all():
        raise ValueError(f"level values must be finite, got {weights.tolist()}")
    return weights


def level_scores(level_logits: Any, values: Sequence[float] | torch.Tensor) -> LevelScores:
    """Closed-set score, std and probabilities from the level logits, in float64.

    p = softmax(level_logits), score = p . values, std = sqrt(sum_k p_k (values_k - score)^2).

    Args:
        level_logits: [..., K] logits of the K level words (tensor or array-like, any float
            dtype; upcast to float64 first).
        values: the K level values.

    Returns:
        `LevelScores` (score and std [...], probs [..., K], float64; `logits` as given).

    Raises:
        ValueError: if K differs from the number of values, or a logit is NaN.

    Example:
        >>> import torch
        >>> level_scores(torch.tensor([10.0, -10.0]), (1.0, 0.0)).score.item() > 0.99
        True
    """
    logits = torch.as_tensor(level_logits)
    if logits.ndim == 0:
        raise ValueError("level_logits must have a last dimension of size K, got a scalar")
    weights = _values_tensor(values, logits.shape[-1])
    wide = logits.detach().to(dtype=torch.float64, device="cpu")
    if torch.isnan(wide).any():
        raise ValueError("level_logits contain NaN")
    probs = torch.softmax(wide, dim=-1)
    score = probs @ weights
    std = torch.sqrt((probs * (weights - score.unsqueeze(-1)) ** 2).sum(dim=-1))
    return LevelScores(score=score, std=std, probs=probs, logits=logits)


def open_set_level_probs(full_logits: Any, ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Full-vocabulary softmax probabilities of the level ids (not renormalised), in float64.

    Args:
        full_logits: [..., V] logits over the whole vocabulary.
        ids: the K level ids.

    Returns:
        [..., K] float64 probabilities (they sum to at most 1).

    Raises:
        ValueError: if an id is outside the vocabulary.

    Example:
        >>> import torch
        >>> open_set_level_probs(torch.zeros(4), [0, 1]).tolist()
        [0.25, 0.25]
    """
    logits = torch.as_tensor(full_logits)
    index = torch.as_tensor(ids, dtype=torch.long).flatten().cpu()
    vocab = logits.shape[-1] if logits.ndim else 0
    if index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= vocab:
        raise ValueError(f"level ids {index.tolist()} must lie in [0, {vocab}) for these logits")
    log_probs = torch.log_softmax(logits.detach().to(dtype=torch.float64, device="cpu"), dim=-1)
    return log_probs.index_select(-1, index).exp()


__all__ = [
    "ARTQUANT_LEVELS",
    "LEVEL_PRESETS",
    "ONEALIGN_LEVELS",
    "QALIGN_LEVELS",
    "LevelScore",
    "LevelScores",
    "LevelSpec",
    "first_token_ids",
    "level_scores",
    "open_set_level_probs",
]
