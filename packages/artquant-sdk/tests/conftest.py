"""Shared fixtures: the reference material in ../shared and an isolated hub cache."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[3]


def shared_dir() -> Path:
    """``$ARTQUANT_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("ARTQUANT_SHARED")
    return Path(env) if env else (REPO_ROOT / ".." / "shared").resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The reference folder; skips when absent (a fresh clone has none)."""
    path = shared_dir()
    if not path.is_dir():
        pytest.skip(f"../shared not found at {path}: reference fixtures unavailable")
    return path


@pytest.fixture(scope="session")
def oasis(shared: Path) -> list[Path]:
    """The 12 real OASIS photos (JPEG)."""
    images = sorted((shared / "data" / "oasis_beauty" / "images").glob("*.jpg"))
    if len(images) != 12:
        pytest.skip(f"expected the 12 OASIS photos in {shared}/data/oasis_beauty/images")
    return images


def _make_bad_files(folder: Path, real_jpeg: Path) -> dict[str, bool]:
    """Write hostile files into ``folder``; returns file name -> whether it should score."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = real_jpeg.read_bytes()
    expected: dict[str, bool] = {}

    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(3000))
    expected["corrupt.jpg"] = False
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    expected["truncated.jpg"] = False
    (folder / "zero_bytes.png").write_bytes(b"")
    expected["zero_bytes.png"] = False
    (folder / "text_named_png.png").write_text("this is not an image\n")
    expected["text_named_png.png"] = False
    (folder / "notes.txt").write_text("skipped by the extension policy\n")  # no row expected

    Image.new("CMYK", (40, 30), (10, 200, 30, 5)).save(folder / "cmyk.jpg")
    expected["cmyk.jpg"] = True
    sixteen = (rng.integers(0, 65535, (30, 40))).astype(np.uint16)
    Image.fromarray(sixteen).save(folder / "sixteen_bit.png")
    expected["sixteen_bit.png"] = True
    palette = Image.new("P", (40, 30))
    palette.putpalette([i % 256 for i in range(768)])
    palette.paste(7, (0, 0, 20, 30))
    palette.info["transparency"] = 7
    palette.save(folder / "palette_transparent.png", transparency=7)
    expected["palette_transparent.png"] = True
    frames = [Image.new("RGB", (30, 30), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=50)
    expected["animated.gif"] = True
    Image.new("RGB", (1, 1), (128, 64, 32)).save(folder / "one_pixel.png")
    expected["one_pixel.png"] = True
    Image.new("RGB", (600, 400), (1, 2, 3)).save(folder / "bomb.png")
    expected["bomb.png"] = False
    return expected


@pytest.fixture(scope="session")
def make_bad_files() -> Callable[[Path, Path], dict[str, bool]]:
    """``make_bad_files(folder, real_jpeg)``: the hostile files of the robustness tests."""
    return _make_bad_files


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy 2-core runner two OpenMP threads
    per process made them up to 100x slower (measured); subprocesses get OMP_NUM_THREADS=1.
    The previous count is restored so other packages' tests in the same session are unaffected.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _isolated_hub(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test sees an empty hub cache, offline mode, and no ModelZoo override.

    No test may reach the network; tests that exercise a download replace
    ``huggingface_hub.snapshot_download`` themselves.
    """
    import huggingface_hub.constants as constants

    cache = tmp_path_factory.mktemp("hf-cache")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("ARTQUANT_MODELZOO", raising=False)
    return cache


@pytest.fixture(scope="session")
def tiny_qwen_checkpoints(
    shared: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Tiny random Qwen2.5-VL checkpoints with the real Qwen2 tokenizer: ``native`` resolution
    (token counts follow each picture's size) and ``fixed`` 56 px (every picture alike)."""
    from transformers import AutoTokenizer

    from artquant_model import ARTQUANT_SPEC, Resolution
    from artquant_model.testing import save_tiny_vlm

    tokenizer_dir = shared / "tokenizers" / "qwen2_vl"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        pytest.skip(f"the Qwen2 tokenizer is missing from {shared}")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    root = tmp_path_factory.mktemp("tiny-qwen")
    fixed = ARTQUANT_SPEC.model_copy(update={"resolution": Resolution(mode="fixed", size=56)})
    return {
        "native": save_tiny_vlm(root / "native", "qwen2_5_vl", tokenizer),
        "fixed": save_tiny_vlm(root / "fixed", "qwen2_5_vl", tokenizer, spec=fixed),
    }


@pytest.fixture(scope="session")
def qwen3_5_tokenizer_dir() -> Path:
    """The real Qwen3.5 tokenizer, built offline by ``tools/qwen3_5_tokenizer/build.py``
    (``$ARTQUANT_QWEN3_5_TOKENIZER`` or ``~/.cache/artquant/tokenizers/qwen3_5``)."""
    from artquant_model.testing import qwen3_5_tokenizer_dir, qwen3_5_tokenizer_missing

    if reason := qwen3_5_tokenizer_missing():
        pytest.skip(reason)
    return qwen3_5_tokenizer_dir()
