"""A tiny random Qwen-VL base with the real Qwen2 tokenizer (from ``../shared``), for tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


def tokenizer_dir() -> Path:
    """``../shared/tokenizers/qwen2_vl`` (or under ``$ARTQUANT_SHARED``); skips without it."""
    shared = os.environ.get("ARTQUANT_SHARED")
    root = Path(shared) if shared else Path(__file__).resolve().parents[3] / ".." / "shared"
    path = (root / "tokenizers" / "qwen2_vl").resolve()
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"../shared not found: the real Qwen2 tokenizer {path} is missing")
    return path


def qwen_tokenizer() -> Any:
    """The real Qwen2 / Qwen2.5-VL tokenizer with its chat template; skips without it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir()))


def save_tiny_qwen(folder: Path, model_type: str = "qwen2_5_vl", seed: int = 0) -> Path:
    """A tiny random ``model_type`` base (hidden 32, 2 layers) saved with the real tokenizer."""
    from artquant_model.testing import save_tiny_vlm

    return save_tiny_vlm(folder, model_type, qwen_tokenizer(), seed=seed)
