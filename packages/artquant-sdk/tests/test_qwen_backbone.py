"""The SDK and the ``artquant`` command on a tiny random Qwen2.5-VL (real Qwen2 tokenizer).

Scores are checked against the plain transformers procedure, one image per forward
(``artquant_model.testing.reference_vlm_scores``), within 1e-5 on the 1-10 scale (float32
reordering only; see packages/artquant-model/tests/test_backbone_hf_vlm.py).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artquant_sdk import ArtQuant, cli

ATOL = 1e-5
WORDS = ["excellent", "good", "fair", "poor", "bad"]


@pytest.fixture(scope="module")
def qwen_folder(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    from artquant_model.testing import save_tiny_vlm

    tokenizer_dir = shared / "tokenizers" / "qwen2_vl"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        pytest.skip(f"the Qwen2 tokenizer is missing from {shared}")
    folder = tmp_path_factory.mktemp("qwen") / "tiny-qwen2.5-vl"
    return save_tiny_vlm(folder, "qwen2_5_vl", AutoTokenizer.from_pretrained(tokenizer_dir))


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(3)
    paths = []
    for i, (w, h) in enumerate([(40, 60), (64, 64), (100, 50), (30, 90), (160, 120)]):
        path = folder / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def reference(qwen_folder: Path, pngs: list[Path]) -> list[float]:
    from artquant_model import ARTQUANT_SPEC
    from artquant_model.testing import reference_vlm_scores

    question = ARTQUANT_SPEC.question()
    pictures = [Image.open(p).convert("RGB") for p in pngs]
    return [
        score
        for score, _ in reference_vlm_scores(
            qwen_folder,
            pictures,
            question=question.prompt,
            stem=question.stem,
            words=ARTQUANT_SPEC.words,
            values=ARTQUANT_SPEC.values,
        )
    ]


@pytest.fixture(scope="module")
def scorer(qwen_folder: Path) -> ArtQuant:
    return ArtQuant.from_pretrained(qwen_folder, device="cpu")


def test_from_pretrained_picks_the_generic_backbone(scorer: ArtQuant) -> None:
    from artquant_model import HFVisionLanguageBackbone

    assert isinstance(scorer.backbone, HFVisionLanguageBackbone)
    assert scorer.level_words == WORDS
    assert scorer.scale == (1.0, 10.0)


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_score_equals_the_plain_procedure(
    scorer: ArtQuant, pngs: list[Path], reference: list[float], batch_size: int
) -> None:
    results = scorer.score(pngs, batch_size=batch_size)
    np.testing.assert_allclose([r.score for r in results], reference, rtol=0, atol=ATOL)
    assert [r.image for r in results] == [str(p) for p in pngs]


def test_describe_equals_the_backbones_greedy_generation(scorer: ArtQuant, pngs: list[Path]):
    ids = scorer.describe_ids(pngs[0], max_new_tokens=5)
    pixels = scorer.preprocess([Image.open(pngs[0])])
    assert ids == scorer.backbone.generate(pixels, max_new_tokens=5)
    assert isinstance(scorer.describe(pngs[0], max_new_tokens=5), str)


def test_unknown_model_type_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "fuyu"}')
    with pytest.raises(ValueError, match=r"'fuyu' is not supported.*'mplug_owl2'.*'qwen3_5'"):
        ArtQuant.from_pretrained(tmp_path, device="cpu")


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_cli_rows_equal_the_sdk_and_survive_hostile_files(
    tmp_path: Path, qwen_folder: Path, pngs: list[Path], scorer: ArtQuant
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.png").write_bytes(b"")
    (bad / "text.png").write_text("not an image")
    (bad / "truncated.png").write_bytes(pngs[4].read_bytes()[:200])
    Image.new("RGB", (600, 400)).save(bad / "bomb.png")
    Image.new("LA", (30, 20)).save(bad / "grey_alpha.png")
    out = tmp_path / "s.csv"
    files = [*map(str, pngs), str(bad)]
    args = ["score", "--model", str(qwen_folder), "--out", str(out), "--device", "cpu"]
    args += ["--max-pixels", "200000", "--no-progress", "--batch-size", "3"]
    assert cli.main([*args, *files]) == cli.EXIT_OK
    rows = _rows(out)
    by_image = {r["image"]: r for r in rows}
    assert Counter(r["image"] for r in rows) == Counter(
        [*map(str, pngs), *(str(bad / n) for n in sorted(p.name for p in bad.iterdir()))]
    )
    api = scorer.score(pngs, batch_size=1)
    for result in api:
        assert float(by_image[result.image]["score"]) == pytest.approx(result.score, abs=1e-6)
    for name in ("zero.png", "text.png", "truncated.png", "bomb.png"):
        assert by_image[str(bad / name)]["error"].startswith("ImageLoadError"), name
    assert not by_image[str(bad / "grey_alpha.png")]["error"]

    # resume: cut the file after three rows (and half a row), finish, compare exactly
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:10], encoding="utf-8")
    assert cli.main([*args, "--resume", *files]) == cli.EXIT_OK
    assert _rows(out) == rows
