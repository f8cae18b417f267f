"""Mixing, epoch batches, sharding over processes, collation, level positions after the splice."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from artquant_train.data import (
    collate_rows,
    global_micro_batches,
    level_positions_from_rank,
    mix_sources,
    rank_slice,
)


def test_mix_sources_replicates_integer_part_and_samples_the_fraction() -> None:
    a, b = ["a0", "a1"], [f"b{i}" for i in range(8)]
    mixed = mix_sources([a, b], [2, 1.25], seed=3)
    counts = Counter(mixed)
    assert counts["a0"] == 2
    assert counts["a1"] == 2
    assert sum(counts[x] for x in b) == 8 + 2  # the list once, plus floor(0.25 * 8) sampled
    assert all(counts[x] in (1, 2) for x in b)
    assert mixed == mix_sources([a, b], [2, 1.25], seed=3)  # seeded
    extras = {tuple(mix_sources([a, b], [1, 0.5], seed=s)[-4:]) for s in range(6)}
    assert len(extras) > 1  # the sampled share depends on the seed
    with pytest.raises(ValueError, match="> 0"):
        mix_sources([a], [0.0], seed=0)
    with pytest.raises(ValueError, match="2 sources but 1 weights"):
        mix_sources([a, b], [1.0], seed=0)


def test_epoch_batches_cover_every_item_once_and_depend_on_seed_and_epoch() -> None:
    lengths = [5, 60, 7, 300, 9, 58, 310, 6, 61, 8, 305, 59]
    batches = global_micro_batches(lengths, global_batch=3, seed=1, epoch=0, group_by_length=False)
    assert sorted(i for b in batches for i in b) == list(range(12))
    assert batches == global_micro_batches(
        lengths, global_batch=3, seed=1, epoch=0, group_by_length=False
    )
    assert batches != global_micro_batches(
        lengths, global_batch=3, seed=1, epoch=1, group_by_length=False
    )


def test_length_grouping_puts_similar_lengths_together_longest_first() -> None:
    lengths = [5, 60, 7, 300, 9, 58, 310, 6, 61, 8, 305, 59]
    batches = global_micro_batches(lengths, global_batch=3, seed=0, epoch=0, group_by_length=True)
    assert sorted(i for b in batches for i in b) == list(range(12))
    groups = [sorted(lengths[i] for i in b) for b in batches]
    assert groups[0] == [300, 305, 310]  # the batch with the longest sample comes first
    assert sorted(groups) == [[5, 6, 7], [8, 9, 58], [59, 60, 61], [300, 305, 310]]


def test_short_last_batch_is_dropped_when_processes_cannot_all_get_a_row() -> None:
    batches = global_micro_batches(
        [1] * 5, global_batch=4, seed=0, epoch=0, group_by_length=False, min_rows=2
    )
    assert [len(b) for b in batches] == [4]
    with pytest.raises(ValueError, match="global_batch"):
        global_micro_batches([1], global_batch=0, seed=0, epoch=0, group_by_length=False)


def test_rank_slices_partition_the_global_batch_contiguously() -> None:
    batch = [9, 4, 7, 1, 3]
    shares = [rank_slice(batch, r, 2) for r in range(2)]
    assert shares == [[9, 4], [7, 1, 3]]
    assert rank_slice(batch, 0, 1) == batch
    with pytest.raises(
        ValueError, match=r"rank must be in \[0, world_size\).*got rank 2, world_size 2"
    ):
        rank_slice(batch, 2, 2)
    with pytest.raises(ValueError, match="got rank 0, world_size 0"):
        rank_slice(batch, 0, 0)


def _row(ids: list[int], labels: list[int], rank: int) -> dict[str, object]:
    return {
        "index": len(ids),
        "input_ids": tuple(ids),
        "labels": tuple(labels),
        "level_rank": rank,
        "level_probs": (0.25, 0.75),
        "image": torch.ones(3, 2, 2),
    }


def test_collate_right_pads_ids_labels_and_mask() -> None:
    batch = collate_rows(
        [_row([1, 5, 6], [-100, 5, 6], 0), _row([1, 7], [-100, 7], -1)], pad_token_id=0
    )
    assert batch["input_ids"].tolist() == [[1, 5, 6], [1, 7, 0]]
    assert batch["labels"].tolist() == [[-100, 5, 6], [-100, 7, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["images"].shape == (2, 3, 2, 2)
    assert batch["level_rank"].tolist() == [0, -1]
    with pytest.raises(ValueError, match="empty"):
        collate_rows([], pad_token_id=0)


def test_level_position_is_found_after_the_image_splice() -> None:
    # text labels [-100, -100(image), 11, 12, 13]: level token 12 has rank 1 among supervised.
    # After the splice the image becomes 3 positions, so 12 moves from index 3 to index 5.
    spliced = torch.tensor([[-100, -100, -100, -100, 11, 12, 13], [-100] * 4 + [21, 22, -100]])
    positions = level_positions_from_rank(spliced, torch.tensor([1, -1]))
    assert positions.tolist() == [5, -1]
    with pytest.raises(ValueError, match="exceed"):
        level_positions_from_rank(spliced, torch.tensor([5, -1]))
