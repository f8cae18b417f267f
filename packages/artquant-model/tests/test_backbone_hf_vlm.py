"""The generic backbone against the plain transformers procedure, on tiny random Qwen-family
models with the real Qwen2 tokenizer, and Qwen3.5 also with its own real tokenizer (fp32, CPU).

Tolerance 1e-5 on scores (1-10 scale) and probabilities: a batch is left-padded and runs every
row through the same kernels, so rows differ from their batch-of-one result only by float32
reordering inside matrix products (observed ~1e-6); a wrong position, mask or token would move
scores by far more than 1e-3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artquant_model.backbones import UnsupportedModelError, load_backbone, stack_pixels
from artquant_model.backbones.hf_vlm.backbone import HFVisionLanguageBackbone
from artquant_model.levels import first_token_ids
from artquant_model.spec import ARTQUANT_SPEC, Resolution
from artquant_model.testing import TINY_VLM_MODEL_TYPES, reference_vlm_scores

ATOL = 1e-5
#: width x height of the test pictures: different aspect ratios and pixel counts, so the token
#: counts differ within one batch (some below the tiny processor's min_pixels, one above its
#: max_pixels so it is shrunk).
SIZES = [(40, 60), (64, 64), (100, 50), (30, 90), (260, 220)]
#: the Qwen families (Gemma 3 and InternVL: test_backbone_tiled_vlm.py)
QWEN_TYPES = [t for t in TINY_VLM_MODEL_TYPES if t.startswith("qwen")]
#: Qwen3.5 with its own real tokenizer and template (248,320-row vocabulary; built by
#: tools/qwen3_5_tokenizer/build.py, skipped without it); the others use the Qwen2 vocabulary
QWEN3_5_REAL = "qwen3_5+real-tokenizer"


def _folder(model_type: str, request: pytest.FixtureRequest) -> Path:
    if model_type == QWEN3_5_REAL:
        return request.getfixturevalue("tiny_qwen3_5_dir")
    return request.getfixturevalue("tiny_vlm_dirs")(model_type)


def _pictures() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    return _pictures()


@pytest.mark.parametrize("model_type", [*QWEN_TYPES, QWEN3_5_REAL])
def test_scores_equal_the_plain_procedure_at_batch_1_2_5(model_type, request, pictures):
    folder = _folder(model_type, request)
    backbone = load_backbone(folder)
    assert isinstance(backbone, HFVisionLanguageBackbone)
    question = ARTQUANT_SPEC.question()
    reference = reference_vlm_scores(
        folder,
        pictures,
        question=question.prompt,
        stem=question.stem,
        words=ARTQUANT_SPEC.words,
        values=ARTQUANT_SPEC.values,
    )
    pixels = backbone.image_processor(pictures)
    assert len(set(pixels.token_counts(2))) > 2  # the batch really mixes lengths
    for batch_size in (1, 2, 5):
        got: list[float] = []
        probs: list[list[float]] = []
        for start in range(0, len(pictures), batch_size):
            chunk = stack_pixels(list(pixels)[start : start + batch_size])
            result = backbone.score(chunk)
            got += result.score.tolist()
            probs += result.probs.tolist()
        np.testing.assert_allclose(got, [r[0] for r in reference], rtol=0, atol=ATOL)
        np.testing.assert_allclose(probs, [r[1] for r in reference], rtol=0, atol=ATOL)
    # random weights: scores differ between pictures, so equality above is not vacuous
    assert np.ptp([r[0] for r in reference]) > 1e-3


def test_level_ids_are_the_published_single_tokens(qwen2_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen2_tokenizer_dir)
    ids = first_token_ids(tokenizer, ARTQUANT_SPEC.words, ARTQUANT_SPEC.question().stem)
    assert ids == [9073, 1661, 6624, 7852, 3873]  # shared/tokenizers/qwen2_vl/README.md


def test_level_words_sharing_a_first_token_are_refused(qwen2_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen2_tokenizer_dir)
    assert tokenizer(" excellentissimo", add_special_tokens=False).input_ids[0] == 9073
    with pytest.raises(ValueError, match=r"\['excellent', 'excellentissimo'\] all start with"):
        first_token_ids(tokenizer, ("excellent", "excellentissimo", "bad"), "The quality is")


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "qwen3_5"])
def test_fixed_resolution_gives_equal_lengths_and_batch_equals_single(
    model_type, tiny_vlm_dirs, pictures
):
    spec = ARTQUANT_SPEC.model_copy(update={"resolution": Resolution(mode="fixed", size=60)})
    backbone = load_backbone(tiny_vlm_dirs(model_type), spec=spec)
    pixels = backbone.image_processor(pictures)
    side = 2 * (16 if model_type.startswith("qwen3") else 14)
    expected = (round(60 / side) * side // (side // 2)) ** 2 // 4
    assert pixels.token_counts(2) == [expected] * len(pictures)
    together = backbone.score(pixels).score
    alone = torch.cat([backbone.score(one).score for one in pixels])
    torch.testing.assert_close(together, alone, rtol=0, atol=ATOL)


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen3_vl"])
def test_native_pixel_limits_change_the_token_count(model_type, tiny_vlm_dirs, pictures):
    spec = ARTQUANT_SPEC.model_copy(
        update={"resolution": Resolution(mode="native", max_pixels=16 * 32 * 32)}
    )
    small = load_backbone(tiny_vlm_dirs(model_type), spec=spec)
    default = load_backbone(tiny_vlm_dirs(model_type))
    big = pictures[-1]
    assert small.image_processor([big]).token_counts(2)[0] <= 16
    assert default.image_processor([big]).token_counts(2)[0] > 16


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "qwen3_5", QWEN3_5_REAL])
def test_generate_equals_model_generate_greedy(model_type, request, pictures):
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

    folder = _folder(model_type, request)
    backbone = load_backbone(folder)
    got = backbone.generate(backbone.image_processor([pictures[0]]), max_new_tokens=6)
    # the plain way: chat template, expanded placeholder, model.generate greedy
    tokenizer = AutoTokenizer.from_pretrained(folder)
    processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "Describe this painting."}],
        }
    ]
    # thinking off (Qwen3.5's template writes an empty thinking block; Qwen2's ignores the flag)
    text = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
    )
    pixels = processor(images=[pictures[0]], return_tensors="pt")
    count = int(pixels["image_grid_thw"].prod()) // 4
    text = text.replace("<|image_pad|>", "<|image_pad|>" * count)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    types = (inputs["input_ids"] == backbone.model.config.image_token_id).int()
    out = backbone.model.generate(
        **inputs, **pixels, mm_token_type_ids=types, max_new_tokens=6, do_sample=False
    )
    assert got == out[0, inputs["input_ids"].shape[1] :].tolist()
    assert len(got) >= 1


def test_pixels_equal_the_published_pil_processor(tiny_vlm_dirs, pictures):
    from transformers import Qwen2VLImageProcessorPil

    folder = tiny_vlm_dirs("qwen2_5_vl")
    ours = load_backbone(folder).image_processor(pictures)
    theirs = Qwen2VLImageProcessorPil.from_pretrained(folder)(images=pictures, return_tensors="pt")
    assert torch.equal(ours.image_grid_thw, theirs["image_grid_thw"])
    assert torch.equal(ours.pixel_values, theirs["pixel_values"])


def test_unknown_model_type_names_the_supported_ones(tmp_path: Path):
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')
    with pytest.raises(UnsupportedModelError, match=r"'llava' is not supported.*qwen2_5_vl"):
        load_backbone(tmp_path)


def test_spec_file_travels_with_the_folder(tiny_vlm_dirs, tmp_path, qwen2_tokenizer_dir):
    from transformers import AutoTokenizer

    from artquant_model.spec import Question, ScorerSpec
    from artquant_model.testing import save_tiny_vlm

    spec = ScorerSpec(
        name="two",
        words=("good", "bad"),
        values=(1.0, 0.0),
        scale=(0.0, 1.0),
        questions={"total": Question(prompt="Is it good?", stem="It is")},
    )
    folder = save_tiny_vlm(
        tmp_path / "m",
        "qwen2_vl",
        AutoTokenizer.from_pretrained(qwen2_tokenizer_dir),
        spec=spec,
    )
    backbone = load_backbone(folder)
    assert backbone.spec == spec
    result = backbone.score(backbone.image_processor([np.zeros((40, 40, 3), np.uint8)]))
    assert result.probs.shape == (1, 2)
    [(reference, _)] = reference_vlm_scores(
        folder,
        [Image.new("RGB", (40, 40))],
        question="Is it good?",
        stem="It is",
        words=("good", "bad"),
        values=(1.0, 0.0),
    )
    assert abs(float(result.score[0]) - reference) < ATOL


def test_a_peft_adapter_loads_over_its_base_and_scores_as_the_merged_model(
    tiny_vlm_dirs, tmp_path, pictures
):
    # a LoRA adapter (random, non-zero B: init_lora_weights=False) saved by peft over a tiny
    # Qwen2.5-VL; the backbone must find the base named in adapter_config.json (or given), take
    # the tokenizer and processor from it, and score as the merged model does through the plain
    # transformers procedure
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessorPil

    from artquant_model.testing import plain_vlm_scores

    base = tiny_vlm_dirs("qwen2_5_vl")
    torch.manual_seed(3)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(model, config)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    assert not (adapter / "config.json").exists()
    merged = peft_model.merge_and_unload().eval()

    question = ARTQUANT_SPEC.question()
    kwargs = {
        "question": question.prompt,
        "stem": question.stem,
        "words": ARTQUANT_SPEC.words,
        "values": ARTQUANT_SPEC.values,
    }
    reference = plain_vlm_scores(
        merged,
        AutoTokenizer.from_pretrained(base),
        Qwen2VLImageProcessorPil.from_pretrained(base),
        pictures,
        **kwargs,
    )
    untouched = reference_vlm_scores(base, pictures, **kwargs)
    # the adapter really changes the scores, so the equality below is not the base's
    assert max(abs(a[0] - b[0]) for a, b in zip(reference, untouched, strict=True)) > 1e-3

    for loaded in (load_backbone(adapter), load_backbone(adapter, base=base)):
        result = loaded.score(stack_pixels(list(loaded.image_processor(pictures))))
        np.testing.assert_allclose(
            result.score.tolist(), [r[0] for r in reference], rtol=0, atol=ATOL
        )
    with pytest.raises(ValueError, match="is not an adapter"):
        load_backbone(base, base=base)
