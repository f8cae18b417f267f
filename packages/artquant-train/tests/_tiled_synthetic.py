"""Tiny random Gemma 3 and InternVL bases for the training tests, as the model tests build them.

Their own tokenizers are not on the Python registry: ``artquant_model.testing`` saves them with
the real Qwen2 tokenizer (from ``../shared``) plus each family's picture and turn tokens as
special tokens and a chat template in the family's format (``tiny_vlm_tokenizer``). Pictures
are the families' own: 32 px tiles, 4 language-model tokens per tile.
"""

from __future__ import annotations

from pathlib import Path

from _qwen_synthetic import qwen_tokenizer
from PIL import Image

TILED = ("gemma3", "internvl")
#: (width, height) the pictures of :func:`vary_aspect_ratios` cycle through: InternVL's native
#: resolution cuts them into 1, 2 + thumbnail and 3 + thumbnail tiles.
ASPECTS = ((28, 28), (56, 28), (28, 84))


def save_tiny_tiled(folder: Path, model_type: str, seed: int = 0) -> Path:
    """A tiny random ``gemma3`` or ``internvl`` base (LM hidden 32, 2 layers) with the stand-in
    tokenizer; skips without ``../shared``."""
    from artquant_model.testing import save_tiny_vlm

    return save_tiny_vlm(folder, model_type, qwen_tokenizer(), seed=seed)


def vary_aspect_ratios(images: Path) -> list[tuple[int, int]]:
    """Resize the PNGs under ``images`` (sorted by name) to :data:`ASPECTS` in turn (their
    brightness, hence their score, stays); the sizes written, in that order."""
    sizes = []
    for index, path in enumerate(sorted(images.glob("*.png"))):
        size = ASPECTS[index % len(ASPECTS)]
        with Image.open(path) as picture:
            resized = picture.convert("RGB").resize(size, Image.Resampling.BILINEAR)
        resized.save(path)
        sizes.append(size)
    return sizes
