"""Training data: mixing sources, encoding samples, length-grouped batches, collation.

Sharding is done here, not by a ``DistributedSampler``: every process computes the same list of
*global* micro-batches for an epoch (a pure function of the seed, the epoch and the sample
lengths) and takes its contiguous slice. So two processes with batch ``b`` see exactly the rows
one process with batch ``2b`` sees, and resuming only needs the epoch and the number of
micro-batches already consumed.

Example:
    >>> mix_sources([["a", "b"], ["c", "d", "e", "f"]], [2, 0.5], seed=0)[:4]
    ['a', 'b', 'a', 'b']
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from artquant_train.conversation import EncodedConversation, encode_conversation
from artquant_train.errors import (
    AnswerFormatError,
    EmptyDatasetError,
    MissingImageError,
    SampleError,
)
from artquant_train.losses import IGNORE_INDEX

logger = logging.getLogger(__name__)

T = TypeVar("T")

SCORE_TASKS = frozenset({"score"})
TEXT_TASKS = frozenset({"description", "attribute"})


def mix_sources(lists: Sequence[Sequence[T]], weights: Sequence[float], seed: int) -> list[T]:
    """Concatenate sample lists with mixing weights, as the original ``--data_weights``.

    The integer part of a weight replicates its list; the fractional part adds a random sample
    (without replacement, seeded) of ``floor(fraction × len)`` of its items.

    Args:
        lists: one list of samples per source.
        weights: one positive weight per source.
        seed: seeds the fractional sampling.

    Returns:
        The mixed list (source order, copies, then the sampled share).

    Raises:
        ValueError: counts differ or a weight is not positive.

    Example:
        >>> mixed = mix_sources([["s1", "s2"], ["d1", "d2", "d3", "d4"]], [1, 0.5], seed=0)
        >>> mixed[:2], len(mixed)
        (['s1', 's2'], 4)
    """
    if len(lists) != len(weights):
        raise ValueError(f"{len(lists)} sources but {len(weights)} weights")
    rng = random.Random(seed)
    mixed: list[T] = []
    for items, weight in zip(lists, weights, strict=True):
        if not weight > 0:
            raise ValueError(f"mixing weights must be > 0, got {weight}")
        whole = math.floor(weight)
        fraction = weight - whole
        for _ in range(whole):
            mixed.extend(items)
        share = math.floor(fraction * len(items))
        if share:
            mixed.extend(rng.sample(list(items), share))
    return mixed


@dataclass(frozen=True)
class TrainItem:
    """One encoded training sample.

    Attributes:
        sample_id: the sample's ``id``.
        image: absolute image path.
        encoded: ids, labels and level position.
        level_probs: soft level target for score samples, ``None`` for text samples.
        attribute: the attribute name of an attribute sample trained on its level word.
    """

    sample_id: str
    image: Path
    encoded: EncodedConversation
    level_probs: tuple[float, ...] | None
    attribute: str | None = None

    @property
    def is_score(self) -> bool:
        """Whether the sample teaches the level (score) answer."""
        return self.level_probs is not None

    def __len__(self) -> int:
        return len(self.encoded.input_ids)


def resolve_image(image: str, root: Path) -> Path:
    """The path of a sample's image: absolute paths as they are, others under ``root``."""
    path = Path(image).expanduser()
    return path if path.is_absolute() else root / path


def check_images(paths: Sequence[Path], *, source: str) -> None:
    """Fail early, listing the first missing files, when images do not exist.

    Raises:
        MissingImageError: at least one path is not a file.
    """
    missing = [path for path in paths if not path.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:5])
        raise MissingImageError(
            f"{len(missing)} of {len(paths)} images referenced by {source} are missing, e.g. "
            f"{shown}. Check --image-root (data.image_root)."
        )


def _task(sample: Any) -> str:
    task = getattr(sample, "task_type", None) or "score"
    task = str(task)
    if task not in SCORE_TASKS | TEXT_TASKS:
        raise SampleError(
            f"sample {getattr(sample, 'id', '?')!r}: task_type {task!r} is not one of "
            f"{sorted(SCORE_TASKS | TEXT_TASKS)}"
        )
    return task


def attribute_prefix(answer: str, words: Sequence[str]) -> str:
    """The text before the level word of an attribute answer (``The color of the painting is``).

    Raises:
        AnswerFormatError: the answer does not end with one of ``words`` (and punctuation).
    """
    alternatives = "|".join(re.escape(word) for word in words)
    match = re.match(rf"^(.*\S)\s+(?:{alternatives})\W*$", answer.strip(), flags=re.DOTALL)
    if match is None:
        raise AnswerFormatError(
            f"attribute answer {answer!r} must end with a level word {list(words)}"
        )
    return match.group(1)


def encode_samples(
    samples: Sequence[Any],
    *,
    tokenizer: Any,
    template: Any,
    score_levels: tuple[Sequence[int], Sequence[int]],
    level_prefix: str,
    level_probs_for: Any,
    image_root: Path,
    max_length: int,
    source: str,
    progress: bool = False,
    level_words: Sequence[str] = (),
    attribute_samples: str = "score",
    encoder: Any = encode_conversation,
) -> list[TrainItem]:
    """Encode samples of one source into :class:`TrainItem` (tokens, labels, targets).

    Args:
        samples: records with ``id``, ``image``, ``conversations``, ``task_type`` and, for
            score samples, ``level_probs`` and/or ``gt_score``.
        tokenizer: the tokenizer.
        template: the :class:`~artquant_train.config.TemplateConfig`.
        score_levels: ``(prefix_ids, level_ids)``.
        level_prefix: the prefix text (for messages).
        level_probs_for: ``callable(sample) -> tuple[float, ...]`` giving a score sample's
            soft target.
        image_root: folder relative image paths are resolved against.
        max_length: maximum ids per sample.
        source: the file name, for messages.
        progress: show a tqdm bar.
        level_words: the level words (to find an attribute answer's own prefix).
        attribute_samples: ``score`` (KL at the level word) or ``description`` (plain CE).
        encoder: the backbone's conversation encoder (default mPLUG-Owl2's
            :func:`~artquant_train.conversation.encode_conversation`).

    Returns:
        The encoded items.

    Raises:
        EmptyDatasetError: ``samples`` is empty.
        MissingImageError: images do not exist.
        SampleError: a sample cannot be encoded (the message names its id and file).
    """
    if not samples:
        raise EmptyDatasetError(f"{source} holds no samples")
    paths = []
    for sample in samples:
        image = getattr(sample, "image", None)
        if not image:
            raise SampleError(f"{source}: sample {getattr(sample, 'id', '?')!r} has no image")
        paths.append(resolve_image(str(image), image_root))
    check_images(paths, source=source)
    iterator: Any = zip(samples, paths, strict=True)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(samples), desc=f"encode {Path(source).name}")
    items: list[TrainItem] = []
    prefixes: dict[str, list[int]] = {}
    for sample, path in iterator:
        task = _task(sample)
        is_score = task in SCORE_TASKS or (task == "attribute" and attribute_samples == "score")
        try:
            levels, prefix_text = score_levels, level_prefix
            if task == "attribute" and is_score:
                prefix_text = attribute_prefix(sample.conversations[-1].value, level_words)
                if prefix_text not in prefixes:
                    prefixes[prefix_text] = list(
                        tokenizer(prefix_text, add_special_tokens=False)["input_ids"]
                    )
                levels = (prefixes[prefix_text], score_levels[1])
            encoded = encoder(
                sample.conversations,
                tokenizer,
                template,
                score_levels=levels if is_score else None,
                level_prefix=prefix_text,
                max_length=max_length,
            )
            probs = tuple(float(p) for p in level_probs_for(sample)) if is_score else None
        except SampleError as exc:
            raise type(exc)(f"{source}: sample {getattr(sample, 'id', '?')!r}: {exc}") from exc
        attribute = getattr(sample, "attribute", None) if task == "attribute" and is_score else None
        items.append(TrainItem(str(getattr(sample, "id", "")), path, encoded, probs, attribute))
    return items


def global_micro_batches(
    lengths: Sequence[int],
    *,
    global_batch: int,
    seed: int,
    epoch: int,
    group_by_length: bool,
    min_rows: int = 1,
) -> list[list[int]]:
    """The global micro-batches of one epoch (indices into the item list).

    A seeded permutation; with ``group_by_length`` it is cut into mega-batches of 50 global
    batches, each sorted by length (longest first) and cut into batches whose order is then
    shuffled, with the batch holding the longest sample first (out-of-memory shows at once).

    Args:
        lengths: token length of each item.
        global_batch: rows per global micro-batch (per-process batch × processes).
        seed: run seed.
        epoch: epoch number (each epoch has its own order).
        group_by_length: group similar lengths.
        min_rows: drop a last batch with fewer rows (so every process gets one).

    Returns:
        Lists of item indices.

    Raises:
        ValueError: ``global_batch`` is below 1.

    Example:
        >>> batches = global_micro_batches([5, 9, 7, 3, 8], global_batch=2, seed=0, epoch=0,
        ...                                group_by_length=False, min_rows=2)
        >>> [len(b) for b in batches]  # the fifth item would make a batch of 1 < min_rows
        [2, 2]
    """
    if global_batch < 1:
        raise ValueError(f"global_batch must be >= 1, got {global_batch}")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if not group_by_length:
        batches = [order[i : i + global_batch].tolist() for i in range(0, len(order), global_batch)]
    else:
        lens = np.asarray(lengths)
        mega = global_batch * 50
        batches = []
        for start in range(0, len(order), mega):
            chunk = order[start : start + mega]
            chunk = chunk[np.argsort(-lens[chunk], kind="stable")]
            batches.extend(
                chunk[i : i + global_batch].tolist() for i in range(0, len(chunk), global_batch)
            )
        shuffled = rng.permutation(len(batches))
        batches = [batches[i] for i in shuffled]
        longest = max(range(len(batches)), key=lambda i: max(lens[batches[i]]), default=0)
        if batches:
            batches.insert(0, batches.pop(longest))
    return [batch for batch in batches if len(batch) >= min_rows]


def rank_slice(batch: Sequence[int], rank: int, world_size: int) -> list[int]:
    """The contiguous share of a global micro-batch that process ``rank`` trains on.

    Args:
        batch: the item indices of one global micro-batch.
        rank: this process's rank, in ``[0, world_size)``.
        world_size: the number of processes.

    Returns:
        The indices of ``rank``'s share; the shares of all ranks concatenate to ``batch``.

    Raises:
        ValueError: ``world_size`` is below 1 or ``rank`` is outside ``[0, world_size)``.

    Example:
        >>> rank_slice([4, 0, 3, 1, 2], rank=0, world_size=2), rank_slice([4, 0, 3, 1, 2], 1, 2)
        ([4, 0], [3, 1, 2])
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"rank must be in [0, world_size) with world_size >= 1; got rank {rank}, "
            f"world_size {world_size}"
        )
    count = len(batch)
    start = (rank * count) // world_size
    stop = ((rank + 1) * count) // world_size
    return list(batch[start:stop])


class TrainingDataset(Dataset[dict[str, Any]]):
    """Items plus picture loading; returns one row for the backbone's collate function.

    Args:
        items: the encoded items.
        load_pixels: ``callable(path) -> pixels of one picture`` (a ``[3, S, S]`` tensor for
            mPLUG-Owl2, a one-picture ``VisionBatch`` for the Qwen-VL families, a one-picture
            ``TileBatch`` for Gemma 3 and InternVL).
        num_levels: length of the soft target (zeros for text rows).
    """

    def __init__(self, items: Sequence[TrainItem], load_pixels: Any, num_levels: int) -> None:
        self.items = list(items)
        self.load_pixels = load_pixels
        self.num_levels = num_levels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        probs = item.level_probs if item.level_probs is not None else (0.0,) * self.num_levels
        return {
            "index": index,
            "input_ids": item.encoded.input_ids,
            "labels": item.encoded.labels,
            "level_rank": item.encoded.level_rank if item.is_score else -1,
            "level_probs": probs,
            "image": self.load_pixels(item.image),
        }


def collate_rows(rows: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad rows into a batch.

    Returns:
        ``input_ids`` / ``labels`` / ``attention_mask`` ``[B, T]``, ``images`` ``[B, 3, S, S]``,
        ``level_rank`` ``[B]`` (``-1`` for text rows), ``level_probs`` ``[B, K]`` and
        ``index`` ``[B]``.
    """
    if not rows:
        raise ValueError("cannot collate an empty batch")
    width = max(len(row["input_ids"]) for row in rows)
    batch = len(rows)
    input_ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        input_ids[i, :n] = torch.tensor(row["input_ids"], dtype=torch.long)
        labels[i, :n] = torch.tensor(row["labels"], dtype=torch.long)
        mask[i, :n] = 1
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": mask,
        "images": torch.stack([row["image"] for row in rows]),
        "level_rank": torch.tensor([row["level_rank"] for row in rows], dtype=torch.long),
        "level_probs": torch.tensor([row["level_probs"] for row in rows], dtype=torch.float32),
        "index": torch.tensor([row["index"] for row in rows], dtype=torch.long),
    }


def level_positions_from_rank(
    spliced_labels: torch.Tensor, level_rank: torch.Tensor
) -> torch.Tensor:
    """Find the level token in spliced labels from its rank among the supervised tokens.

    Args:
        spliced_labels: ``[B, L]`` labels after the image splice.
        level_rank: ``[B]`` rank of the level token among each row's supervised tokens
            (``-1`` for text rows).

    Returns:
        ``[B]`` positions (``-1`` for text rows).

    Raises:
        ValueError: a row has fewer supervised tokens than its rank implies.
    """
    supervised = spliced_labels != IGNORE_INDEX
    running = supervised.long().cumsum(dim=1) - 1
    hit = supervised & (running == level_rank.unsqueeze(1))
    found = hit.any(dim=1)
    is_score = level_rank >= 0
    if bool((is_score & ~found).any()):
        raise ValueError(f"level ranks {level_rank.tolist()} exceed the supervised tokens")
    positions = hit.long().argmax(dim=1)
    return torch.where(is_score, positions, torch.full_like(positions, -1))


__all__ = [
    "TrainItem",
    "TrainingDataset",
    "attribute_prefix",
    "check_images",
    "collate_rows",
    "encode_samples",
    "global_micro_batches",
    "level_positions_from_rank",
    "mix_sources",
    "rank_slice",
    "resolve_image",
]
