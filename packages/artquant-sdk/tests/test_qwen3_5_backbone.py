"""``ArtQuant`` on a tiny random Qwen3.5 with the real Qwen3.5 tokenizer (248,320-row
vocabulary, built offline by ``tools/qwen3_5_tokenizer/build.py``; skips where it is not built).

Scores against the plain transformers procedure, one image per forward
(``artquant_model.testing.reference_vlm_scores``: chat template with thinking off + stem,
``model(**inputs).logits[0, -1, level_ids]``, softmax, dot the values), within 1e-5 (float32
reordering only; see packages/artquant-model/tests/test_backbone_hf_vlm.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artquant_sdk import ArtQuant

ATOL = 1e-5


@pytest.fixture(scope="module")
def folder(qwen3_5_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    from artquant_model.testing import save_tiny_vlm

    tokenizer = AutoTokenizer.from_pretrained(qwen3_5_tokenizer_dir)
    return save_tiny_vlm(tmp_path_factory.mktemp("qwen3_5") / "tiny-qwen3.5", "qwen3_5", tokenizer)


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Five PNGs of different sizes (different image token counts in one batch)."""
    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(5)
    paths = []
    for i, (w, h) in enumerate([(40, 60), (64, 64), (100, 50), (30, 90), (160, 120)]):
        path = root / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def scorer(folder: Path) -> ArtQuant:
    return ArtQuant.from_pretrained(folder, device="cpu")


def test_score_equals_the_plain_procedure_at_batch_1_2_5(
    scorer: ArtQuant, folder: Path, pngs: list[Path]
) -> None:
    from artquant_model import ARTQUANT_SPEC
    from artquant_model.testing import reference_vlm_scores

    question = ARTQUANT_SPEC.question()
    reference = [
        score
        for score, _ in reference_vlm_scores(
            folder,
            [Image.open(p).convert("RGB") for p in pngs],
            question=question.prompt,
            stem=question.stem,
            words=ARTQUANT_SPEC.words,
            values=ARTQUANT_SPEC.values,
        )
    ]
    assert np.ptp(reference) > 1e-3  # random weights: the pictures score differently
    for batch_size in (1, 2, 5):
        results = scorer.score(pngs, batch_size=batch_size)
        assert [r.image for r in results] == [str(p) for p in pngs]
        np.testing.assert_allclose([r.score for r in results], reference, rtol=0, atol=ATOL)


def test_describe_equals_plain_greedy_generate(scorer: ArtQuant, folder: Path, pngs: list[Path]):
    from transformers import (
        AutoModelForImageTextToText,
        AutoTokenizer,
        Qwen2VLImageProcessorPil,
    )

    prompt = "Describe this painting."  # describe()'s default question for chat backbones
    ids = scorer.describe_ids(pngs[1], max_new_tokens=6, prompt=prompt)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = Qwen2VLImageProcessorPil.from_pretrained(folder)
    text = tokenizer.apply_chat_template(
        [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": prompt}],
            }
        ],
        add_generation_prompt=True,
        tokenize=False,
        enable_thinking=False,
    )
    pixels = processor(images=[Image.open(pngs[1]).convert("RGB")], return_tensors="pt")
    count = int(pixels["image_grid_thw"].prod()) // 4
    inputs = tokenizer(
        text.replace("<|image_pad|>", "<|image_pad|>" * count),
        return_tensors="pt",
        add_special_tokens=False,
    )
    types = (inputs["input_ids"] == model.config.image_token_id).int()
    out = model.generate(
        **inputs, **pixels, mm_token_type_ids=types, max_new_tokens=6, do_sample=False
    )
    assert ids == out[0, inputs["input_ids"].shape[1] :].tolist()
    assert isinstance(scorer.describe(pngs[1], max_new_tokens=6), str)
