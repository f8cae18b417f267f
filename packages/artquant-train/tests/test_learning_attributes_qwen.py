"""Acceptance (issue 14, Qwen family): a tiny random Qwen2.5-VL with the real Qwen2 tokenizer
learns two attributes, each from its own question, through ``artquant-train`` with the Qwen
defaults (LoRA on the language model's linear layers, the merger trained), and its release
scores them through ``ArtQuant.score(attributes=...)``.

The pictures' "color" label follows their saturation and their "light and shadow" label their
brightness, drawn independently (see ``test_learning_attributes.py`` for mPLUG-Owl2).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from _attributes_synthetic import attribute_run_data
from _qwen_synthetic import save_tiny_qwen
from _train_synthetic import tiny_run_config
from scipy.stats import spearmanr

from artquant_train import train

N_TRAIN = 200
STEPS = 200
LR = 2e-3


@pytest.mark.slow
def test_tiny_qwen_learns_color_and_light_each_from_its_own_question(tmp_path: Path) -> None:
    images, held_out, train_file, val_file = attribute_run_data(
        tmp_path, n_train=N_TRAIN, grid_side=6
    )
    base = save_tiny_qwen(tmp_path / "base", seed=3)
    config = tiny_run_config(
        base,
        {"images": images, "score": train_file, "description": train_file},
        tmp_path / "run",
        **{
            "data.train": [{"path": str(train_file)}],
            "data.val": str(val_file),
            "data.group_by_length": False,
            "run.batch_size": 8,
            "run.grad_accum": 1,
            "run.max_steps": STEPS,
            "lora.r": 8,
            "lora.alpha": 16,
            "optim.lr": LR,
            "validation.every": STEPS // 2,
            "validation.best_on": "attribute_mean",
            "checkpoint.every": 0,
        },
    )
    started = time.perf_counter()
    result = train(config)
    elapsed = time.perf_counter() - started

    assert result.final_dir is not None
    labels = {
        "color": np.array([color for _, color, _ in held_out]),
        "light_and_shadow": np.array([light for _, _, light in held_out]),
    }
    assert abs(spearmanr(labels["color"], labels["light_and_shadow"]).statistic) < 0.1
    sdk = pytest.importorskip("artquant_sdk")
    scorer = sdk.ArtQuant.from_pretrained(result.final_dir, device="cpu", dtype="float32")
    assert scorer.attributes == ["light_and_shadow", "color"]  # APDDv2's table order
    results = scorer.score([images / name for name, _, _ in held_out], attributes="all")
    own, cross = {}, {}
    for ident in labels:
        other = "color" if ident == "light_and_shadow" else "light_and_shadow"
        pred = np.array([r.attributes[ident].score for r in results])
        own[ident] = spearmanr(pred, labels[ident]).statistic
        cross[ident] = spearmanr(pred, labels[other]).statistic
    last = result.validations[-1]
    for ident in own:  # the SDK gives the trainer's own validation numbers
        assert own[ident] == pytest.approx(last[f"{ident}/srcc"], abs=1e-6)
    assert min(own.values()) >= 0.85, (own, cross, result.validations)
    assert max(abs(v) for v in cross.values()) <= 0.3, (own, cross)
    assert elapsed < 600, f"training took {elapsed:.0f} s"
