"""Score images in one forward pass, Q-Align style: level-word logits at the answer position.

The prompt ends at the answer position ("... The quality of the painting is"); the language-model
head runs only there and, unless the full-vocabulary probabilities are asked for (`open_set`),
only its K level-word rows: the K logits are turned into a score by `levels.level_scores` in
float64. Every image of a batch gets the same prompt, so no padding is needed and each row equals
its batch-of-one result; the prompt's text before the image can be computed once for all images
(`PromptPrefixCache`).

Example:
    >>> from artquant_model.testing import tiny_model, tiny_tokenizer
    >>> from artquant_model import MPLUGOwl2ImageProcessor, MPLUGOwl2Processor
    >>> import numpy as np
    >>> processor = MPLUGOwl2Processor(tiny_tokenizer(), MPLUGOwl2ImageProcessor(image_size=28))
    >>> [result] = score_images(tiny_model(), processor, [np.zeros((8, 8, 3), np.uint8)])
    >>> 1.0 <= result.score <= 10.0
    True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import torch
from transformers import DynamicCache
from transformers.utils.logging import tqdm

from artquant_model._images import DEFAULT_MAX_PIXELS
from artquant_model._prompts import IMAGE_TOKEN_INDEX
from artquant_model.backbones.mplug_owl2._multimodal import splice_inputs
from artquant_model.backbones.mplug_owl2.modeling_mplug_owl2 import MPLUGOwl2ForCausalLM
from artquant_model.backbones.mplug_owl2.processing_mplug_owl2 import MPLUGOwl2Processor
from artquant_model.levels import (
    ARTQUANT_LEVELS,
    LevelScore,
    LevelScores,
    LevelSpec,
    level_scores,
    open_set_level_probs,
)

logger = logging.getLogger(__name__)


def _placement(model: Any) -> tuple[torch.device, torch.dtype]:
    """Where the model's weights are, and the floating dtype they compute in."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.device, parameter.dtype
    raise ValueError("the model has no floating-point parameters")


def _plain_causal_lm(model: Any) -> MPLUGOwl2ForCausalLM | None:
    """The `MPLUGOwl2ForCausalLM` inside `model` (itself or under a peft wrapper) when its LM
    head is a plain bias-free linear layer whose rows can be read alone; else None."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(inner, MPLUGOwl2ForCausalLM):
        return None
    head = inner.lm_head
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    return inner


class PromptPrefixCache:
    """Keys and values of a prompt's text before its image, computed once and reused.

    Every image is scored with the same prompt, and under causal attention the tokens before
    the image (ArtQuant's ``"USER: How would you rate the quality of this painting?\\n"``, 15
    of the 92 spliced tokens) do not see the image: their keys and values are the same for every
    image. Given to :func:`score_pixel_values`, this cache computes them once per model and
    prompt and each forward pass then runs only the image and the text after it. It is
    recomputed when the prompt changes or any weight of the model is replaced or changed in
    place (tracked by each parameter's identity and version counter), so it cannot go stale.

    Scores equal the full forward's within float32 reordering (the prefix runs as one row).

    Example:
        >>> from artquant_model.testing import tiny_model, tiny_tokenizer
        >>> from artquant_model.levels import ARTQUANT_LEVELS
        >>> from artquant_model import tokenizer_image_token
        >>> tokenizer, model, cache = tiny_tokenizer(), tiny_model(), PromptPrefixCache()
        >>> ids = tokenizer_image_token(ARTQUANT_LEVELS.prompt, tokenizer)
        >>> level_ids = ARTQUANT_LEVELS.token_ids(tokenizer)
        >>> pixels = torch.zeros(2, 3, 28, 28)
        >>> fast = score_pixel_values(
        ...     model, ids, pixels, level_ids, ARTQUANT_LEVELS.values, prefix_cache=cache
        ... )
        >>> plain = score_pixel_values(model, ids, pixels, level_ids, ARTQUANT_LEVELS.values)
        >>> bool((fast.score - plain.score).abs().max() < 1e-5), cache.length  # 15 with LLaMA-2's
        (True, 14)
    """

    def __init__(self) -> None:
        self._ids: tuple[int, ...] = ()
        self._weights: tuple[tuple[int, int], ...] = ()
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []

    @property
    def length(self) -> int:
        """Tokens held (0 before the first use)."""
        return len(self._ids)

    def clear(self) -> None:
        """Drop the held keys and values."""
        self._ids, self._weights, self._keys, self._values = (), (), [], []

    def layers(
        self, model: MPLUGOwl2ForCausalLM, prefix_ids: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per decoder layer, ``[1, kv_heads, P, head_dim]`` keys and values of ``prefix_ids``.

        Args:
            model: The model the keys and values belong to.
            prefix_ids: ``[P]`` text ids (no image id).
        """
        ids = tuple(int(i) for i in prefix_ids.tolist())
        weights = _weights_key(model)
        if weights is None or ids != self._ids or weights != self._weights:
            device, _ = _placement(model)
            cache = DynamicCache()
            with torch.inference_mode():
                model.model(
                    input_ids=torch.tensor([ids], device=device),
                    past_key_values=cache,
                    use_cache=True,
                )
            held: list[Any] = list(cache.layers)  # DynamicLayer: .keys / .values tensors
            self._keys = [layer.keys for layer in held]
            self._values = [layer.values for layer in held]
            self._ids, self._weights = ids, weights or ()
        return self._keys, self._values


def _weights_key(model: torch.nn.Module) -> tuple[tuple[int, int], ...] | None:
    """Identity and in-place version of every parameter; None when some parameter is an
    inference tensor (made under ``torch.inference_mode``), which keeps no version: then the
    prefix is recomputed on every call rather than risk a stale one."""
    try:
        return tuple((id(p), p._version) for p in model.parameters())
    except RuntimeError:
        return None


def _multimodal_pass(
    causal: MPLUGOwl2ForCausalLM,
    ids: torch.Tensor,
    units: Sequence[torch.Tensor],
    prefix_cache: PromptPrefixCache,
) -> tuple[torch.Tensor, DynamicCache]:
    """Run ``[N, L]`` prompt rows (the same text, one image marker each at the same place) with
    the encoded pictures ``units``: the text before the image comes from ``prefix_cache``.

    Returns:
        The final hidden states ``[N, L', hidden]`` of the image and the text after it, and the
        filled key/value cache (all ``L'`` + prefix positions), for a continuation.
    """
    row = ids[0]
    length = int((row == IMAGE_TOKEN_INDEX).nonzero()[0, 0])
    inner = causal.model
    count = ids.shape[0]
    cache = DynamicCache()
    if length:
        keys, values = prefix_cache.layers(causal, row[:length])
        for index, (key, value) in enumerate(zip(keys, values, strict=True)):
            cache.update(key.expand(count, -1, -1, -1), value.expand(count, -1, -1, -1), index)
    device = inner.embed_tokens.weight.device
    spliced = splice_inputs(ids[:, length:].to(device), units, inner.embed_tokens)
    output = inner(
        inputs_embeds=spliced.inputs_embeds,
        modality_indicators=spliced.modality_indicators,
        position_ids=spliced.position_ids + length,
        past_key_values=cache,
        use_cache=True,
    )
    return output.last_hidden_state, cache


def _score_with_prefix(
    causal: MPLUGOwl2ForCausalLM,
    ids: torch.Tensor,
    pixels: torch.Tensor,
    prefix_cache: PromptPrefixCache,
) -> torch.Tensor | None:
    """The last position's hidden states, with the shared text before the image from the cache.

    None when the prompt does not allow it (rows differ, or the image comes first).
    """
    row = ids[0]
    if ids.shape[0] > 1 and not bool((ids == row).all()):
        return None
    where = (row == IMAGE_TOKEN_INDEX).nonzero()
    if not where.numel() or int(where[0, 0]) == 0:
        return None
    hidden, _ = _multimodal_pass(causal, ids, causal.model.encode_images(pixels), prefix_cache)
    return hidden[:, -1, :]


def _common_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, leaving each row at least its last token."""
    shortest = min(len(row) for row in rows)
    length = 0
    while length < shortest - 1 and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def question_level_logits(
    model: Any,
    prompts: Sequence[torch.Tensor],
    pixel_values: torch.Tensor,
    level_ids: Sequence[Sequence[int]],
    prefix_caches: dict[tuple[int, ...], PromptPrefixCache],
) -> list[torch.Tensor]:
    """Level logits of several prompts (questions) for one batch of pictures, sharing work.

    The pictures go through the vision tower and abstractor once. Prompts that are the same up
    to and including their image (a picture-first prompt: ``"USER: <|image|>\nHow would you
    rate the color ..."``) form a group: the image and every token the group's prompts share
    run once per picture, their keys and values are repeated over the group's questions and
    only each question's own tokens (question, roles, stem) run in one batch of
    ``pictures x questions`` rows, right-padded; each row is read at its last real token
    (causal attention: padding after a token never reaches it). A prompt with its own text
    before the image (ArtQuant's question-first prompt) runs whole, on the shared picture
    features. The text before the image comes from ``prefix_caches`` (one
    :class:`PromptPrefixCache` per distinct text, added as needed).

    Args:
        model: An ``MPLUGOwl2ForCausalLM`` (or a peft model around one) with a plain LM head.
        prompts: ``[L_q]`` ids per question, each with one image id (-200).
        pixel_values: ``[N, 3, S, S]`` on the model's device and dtype.
        level_ids: The K level-word ids of each question.
        prefix_caches: Caches of the text before the image, by its ids (filled here).

    Returns:
        ``[N, K]`` float32 level logits per question, on the CPU, in the order given.

    Raises:
        ValueError: The model's LM head is not a plain linear layer, or a prompt does not hold
            exactly one image id.
    """
    causal = _plain_causal_lm(model)
    if causal is None:
        raise ValueError("question_level_logits needs an MPLUGOwl2ForCausalLM with a plain LM head")
    rows = [[int(t) for t in prompt.tolist()] for prompt in prompts]
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, row in enumerate(rows):
        if row.count(IMAGE_TOKEN_INDEX) != 1:
            raise ValueError(
                f"prompt {index} must hold exactly one image id {IMAGE_TOKEN_INDEX}, it holds "
                f"{row.count(IMAGE_TOKEN_INDEX)}"
            )
        head = tuple(row[: row.index(IMAGE_TOKEN_INDEX) + 1])
        groups.setdefault(head, []).append(index)
    inner = causal.model
    count = int(pixel_values.shape[0])
    device = inner.embed_tokens.weight.device
    head_weight = causal.lm_head.weight
    out: list[torch.Tensor | None] = [None] * len(rows)

    def read(hidden: torch.Tensor, question: int) -> torch.Tensor:
        index = torch.tensor(list(level_ids[question]), device=device)
        weight = head_weight.index_select(0, index)
        return torch.nn.functional.linear(hidden, weight).float().cpu()

    with torch.inference_mode():
        units = inner.encode_images(pixel_values)
        for head, members in groups.items():
            before = head[:-1]
            prefix_cache = prefix_caches.setdefault(before, PromptPrefixCache())
            texts = [rows[q] for q in members]
            common = len(texts[0]) if len(members) == 1 else _common_length(texts)
            shared = torch.tensor(texts[0][:common], dtype=torch.long).expand(count, -1)
            hidden, cache = _multimodal_pass(causal, shared, units, prefix_cache)
            if len(members) == 1:
                out[members[0]] = read(hidden[:, -1, :], members[0])
                continue
            width = len(members)
            tails = [text[common:] for text in texts]
            longest = max(len(tail) for tail in tails)
            ids = torch.zeros((count * width, longest), dtype=torch.long)
            ends = torch.zeros(count * width, dtype=torch.long)
            for slot, tail in enumerate(tails):
                ids[slot::width, : len(tail)] = torch.tensor(tail, dtype=torch.long)
                ends[slot::width] = len(tail) - 1
            cache.batch_repeat_interleave(width)  # row = picture * width + question
            past = cache.get_seq_length()
            ids = ids.to(device)
            output = inner(
                inputs_embeds=inner.embed_tokens(ids),
                modality_indicators=torch.zeros_like(ids),
                position_ids=torch.arange(past, past + longest, device=device).unsqueeze(0),
                past_key_values=cache,
                use_cache=True,
            )
            every = torch.arange(count * width, device=device)
            last = output.last_hidden_state[every, ends.to(device)]
            for slot, question in enumerate(members):
                out[question] = read(last[slot::width], question)
    return [logits for logits in out if logits is not None]


def _vocab_size(model: Any) -> int | None:
    config = getattr(model, "config", None)
    size = getattr(config, "vocab_size", None)
    return int(size) if size is not None else None


def score_pixel_values(
    model: Any,
    input_ids: torch.Tensor | Sequence[int],
    pixel_values: torch.Tensor,
    level_ids: Sequence[int] | torch.Tensor,
    values: Sequence[float] | torch.Tensor,
    *,
    attention_mask: torch.Tensor | None = None,
    open_set: bool = True,
    prefix_cache: PromptPrefixCache | None = None,
) -> LevelScores:
    """Score preprocessed images with one forward pass (the tensor-level API).

    Args:
        model: an `MPLUGOwl2ForCausalLM` (or a peft model around one), in eval mode.
        input_ids: the prompt ids with one -200, as `[L]` or `[1, L]` (shared by every image),
            or `[N, L]` (one row per image). Rows must be left-padded (or unpadded): the score is
            read at the last position.
        pixel_values: `[N, 3, S, S]` from the image processor; cast to the model's dtype and
            device here.
        level_ids: the K level-word ids (`LevelSpec.token_ids`).
        values: the K level values.
        attention_mask: `[N, L]` 0/1 mask for left-padded rows; `None` for unpadded rows.
        open_set: also return the full-vocabulary probabilities of the level ids.
        prefix_cache: reuse the keys and values of the text before the image (see
            :class:`PromptPrefixCache`); used when every row has the same prompt, no
            `attention_mask` is given and the model is an `MPLUGOwl2ForCausalLM` (or a peft
            model around one) with a plain LM head; ignored otherwise.

    Returns:
        `LevelScores` with `score`, `std` ([N], float64), `probs` ([N, K], float64), `logits`
        ([N, K] float32 level logits) and `open_set_probs` ([N, K] float64 or None), on the CPU.

    Raises:
        ValueError: for inconsistent shapes, a shared prompt without exactly one image, right
            padding, or a level id outside the model's vocabulary.

    Example:
        >>> from artquant_model.testing import tiny_model, tiny_tokenizer
        >>> from artquant_model.levels import ARTQUANT_LEVELS
        >>> from artquant_model import tokenizer_image_token
        >>> tokenizer = tiny_tokenizer()
        >>> ids = tokenizer_image_token(ARTQUANT_LEVELS.prompt, tokenizer)
        >>> level_ids = ARTQUANT_LEVELS.token_ids(tokenizer)
        >>> result = score_pixel_values(
        ...     tiny_model(), ids, torch.zeros(2, 3, 28, 28), level_ids, ARTQUANT_LEVELS.values
        ... )
        >>> tuple(result.score.shape), result.score.dtype
        ((2,), torch.float64)
    """
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    if ids.ndim == 1:
        ids = ids.unsqueeze(0)
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"input_ids must be [L] or [B, L], got shape {tuple(ids.shape)}")
    if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
        raise ValueError(f"pixel_values must be [N, 3, S, S], got {tuple(pixel_values.shape)}")
    count = pixel_values.shape[0]
    if ids.shape[0] == 1 and count > 1:
        markers = int((ids == IMAGE_TOKEN_INDEX).sum())
        if markers != 1:
            raise ValueError(
                f"a prompt shared by {count} images must hold exactly one image id "
                f"{IMAGE_TOKEN_INDEX}, it holds {markers}"
            )
        ids = ids.expand(count, -1)
        if attention_mask is not None:
            attention_mask = torch.as_tensor(attention_mask).reshape(1, -1).expand(count, -1)
    elif ids.shape[0] != count:
        raise ValueError(f"{ids.shape[0]} prompt rows for {count} images; give 1 or {count} rows")
    if attention_mask is not None:
        attention_mask = torch.as_tensor(attention_mask, dtype=torch.long)
        if attention_mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids "
                f"shape {tuple(ids.shape)}"
            )
        if not bool(attention_mask[:, -1].all()):
            raise ValueError(
                "the last position is padding in some row: pad prompts on the left "
                "(padding_side='left') so that every row ends at its answer position"
            )
    level_index = torch.as_tensor(level_ids, dtype=torch.long).flatten()
    vocab = _vocab_size(model)
    if vocab is not None and (int(level_index.min()) < 0 or int(level_index.max()) >= vocab):
        raise ValueError(
            f"level ids {level_index.tolist()} fall outside the model's vocabulary of {vocab}: "
            "the tokenizer does not belong to this model"
        )
    device, dtype = _placement(model)
    pixels = pixel_values.to(device=device, dtype=dtype)
    inputs = {
        "input_ids": ids.to(device),
        "images": pixels,
        "attention_mask": None if attention_mask is None else attention_mask.to(device),
        "use_cache": False,
    }
    causal = _plain_causal_lm(model)
    last: torch.Tensor | None = None  # full-vocabulary logits at the answer position
    with torch.inference_mode():
        hidden = None  # the answer position's final hidden states, when the head is ours to run
        if causal is not None:
            if prefix_cache is not None and attention_mask is None:
                hidden = _score_with_prefix(causal, ids, pixels, prefix_cache)
            if hidden is None and not open_set:
                hidden = causal.model(**inputs).last_hidden_state[:, -1, :]
        if hidden is None:
            last = model(**inputs, logits_to_keep=1).logits[:, -1, :].float().cpu()
        elif open_set and causal is not None:
            last = causal.lm_head(hidden).float().cpu()
        elif causal is not None:
            # Only K rows of the LM head are read: skip the other vocab_size - K (on a CPU the
            # full row costs a pass over the whole head matrix, 65 MB at width 512).
            rows = causal.lm_head.weight.index_select(0, level_index.to(device))
            level_logits = torch.nn.functional.linear(hidden, rows).float().cpu()
    if last is not None:
        level_logits = last.index_select(-1, level_index)
    closed = level_scores(level_logits, values)
    return LevelScores(
        score=closed.score,
        std=closed.std,
        probs=closed.probs,
        logits=level_logits,
        open_set_probs=(
            open_set_level_probs(last, level_index) if open_set and last is not None else None
        ),
    )


def score_images(
    model: Any,
    processor: MPLUGOwl2Processor,
    images: Sequence[Any] | Any,
    *,
    level_spec: LevelSpec = ARTQUANT_LEVELS,
    batch_size: int = 8,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: bool = False,
    num_threads: int = 1,
) -> list[LevelScore]:
    """Score images (paths, bytes, arrays or PIL images) with a level spec's prompt and words.

    Args:
        model: an `MPLUGOwl2ForCausalLM` (or a peft model around one).
        processor: the `MPLUGOwl2Processor` of the model.
        images: one image or a sequence of them.
        level_spec: words, values and prompt (default ArtQuant's: 1-10).
        batch_size: images per forward pass; results do not depend on it (within float noise).
        max_pixels: decompression-bomb guard for decoding.
        progress: show a progress bar over the batches.
        num_threads: decode and resize this many images of a batch at once.

    Returns:
        One `LevelScore` per image, in order.

    Raises:
        ValueError: if `batch_size` < 1 or a level word is not a single token.
        ImageLoadError: if an image cannot be read (the message names it).

    Example:
        >>> from artquant_model.testing import tiny_model, tiny_tokenizer
        >>> from artquant_model import MPLUGOwl2ImageProcessor
        >>> processor = MPLUGOwl2Processor(tiny_tokenizer(), MPLUGOwl2ImageProcessor(image_size=28))
        >>> results = score_images(tiny_model(), processor, [b"not an image"])  # doctest: +SKIP
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    batch = list(images) if isinstance(images, list | tuple) else [images]
    level_ids = level_spec.token_ids(processor.tokenizer)
    prompt_ids = torch.tensor([processor.tokenize(level_spec.prompt)], dtype=torch.long)
    words = level_spec.words
    results: list[LevelScore] = []
    starts = range(0, len(batch), batch_size)
    for start in tqdm(starts, desc="scoring", unit="batch", disable=not progress):
        chunk = batch[start : start + batch_size]
        pixel_values = processor.image_processor(
            chunk, max_pixels=max_pixels, num_threads=num_threads
        )
        scores = score_pixel_values(
            model, prompt_ids, pixel_values, level_ids, level_spec.values, open_set=True
        )
        level_logits = cast(torch.Tensor, scores.logits)
        open_probs = cast(torch.Tensor, scores.open_set_probs)
        for row in range(len(chunk)):
            results.append(
                LevelScore(
                    score=float(scores.score[row]),
                    std=float(scores.std[row]),
                    probs=dict(zip(words, scores.probs[row].tolist(), strict=True)),
                    logits=dict(zip(words, level_logits[row].tolist(), strict=True)),
                    open_set_probs=dict(zip(words, open_probs[row].tolist(), strict=True)),
                    spec=level_spec.name,
                )
            )
        logger.debug("scored images %d-%d", start, start + len(chunk) - 1)
    return results


__all__ = ["PromptPrefixCache", "question_level_logits", "score_images", "score_pixel_values"]
