"""Training on a tiny random Qwen3.5 with the real Qwen3.5 tokenizer (248,320-row vocabulary,
level ids 8800/1603/6415/7604/3743, built offline by ``tools/qwen3_5_tokenizer/build.py``;
skips where it is not built): two steps, a merged release that transformers alone scores as
the scoring backbone does (1e-5), and the trainer's validation MAE equal to the release's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _train_synthetic import tiny_run_config

from artquant_train import train
from artquant_train.validation import read_validation_items

QUESTION = "How would you rate the quality of this painting?"
STEM = "The quality of the painting is"
WORDS = ("excellent", "good", "fair", "poor", "bad")
VALUES = (10.0, 7.5, 5.0, 3.5, 1.0)


@pytest.mark.slow
def test_qwen3_5_trains_and_its_merged_release_scores_as_transformers_and_validation(
    qwen3_5_tokenizer_dir: Path, small_data: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from artquant_model import load_image
    from artquant_model.backbones.hf_vlm.backbone import HFVisionLanguageBackbone
    from artquant_model.testing import QWEN3_5_VOCAB_SIZE, reference_vlm_scores, save_tiny_vlm

    tokenizer = AutoTokenizer.from_pretrained(qwen3_5_tokenizer_dir)
    base = save_tiny_vlm(tmp_path / "base", "qwen3_5", tokenizer, seed=2)
    config = tiny_run_config(
        base,
        small_data,
        tmp_path / "run",
        **{
            "run.max_steps": 2,
            "checkpoint.every": 0,
            "checkpoint.merge_lora": True,
            "data.val": str(small_data["val"]),
        },
    )
    result = train(config)
    final = result.final_dir
    assert final is not None
    assert result.last_loss is not None
    assert np.isfinite(result.last_loss)

    items = read_validation_items(small_data["val"], small_data["images"])
    images = [item.image for item in items]
    # transformers alone, from the release folder (a full checkpoint: the LoRA merged)
    plain = reference_vlm_scores(
        final,
        [load_image(path) for path in images],
        question=QUESTION,
        stem=STEM,
        words=WORDS,
        values=VALUES,
    )
    backbone = HFVisionLanguageBackbone.from_pretrained(final)
    assert backbone.model.get_input_embeddings().weight.shape[0] == QWEN3_5_VOCAB_SIZE
    ours = backbone.score(backbone.image_processor([str(p) for p in images])).score.numpy()
    np.testing.assert_allclose(ours, [s for s, _ in plain], rtol=0, atol=1e-5)
    target = np.array([item.score for item in items])
    mae = np.mean(np.abs(ours - target))
    assert mae == pytest.approx(result.validations[-1]["mae"], abs=1e-5)
