"""mPLUG-Owl2 through the backbone layer: the same numbers as the direct scoring path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from artquant_model import (
    ARTQUANT_LEVELS,
    ARTQUANT_SCORE_PROMPT,
    QALIGN_SCORE_PROMPT,
    SPEC_PRESETS,
    MPLUGOwl2Backbone,
    load_backbone,
    score_pixel_values,
    tokenizer_image_token,
)
from artquant_model.backbones.mplug_owl2.backbone import mplug_owl2_prompt
from artquant_model.testing import save_tiny_checkpoint


def test_spec_presets_give_the_original_prompts():
    assert mplug_owl2_prompt(SPEC_PRESETS["artquant"].question()) == ARTQUANT_SCORE_PROMPT
    assert mplug_owl2_prompt(SPEC_PRESETS["qalign"].question()) == QALIGN_SCORE_PROMPT


def test_backbone_scores_equal_score_pixel_values(tmp_path):
    folder = save_tiny_checkpoint(tmp_path / "tiny")
    backbone = load_backbone(folder)
    assert isinstance(backbone, MPLUGOwl2Backbone)
    rng = np.random.default_rng(0)
    pictures = [rng.integers(0, 256, (20 + 7 * i, 30, 3), dtype=np.uint8) for i in range(3)]
    pixels = backbone.image_processor(pictures)
    got = backbone.score(pixels)
    ids = tokenizer_image_token(ARTQUANT_LEVELS.prompt, backbone.tokenizer)
    expected = score_pixel_values(
        backbone.model,
        ids,
        pixels,
        ARTQUANT_LEVELS.token_ids(backbone.tokenizer),
        ARTQUANT_LEVELS.values,
        open_set=False,
    )
    # the prefix cache reorders float32 sums only
    torch.testing.assert_close(got.score, expected.score, rtol=0, atol=1e-5)
    assert backbone.level_ids() == ARTQUANT_LEVELS.token_ids(backbone.tokenizer)


def test_generate_takes_one_picture(tmp_path):
    backbone = load_backbone(save_tiny_checkpoint(tmp_path / "tiny"))
    pixels = backbone.image_processor([np.zeros((8, 8, 3), np.uint8)] * 2)
    with pytest.raises(ValueError, match="one picture, got 2"):
        backbone.generate(pixels)
    assert len(backbone.generate(pixels[:1], max_new_tokens=3)) <= 3
