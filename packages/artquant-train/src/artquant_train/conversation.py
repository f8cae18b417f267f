"""Render training conversations and tokenise them with explicit prompt and answer ranges.

The original (``preprocess_v1``) renders the whole conversation, tokenises it and then masks
the instruction by re-tokenising pieces and subtracting lengths, a fragile offset computation.
Here every round is tokenised as two pieces, the prompt and the answer, so the supervised range
of each answer is known by construction:

* prompt of round ``i``: ``[system + sep]`` (first round only) ``USER: <message> ASSISTANT:``,
  tokenised with :func:`artquant_model.tokenizer_image_token` (BOS only on the first round);
* answer: ``<reply>`` tokenised without special tokens (SentencePiece's dummy prefix supplies
  the space after ``ASSISTANT:``), then the EOS id (the template's ``</s>``).

With the LLaMA tokenizer this gives exactly the ids of the original for ArtQuant's score samples
(59 ids, supervised ``The quality of the painting is good.</s>``; tested).

For score samples the level token is located inside the answer: the first occurrence of the
level prefix's ids followed by one of the level ids.

Example:
    >>> render_rounds([{"from": "human", "value": "Rate it.\\n<|image|>"},
    ...                {"from": "gpt", "value": "The quality of the painting is good."}],
    ...               TemplateConfig(system="", image_first=True))
    [('USER: <|image|>\\nRate it. ASSISTANT:', 'The quality of the painting is good.')]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from artquant_model import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX, tokenizer_image_token
from artquant_train.config import LevelsConfig, TemplateConfig
from artquant_train.errors import AnswerFormatError, LevelTokenError, SampleError
from artquant_train.losses import IGNORE_INDEX

logger = logging.getLogger(__name__)

_HUMAN_ROLES = frozenset({"human", "user"})
_ASSISTANT_ROLES = frozenset({"gpt", "assistant"})


@dataclass(frozen=True)
class EncodedConversation:
    """Token ids of one rendered conversation.

    Attributes:
        input_ids: ids with :data:`artquant_model.IMAGE_TOKEN_INDEX` (-200) where the image goes.
        labels: the answer ids at answer positions, ``-100`` elsewhere.
        answer_ranges: ``[start, end)`` of every answer (EOS included) in ``input_ids``.
        level_index: index of the level token in ``input_ids`` (score samples), else ``None``.
    """

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    answer_ranges: tuple[tuple[int, int], ...]
    level_index: int | None = None

    @property
    def level_rank(self) -> int:
        """Index of the level token among the supervised tokens, ``-1`` without one.

        It survives the image splice (which only inserts unsupervised positions), so the
        trainer uses it to find the level token in the spliced labels.
        """
        if self.level_index is None:
            return -1
        return sum(1 for label in self.labels[: self.level_index] if label != IGNORE_INDEX)


def _turn_fields(turn: Any) -> tuple[str, str]:
    if isinstance(turn, Mapping):
        role, value = turn.get("from", turn.get("role")), turn.get("value", turn.get("content"))
    else:
        role = getattr(turn, "from_", None) or getattr(turn, "role", None)
        value = getattr(turn, "value", None)
    if not isinstance(role, str) or not isinstance(value, str):
        raise SampleError(f"a conversation turn needs a role and a text value, got {turn!r}")
    return role.lower(), value


def render_rounds(conversation: Sequence[Any], template: TemplateConfig) -> list[tuple[str, str]]:
    """Render a conversation into ``(prompt, answer)`` text pairs, one per round.

    Args:
        conversation: turns alternating user (``from: human``) and assistant (``from: gpt``),
            as dicts or objects with ``from_``/``role`` and ``value``.
        template: the chat template.

    Returns:
        One ``(prompt_text, answer_text)`` pair per round; the prompt ends with
        ``ASSISTANT:`` and includes the system prompt in the first round.

    Raises:
        SampleError: the turns do not alternate user/assistant, or the conversation has no
            answer, or more than one ``<|image|>``.

    Example:
        >>> turns = [{"from": "human", "value": "Rate the quality of this painting.\\n<|image|>"},
        ...          {"from": "gpt", "value": "The quality of the painting is good."}]
        >>> prompt, answer = render_rounds(turns, TemplateConfig(system=""))[0]
        >>> prompt
        'USER: <|image|>\\nRate the quality of this painting. ASSISTANT:'
        >>> answer
        'The quality of the painting is good.'
    """
    turns = [_turn_fields(turn) for turn in conversation]
    if len(turns) < 2 or len(turns) % 2:
        raise SampleError(
            f"a conversation needs user/assistant pairs, got {len(turns)} turn(s): "
            f"{[role for role, _ in turns]}"
        )
    images = sum(value.count(DEFAULT_IMAGE_TOKEN) for _, value in turns)
    if images > 1:
        raise SampleError(f"a sample may hold one {DEFAULT_IMAGE_TOKEN}, this one has {images}")
    rounds: list[tuple[str, str]] = []
    for index in range(0, len(turns), 2):
        (user_role, message), (assistant_role, answer) = turns[index], turns[index + 1]
        if user_role not in _HUMAN_ROLES or assistant_role not in _ASSISTANT_ROLES:
            raise SampleError(
                f"turns {index} and {index + 1} must be user then assistant, got "
                f"{user_role!r} then {assistant_role!r}"
            )
        if index == 0 and images == 0:
            # The sample has an image but its text does not place it: put it where the
            # original's preprocessing would move it anyway (the front of the first turn).
            message = f"{DEFAULT_IMAGE_TOKEN}\n{message}"
        if template.image_first and DEFAULT_IMAGE_TOKEN in message:
            rest = message.replace(DEFAULT_IMAGE_TOKEN, "").strip()
            message = f"{DEFAULT_IMAGE_TOKEN}\n{rest}".strip()
        head = f"{template.system}{template.sep}" if index == 0 and template.system else ""
        prompt = f"{head}{template.user_role}: {message}{template.sep}{template.assistant_role}:"
        rounds.append((prompt, answer.strip()))
    return rounds


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def level_token_ids(
    tokenizer: Any, levels: LevelsConfig
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The prefix ids and the id of each level word as it follows the prefix.

    Args:
        tokenizer: the LLaMA tokenizer.
        levels: prefix and words.

    Returns:
        ``(prefix_ids, level_ids)``.

    Raises:
        LevelTokenError: a level word is not exactly one token after the prefix, or two words
            share a token.

    Example:
        >>> from artquant_model.testing import tiny_tokenizer
        >>> prefix_ids, ids = level_token_ids(tiny_tokenizer(), LevelsConfig())
        >>> len(prefix_ids), len(ids)  # LLaMA-2 gives (15129, 1781, 6534, 6460, 4319)
        (6, 5)
    """
    prefix_ids = _ids(tokenizer, levels.prefix)
    if not prefix_ids:
        raise LevelTokenError(f"the level prefix {levels.prefix!r} tokenises to nothing")
    ids: list[int] = []
    for word in levels.words:
        full = _ids(tokenizer, f"{levels.prefix} {word}")
        extra = full[len(prefix_ids) :]
        if full[: len(prefix_ids)] != prefix_ids or len(extra) != 1:
            pieces = tokenizer.convert_ids_to_tokens(extra) if extra else []
            raise LevelTokenError(
                f"level word {word!r} must be a single token after {levels.prefix!r}; it "
                f"tokenises to {len(extra)} tokens {pieces}. Choose words that are one token."
            )
        ids.append(extra[0])
    if len(set(ids)) != len(ids):
        raise LevelTokenError(f"level words {levels.words} share token ids {ids}")
    return tuple(prefix_ids), tuple(ids)


def _find_level(answer_ids: Sequence[int], prefix_ids: Sequence[int]) -> int | None:
    width = len(prefix_ids)
    for start in range(len(answer_ids) - width + 1):
        if list(answer_ids[start : start + width]) == list(prefix_ids):
            return start + width
    return None


def encode_conversation(
    conversation: Sequence[Any],
    tokenizer: Any,
    template: TemplateConfig,
    *,
    score_levels: tuple[Sequence[int], Sequence[int]] | None = None,
    level_prefix: str = "",
    max_length: int | None = None,
) -> EncodedConversation:
    """Tokenise a conversation for training, answers supervised, prompts masked.

    Args:
        conversation: the sample's turns (see :func:`render_rounds`).
        tokenizer: the LLaMA tokenizer (BOS added, EOS id set).
        template: the chat template.
        score_levels: ``(prefix_ids, level_ids)`` from :func:`level_token_ids` for a score
            sample; the first answer must contain the prefix followed by a level word.
            ``None`` for description samples.
        level_prefix: the prefix text, for error messages.
        max_length: keep at most this many ids (the tail is cut, as the original collator
            does); a score sample whose level token would be cut is an error.

    Returns:
        The ids, labels, answer ranges and level position.

    Raises:
        AnswerFormatError: a score answer lacks the prefix or a level word after it.
        SampleError: bad turns, or truncation would remove the level token.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise SampleError("the tokenizer has no EOS token; the template ends answers with </s>")
    input_ids: list[int] = []
    labels: list[int] = []
    ranges: list[tuple[int, int]] = []
    level_index: int | None = None
    for number, (prompt, answer) in enumerate(render_rounds(conversation, template)):
        prompt_ids = list(tokenizer_image_token(prompt, tokenizer))
        if number > 0 and prompt_ids and prompt_ids[0] == tokenizer.bos_token_id:
            prompt_ids = prompt_ids[1:]
        answer_ids = [*_ids(tokenizer, answer), eos]
        if number == 0 and score_levels is not None:
            prefix_ids, level_ids = score_levels
            found = _find_level(answer_ids, prefix_ids)
            if found is None:
                raise AnswerFormatError(
                    f"score answer {answer!r} does not contain the level prefix "
                    f"{level_prefix!r}; score samples must answer '{level_prefix} <level>.'"
                )
            if answer_ids[found] not in level_ids:
                word, *allowed = tokenizer.convert_ids_to_tokens([answer_ids[found], *level_ids])
                raise AnswerFormatError(
                    f"score answer {answer!r}: the token after the level prefix is {word!r}, "
                    f"not a level word; allowed tokens: {allowed}"
                )
            level_index = len(input_ids) + len(prompt_ids) + found
        input_ids.extend(prompt_ids)
        labels.extend([IGNORE_INDEX] * len(prompt_ids))
        start = len(input_ids)
        input_ids.extend(answer_ids)
        labels.extend(answer_ids)
        ranges.append((start, len(input_ids)))
    if max_length is not None and len(input_ids) > max_length:
        if level_index is not None and level_index >= max_length:
            raise SampleError(
                f"max_length {max_length} would cut the level token at position {level_index}"
            )
        input_ids, labels = input_ids[:max_length], labels[:max_length]
        ranges = [(s, min(e, max_length)) for s, e in ranges if s < max_length]
    if IMAGE_TOKEN_INDEX not in input_ids:
        raise SampleError("the rendered sample lost its image token (cut by max_length?)")
    return EncodedConversation(tuple(input_ids), tuple(labels), tuple(ranges), level_index)


__all__ = [
    "EncodedConversation",
    "encode_conversation",
    "level_token_ids",
    "render_rounds",
]
