"""Acceptance: ``final/`` scores through artquant_model, ``ArtQuant.from_pretrained`` and the
``artquant`` CLI, as a LoRA release over the base and merged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _train_synthetic import tiny_run_config
from scipy.stats import spearmanr

from artquant_model import (
    MPLUGOwl2ImageProcessor,
    detect_checkpoint_format,
    load_image,
    load_model,
    load_tokenizer,
    tokenizer_image_token,
)
from artquant_train import LevelsConfig, level_token_ids, train
from artquant_train.validation import default_validation_prompt, read_validation_items, score_items


def _scores(folder: Path, base: Path, val: Path, images: Path) -> np.ndarray:
    model = load_model(folder, base=base).eval()
    tokenizer = load_tokenizer(folder)
    _, level_ids = level_token_ids(tokenizer, LevelsConfig())
    return score_items(
        model,
        read_validation_items(val, images),
        prompt_ids=tokenizer_image_token(
            default_validation_prompt("The quality of the painting is"), tokenizer
        ),
        level_ids=level_ids,
        values=(10.0, 7.5, 5.0, 3.5, 1.0),
        image_processor=MPLUGOwl2ImageProcessor.from_pretrained(folder),
        load_image=load_image,
        device=model.device,
        batch_size=4,
    )


@pytest.fixture(scope="module")
def trained(tiny_base: Path, small_data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("release") / "run"
    config = tiny_run_config(tiny_base, small_data, out, **{"data.val": str(small_data["val"])})
    result = train(config)
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    return result


def test_final_lora_release_reproduces_the_trainers_validation(
    trained, tiny_base: Path, small_data: dict[str, Path]
) -> None:
    final = trained.final_dir
    assert detect_checkpoint_format(final) == "lora"
    pred = _scores(final, tiny_base, small_data["val"], small_data["images"])
    target = [i.score for i in read_validation_items(small_data["val"], small_data["images"])]
    assert spearmanr(pred, target).statistic == pytest.approx(
        trained.validations[-1]["srcc"], abs=1e-9
    )
    assert np.mean(np.abs(pred - target)) == pytest.approx(trained.validations[-1]["mae"], abs=1e-6)


@pytest.mark.slow
def test_final_scores_through_the_sdk_and_the_cli(
    trained, tiny_base: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    sdk = pytest.importorskip("artquant_sdk")
    items = read_validation_items(small_data["val"], small_data["images"])
    expected = _scores(trained.final_dir, tiny_base, small_data["val"], small_data["images"])
    scorer = sdk.ArtQuant.from_pretrained(
        trained.final_dir, base=tiny_base, device="cpu", dtype="float32"
    )
    results = scorer.score([str(i.image) for i in items], batch_size=3)
    np.testing.assert_allclose([r.score for r in results], expected, rtol=0, atol=1e-5)

    out = tmp_path / "scores.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "artquant_sdk.cli",
            "score",
            "--model",
            str(trained.final_dir),
            "--base",
            str(tiny_base),
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--offline",
            "--workers",
            "0",
            "--no-progress",
            "--out",
            str(out),
            *[str(i.image) for i in items],
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {
        Path(r["image"]).name: r["score"] for r in map(json.loads, out.read_text().splitlines())
    }
    np.testing.assert_allclose([rows[i.image.name] for i in items], expected, rtol=0, atol=1e-5)


def test_merged_release_is_a_full_checkpoint_with_the_same_scores(
    tiny_base: Path, small_data: dict[str, Path], tmp_path: Path, trained
) -> None:
    config = tiny_run_config(
        tiny_base,
        small_data,
        tmp_path / "merged",
        **{"checkpoint.merge_lora": True, "checkpoint.every": 0},
    )
    result = train(config)
    assert detect_checkpoint_format(result.final_dir) == "full"
    assert (result.final_dir / "model.safetensors").is_file()
    assert (result.final_dir / "preprocessor_config.json").is_file()
    merged = _scores(result.final_dir, tiny_base, small_data["val"], small_data["images"])
    same_run = _scores(trained.final_dir, tiny_base, small_data["val"], small_data["images"])
    # same config and seed as `trained` except the export format: identical weights
    np.testing.assert_allclose(merged, same_run, rtol=0, atol=1e-5)
