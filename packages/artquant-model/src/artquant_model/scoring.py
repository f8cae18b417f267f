"""Score images in one forward pass, Q-Align style: level-word logits at the answer position.

The prompt ends at the answer position ("... The quality of the painting is"); the language-model
head runs only there and, unless the full-vocabulary probabilities are asked for (`open_set`),
only its K level-word rows: the K logits are turned into a score by `levels.level_scores` in
float64. Every image of a batch gets the same prompt, so
no padding is needed and each row equals its batch-of-one result.

Example:
    >>> from artquant_model.testing import tiny_model, tiny_tokenizer
    >>> from artquant_model.processing_mplug_owl2 import MPLUGOwl2ImageProcessor, MPLUGOwl2Processor
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
from transformers.utils.logging import tqdm

from artquant_model._images import DEFAULT_MAX_PIXELS
from artquant_model._prompts import IMAGE_TOKEN_INDEX
from artquant_model.levels import (
    ARTQUANT_LEVELS,
    LevelScore,
    LevelScores,
    LevelSpec,
    level_scores,
    open_set_level_probs,
)
from artquant_model.modeling_mplug_owl2 import MPLUGOwl2ForCausalLM
from artquant_model.processing_mplug_owl2 import MPLUGOwl2Processor

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

    Returns:
        `LevelScores` with `score`, `std` ([N], float64), `probs` ([N, K], float64), `logits`
        ([N, K] float32 level logits) and `open_set_probs` ([N, K] float64 or None), on the CPU.

    Raises:
        ValueError: for inconsistent shapes, a shared prompt without exactly one image, right
            padding, or a level id outside the model's vocabulary.

    Example:
        >>> from artquant_model.testing import tiny_model, tiny_tokenizer
        >>> from artquant_model.levels import ARTQUANT_LEVELS
        >>> from artquant_model.processing_mplug_owl2 import tokenizer_image_token
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
    inputs = {
        "input_ids": ids.to(device),
        "images": pixel_values.to(device=device, dtype=dtype),
        "attention_mask": None if attention_mask is None else attention_mask.to(device),
        "use_cache": False,
    }
    causal = None if open_set else _plain_causal_lm(model)
    with torch.inference_mode():
        if causal is not None:
            # Only K rows of the LM head are read: skip the other vocab_size - K (on a CPU the
            # full row costs a pass over the whole head matrix per forward, 65 MB at width 512).
            hidden = causal.model(**inputs).last_hidden_state[:, -1, :]
            rows = causal.lm_head.weight.index_select(0, level_index.to(device))
            level_logits = torch.nn.functional.linear(hidden, rows).float().cpu()
            last = None
        else:
            output = model(**inputs, logits_to_keep=1)
            last = output.logits[:, -1, :].float().cpu()
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
        >>> from artquant_model.processing_mplug_owl2 import MPLUGOwl2ImageProcessor
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


__all__ = ["score_images", "score_pixel_values"]
