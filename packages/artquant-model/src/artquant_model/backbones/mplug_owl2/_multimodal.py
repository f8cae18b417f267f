"""The image-token splice of mPLUG-Owl2 as pure tensor functions.

The original ``prepare_inputs_labels_for_multimodal`` walks every sample left to right: each
``IMAGE_TOKEN_INDEX`` (-200) is replaced by the features of the next unused image, one image counter
runs over the whole batch, and a sample without a -200 still consumes one image that contributes no
tokens (a ZeRO-3 workaround kept for exactness). These functions reproduce that, and in addition
splice the attention mask in place (the original prepends ones) and derive position ids from it,
so left- or right-padded batches give each row its batch-of-one result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

IMAGE_TOKEN_INDEX = -200
IGNORE_INDEX = -100

PaddingSide = Literal["left", "right"]


@dataclass
class MultimodalInputs:
    """The spliced inputs of the language model, as ``forward(inputs_embeds=...)`` consumes them.

    Attributes:
        inputs_embeds: ``[batch, length, hidden]``; padded positions are zeros.
        attention_mask: ``[batch, length]`` long, 1 on real tokens (text and image), 0 on padding.
        position_ids: ``[batch, length]`` long, ``cumsum(attention_mask) - 1`` (1 on padding).
        modality_indicators: ``[batch, length]`` long, 1 on image tokens, 0 elsewhere.
        labels: ``[batch, length]`` long with image and padding positions -100, or ``None`` when no
            labels were given.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    modality_indicators: torch.Tensor
    labels: torch.Tensor | None = None


def check_padding_side(padding_side: str) -> PaddingSide:
    """Return ``padding_side`` if it is ``"left"`` or ``"right"``, else raise ``ValueError``."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    return padding_side  # type: ignore[return-value]


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count only attended tokens: ``cumsum(mask) - 1``, and 1 where masked.

    Args:
        attention_mask: ``[batch, length]`` of 0/1.

    Returns:
        ``[batch, length]`` long tensor.
    """
    mask = attention_mask.long()
    positions = mask.cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)


def _image_slots(row: torch.Tensor) -> list[int]:
    return torch.nonzero(row == IMAGE_TOKEN_INDEX).flatten().tolist()


def count_image_slots(input_ids: torch.Tensor) -> list[int]:
    """How many image units each sample consumes (a sample without -200 still consumes one).

    Args:
        input_ids: ``[batch, length]``.

    Returns:
        One count per sample, as the original's image counter advances.
    """
    counts = (input_ids == IMAGE_TOKEN_INDEX).sum(-1).tolist()
    return [max(int(count), 1) for count in counts]


def _pad_rows(
    rows: Sequence[torch.Tensor], length: int, value: float | int, side: PaddingSide
) -> torch.Tensor:
    padded = []
    for row in rows:
        missing = length - row.shape[0]
        if missing:
            pad = row.new_full((missing, *row.shape[1:]), value)
            row = torch.cat([pad, row] if side == "left" else [row, pad], dim=0)
        padded.append(row)
    return torch.stack(padded, dim=0)


def splice_attention_mask(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    tokens_per_image: Sequence[int],
    padding_side: PaddingSide = "right",
) -> torch.Tensor:
    """The attention mask of the spliced sequence, without computing any image features.

    Each -200 becomes ``tokens_per_image[k]`` positions carrying the mask value of the -200; rows
    are padded with 0 to the longest spliced row on ``padding_side``. Used by generation to extend
    the mask of later steps, where only token ids are known.

    Args:
        input_ids: ``[batch, length]`` with -200 where images go.
        attention_mask: ``[batch, length]`` or ``None`` (all ones).
        tokens_per_image: Spliced length of each image unit, in consumption order.
        padding_side: Where shorter rows are padded.

    Returns:
        ``[batch, spliced_length]`` long tensor.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    rows = []
    unit = 0
    for ids, mask in zip(input_ids, attention_mask, strict=True):
        slots = _image_slots(ids)
        if not slots:
            unit += 1 if tokens_per_image else 0
            rows.append(mask.long())
            continue
        pieces = []
        start = 0
        for slot in slots:
            pieces.append(mask[start:slot].long())
            pieces.append(mask[slot].long().expand(tokens_per_image[unit]))
            unit += 1
            start = slot + 1
        pieces.append(mask[start:].long())
        rows.append(torch.cat(pieces))
    length = max(row.shape[0] for row in rows)
    return _pad_rows(rows, length, 0, padding_side)


def splice_inputs(
    input_ids: torch.Tensor,
    image_features: Sequence[torch.Tensor] | None,
    embed_tokens: Callable[[torch.Tensor], torch.Tensor],
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    padding_side: PaddingSide = "right",
) -> MultimodalInputs:
    """Replace every -200 by the next image's features (the original splice, mask spliced in place).

    Args:
        input_ids: ``[batch, length]`` token ids with -200 where an image goes.
        image_features: One ``[tokens, hidden]`` tensor per image unit (an image, or all frames of
            one multi-frame sample), in consumption order; ``None`` for text only.
        embed_tokens: The token embedding (``nn.Embedding``) of the language model.
        attention_mask: ``[batch, length]`` 0/1 mask of the unspliced ids, or ``None``.
        labels: ``[batch, length]`` labels of the unspliced ids, or ``None``.
        padding_side: Where rows shorter than the longest spliced row are padded.

    Returns:
        The spliced :class:`MultimodalInputs`.

    Raises:
        ValueError: When -200 occurs without images, when the prompts need more images than given,
            or when images are left over.
    """
    batch = input_ids.shape[0]
    units = list(image_features) if image_features is not None else []
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match input_ids shape "
            f"{tuple(input_ids.shape)}"
        )
    if labels is not None and labels.shape != input_ids.shape:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match input_ids shape "
            f"{tuple(input_ids.shape)}"
        )
    n_slots = int((input_ids == IMAGE_TOKEN_INDEX).sum())
    if not units:
        if n_slots:
            raise ValueError(
                f"input_ids hold {n_slots} image tokens ({IMAGE_TOKEN_INDEX}) but no images "
                "were given"
            )
    else:
        needed = sum(count_image_slots(input_ids))
        if needed != len(units):
            raise ValueError(
                f"the prompts consume {needed} images (one per {IMAGE_TOKEN_INDEX} token, and one "
                f"for each sample without an image token, as the original does) but "
                f"{len(units)} were given"
            )
    hidden_rows: list[torch.Tensor] = []
    mask_rows: list[torch.Tensor] = []
    indicator_rows: list[torch.Tensor] = []
    label_rows: list[torch.Tensor] = []
    unit = 0
    for b in range(batch):
        ids, mask = input_ids[b], attention_mask[b].long()
        row_labels = labels[b] if labels is not None else None
        slots = _image_slots(ids)
        if not slots:
            if units:
                unit += 1  # consumes one image that contributes no tokens
            hidden_rows.append(embed_tokens(ids))
            mask_rows.append(mask)
            indicator_rows.append(torch.zeros_like(ids))
            if row_labels is not None:
                label_rows.append(row_labels)
            continue
        bounds = [-1, *slots, ids.shape[0]]
        text_ids = torch.cat([ids[bounds[k] + 1 : bounds[k + 1]] for k in range(len(bounds) - 1)])
        text_embeds = embed_tokens(text_ids)
        pieces, masks, indicators, piece_labels = [], [], [], []
        offset = 0
        for k in range(len(bounds) - 1):
            start, stop = bounds[k] + 1, bounds[k + 1]
            n_text = stop - start
            pieces.append(text_embeds[offset : offset + n_text])
            offset += n_text
            masks.append(mask[start:stop])
            indicators.append(torch.zeros_like(ids[start:stop]))
            if row_labels is not None:
                piece_labels.append(row_labels[start:stop])
            if k < len(slots):
                features = units[unit].to(dtype=text_embeds.dtype, device=text_embeds.device)
                unit += 1
                n_image = features.shape[0]
                pieces.append(features)
                masks.append(mask[stop].expand(n_image))
                indicators.append(torch.ones(n_image, dtype=ids.dtype, device=ids.device))
                if row_labels is not None:
                    piece_labels.append(row_labels.new_full((n_image,), IGNORE_INDEX))
        hidden_rows.append(torch.cat(pieces))
        mask_rows.append(torch.cat(masks))
        indicator_rows.append(torch.cat(indicators))
        if row_labels is not None:
            label_rows.append(torch.cat(piece_labels))
    length = max(row.shape[0] for row in hidden_rows)
    spliced_mask = _pad_rows(mask_rows, length, 0, padding_side)
    return MultimodalInputs(
        inputs_embeds=_pad_rows(hidden_rows, length, 0.0, padding_side),
        attention_mask=spliced_mask,
        position_ids=position_ids_from_mask(spliced_mask),
        modality_indicators=_pad_rows(indicator_rows, length, 0, padding_side),
        labels=_pad_rows(label_rows, length, IGNORE_INDEX, padding_side) if label_rows else None,
    )
