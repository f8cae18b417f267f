"""The generic backbone on Gemma 3 and InternVL (tile-based picture handling), fp32 CPU.

Tiny random models of the real architectures (Gemma 3: SigLIP tower, pooled soft tokens,
bidirectional attention inside a picture, sliding-window layers; InternVL: InternViT, pixel
shuffle, Qwen2 language model) over the real Qwen2 tokenizer with each family's picture and
turn tokens added and a chat template in the family's format (``tiny_vlm_tokenizer``: their
own tokenizers are not on the Python registry). Scores are checked against the plain procedure
(``reference_vlm_scores``): for Gemma 3 through the model's own ``Gemma3Processor`` (it runs
without torchvision), for InternVL through a hand-built ``InternVLProcessor`` layout (that
processor needs torchvision). Tolerance 1e-5 on 1-10 scores and probabilities, for the reasons
in test_backbone_hf_vlm.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from artquant_model import TileBatch, VisionBatch
from artquant_model.backbones import load_backbone, stack_pixels
from artquant_model.backbones.hf_vlm.backbone import HFVisionLanguageBackbone
from artquant_model.spec import ARTQUANT_SPEC, Resolution
from artquant_model.testing import reference_vlm_scores

ATOL = 1e-5
TILED = ("gemma3", "internvl")
#: width x height: aspect ratios from 1:3 to 2:1, so InternVL cuts them into 2 to 6 tiles
SIZES = [(40, 60), (64, 64), (100, 50), (30, 90), (260, 220)]


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in SIZES]


@pytest.fixture(scope="module")
def loaded(tiny_vlm_dirs):
    """One loaded backbone per family (native resolution), built on first use."""
    made: dict[str, HFVisionLanguageBackbone] = {}

    def backbone(model_type: str) -> HFVisionLanguageBackbone:
        if model_type not in made:
            made[model_type] = load_backbone(tiny_vlm_dirs(model_type))
        return made[model_type]

    return backbone


def _reference(folder, pictures):
    question = ARTQUANT_SPEC.question()
    return reference_vlm_scores(
        folder,
        pictures,
        question=question.prompt,
        stem=question.stem,
        words=ARTQUANT_SPEC.words,
        values=ARTQUANT_SPEC.values,
    )


@pytest.mark.parametrize("model_type", TILED)
def test_scores_equal_the_plain_procedure_at_batch_1_2_5(
    model_type, tiny_vlm_dirs, loaded, pictures
):
    folder = tiny_vlm_dirs(model_type)
    backbone = loaded(model_type)
    assert isinstance(backbone, HFVisionLanguageBackbone)
    assert backbone.vlm_family.name == model_type
    assert not backbone.recurrent  # one padded pass per batch (Gemma 3's sliding layers too)
    reference = _reference(folder, pictures)
    pixels = backbone.image_processor(pictures)
    assert isinstance(pixels, TileBatch)
    counts = pixels.token_counts()
    if model_type == "internvl":
        assert len(set(counts)) > 2  # the batch mixes lengths: left padding is exercised
    else:
        assert counts == [4] * len(pictures)  # Gemma 3: mm_tokens_per_image per picture
    for batch_size in (1, 2, 5):
        got: list[float] = []
        probs: list[list[float]] = []
        for start in range(0, len(pictures), batch_size):
            result = backbone.score(stack_pixels(list(pixels)[start : start + batch_size]))
            got += result.score.tolist()
            probs += result.probs.tolist()
        np.testing.assert_allclose(got, [r[0] for r in reference], rtol=0, atol=ATOL)
        np.testing.assert_allclose(probs, [r[1] for r in reference], rtol=0, atol=ATOL)
    assert np.ptp([r[0] for r in reference]) > 1e-3  # random weights: not vacuous


@pytest.mark.parametrize("model_type", TILED)
def test_generate_equals_model_generate_greedy(model_type, tiny_vlm_dirs, loaded, pictures):
    import transformers

    folder = tiny_vlm_dirs(model_type)
    backbone = loaded(model_type)
    got = backbone.generate(backbone.image_processor([pictures[0]]), max_new_tokens=6)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": "Describe this painting."}],
        }
    ]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if model_type == "gemma3":
        processor = transformers.Gemma3Processor(
            image_processor=transformers.Gemma3ImageProcessorPil.from_pretrained(folder),
            tokenizer=tokenizer,
            image_seq_length=4,
        )
        inputs = dict(processor(images=[pictures[0]], text=text, return_tensors="pt"))
    else:
        images = transformers.GotOcr2ImageProcessorPil.from_pretrained(folder)
        pixels = images(images=[pictures[0]], crop_to_patches=True, return_tensors="pt")
        tiles = int(pixels["num_patches"][0])
        text = text.replace("<IMG_CONTEXT>", "<img>" + "<IMG_CONTEXT>" * 4 * tiles + "</img>")
        inputs = dict(tokenizer(text, return_tensors="pt", add_special_tokens=False))
        inputs["pixel_values"] = pixels["pixel_values"]
    out = backbone.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert got == out[0, inputs["input_ids"].shape[1] :].tolist()
    assert len(got) >= 1


def test_pixels_equal_the_published_pil_processors(tiny_vlm_dirs, loaded, pictures):
    from transformers import Gemma3ImageProcessorPil, GotOcr2ImageProcessorPil

    folder = tiny_vlm_dirs("gemma3")
    ours = loaded("gemma3").image_processor(pictures)
    theirs = Gemma3ImageProcessorPil.from_pretrained(folder)(images=pictures, return_tensors="pt")
    assert torch.equal(ours.pixel_values, theirs["pixel_values"])

    folder = tiny_vlm_dirs("internvl")
    ours = loaded("internvl").image_processor(pictures)
    theirs = GotOcr2ImageProcessorPil.from_pretrained(folder)(
        images=pictures, crop_to_patches=True, return_tensors="pt"
    )
    assert ours.tile_counts() == theirs["num_patches"].tolist()
    assert torch.equal(ours.pixel_values, theirs["pixel_values"])


@pytest.mark.parametrize("model_type", TILED)
def test_fixed_resolution_is_one_tile_per_picture_and_batch_equals_single(
    model_type, tiny_vlm_dirs, pictures
):
    spec = ARTQUANT_SPEC.model_copy(update={"resolution": Resolution(mode="fixed", size=32)})
    backbone = load_backbone(tiny_vlm_dirs(model_type), spec=spec)
    pixels = backbone.image_processor(pictures)
    assert pixels.tile_counts() == [1] * len(pictures)
    together = backbone.score(pixels).score
    alone = torch.cat([backbone.score(one).score for one in pixels])
    torch.testing.assert_close(together, alone, rtol=0, atol=ATOL)
    # padded to a square with the mean colour first: a 1:3 picture is not stretched
    processor = backbone.image_processor
    assert processor.prepare(pictures[3]).size == (90, 90)


def test_resolutions_a_tile_model_cannot_take_are_refused(tiny_vlm_dirs):
    folder = tiny_vlm_dirs("gemma3")
    for resolution, message in [
        (Resolution(mode="fixed", size=448), r"size 448 is not possible.*use size 32"),
        (Resolution(mode="native", max_pixels=1000), r"min_pixels / max_pixels do not apply"),
    ]:
        spec = ARTQUANT_SPEC.model_copy(update={"resolution": resolution})
        with pytest.raises(ValueError, match=message):
            load_backbone(folder, spec=spec)


def test_pixels_of_another_family_are_refused(loaded, pictures):
    qwen_pixels = VisionBatch(torch.zeros(4, 3 * 2 * 14 * 14), torch.tensor([[1, 2, 2]]))
    with pytest.raises(TypeError, match=r"\(gemma3\) takes a TileBatch.*got VisionBatch"):
        loaded("gemma3").score(qwen_pixels)
    internvl_pixels = loaded("internvl").image_processor(pictures[:1])
    with pytest.raises(ValueError, match="different models"):
        TileBatch.stack([internvl_pixels, TileBatch(torch.zeros(1, 3, 32, 32), torch.ones(1), 9)])


def test_soft_capped_logits_are_refused(loaded):
    gemma = loaded("gemma3")
    text = gemma.model.config.get_text_config()
    text.final_logit_softcapping = 30.0
    try:
        with pytest.raises(ValueError, match=r"final_logit_softcapping=30\.0"):
            HFVisionLanguageBackbone(gemma.model, gemma.tokenizer, gemma.image_processor)
    finally:
        text.final_logit_softcapping = None


def test_a_template_without_the_family_placeholder_is_refused_at_load(loaded):
    import copy

    gemma = loaded("gemma3")
    tokenizer = copy.deepcopy(gemma.tokenizer)
    # a template that writes another family's placeholder
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: <|image_pad|>{% endfor %}"
    with pytest.raises(ValueError, match=r"wrote 0 image placeholders \('<start_of_image>'\)"):
        HFVisionLanguageBackbone(gemma.model, tokenizer, gemma.image_processor)
