"""End to end on fixtures/mplug_owl2_tiny_vocab32k: PNG files and prompt strings -> our tokenizer,
our preprocessing, our model and our score formulas -> the original code's numbers.

Tolerances are the fixture README's: pixels exact, ids exact, last logits 1.5e-5, level
probabilities 2e-6, scores 1e-5 (2e-6 on the 0-1 scale), generated ids exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from artquant_model import load_model
from artquant_model.backbones.mplug_owl2.processing_mplug_owl2 import (
    ARTQUANT_SCORE_PROMPT,
    DESCRIBE_PROMPT,
    QALIGN_SCORE_PROMPT,
    MPLUGOwl2Processor,
)
from artquant_model.levels import ARTQUANT_LEVELS, ONEALIGN_LEVELS, QALIGN_LEVELS, LevelSpec
from artquant_model.scoring import score_images, score_pixel_values

PICTURES = ("picture0_src_333x250.png", "picture1_src_180x260.png")
PROMPTS = {
    "artquant": (ARTQUANT_SCORE_PROMPT, ARTQUANT_LEVELS),
    "qalign": (QALIGN_SCORE_PROMPT, QALIGN_LEVELS),
}


@pytest.fixture(scope="module")
def fixture(vocab32k_fixture_dir: Path) -> Path:
    return vocab32k_fixture_dir


@pytest.fixture(scope="module")
def processor(shared_dir: Path, fixture: Path) -> MPLUGOwl2Processor:
    tokenizer_dir = shared_dir / "tokenizers" / "llama2"
    if not (tokenizer_dir / "tokenizer.model").is_file():
        pytest.skip(f"../shared not found: {tokenizer_dir}/tokenizer.model")
    # the checkpoint has no preprocessor_config.json: S comes from its vision config (448)
    return MPLUGOwl2Processor.from_pretrained(fixture / "checkpoint", tokenizer=tokenizer_dir)


@pytest.fixture(scope="module")
def model(fixture: Path):
    return load_model(fixture / "checkpoint", dtype="float32")


@pytest.fixture(scope="module")
def inputs(fixture: Path) -> dict[str, torch.Tensor]:
    return load_file(str(fixture / "inputs.safetensors"))


@pytest.fixture(scope="module")
def refs(fixture: Path) -> dict[str, torch.Tensor]:
    return load_file(str(fixture / "reference_outputs.safetensors"))


def _paths(fixture: Path) -> list[Path]:
    return [fixture / name for name in PICTURES]


def test_inputs_from_files(processor, fixture: Path, inputs) -> None:
    assert processor.image_processor.image_size == 448
    for index, path in enumerate(_paths(fixture)):
        uint8 = processor.image_processor.preprocess_uint8(path)
        assert np.array_equal(uint8, inputs["pixel_values_uint8_hwc"][index].numpy())
    for name, (prompt, spec) in PROMPTS.items():
        batch = processor([prompt, prompt], images=_paths(fixture))
        assert torch.equal(batch["input_ids"], inputs[f"{name}.input_ids"])
        assert batch["attention_mask"].all()
        assert spec.token_ids(processor.tokenizer) == inputs["level_ids"].tolist()
        lut = inputs["pixel_value_lut"]
        hwc = inputs["pixel_values_uint8_hwc"].long()
        expected = torch.stack([lut[c][hwc[..., c]] for c in range(3)], dim=1)
        assert torch.equal(batch["images"], expected)
    generation = processor(DESCRIBE_PROMPT, images=_paths(fixture)[:1])
    assert torch.equal(generation["input_ids"], inputs["generation_input_ids"])


@pytest.mark.parametrize("name", ["artquant", "qalign"])
@pytest.mark.parametrize("batch_size", [1, 2])
def test_scores_match_the_original(model, processor, fixture: Path, refs, name: str,
                                   batch_size: int) -> None:  # fmt: skip
    _, spec = PROMPTS[name]
    results = score_images(
        model, processor, _paths(fixture), level_spec=spec, batch_size=batch_size
    )
    level_logits = torch.tensor([list(r.logits.values()) for r in results])
    probs = torch.tensor([list(r.probs.values()) for r in results])
    open_probs = torch.tensor([list(r.open_set_probs.values()) for r in results])
    torch.testing.assert_close(level_logits, refs[f"{name}.level_logits"], atol=1.5e-5, rtol=0)
    torch.testing.assert_close(probs.float(), refs[f"{name}.level_probs"], atol=2e-6, rtol=0)
    torch.testing.assert_close(
        open_probs.float(), refs[f"{name}.level_probs_open_set"], atol=1e-9, rtol=1e-4
    )
    scores = torch.tensor([r.score for r in results])
    qalign_scale = name == "qalign"
    reference = refs[f"{name}.score_qalign" if qalign_scale else f"{name}.score_artquant"]
    torch.testing.assert_close(
        scores.float(), reference, atol=2e-6 if qalign_scale else 1e-5, rtol=0
    )
    if not qalign_scale:
        stds = torch.tensor([r.std for r in results])
        torch.testing.assert_close(
            stds.float(), refs[f"{name}.score_artquant_std"], atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("name", ["artquant", "qalign"])
def test_last_logits_and_all_score_variants(
    model, processor, fixture: Path, refs, name: str
) -> None:
    prompt, _ = PROMPTS[name]
    batch = processor([prompt, prompt], images=_paths(fixture))
    with torch.inference_mode():
        last = model(input_ids=batch["input_ids"], images=batch["images"], logits_to_keep=1).logits
    torch.testing.assert_close(last[:, -1], refs[f"{name}.last_logits"], atol=1.5e-5, rtol=0)
    level_ids = ARTQUANT_LEVELS.token_ids(processor.tokenizer)
    for spec, key, atol in (
        (ARTQUANT_LEVELS, "score_artquant", 1e-5),
        (QALIGN_LEVELS, "score_qalign", 2e-6),
        (ONEALIGN_LEVELS, "score_onealign", 1e-5),
    ):
        result = score_pixel_values(
            model, batch["input_ids"][:1], batch["images"], level_ids, spec.values
        )
        torch.testing.assert_close(result.score.float(), refs[f"{name}.{key}"], atol=atol, rtol=0)
    artquant = score_pixel_values(
        model, batch["input_ids"][:1], batch["images"], level_ids, ARTQUANT_LEVELS.values
    )
    open_score = artquant.open_set_probs @ torch.tensor(ARTQUANT_LEVELS.values, dtype=torch.float64)
    torch.testing.assert_close(
        open_score.float(), refs[f"{name}.score_artquant_open_set"], atol=1e-8, rtol=1e-4
    )


def test_readme_scores(model, processor, fixture: Path) -> None:
    results = score_images(model, processor, _paths(fixture))
    assert [r.score for r in results] == pytest.approx([5.097325, 5.177979], abs=1e-5)
    assert [r.std for r in results] == pytest.approx([3.028031, 3.063732], abs=1e-5)


def test_greedy_generation(model, processor, fixture: Path) -> None:
    reference = load_file(str(fixture / "generation_reference.safetensors"))
    meta = json.loads((fixture / "reference_meta.json").read_text())["generation"]
    batch = processor(DESCRIBE_PROMPT, images=_paths(fixture)[:1])
    with torch.inference_mode():
        output = model.generate(
            input_ids=batch["input_ids"],
            images=batch["images"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=8,
            do_sample=False,
        )
    prompt_length = batch["input_ids"].shape[1]
    assert torch.equal(output[0, :prompt_length], batch["input_ids"][0])
    new_tokens = output[0, prompt_length:]
    assert torch.equal(new_tokens, reference["generated_ids"])
    assert processor.batch_decode(new_tokens[None])[0] == meta["generated_text_decoded"]
    assert (
        processor.tokenizer.convert_ids_to_tokens(new_tokens.tolist()) == meta["generated_pieces"]
    )


def test_lora_release_merged_score(processor, fixture: Path) -> None:
    reference = load_file(str(fixture / "artquant_style_lora_reference.safetensors"))
    merged = load_model(
        fixture / "artquant_style_lora", base=fixture / "checkpoint", dtype="float32"
    )
    [result] = score_images(merged, processor, _paths(fixture)[:1])
    assert result.score == pytest.approx(5.670800, abs=1e-5)
    assert result.score == pytest.approx(reference["score_artquant"].item(), abs=1e-5)
    assert result.std == pytest.approx(reference["score_artquant_std"].item(), abs=1e-5)
    logits = torch.tensor(list(result.logits.values()))
    torch.testing.assert_close(logits, reference["level_logits"][0], atol=1.5e-5, rtol=0)
    probs = torch.tensor(list(result.probs.values()))
    torch.testing.assert_close(probs.float(), reference["level_probs"][0], atol=2e-6, rtol=0)


def test_custom_level_spec_on_real_vocabulary(model, processor, fixture: Path, refs) -> None:
    """A two-word spec reads the same logits as the preset, so its score follows by hand."""
    spec = LevelSpec(
        name="two", words=("excellent", "bad"), values=(1.0, 0.0), scale=(0.0, 1.0),
        prompt=ARTQUANT_SCORE_PROMPT,
    )  # fmt: skip
    results = score_images(model, processor, _paths(fixture), level_spec=spec)
    logits = refs["artquant.level_logits"][:, [0, 4]].double()
    expected = torch.softmax(logits, dim=-1)[:, 0]
    assert [r.score for r in results] == pytest.approx(expected.tolist(), abs=1e-5)
