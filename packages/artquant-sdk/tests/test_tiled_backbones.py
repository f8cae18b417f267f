"""``ArtQuant.from_pretrained`` on tiny random Gemma 3 and InternVL folders: the generic backbone
is picked from ``config.json`` and ``score`` equals the plain transformers procedure
(``artquant_model.testing.reference_vlm_scores``) within 1e-5 on the 1-10 scale (float32
reordering only; see packages/artquant-model/tests/test_backbone_tiled_vlm.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artquant_sdk import ArtQuant

ATOL = 1e-5


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(5)
    paths = []
    for i, (w, h) in enumerate([(40, 60), (64, 64), (100, 50)]):
        path = folder / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("model_type", ["gemma3", "internvl"])
def test_from_pretrained_picks_the_family_and_scores_as_the_plain_procedure(
    model_type: str, shared: Path, tmp_path: Path, pngs: list[Path]
) -> None:
    from transformers import AutoTokenizer

    from artquant_model import ARTQUANT_SPEC, HFVisionLanguageBackbone
    from artquant_model.testing import reference_vlm_scores, save_tiny_vlm

    tokenizer_dir = shared / "tokenizers" / "qwen2_vl"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        pytest.skip(f"the Qwen2 tokenizer is missing from {shared}")
    folder = save_tiny_vlm(
        tmp_path / model_type, model_type, AutoTokenizer.from_pretrained(tokenizer_dir)
    )
    scorer = ArtQuant.from_pretrained(folder, device="cpu")
    assert isinstance(scorer.backbone, HFVisionLanguageBackbone)
    assert (
        type(scorer.backbone.model).__name__
        == {
            "gemma3": "Gemma3ForConditionalGeneration",
            "internvl": "InternVLForConditionalGeneration",
        }[model_type]
    )
    question = ARTQUANT_SPEC.question()
    reference = reference_vlm_scores(
        folder,
        [Image.open(p).convert("RGB") for p in pngs],
        question=question.prompt,
        stem=question.stem,
        words=ARTQUANT_SPEC.words,
        values=ARTQUANT_SPEC.values,
    )
    results = scorer.score(pngs, batch_size=2)
    assert [r.image for r in results] == [str(p) for p in pngs]
    np.testing.assert_allclose(
        [r.score for r in results], [r[0] for r in reference], rtol=0, atol=ATOL
    )
