"""Acceptance on a Qwen-VL base: a tiny random Qwen2.5-VL with the real Qwen2 tokenizer learns
brightness through ``train``; its final/ scores the same through transformers + peft alone, the
SDK and the CLI; resume is exact; the trainable parts follow the configuration."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _backbone_checks import assert_checkpointing_changes_nothing, brightness_run_config
from _qwen_synthetic import save_tiny_qwen
from _train_synthetic import make_dataset, tiny_run_config
from scipy.stats import spearmanr

from artquant_train import StepInfo, latest_checkpoint, train
from artquant_train.validation import read_validation_items

QUESTION = "How would you rate the quality of this painting?"
STEM = "The quality of the painting is"
WORDS = ("excellent", "good", "fair", "poor", "bad")
VALUES = (10.0, 7.5, 5.0, 3.5, 1.0)


@pytest.fixture(scope="module")
def qwen_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_qwen(tmp_path_factory.mktemp("qwen") / "base", "qwen2_5_vl", seed=3)


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _plain_scores(final: Path, base: Path, images: list[Path]) -> np.ndarray:
    """transformers + peft alone: the base, the adapter merged, the plain scoring procedure."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessorPil

    from artquant_model import load_image
    from artquant_model.testing import plain_vlm_scores

    model = AutoModelForImageTextToText.from_pretrained(str(base), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(final)).merge_and_unload().eval()
    scores = plain_vlm_scores(
        model,
        AutoTokenizer.from_pretrained(str(final)),
        Qwen2VLImageProcessorPil.from_pretrained(str(final)),
        [load_image(path) for path in images],
        question=QUESTION,
        stem=STEM,
        words=WORDS,
        values=VALUES,
    )
    return np.array([score for score, _ in scores])


@pytest.mark.slow
def test_tiny_qwen_learns_brightness_and_its_release_scores_the_same_everywhere(
    qwen_base: Path, tmp_path: Path
) -> None:
    """The learning test's data and recipe (losses, weights, KL), LoRA r 8 on the LM's linear
    layers + the merger (the Qwen defaults: vision tower frozen), 50 steps."""
    data = make_dataset(tmp_path / "data", n_train=160, n_val=48, seed=11)
    config = brightness_run_config(qwen_base, data, tmp_path / "run", steps=50, every=25)
    started = time.perf_counter()
    result = train(config)
    elapsed = time.perf_counter() - started
    last = result.validations[-1]
    assert last["srcc"] >= 0.9, result.validations
    assert elapsed < 400, f"took {elapsed:.0f} s"
    final = result.final_dir
    assert final is not None
    spec = json.loads((final / "artquant_spec.json").read_text())
    assert spec["questions"]["total"] == {"prompt": QUESTION, "stem": STEM, "raw_prompt": None}
    assert spec["resolution"]["mode"] == "native"
    assert json.loads((final / "adapter_config.json").read_text())["modules_to_save"]

    items = read_validation_items(data["val"], data["images"])
    target = np.array([item.score for item in items])
    images = [item.image for item in items]

    # 1. transformers + peft alone reproduce the trainer's validation numbers
    plain = _plain_scores(final, qwen_base, images)
    assert spearmanr(plain, target).statistic == pytest.approx(last["srcc"], abs=1e-9)
    assert np.mean(np.abs(plain - target)) == pytest.approx(last["mae"], abs=1e-5)

    # 2. the SDK (the spec travels in artquant_spec.json; the base from adapter_config.json)
    sdk = pytest.importorskip("artquant_sdk")
    scorer = sdk.ArtQuant.from_pretrained(final, device="cpu", dtype="float32")
    results = scorer.score([str(path) for path in images], batch_size=5)
    np.testing.assert_allclose([r.score for r in results], plain, rtol=0, atol=1e-5)

    # 3. the CLI
    out = tmp_path / "scores.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "artquant_sdk.cli",
            "score",
            "--model",
            str(final),
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
            *[str(path) for path in images],
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {
        Path(r["image"]).name: r["score"] for r in map(json.loads, out.read_text().splitlines())
    }
    np.testing.assert_allclose([rows[p.name] for p in images], plain, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_qwen_resume_after_interruption_gives_the_uninterrupted_weights(
    qwen_base: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    # 6 steps per epoch; 8 steps cross an epoch; LoRA dropout on, so the RNG state matters.
    overrides = {"run.max_steps": 8, "checkpoint.every": 3, "lora.dropout": 0.1}
    final: dict[str, torch.Tensor] = {}

    def keep_last(info: StepInfo) -> None:
        final.clear()
        final.update(_trainable(info.model))

    train(
        tiny_run_config(qwen_base, small_data, tmp_path / "straight", **overrides),
        on_step_end=keep_last,
    )
    reference = dict(final)
    assert any("merger" in name for name in reference)  # the fully trained projector too

    class Interrupted(Exception):
        pass

    def interrupt(info: StepInfo) -> None:
        if info.step == 7:  # after the checkpoint of step 6
            raise Interrupted

    cut = tmp_path / "cut"
    with pytest.raises(Interrupted):
        train(tiny_run_config(qwen_base, small_data, cut, **overrides), on_step_end=interrupt)
    assert latest_checkpoint(cut) == cut / "checkpoint-00000006"
    steps: list[int] = []

    def record(info: StepInfo) -> None:
        steps.append(info.step)
        keep_last(info)

    train(
        tiny_run_config(qwen_base, small_data, cut, **overrides, **{"run.resume": True}),
        on_step_end=record,
    )
    assert steps == [7, 8]
    assert set(final) == set(reference)
    for name, tensor in reference.items():
        assert torch.equal(final[name], tensor), name


def _prepared(qwen_base: Path, small_data: dict[str, Path], tmp: Path, **overrides: Any) -> Any:
    from artquant_train.backbones import training_backbone

    backbone = training_backbone(qwen_base)
    config = backbone.resolve(tiny_run_config(qwen_base, small_data, tmp, **overrides))
    return backbone.prepare(backbone.load_model(config, torch.float32), config)


def test_qwen_trainable_parts_follow_the_configuration(
    qwen_base: Path, small_data: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="artquant_train.backbones.hf_vlm"):
        prepared = _prepared(qwen_base, small_data, tmp_path)
    assert "LoRA r=4 alpha=8 (scale 2) on 14 modules" in caplog.text  # 2 layers x 7 linears
    trainable = {n for n, p in prepared.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if "lora_" in n}
    assert len(lora) == 14 * 2
    assert all(".language_model.layers." in n for n in lora)
    rest = trainable - lora
    assert rest
    assert all(".visual.merger.modules_to_save." in n for n in rest)
    assert not any(".visual.blocks." in n for n in trainable)

    with_vision = _prepared(qwen_base, small_data, tmp_path, **{"freeze.train_vision_model": True})
    names = {n for n, p in with_vision.named_parameters() if p.requires_grad}
    assert any(".visual.blocks." in n for n in names)
    assert any(".visual.patch_embed." in n for n in names)

    full = _prepared(
        qwen_base,
        small_data,
        tmp_path,
        **{"lora.enabled": False, "freeze.train_llm": True, "freeze.train_abstractor": False},
    )
    names = {n for n, p in full.named_parameters() if p.requires_grad}
    assert any(n.startswith("model.language_model.layers.") for n in names)
    assert not any("embed_tokens" in n or "visual" in n for n in names)

    with pytest.raises(ValueError, match=r"lora\.enabled=false"):
        _prepared(qwen_base, small_data, tmp_path, **{"freeze.train_llm": True})


def test_qwen_gradient_checkpointing_gives_the_same_loss_and_gradients(
    qwen_base: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    assert_checkpointing_changes_nothing(qwen_base, small_data, tmp_path)


@pytest.mark.slow
def test_qwen_merged_release_is_a_full_checkpoint_that_transformers_loads(
    qwen_base: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessorPil

    from artquant_model import load_image
    from artquant_model.backbones.hf_vlm.backbone import HFVisionLanguageBackbone
    from artquant_model.testing import plain_vlm_scores

    config = tiny_run_config(
        qwen_base,
        small_data,
        tmp_path / "merged",
        **{"checkpoint.merge_lora": True, "checkpoint.every": 0, "run.max_steps": 2},
    )
    final = train(config).final_dir
    assert final is not None
    assert (final / "model.safetensors").is_file()
    assert not (final / "adapter_config.json").exists()
    assert (final / "artquant_spec.json").is_file()
    val = read_validation_items(small_data["val"], small_data["images"])
    images = [item.image for item in val][:4]
    plain = plain_vlm_scores(
        AutoModelForImageTextToText.from_pretrained(str(final), dtype=torch.float32).eval(),
        AutoTokenizer.from_pretrained(str(final)),
        Qwen2VLImageProcessorPil.from_pretrained(str(final)),
        [load_image(path) for path in images],
        question=QUESTION,
        stem=STEM,
        words=WORDS,
        values=VALUES,
    )
    backbone = HFVisionLanguageBackbone.from_pretrained(final)
    ours = backbone.score(backbone.image_processor([str(p) for p in images])).score.numpy()
    np.testing.assert_allclose(ours, [s for s, _ in plain], rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen3_vl", "qwen3_5"])
def test_every_qwen_family_trains_and_its_release_scores_as_validation(
    model_type: str, small_data: dict[str, Path], tmp_path: Path
) -> None:
    """Two steps on each other family (Qwen3-VL: deepstack mergers; Qwen3.5: linear
    attention); final/ read back by the scoring backbone gives the trainer's validation."""
    from artquant_model.backbones.hf_vlm.backbone import HFVisionLanguageBackbone

    base = save_tiny_qwen(tmp_path / "base", model_type)
    config = tiny_run_config(
        base,
        small_data,
        tmp_path / "run",
        **{"run.max_steps": 2, "checkpoint.every": 0, "data.val": str(small_data["val"])},
    )
    result = train(config)
    assert result.final_dir is not None
    assert result.last_loss is not None
    assert np.isfinite(result.last_loss)
    last = result.validations[-1]
    items = read_validation_items(small_data["val"], small_data["images"])
    backbone = HFVisionLanguageBackbone.from_pretrained(result.final_dir)
    pred = backbone.score(backbone.image_processor([str(i.image) for i in items])).score.numpy()
    target = np.array([item.score for item in items])
    assert np.mean(np.abs(pred - target)) == pytest.approx(last["mae"], abs=1e-5)
