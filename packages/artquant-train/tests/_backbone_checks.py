"""Checks shared by the tests of the generic backbone's families (Qwen, Gemma 3, InternVL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _train_synthetic import tiny_run_config


def assert_checkpointing_changes_nothing(
    base: Path, data: dict[str, Path], tmp: Path, **overrides: object
) -> set[str]:
    """One micro-batch (two score rows, two description rows of ``small_data``) through
    ``loss_sums`` with and without gradient checkpointing: the same loss (rel 1e-6) and
    gradients (rel 1e-5, abs 1e-7; fp32, recomputation repeats the same kernels on the same
    inputs, so only summation order could differ).

    Returns:
        The names of the parameters that got gradients.
    """
    from artquant_train.backbones import training_backbone
    from artquant_train.data import TrainingDataset
    from artquant_train.loop import build_training_items
    from artquant_train.losses import combine_losses

    backbone = training_backbone(base)
    results = []
    for checkpointing in (False, True):
        config = backbone.resolve(
            tiny_run_config(
                base,
                data,
                tmp,
                **{"model.gradient_checkpointing": checkpointing, "lora.dropout": 0.0},
                **overrides,
            )
        )
        backbone.load_processing(config)
        items, level_ids = build_training_items(config, backbone.tokenizer, backbone=backbone)
        dataset = TrainingDataset(items, backbone.load_pixels, 5)
        batch = backbone.collate_fn()([dataset[i] for i in (0, 1, 30, 31)])  # score + text rows
        torch.manual_seed(0)  # the same LoRA initialisation in both
        prepared = backbone.prepare(backbone.load_model(config, torch.float32), config)
        prepared.train()
        sums = backbone.loss_sums(
            backbone.training_forward(prepared),
            batch,
            torch.tensor(level_ids),
            kl="open",
            dtype=torch.float32,
        )
        assert int(sums.score_rows) == 2
        assert int(sums.description_tokens) > 0
        loss = combine_losses(sums)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in prepared.named_parameters() if p.requires_grad}
        results.append((float(loss.detach()), grads))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-6)
    assert set(results[1][1]) == set(results[0][1])
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, rtol=1e-5, atol=1e-7)
    return set(results[0][1])


def brightness_run_config(
    base: Path,
    data: dict[str, Path],
    output_dir: Path,
    *,
    steps: int,
    every: int,
    **overrides: object,
) -> Any:
    """The learning tests' run on ``make_dataset(n_train=160, n_val=48)``: score samples and a
    quarter weight of description samples, batches of 8, LoRA r 8 (alpha 16), lr 2e-3,
    ``steps`` steps validated every ``every``, no checkpoints."""
    return tiny_run_config(
        base,
        data,
        output_dir,
        **{
            "data.train": [
                {"path": str(data["score"])},
                {"path": str(data["description"]), "weight": 0.25},
            ],
            "data.val": str(data["val"]),
            "run.batch_size": 8,
            "run.grad_accum": 1,
            "run.max_steps": steps,
            "lora.r": 8,
            "lora.alpha": 16,
            "optim.lr": 2e-3,
            "validation.every": every,
            "checkpoint.every": 0,
            **overrides,
        },
    )
