"""Acceptance: a tiny random model learns a visible property (brightness) to SRCC >= 0.9."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from _backbone_checks import brightness_run_config
from _train_synthetic import make_dataset
from scipy.stats import spearmanr

from artquant_model import (
    MPLUGOwl2ImageProcessor,
    load_image,
    load_model,
    load_tokenizer,
    tokenizer_image_token,
)
from artquant_model.testing import save_tiny_checkpoint
from artquant_train import level_token_ids, train
from artquant_train.validation import default_validation_prompt, read_validation_items, score_items


@pytest.mark.slow
def test_tiny_model_learns_brightness_to_srcc_0_9(tmp_path: Path) -> None:
    """Recipe losses and weights (0.05 on the score terms), LoRA + full vision tuning; only the
    sizes and the learning rate are scaled for a 0.2 M-parameter model and two minutes of CPU."""
    data = make_dataset(tmp_path / "data", n_train=160, n_val=48, seed=11)
    base = save_tiny_checkpoint(tmp_path / "base", seed=3)
    config = brightness_run_config(base, data, tmp_path / "run", steps=75, every=25)
    started = time.perf_counter()
    result = train(config)
    elapsed = time.perf_counter() - started
    first, last = result.validations[0], result.validations[-1]
    assert last["srcc"] >= 0.9, result.validations
    assert result.best_metric is not None
    assert result.best_metric >= last["srcc"]
    assert elapsed < 240, f"took {elapsed:.0f} s"

    # The written release scores the held-out images the same way outside the trainer.
    model = load_model(result.final_dir, base=base).eval()
    processor = MPLUGOwl2ImageProcessor.from_pretrained(result.final_dir)
    items = read_validation_items(data["val"], data["images"])
    tokenizer = load_tokenizer(result.final_dir)
    prompt_ids = tokenizer_image_token(default_validation_prompt(config.levels.prefix), tokenizer)
    _, level_ids = level_token_ids(tokenizer, config.levels)
    pred = score_items(
        model,
        items,
        prompt_ids=prompt_ids,
        level_ids=level_ids,
        values=config.levels.values,
        image_processor=processor,
        load_image=load_image,
        device=model.device,
        batch_size=16,
    )
    target = np.array([item.score for item in items])
    assert spearmanr(pred, target).statistic == pytest.approx(last["srcc"], abs=1e-6)
    assert first["step"] == 25.0
