"""Level specs and the score formulas against the fixtures' stored logits and hand computation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from artquant_model.backbones.mplug_owl2.processing_mplug_owl2 import (
    ARTQUANT_SCORE_PROMPT,
    QALIGN_SCORE_PROMPT,
)
from artquant_model.levels import (
    ARTQUANT_LEVELS,
    LEVEL_PRESETS,
    ONEALIGN_LEVELS,
    QALIGN_LEVELS,
    LevelScore,
    LevelSpec,
    level_scores,
    open_set_level_probs,
)
from artquant_model.testing import tiny_tokenizer


def test_presets() -> None:
    assert ARTQUANT_LEVELS.words == ("excellent", "good", "fair", "poor", "bad")
    assert ARTQUANT_LEVELS.values == (10.0, 7.5, 5.0, 3.5, 1.0)
    assert ARTQUANT_LEVELS.scale == (1.0, 10.0)
    assert ARTQUANT_LEVELS.prompt == ARTQUANT_SCORE_PROMPT
    assert QALIGN_LEVELS.values == (1.0, 0.75, 0.5, 0.25, 0.0)
    assert QALIGN_LEVELS.prompt == ONEALIGN_LEVELS.prompt == QALIGN_SCORE_PROMPT
    assert ONEALIGN_LEVELS.values == (5.0, 4.0, 3.0, 2.0, 1.0)
    assert set(LEVEL_PRESETS) == {"artquant", "qalign", "onealign"}
    with pytest.raises(ValidationError):
        ARTQUANT_LEVELS.name = "x"  # type: ignore[misc]


def test_hand_computed_scores() -> None:
    # uniform distribution: mean of the values, population std
    result = level_scores(torch.zeros(5), ARTQUANT_LEVELS.values)
    values = np.array(ARTQUANT_LEVELS.values)
    assert result.score.item() == pytest.approx(values.mean(), abs=1e-12)
    assert result.std.item() == pytest.approx(values.std(), abs=1e-12)
    # two levels with logits ln 3 and 0: p = (0.75, 0.25)
    two = level_scores(torch.tensor([math.log(3.0), 0.0], dtype=torch.float64), (10.0, 2.0))
    assert two.probs.tolist() == pytest.approx([0.75, 0.25], abs=1e-15)
    assert two.score.item() == pytest.approx(8.0, abs=1e-12)
    assert two.std.item() == pytest.approx(math.sqrt(0.75 * 4 + 0.25 * 36), abs=1e-12)
    # a certain answer has no spread
    sure = level_scores(torch.tensor([0.0, -1e4, -1e4]), (5.0, 3.0, 1.0))
    assert sure.score.item() == pytest.approx(5.0, abs=1e-12)
    assert sure.std.item() == pytest.approx(0.0, abs=1e-6)
    score, std, probs = level_scores(np.zeros((2, 3, 5), np.float16), ARTQUANT_LEVELS.values)
    assert score.shape == std.shape == (2, 3)
    assert probs.shape == (2, 3, 5)
    assert score.dtype == std.dtype == probs.dtype == torch.float64


def test_float64_not_float32() -> None:
    logits = torch.tensor([[0.123456789, -1.5, 2.25, 0.0, -0.75]], dtype=torch.float32)
    p = np.exp(logits.double().numpy())
    p /= p.sum(-1, keepdims=True)
    expected = p @ np.array(ARTQUANT_LEVELS.values)
    assert level_scores(logits, ARTQUANT_LEVELS.values).score.item() == pytest.approx(
        expected.item(), abs=1e-13
    )


@pytest.mark.parametrize("prompt", ["artquant", "qalign"])
def test_vocab32k_reference_scores(vocab32k_fixture_dir: Path, prompt: str) -> None:
    refs = load_file(str(vocab32k_fixture_dir / "reference_outputs.safetensors"))
    inputs = load_file(str(vocab32k_fixture_dir / "inputs.safetensors"))
    last = refs[f"{prompt}.last_logits"]
    ids = inputs["level_ids"]
    level_logits = last[:, ids]
    assert torch.equal(level_logits, refs[f"{prompt}.level_logits"])
    result = level_scores(level_logits, ARTQUANT_LEVELS.values)
    torch.testing.assert_close(
        result.probs.float(), refs[f"{prompt}.level_probs"], atol=2e-7, rtol=0
    )
    torch.testing.assert_close(
        result.score, refs[f"{prompt}.score_artquant"].double(), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        result.std, refs[f"{prompt}.score_artquant_std"].double(), atol=1e-6, rtol=0
    )
    for spec, key in ((QALIGN_LEVELS, "score_qalign"), (ONEALIGN_LEVELS, "score_onealign")):
        got = level_scores(level_logits, spec.values).score
        torch.testing.assert_close(got, refs[f"{prompt}.{key}"].double(), atol=1e-6, rtol=0)
    open_probs = open_set_level_probs(last, ids)
    torch.testing.assert_close(
        open_probs.float(), refs[f"{prompt}.level_probs_open_set"], atol=1e-9, rtol=1e-5
    )
    open_score = open_probs @ torch.tensor(ARTQUANT_LEVELS.values, dtype=torch.float64)
    torch.testing.assert_close(
        open_score, refs[f"{prompt}.score_artquant_open_set"].double(), atol=1e-8, rtol=1e-5
    )


def test_vocab32k_readme_table(vocab32k_fixture_dir: Path) -> None:
    refs = load_file(str(vocab32k_fixture_dir / "reference_outputs.safetensors"))
    result = level_scores(refs["artquant.level_logits"], ARTQUANT_LEVELS.values)
    assert result.score.tolist() == pytest.approx([5.097325, 5.177979], abs=1e-6)
    assert result.std.tolist() == pytest.approx([3.028031, 3.063732], abs=1e-6)


def test_tiny_fixture_score_variants(tiny_fixture_dir: Path) -> None:
    import json

    refs = load_file(str(tiny_fixture_dir / "reference_outputs.safetensors"))
    inputs = load_file(str(tiny_fixture_dir / "inputs.safetensors"))
    scores = json.loads((tiny_fixture_dir / "reference_meta.json").read_text())["scores"]
    level_logits = refs["last_logits"][:, inputs["level_ids"]]
    result = level_scores(level_logits, ARTQUANT_LEVELS.values)
    torch.testing.assert_close(
        result.probs.float(), refs["level_probs_closed_set"], atol=2e-7, rtol=0
    )
    assert result.score.tolist() == pytest.approx(
        scores["artquant_eval_py_float64_closed_set"], abs=1e-9
    )
    assert result.score.tolist() == pytest.approx([6.548306, 6.530550], abs=1e-6)
    assert level_scores(level_logits, QALIGN_LEVELS.values).score.tolist() == pytest.approx(
        [0.623844, 0.623077], abs=1e-6
    )
    assert level_scores(level_logits, ONEALIGN_LEVELS.values).score.tolist() == pytest.approx(
        [3.495378, 3.492310], abs=1e-6
    )


def test_level_scores_errors() -> None:
    with pytest.raises(ValueError, match="5 level logits per row but 4 values"):
        level_scores(torch.zeros(2, 5), (1.0, 2.0, 3.0, 4.0))
    with pytest.raises(ValueError, match="NaN"):
        level_scores(torch.tensor([0.0, float("nan")]), (1.0, 0.0))
    with pytest.raises(ValueError, match="scalar"):
        level_scores(torch.tensor(1.0), (1.0,))
    with pytest.raises(ValueError, match="finite"):
        level_scores(torch.zeros(2), (1.0, float("inf")))
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
        open_set_level_probs(torch.zeros(4), [1, 4])
    with pytest.raises(ValueError, match=r"must lie in \[0, 4\)"):
        open_set_level_probs(torch.zeros(4), [-1])


def test_open_set_hand_computed() -> None:
    logits = torch.tensor([[0.0, math.log(2.0), 0.0, math.log(5.0)]], dtype=torch.float64)
    assert open_set_level_probs(logits, [1, 3])[0].tolist() == pytest.approx(
        [2 / 9, 5 / 9], abs=1e-15
    )
    assert open_set_level_probs(logits, torch.tensor([3])).dtype == torch.float64


def _spec(**changes) -> LevelSpec:
    fields = ARTQUANT_LEVELS.model_dump()
    fields.update(changes)
    return LevelSpec(**fields)


def test_spec_validation_errors() -> None:
    with pytest.raises(ValidationError, match=r"5 level words .* but 4 values"):
        _spec(values=(10.0, 7.5, 5.0, 1.0))
    with pytest.raises(ValidationError, match="must be distinct; repeated: \\['good'\\]"):
        _spec(words=("excellent", "good", "good", "poor", "bad"))
    with pytest.raises(ValidationError, match="without whitespace"):
        _spec(words=("excellent", " good", "fair", "poor", "bad"))
    with pytest.raises(ValidationError, match="without whitespace"):
        _spec(words=("excellent", "very good", "fair", "poor", "bad"))
    with pytest.raises(ValidationError, match="outside scale"):
        _spec(values=(11.0, 7.5, 5.0, 3.5, 1.0))
    with pytest.raises(ValidationError, match="min < max"):
        _spec(scale=(10.0, 1.0))
    with pytest.raises(ValidationError, match="finite"):
        _spec(values=(float("nan"), 7.5, 5.0, 3.5, 1.0))
    with pytest.raises(ValidationError, match="exactly one <\\|image\\|>, it holds 0"):
        _spec(prompt="USER: no image here")
    with pytest.raises(ValidationError, match="it holds 2"):
        _spec(prompt="<|image|><|image|>")
    with pytest.raises(ValidationError, match="extra"):
        LevelSpec(**ARTQUANT_LEVELS.model_dump(), colour="red")
    with pytest.raises(ValidationError):
        _spec(words=("excellent",), values=(10.0,))


def test_token_ids_on_tiny_tokenizer() -> None:
    tokenizer = tiny_tokenizer()
    ids = ARTQUANT_LEVELS.token_ids(tokenizer)
    assert tokenizer.convert_ids_to_tokens(ids) == [f"▁{w}" for w in ARTQUANT_LEVELS.words]
    split = _spec(words=("excellent", "good", "fair", "poor", "terrible"))
    with pytest.raises(ValueError, match="'terrible' of spec 'artquant' is not a single token"):
        split.token_ids(tokenizer)


def test_token_ids_real_tokenizer_rejects_multi_token_word(shared_dir: Path) -> None:
    from artquant_model.backbones.mplug_owl2.processing_mplug_owl2 import load_tokenizer

    folder = shared_dir / "tokenizers" / "llama2"
    if not (folder / "tokenizer.model").is_file():
        pytest.skip(f"../shared not found: {folder}")
    tokenizer = load_tokenizer(folder)
    spec = _spec(words=("superb", "good", "fair", "poor", "abysmal"))
    with pytest.raises(ValueError, match=r"'superb' .* becomes 2 tokens \['▁super', 'b'\]"):
        spec.token_ids(tokenizer)


def test_level_score_record() -> None:
    record = LevelScore(
        score=5.0, std=1.0, probs={"good": 1.0}, logits={"good": 0.0}, spec="artquant"
    )
    assert record.model_dump()["score"] == 5.0
    with pytest.raises(ValidationError):
        LevelScore(score=5.0, std=1.0, probs={}, logits={}, spec="x", extra=1)
