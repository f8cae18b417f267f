"""Training on Gemma 3 and InternVL (the tile-based families of the generic backbone).

Tiny random models of the real architectures over the real Qwen2 tokenizer with each family's
picture and turn tokens added and a chat template in the family's format (their own tokenizers
are not on the Python registry; see ``_tiled_synthetic``). Checked: the rendered conversation
token by token; the training prompt equal to the scoring backbone's prompt up to the level
token and the training forward equal to the scorer's level logits (fp32, 1e-5); collation of
pictures with different tile counts; the trainable parts; two training steps whose ``final/``
scores through the SDK and through transformers + peft alone as the trainer's own validation
did; and InternVL learning the brightness task of ``test_qwen_training.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _backbone_checks import assert_checkpointing_changes_nothing, brightness_run_config
from _tiled_synthetic import TILED, save_tiny_tiled, vary_aspect_ratios
from _train_synthetic import make_dataset, tiny_run_config
from scipy.stats import spearmanr

from artquant_train import LevelsConfig, level_token_ids, train
from artquant_train.backbones import training_backbone
from artquant_train.backbones.hf_vlm import (
    ChatTrainingForward,
    Gemma3Training,
    HFVisionLanguageTraining,
    InternVLTraining,
)
from artquant_train.data import TrainingDataset, level_positions_from_rank
from artquant_train.loop import build_training_items
from artquant_train.losses import IGNORE_INDEX

QUESTION = "How would you rate the quality of this painting?"
STEM = "The quality of the painting is"
WORDS = ("excellent", "good", "fair", "poor", "bad")
VALUES = (10.0, 7.5, 5.0, 3.5, 1.0)
SCORE = [
    {"from": "human", "value": f"{QUESTION}\n<|image|>"},
    {"from": "gpt", "value": f"{STEM} good."},
    {"from": "human", "value": "Why?"},
    {"from": "gpt", "value": "Warm light."},
]
#: The stand-in tokens' ids (``artquant_model._tiny_vlm``: added from 151,665 in this order).
GEMMA3_IDS = {
    "<start_of_image>": 151665,
    "<end_of_image>": 151666,
    "<image_soft_token>": 151667,
    "<start_of_turn>": 151668,
    "<end_of_turn>": 151669,
    "<bos>": 151670,
}
INTERNVL_IDS = {"<img>": 151665, "</img>": 151666, "<IMG_CONTEXT>": 151667}
IM_START, IM_END = 151644, 151645  # Qwen2's, InternVL's turn tokens (its LM is Qwen2)
#: "The quality of the painting is good." in the Qwen2 vocabulary (test_hf_vlm_encoding.py)
ANSWER_IDS = [785, 4271, 315, 279, 18824, 374, 1661, 13]
GOOD = 1661


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiled")
    return {t: save_tiny_tiled(root / t, t, seed=5) for t in TILED}


def _backbone(base: Path, data: dict[str, Path], tmp: Path, **overrides: Any) -> Any:
    """The training backbone of ``base`` with its processing loaded, and the resolved config."""
    backbone = training_backbone(base)
    config = backbone.resolve(
        tiny_run_config(base, data, tmp, **{"model.resolution": None, **overrides})
    )
    backbone.load_processing(config)
    return backbone, config


def _encode(backbone: Any, config: Any, conversation: list[dict[str, str]]) -> Any:
    return backbone.encoder(config)(
        conversation,
        backbone.tokenizer,
        score_levels=level_token_ids(backbone.tokenizer, LevelsConfig()),
        level_prefix=STEM,
        max_length=2048,
    )


# -- encoding, token by token -------------------------------------------------------------


def test_gemma3_conversation_token_by_token(
    bases: dict[str, Path], small_data: dict[str, Path], tmp_path: Path
) -> None:
    backbone, config = _backbone(bases["gemma3"], small_data, tmp_path)
    assert isinstance(backbone, Gemma3Training)
    encoded = _encode(backbone, config, SCORE)
    tokens = backbone.tokenizer.convert_ids_to_tokens(list(encoded.input_ids))
    # The Gemma 3 turn format: <bos>, the user turn with the picture as Gemma3Processor
    # writes it for one soft token (blank lines around <start_of_image> ... <end_of_image>),
    # the question, <end_of_turn>, the model turn with the answer; then the second round.
    # "user\n" + "\n\n" tokenises as "user", "\n\n\n" (Qwen2's BPE), as the scorer's prompt.
    assert tokens == [
        "<bos>", "<start_of_turn>", "user", "ĊĊĊ",
        "<start_of_image>", "<image_soft_token>", "<end_of_image>", "ĊĊ",
        "How", "Ġwould", "Ġyou", "Ġrate", "Ġthe", "Ġquality", "Ġof", "Ġthis", "Ġpainting", "?",
        "<end_of_turn>", "Ċ", "<start_of_turn>", "model", "Ċ",
        "The", "Ġquality", "Ġof", "Ġthe", "Ġpainting", "Ġis", "Ġgood", ".", "<end_of_turn>", "Ċ",
        "<start_of_turn>", "user", "Ċ", "Why", "?", "<end_of_turn>", "Ċ",
        "<start_of_turn>", "model", "Ċ", "Warm", "Ġlight", ".", "<end_of_turn>", "Ċ",
    ]  # fmt: skip
    end = GEMMA3_IDS["<end_of_turn>"]
    # supervised: each answer and its <end_of_turn>, never the newline after it
    expected = [IGNORE_INDEX] * 23 + [*ANSWER_IDS, end] + [IGNORE_INDEX] * 11
    expected += [95275, 3100, 13, end, IGNORE_INDEX]  # "Warm light." <end_of_turn>
    assert list(encoded.labels) == expected
    assert encoded.answer_ranges == ((23, 32), (43, 47))
    assert encoded.level_index == 29
    assert encoded.input_ids[29] == GOOD
    assert encoded.level_rank == 6
    assert encoded.input_ids.count(GEMMA3_IDS["<image_soft_token>"]) == 1
    assert encoded.input_ids[:3] == (GEMMA3_IDS["<bos>"], GEMMA3_IDS["<start_of_turn>"], 872)


def test_internvl_conversation_token_by_token(
    bases: dict[str, Path], small_data: dict[str, Path], tmp_path: Path
) -> None:
    backbone, config = _backbone(bases["internvl"], small_data, tmp_path)
    assert isinstance(backbone, InternVLTraining)
    encoded = _encode(backbone, config, SCORE)
    tokens = backbone.tokenizer.convert_ids_to_tokens(list(encoded.input_ids))
    # ChatML (InternVL's LM is Qwen2), the picture as InternVLProcessor writes it for one
    # context token: <img><IMG_CONTEXT></img>, then the template's newline; no system turn.
    assert tokens == [
        "<|im_start|>", "user", "Ċ", "<img>", "<IMG_CONTEXT>", "</img>", "Ċ",
        "How", "Ġwould", "Ġyou", "Ġrate", "Ġthe", "Ġquality", "Ġof", "Ġthis", "Ġpainting", "?",
        "<|im_end|>", "Ċ", "<|im_start|>", "assistant", "Ċ",
        "The", "Ġquality", "Ġof", "Ġthe", "Ġpainting", "Ġis", "Ġgood", ".", "<|im_end|>", "Ċ",
        "<|im_start|>", "user", "Ċ", "Why", "?", "<|im_end|>", "Ċ",
        "<|im_start|>", "assistant", "Ċ", "Warm", "Ġlight", ".", "<|im_end|>", "Ċ",
    ]  # fmt: skip
    expected = [IGNORE_INDEX] * 22 + [*ANSWER_IDS, IM_END] + [IGNORE_INDEX] * 11
    expected += [95275, 3100, 13, IM_END, IGNORE_INDEX]
    assert list(encoded.labels) == expected
    assert encoded.answer_ranges == ((22, 31), (42, 46))
    assert encoded.level_index == 28
    assert encoded.input_ids[28] == GOOD
    assert encoded.level_rank == 6
    img, end, context = INTERNVL_IDS.values()
    assert encoded.input_ids[:7] == (IM_START, 872, 198, img, context, end, 198)


@pytest.mark.parametrize("model_type", TILED)
def test_the_training_forward_reads_what_the_scorer_reads(
    model_type: str, bases: dict[str, Path], small_data: dict[str, Path], tmp_path: Path
) -> None:
    """A score sample's tokens before its level token are the scoring backbone's prompt with
    the picture, and the training forward (right-padded rows, the picture's tokens expanded at
    collation, the family's token-type marks) gives the scorer's level logits at the level
    position (fp32, 1e-5: the same weights and the same attention, different padding)."""
    from artquant_model.backbones import load_backbone

    base = bases[model_type]
    backbone, config = _backbone(base, small_data, tmp_path)
    items, level_ids = build_training_items(config, backbone.tokenizer, backbone=backbone)
    score_rows = [i for i, item in enumerate(items) if item.level_probs is not None][:3]
    scorer = load_backbone(base, spec=None)
    before, after = scorer.prompt_ids(QUESTION, stem=STEM)
    for index in score_rows:
        encoded = items[index].encoded
        ids = list(encoded.input_ids)
        assert ids[: encoded.level_index] == [*before, backbone.image_token_id, *after]
    dataset = TrainingDataset(items, backbone.load_pixels, 5)
    description = next(i for i, item in enumerate(items) if item.level_probs is None)
    rows = [dataset[i] for i in [*score_rows, description]]
    batch = backbone.collate_fn()(rows)
    positions = level_positions_from_rank(batch["labels"], batch["level_rank"])
    forward = ChatTrainingForward(scorer.model)
    inputs = {
        k: v for k, v in batch.items() if k not in ("labels", "level_rank", "level_probs", "index")
    }
    with torch.no_grad():
        logits = forward(torch.arange(3), positions[:3] - 1, **inputs)
    pictures = scorer.image_processor([str(items[i].image) for i in score_rows])
    expected = scorer.level_logits(pictures)
    torch.testing.assert_close(logits[:, level_ids], expected, rtol=0, atol=1e-5)
    assert scorer.level_ids() == list(level_ids)


def test_internvl_native_tiles_collate_per_picture(bases: dict[str, Path], tmp_path: Path) -> None:
    """Native resolution: pictures of different aspect ratios give 1, 3 and 4 tiles (a
    thumbnail with more than one); each row's picture token is repeated tiles x 4 times, the
    rows are padded on the right and the level positions follow."""
    data = make_dataset(tmp_path / "data", n_train=6, n_val=3, seed=2)
    vary_aspect_ratios(data["images"])
    backbone, config = _backbone(
        bases["internvl"], data, tmp_path / "run", **{"model.resolution": {"mode": "native"}}
    )
    items, _ = build_training_items(config, backbone.tokenizer, backbone=backbone)
    dataset = TrainingDataset(items, backbone.load_pixels, 5)
    rows = [dataset[i] for i in range(3)]
    tiles = [row["image"].tile_counts()[0] for row in rows]
    assert tiles == [1, 3, 4]
    batch = backbone.collate_fn()(rows)
    assert set(batch) == {
        "input_ids", "labels", "attention_mask", "pixel_values",
        "level_rank", "level_probs", "index",
    }  # fmt: skip
    assert batch["pixel_values"].shape == (8, 3, 32, 32)
    context = INTERNVL_IDS["<IMG_CONTEXT>"]
    assert (batch["input_ids"] == context).sum(1).tolist() == [4 * t for t in tiles]
    lengths = [
        len(item.encoded.input_ids) - 1 + 4 * t for item, t in zip(items, tiles, strict=False)
    ]
    assert batch["attention_mask"].sum(1).tolist() == lengths
    for row, length in enumerate(lengths):  # right padding
        assert batch["attention_mask"][row, :length].all()
    positions = level_positions_from_rank(batch["labels"], batch["level_rank"])
    for row in range(3):
        encoded = items[row].encoded
        assert int(positions[row]) == encoded.level_index - 1 + 4 * tiles[row]
        level_id = encoded.input_ids[encoded.level_index]
        assert int(batch["input_ids"][row, positions[row]]) == level_id
        assert int(batch["labels"][row, positions[row]]) == level_id


def test_gemma3_marks_its_picture_tokens(
    bases: dict[str, Path], small_data: dict[str, Path], tmp_path: Path
) -> None:
    backbone, config = _backbone(bases["gemma3"], small_data, tmp_path)
    items, _ = build_training_items(config, backbone.tokenizer, backbone=backbone)
    dataset = TrainingDataset(items, backbone.load_pixels, 5)
    batch = backbone.collate_fn()([dataset[i] for i in (0, 30)])
    soft = GEMMA3_IDS["<image_soft_token>"]
    assert batch["token_type_ids"].tolist() == (batch["input_ids"] == soft).int().tolist()
    assert batch["token_type_ids"].sum(1).tolist() == [4, 4]  # mm_tokens_per_image
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert "image_grid_thw" not in batch
    assert "mm_token_type_ids" not in batch


# -- trainable parts -----------------------------------------------------------------------


@pytest.mark.parametrize("model_type", TILED)
def test_trainable_parts_follow_the_family_defaults_and_the_configuration(
    model_type: str,
    bases: dict[str, Path],
    small_data: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = bases[model_type]

    def prepared(**overrides: Any) -> torch.nn.Module:
        backbone = training_backbone(base)
        config = backbone.resolve(tiny_run_config(base, small_data, tmp_path, **overrides))
        return backbone.prepare(backbone.load_model(config, torch.float32), config)

    backbone = training_backbone(base)
    config = backbone.resolve(tiny_run_config(base, small_data, tmp_path))
    assert config.lora.targets == (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    )  # fmt: skip
    assert config.lora.exclude == ("model.vision_tower", "model.multi_modal_projector")
    assert (config.freeze.train_vision_model, config.freeze.train_abstractor) == (False, True)
    with caplog.at_level("INFO", logger="artquant_train.backbones.hf_vlm"):
        model = prepared()
    # 2 layers x 7 linears; the vision tower's q/k/v_proj are not among them
    assert "LoRA r=4 alpha=8 (scale 2) on 14 modules" in caplog.text
    assert "['model.multi_modal_projector']" in caplog.text
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if "lora_" in n}
    assert len(lora) == 14 * 2
    assert all(".language_model.layers." in n for n in lora)
    rest = trainable - lora
    assert rest
    assert all(".multi_modal_projector.modules_to_save." in n for n in rest)
    assert not any(".vision_tower." in n for n in trainable)

    names = {
        n for n, p in prepared(**{"freeze.train_vision_model": True}).named_parameters()
        if p.requires_grad
    }  # fmt: skip
    assert any(".vision_tower.modules_to_save." in n and ".encoder." in n for n in names)

    full = prepared(
        **{"lora.enabled": False, "freeze.train_llm": True, "freeze.train_abstractor": False}
    )
    names = {n for n, p in full.named_parameters() if p.requires_grad}
    assert any(n.startswith("model.language_model.layers.") for n in names)
    assert not any("embed_tokens" in n or "vision_tower" in n or "projector" in n for n in names)


@pytest.mark.parametrize("model_type", TILED)
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(
    model_type: str, bases: dict[str, Path], small_data: dict[str, Path], tmp_path: Path
) -> None:
    """Gemma 3's picture attention (built from token_type_ids) and InternVL's pixel shuffle
    run again in the backward pass: the same loss and gradients."""
    names = assert_checkpointing_changes_nothing(
        bases[model_type], small_data, tmp_path, **{"model.resolution": None}
    )
    assert any(".multi_modal_projector.modules_to_save." in name for name in names)


# -- training and the release ------------------------------------------------------------


class _Recorder:
    """Keeps the trainer's own validation scores (the training backbone's ``score``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[np.ndarray] = []
        original = HFVisionLanguageTraining.score

        def score(backbone: Any, *args: Any, **kwargs: Any) -> np.ndarray:
            out = original(backbone, *args, **kwargs)
            self.calls.append(np.array(out, copy=True))
            return out

        monkeypatch.setattr(HFVisionLanguageTraining, "score", score)


def _plain_scores(final: Path, base: Path, images: list[Path]) -> np.ndarray:
    """transformers + peft alone: the base, the adapter merged, the plain procedure with the
    family's published processor (the pictures are square, so the release's fixed resolution
    (pad to a square, one tile) and the processor's own resizing agree)."""
    import transformers
    from peft import PeftModel

    from artquant_model import load_image
    from artquant_model.testing import plain_vlm_scores

    model = transformers.AutoModelForImageTextToText.from_pretrained(str(base), dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(final)).merge_and_unload().eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(final))
    processor: Any
    if model.config.model_type == "gemma3":
        processor = transformers.Gemma3Processor(
            image_processor=transformers.Gemma3ImageProcessorPil.from_pretrained(str(final)),
            tokenizer=tokenizer,
            image_seq_length=model.config.mm_tokens_per_image,
        )
    else:
        processor = transformers.GotOcr2ImageProcessorPil.from_pretrained(str(final))
    scores = plain_vlm_scores(
        model,
        tokenizer,
        processor,
        [load_image(path) for path in images],
        question=QUESTION,
        stem=STEM,
        words=WORDS,
        values=VALUES,
    )
    return np.array([score for score, _ in scores])


@pytest.mark.parametrize("model_type", TILED)
def test_two_steps_write_a_release_that_scores_as_the_trainer_validated(
    model_type: str,
    bases: dict[str, Path],
    small_data: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two steps at the family's default resolution (fixed, one 32 px tile); ``final/`` scored
    by ``ArtQuant.from_pretrained(final)`` and by transformers + peft alone equals the
    trainer's own validation scores of the same weights (fp32, 1e-5)."""
    from artquant_train.validation import read_validation_items

    base = bases[model_type]
    recorder = _Recorder(monkeypatch)
    config = tiny_run_config(
        base,
        small_data,
        tmp_path / "run",
        **{
            "model.resolution": None,
            "run.max_steps": 2,
            "checkpoint.every": 0,
            "data.val": str(small_data["val"]),
        },
    )
    result = train(config)
    final = result.final_dir
    assert final is not None
    assert result.last_loss is not None
    assert np.isfinite(result.last_loss)
    spec = json.loads((final / "artquant_spec.json").read_text())
    assert (spec["resolution"]["mode"], spec["resolution"]["size"]) == ("fixed", 32)
    assert spec["questions"]["total"]["prompt"] == QUESTION
    adapter = json.loads((final / "adapter_config.json").read_text())
    assert adapter["modules_to_save"] == ["model.multi_modal_projector"]
    assert Path(adapter["base_model_name_or_path"]) == base.resolve()
    validation = recorder.calls[-1]  # the last validation: the weights final/ holds
    items = read_validation_items(small_data["val"], small_data["images"])
    images = [item.image for item in items]
    assert validation.shape == (len(images),)
    target = np.array([item.score for item in items])
    assert np.mean(np.abs(validation - target)) == pytest.approx(
        result.validations[-1]["mae"], abs=1e-12
    )

    np.testing.assert_allclose(_plain_scores(final, base, images), validation, rtol=0, atol=1e-5)
    sdk = pytest.importorskip("artquant_sdk")
    scorer = sdk.ArtQuant.from_pretrained(final, device="cpu", dtype="float32")
    scored = [r.score for r in scorer.score([str(path) for path in images], batch_size=3)]
    np.testing.assert_allclose(scored, validation, rtol=0, atol=1e-5)


def test_internvl_native_resolution_trains_and_scores_as_validated(
    bases: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Native resolution with 1, 3 and 4 tiles per picture: training rows of different lengths
    (right padding), validation and the SDK batches mixing them (left padding)."""
    data = make_dataset(tmp_path / "data", n_train=12, n_val=6, seed=4)
    vary_aspect_ratios(data["images"])
    recorder = _Recorder(monkeypatch)
    config = tiny_run_config(
        bases["internvl"],
        data,
        tmp_path / "run",
        **{
            "model.resolution": {"mode": "native"},
            "run.max_steps": 2,
            "checkpoint.every": 0,
            "data.val": str(data["val"]),
        },
    )
    final = train(config).final_dir
    assert final is not None
    assert json.loads((final / "artquant_spec.json").read_text())["resolution"]["mode"] == "native"
    from artquant_model.backbones import load_backbone
    from artquant_train.validation import read_validation_items

    images = [str(item.image) for item in read_validation_items(data["val"], data["images"])]
    scorer = load_backbone(final)  # the adapter over its base, the spec's native resolution
    pixels = scorer.image_processor(images)
    assert sorted(set(pixels.tile_counts())) == [1, 3, 4]  # one batch mixes the lengths
    np.testing.assert_allclose(scorer.score(pixels).score, recorder.calls[-1], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_tiny_internvl_learns_brightness(bases: dict[str, Path], tmp_path: Path) -> None:
    """The Qwen learning test's data and recipe on InternVL at its default resolution (fixed,
    one tile): LoRA r 8 on the LM's linear layers + the projector, vision tower frozen, lr
    2e-3, batches of 8; 80 steps where the Qwen test runs 50 (measured: SRCC 0.95 at step 25,
    0.88 at step 50, 0.965 at step 80)."""
    data = make_dataset(tmp_path / "data", n_train=160, n_val=48, seed=11)
    config = brightness_run_config(
        bases["internvl"], data, tmp_path / "run", steps=80, every=40, **{"model.resolution": None}
    )
    started = time.perf_counter()
    result = train(config)
    elapsed = time.perf_counter() - started
    assert result.validations[-1]["srcc"] >= 0.9, result.validations
    assert elapsed < 400, f"took {elapsed:.0f} s"
    from artquant_train.validation import read_validation_items

    ArtQuant = pytest.importorskip("artquant_sdk").ArtQuant

    items = read_validation_items(data["val"], data["images"])
    assert result.final_dir is not None
    scored = ArtQuant.from_pretrained(result.final_dir).score([str(i.image) for i in items])
    srcc = spearmanr([r.score for r in scored], [i.score for i in items]).statistic
    assert srcc == pytest.approx(result.validations[-1]["srcc"], abs=1e-9)
