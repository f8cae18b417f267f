"""Atomic checkpoint folders, discovery of the newest complete one, RNG round trips."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from artquant_train.checkpointing import (
    COMPLETE_MARKER,
    TrainerState,
    atomic_directory,
    capture_rng_state,
    checkpoint_name,
    clean_stale_temporaries,
    complete_checkpoints,
    latest_checkpoint,
    load_torch_state,
    load_trainable,
    prune_checkpoints,
    restore_rng_state,
    save_trainable,
)
from artquant_train.errors import CheckpointStateError


def test_atomic_directory_publishes_only_complete_folders(tmp_path: Path) -> None:
    with atomic_directory(tmp_path / checkpoint_name(2)) as tmp:
        (tmp / "a.txt").write_text("x")

    def crash() -> None:
        with atomic_directory(tmp_path / checkpoint_name(4)) as half:
            (half / "a.txt").write_text("half")
            raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash"):
        crash()
    assert not (tmp_path / checkpoint_name(4)).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    # a folder without the marker (e.g. copied by hand, or an old-style crash) is ignored
    (tmp_path / checkpoint_name(6)).mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / checkpoint_name(2)
    assert (tmp_path / checkpoint_name(2) / COMPLETE_MARKER).is_file()


def test_atomic_directory_replaces_an_existing_folder(tmp_path: Path) -> None:
    target = tmp_path / "best"
    for text in ("old", "new"):
        with atomic_directory(target) as tmp:
            (tmp / "v.txt").write_text(text)
    assert (target / "v.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_newest_first_pruning_and_stale_cleanup(tmp_path: Path) -> None:
    for step in (10, 2, 30):
        with atomic_directory(tmp_path / checkpoint_name(step)):
            pass
    (tmp_path / ".tmp-checkpoint-00000040-abcd").mkdir()
    assert [p.name for p in complete_checkpoints(tmp_path)] == [
        checkpoint_name(2),
        checkpoint_name(10),
        checkpoint_name(30),
    ]
    assert [p.name for p in prune_checkpoints(tmp_path, keep_last=2)] == [checkpoint_name(2)]
    assert len(clean_stale_temporaries(tmp_path)) == 1
    assert latest_checkpoint(tmp_path / "missing") is None


def test_rng_state_round_trip_through_weights_only_load(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(1)  # noqa: NPY002 - the global generator is what is saved
    torch.manual_seed(1)
    torch.save(capture_rng_state(), tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    restore_rng_state(load_torch_state(tmp_path / "rng.pt"))
    second = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert first[0] == second[0]
    assert first[1] == second[1]
    assert torch.equal(first[2], second[2])


def test_trainable_round_trip_and_mismatch_errors(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    model[1].weight.requires_grad_(False)
    save_trainable(model, tmp_path / "t.safetensors")
    copy = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    copy[1].weight.requires_grad_(False)
    load_trainable(copy, tmp_path / "t.safetensors")
    assert torch.equal(copy[0].weight, model[0].weight)
    assert not torch.equal(copy[1].weight, model[1].weight)  # frozen: not saved, not loaded
    other = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(CheckpointStateError, match="missing"):
        load_trainable(other, tmp_path / "t.safetensors")
    with pytest.raises(CheckpointStateError, match="missing"):
        load_torch_state(tmp_path / "absent.pt")


def test_trainer_state_json_round_trip() -> None:
    state = TrainerState(5, 1, 3, 40, best_metric=0.5, best_step=4, world_size=2)
    assert TrainerState.from_json(state.to_json()) == state
