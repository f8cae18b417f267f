"""Model-level parity with ../shared/fixtures/mplug_owl2_tiny_vocab32k (real vocabulary, 448 px).

Starts from the fixture's stored pixel tensors (uint8 pictures + byte table) and token ids; the
PNG -> pixels and prompt -> ids stages are the processing tests'. Tolerances are the fixture
README's suggested pass criteria for a float32 port.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from artquant_model import MPLUGOwl2ForCausalLM, load_model

FEATURES_ATOL = 8e-6  # vision embeddings/output, abstractor output
HIDDEN_ATOL = 1.5e-5  # inputs_embeds, hidden states, last logits
PROBS_ATOL = 2e-6
SCORE_ATOL = 1e-5  # ArtQuant and one-align scales
QALIGN_SCORE_ATOL = 2e-6  # Q-Align's 0..1 scale
PROMPTS = ("artquant", "qalign")


@pytest.fixture(scope="module")
def inputs(vocab32k_fixture_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(vocab32k_fixture_dir / "inputs.safetensors")


@pytest.fixture(scope="module")
def reference(vocab32k_fixture_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(vocab32k_fixture_dir / "reference_outputs.safetensors")


@pytest.fixture(scope="module")
def pixels(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """pixel_values[b, c, y, x] = lut[c, uint8[b, y, x, c]], as the fixture README defines."""
    pictures = inputs["pixel_values_uint8_hwc"].long()
    table = inputs["pixel_value_lut"]
    return torch.stack([table[c][pictures[..., c]] for c in range(3)], dim=1)


@pytest.fixture(scope="module")
def model(vocab32k_fixture_dir: Path) -> MPLUGOwl2ForCausalLM:
    # The checkpoint is stored in bfloat16; the references were computed after upcasting.
    return load_model(vocab32k_fixture_dir / "checkpoint", dtype="float32")


@pytest.fixture(scope="module")
def runs(model: MPLUGOwl2ForCausalLM, inputs, pixels) -> dict[str, object]:
    with torch.no_grad():
        return {
            prompt: model(
                input_ids=inputs[f"{prompt}.input_ids"], images=pixels, output_hidden_states=True
            )
            for prompt in PROMPTS
        }


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual.double(), expected.double(), rtol=0.0, atol=atol)


def _scores(level_logits: torch.Tensor, weights: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    probs = level_logits.double().softmax(-1)
    values = torch.tensor(weights, dtype=torch.float64)
    score = probs @ values
    std = (probs * (values - score[:, None]) ** 2).sum(-1).sqrt()
    return score, std


def test_bf16_checkpoint_upcasts_exactly(model: MPLUGOwl2ForCausalLM, vocab32k_fixture_dir) -> None:
    stored = load_file(vocab32k_fixture_dir / "checkpoint" / "model.safetensors")
    weight = stored["model.layers.1.self_attn.k_proj.multiway.1.weight"]
    assert weight.dtype == torch.bfloat16
    loaded = model.model.layers[1].self_attn.k_proj.multiway[1].weight
    assert loaded.dtype == torch.float32
    assert torch.equal(loaded, weight.float())


def test_vision_and_abstractor(model: MPLUGOwl2ForCausalLM, pixels, reference) -> None:
    with torch.no_grad():
        embeddings = model.model.vision_model.embeddings(pixels)
        last = model.model.vision_model(pixels)
        features = model.get_image_features(pixels)
    _close(embeddings, reference["vision_embeddings"], FEATURES_ATOL)
    _close(last, reference["vision_last_hidden_state"], FEATURES_ATOL)
    _close(features, reference["abstractor_output"], FEATURES_ATOL)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_splice_hidden_states_and_logits(
    model: MPLUGOwl2ForCausalLM, runs, inputs, pixels, reference, prompt: str
) -> None:
    with torch.no_grad():
        spliced = model.build_multimodal_inputs(inputs[f"{prompt}.input_ids"], pixels)
    _close(spliced.inputs_embeds, reference[f"{prompt}.inputs_embeds"], HIDDEN_ATOL)
    assert torch.equal(spliced.modality_indicators, reference[f"{prompt}.modality_indicators"])
    out = runs[prompt]
    for ours, theirs in zip(out.hidden_states, reference[f"{prompt}.hidden_states"], strict=True):
        _close(ours, theirs, HIDDEN_ATOL)
    _close(out.logits[:, -1], reference[f"{prompt}.last_logits"], HIDDEN_ATOL)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_level_probabilities_and_scores(runs, inputs, reference, prompt: str) -> None:
    last = runs[prompt].logits[:, -1]
    level_logits = last[:, inputs["level_ids"]]
    _close(level_logits, reference[f"{prompt}.level_logits"], HIDDEN_ATOL)
    _close(level_logits.double().softmax(-1), reference[f"{prompt}.level_probs"], PROBS_ATOL)
    open_set = last.double().softmax(-1)[:, inputs["level_ids"]]
    _close(open_set, reference[f"{prompt}.level_probs_open_set"], PROBS_ATOL)
    artquant, std = _scores(level_logits, inputs["score_weights_artquant"].tolist())
    _close(artquant, reference[f"{prompt}.score_artquant"], SCORE_ATOL)
    _close(std, reference[f"{prompt}.score_artquant_std"], SCORE_ATOL)
    onealign, _ = _scores(level_logits, inputs["score_weights_onealign"].tolist())
    _close(onealign, reference[f"{prompt}.score_onealign"], SCORE_ATOL)
    qalign, _ = _scores(level_logits, inputs["score_weights_qalign"].tolist())
    _close(qalign, reference[f"{prompt}.score_qalign"], QALIGN_SCORE_ATOL)
    open_score = open_set @ inputs["score_weights_artquant"].double()
    _close(open_score, reference[f"{prompt}.score_artquant_open_set"], SCORE_ATOL)


def test_each_picture_alone_equals_the_batch(
    model: MPLUGOwl2ForCausalLM, runs, inputs, pixels
) -> None:
    for picture in (0, 1):
        with torch.no_grad():
            alone = model(
                input_ids=inputs["artquant.input_ids"][picture : picture + 1],
                images=pixels[picture : picture + 1],
            ).logits
        _close(alone[0], runs["artquant"].logits[picture], 1e-5)


@pytest.fixture(scope="module")
def generation(vocab32k_fixture_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(vocab32k_fixture_dir / "generation_reference.safetensors")


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_generation_tokens(
    model: MPLUGOwl2ForCausalLM, generation, pixels, use_cache: bool
) -> None:
    prompt = generation["generation_input_ids"]
    with torch.no_grad():
        sequence = model.generate(
            input_ids=prompt,
            images=pixels[:1],
            max_new_tokens=8,
            do_sample=False,
            use_cache=use_cache,
        )
    assert torch.equal(sequence[0, : prompt.shape[1]], prompt[0])
    assert sequence[0, prompt.shape[1] :].tolist() == generation["generated_ids"].tolist()


def test_lora_release_merged_score(vocab32k_fixture_dir: Path, inputs, pixels) -> None:
    lora_reference = load_file(vocab32k_fixture_dir / "artquant_style_lora_reference.safetensors")
    model = load_model(vocab32k_fixture_dir / "artquant_style_lora")  # base from adapter_config
    layers = model.model.layers
    _close(layers[0].self_attn.q_proj.weight, lora_reference["merged_q_proj_layer0"], 1e-6)
    _close(
        layers[1].self_attn.v_proj.multiway[1].weight,
        lora_reference["merged_v_proj_multiway1_layer1"],
        1e-6,
    )
    with torch.no_grad():
        last = model(
            input_ids=inputs["artquant.input_ids"][:1], images=pixels[:1], logits_to_keep=1
        ).logits[:, -1]
    level_logits = last[:, inputs["level_ids"]]
    _close(level_logits, lora_reference["level_logits"], HIDDEN_ATOL)
    score, std = _scores(level_logits, inputs["score_weights_artquant"].tolist())
    _close(score, lora_reference["score_artquant"], SCORE_ATOL)
    _close(std, lora_reference["score_artquant_std"], SCORE_ATOL)
    assert abs(float(score) - 5.670800) < SCORE_ATOL
