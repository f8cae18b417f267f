"""The real server on the generic backbone: a tiny random Qwen2.5-VL with the real Qwen2
tokenizer and chat template, native resolution (each picture's token count follows its size).

Scores are compared with ``ArtQuant.score`` on the same pictures in this process, with the
batch size the server uses (one request of N pictures is ``ArtQuant.score(..., batch_size=8)``
there): the same left-padded batches, so 1e-6 holds (only the thread count differs).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from artquant_serve import ArtQuantClient

ATOL = 1e-6
BATCH = 8

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def qwen_folder(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer

    from artquant_model.testing import save_tiny_vlm

    tokenizer = shared / "tokenizers" / "qwen2_vl"
    if not (tokenizer / "tokenizer.json").is_file():
        pytest.skip(f"the Qwen2 tokenizer is missing from {shared}")
    folder = tmp_path_factory.mktemp("qwen") / "tiny-qwen2.5-vl"
    return save_tiny_vlm(folder, "qwen2_5_vl", AutoTokenizer.from_pretrained(tokenizer))


@pytest.fixture(scope="module")
def client(
    launch: Any, qwen_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ArtQuantClient]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    # one score worker (no describe worker): each worker is a process importing torch
    running = launch(
        log, "--max-batch-size", str(BATCH), "--no-describe", model=["--model", str(qwen_folder)]
    )
    try:
        with ArtQuantClient(running.url) as c:
            yield c
    finally:
        running.stop()


@pytest.fixture(scope="module")
def scorer(qwen_folder: Path) -> Any:
    from artquant_sdk import ArtQuant

    return ArtQuant.from_pretrained(qwen_folder, device="cpu")


def _pngs() -> list[bytes]:
    rng = np.random.default_rng(11)
    out = []
    for w, h in [(40, 60), (100, 50), (64, 64), (30, 90), (160, 120)]:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def test_a_qwen_model_serves_the_sdk_scores(client: ArtQuantClient, scorer: Any) -> None:
    from artquant_model import HFVisionLanguageBackbone

    assert isinstance(scorer.backbone, HFVisionLanguageBackbone)
    info = client.models()
    assert info.level_words == scorer.level_words
    assert info.scale == scorer.scale
    pictures = _pngs()
    expected = scorer.score(pictures, batch_size=BATCH)
    results = client.score(pictures)
    for got, want in zip(results, expected, strict=True):
        assert got.error is None, got.error
        assert got.score == pytest.approx(want.score, abs=ATOL)
        assert got.std == pytest.approx(want.std, abs=ATOL)
        assert got.level == want.level
        assert got.probs is not None
        assert list(got.probs.values()) == pytest.approx(list(want.probs.values()), abs=ATOL)
    # a picture that cannot be read fails alone; the others keep their scores
    results = client.score([pictures[0], pictures[1][:60], pictures[0]])
    assert results[1].error is not None
    assert results[1].error.code == "unreadable_image"
    alone = scorer.score([pictures[0]], batch_size=BATCH)[0]
    for got in (results[0], results[2]):
        assert got.score == pytest.approx(alone.score, abs=ATOL)
