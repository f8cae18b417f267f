"""The vision-side attention choice of ``ArtQuant.from_pretrained``: fused or the original's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from artquant_sdk import ArtQuant


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from artquant_model.testing import save_tiny_checkpoint

    return Path(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", seed=3))


def _pictures() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, size=(40 + 9 * i, 31, 3), dtype=np.uint8) for i in range(3)]


def test_cpu_keeps_the_checkpoint_setting_and_sdpa_scores_agree(checkpoint: Path) -> None:
    default = ArtQuant.from_pretrained(checkpoint, device="cpu")
    fused = ArtQuant.from_pretrained(checkpoint, device="cpu", visual_attn_implementation="sdpa")
    assert default.model.config.visual_attn_implementation == "eager"
    assert fused.model.config.visual_attn_implementation == "sdpa"
    pictures = _pictures()
    for a, b in zip(default.score(pictures), fused.score(pictures), strict=True):
        # fused attention reorders float32 sums only: far inside the 1e-5 parity tolerance
        assert abs(a.score - b.score) < 1e-5
        assert max(abs(a.probs[w] - b.probs[w]) for w in a.probs) < 2e-6


def test_unknown_visual_attention_names_the_allowed_values(checkpoint: Path) -> None:
    with pytest.raises(ValueError, match=r"visual_attn_implementation must be one of .*'flash'"):
        ArtQuant.from_pretrained(checkpoint, device="cpu", visual_attn_implementation="flash")
