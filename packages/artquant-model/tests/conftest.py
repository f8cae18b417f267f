"""Shared fixtures of the artquant-model tests: the reference material in ../shared.

The parity fixtures live beside the checkout (``<repo>/../shared``, or ``$ARTQUANT_SHARED``).
A fresh clone does not have them, so every test that needs them skips with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

_DEFAULT_SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"


def _shared_root() -> Path:
    override = os.environ.get("ARTQUANT_SHARED")
    return Path(override) if override else _DEFAULT_SHARED


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared reference folder; skips the test when it is absent."""
    root = _shared_root().resolve()
    if not root.is_dir():
        pytest.skip(f"../shared not found: {root} (set ARTQUANT_SHARED to its location)")
    return root


def _fixture_dir(shared: Path, name: str) -> Path:
    path = shared / "fixtures" / name
    if not path.is_dir():
        pytest.skip(f"../shared not found: fixture folder {path} is missing")
    return path


@pytest.fixture(scope="session")
def tiny_fixture_dir(shared_dir: Path) -> Path:
    """``fixtures/mplug_owl2_tiny``: vocabulary 1000, original-code outputs."""
    return _fixture_dir(shared_dir, "mplug_owl2_tiny")


@pytest.fixture(scope="session")
def vocab32k_fixture_dir(shared_dir: Path) -> Path:
    """``fixtures/mplug_owl2_tiny_vocab32k``: the real vocabulary, 448 px, bf16 weights."""
    return _fixture_dir(shared_dir, "mplug_owl2_tiny_vocab32k")


@pytest.fixture(scope="session")
def qwen2_tokenizer_dir(shared_dir: Path) -> Path:
    """``tokenizers/qwen2_vl``: the real Qwen2 / Qwen2.5-VL tokenizer and chat template."""
    path = shared_dir / "tokenizers" / "qwen2_vl"
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"../shared not found: the Qwen2 tokenizer {path} is missing")
    return path


@pytest.fixture(scope="session")
def tiny_vlm_dirs(tmp_path_factory: pytest.TempPathFactory, qwen2_tokenizer_dir: Path):
    """A saved tiny random model per Qwen family (real Qwen2 tokenizer), built on first use."""
    from transformers import AutoTokenizer

    from artquant_model.testing import save_tiny_vlm

    tokenizer = AutoTokenizer.from_pretrained(qwen2_tokenizer_dir)
    root = tmp_path_factory.mktemp("tiny_vlm")
    made: dict[str, Path] = {}

    def folder(model_type: str) -> Path:
        if model_type not in made:
            made[model_type] = save_tiny_vlm(root / model_type, model_type, tokenizer)
        return made[model_type]

    return folder


@pytest.fixture(scope="session")
def qwen3_5_tokenizer_dir() -> Path:
    """The real Qwen3.5 tokenizer, built offline by ``tools/qwen3_5_tokenizer/build.py``
    (``$ARTQUANT_QWEN3_5_TOKENIZER`` or ``~/.cache/artquant/tokenizers/qwen3_5``)."""
    from artquant_model.testing import qwen3_5_tokenizer_dir, qwen3_5_tokenizer_missing

    if reason := qwen3_5_tokenizer_missing():
        pytest.skip(reason)
    return qwen3_5_tokenizer_dir()


@pytest.fixture(scope="session")
def qwen3_5_tokenizer(qwen3_5_tokenizer_dir: Path) -> Any:
    """The real Qwen3.5 tokenizer, loaded once (a 248k-token tokenizer.json takes seconds)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen3_5_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_qwen3_5_dir(tmp_path_factory: pytest.TempPathFactory, qwen3_5_tokenizer: Any) -> Path:
    """A saved tiny random Qwen3.5 with the real Qwen3.5 tokenizer (248,320-row vocabulary)."""
    from artquant_model.testing import save_tiny_vlm

    folder = tmp_path_factory.mktemp("tiny_qwen3_5") / "qwen3_5"
    return save_tiny_vlm(folder, "qwen3_5", qwen3_5_tokenizer)
