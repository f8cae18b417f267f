"""The analytic FLOP count against the issue's figures, hand arithmetic and torch's counter."""

from __future__ import annotations

import pytest
import torch
from _bench import ARTQUANT_PROMPT_IDS, SIZES
from flops import ModelDims, count_flops
from torch.utils.flop_counter import FlopCounterMode

FULL = ModelDims.from_config_dict(SIZES["full"])


def test_full_model_matches_the_issue_figures() -> None:
    """ViT-L/14 ~0.72, abstractor ~0.04, LLaMA-2-7B over 92 tokens ~1.2, total ~2.0 TFLOP."""
    count = count_flops(FULL)
    assert FULL.num_patches == 1024
    assert FULL.spliced_length == 92
    assert count.vision / 1e12 == pytest.approx(0.72, abs=0.01)
    assert count.abstractor / 1e12 == pytest.approx(0.04, abs=0.005)
    assert count.llm() / 1e12 == pytest.approx(1.2, abs=0.01)
    assert count.total() / 1e12 == pytest.approx(1.96, abs=0.01)
    # 790 TFLOP/s of bf16 gives the ~400 images/s ceiling of the issue
    assert count.ceiling_images_per_s(790e12) == pytest.approx(403.5, abs=0.5)


def test_terms_by_hand() -> None:
    """Each term of the full model re-derived with plain integer arithmetic."""
    count = count_flops(FULL)
    tokens_v, dv, iv = 1025, 1024, 4096
    patch = 2 * 1024 * (3 * 14 * 14) * dv
    assert count.vision_linear == patch + 24 * 2 * tokens_v * (4 * dv * dv + 2 * dv * iv)
    assert count.vision_attention == 24 * 4 * tokens_v * tokens_v * dv
    keys = 64 + 1025
    per_layer = 2 * 64 * 1024**2 + 2 * keys * 1024**2 + 3 * 64 * 1024 * 2816
    assert count.abstractor_linear == 6 * 2 * per_layer + 2 * 64 * 1024 * 4096
    assert count.abstractor_attention == 6 * 4 * 64 * keys * 1024
    h, i = 4096, 11008
    assert count.llm_linear == 32 * 2 * 92 * (4 * h * h + 3 * h * i)
    assert count.llm_attention == 32 * 4 * 92 * 92 * h
    assert count.lm_head_per_position == 2 * 32000 * h
    assert count.total("all") - count.total("one") == 91 * 2 * 32000 * h
    # the 15 prompt tokens before the image: their linear rows and attention rows
    assert count.prefix_saving == 32 * 2 * 15 * (4 * h * h + 3 * h * i) + 32 * 4 * 15 * 92 * h
    assert count.prefix_saving / 1e12 == pytest.approx(0.195, abs=0.001)
    assert count_flops(FULL, prefix_tokens=0).prefix_saving == 0
    with pytest.raises(ValueError, match=r"prefix_tokens must be in \[0, 92\), got 92"):
        count_flops(FULL, prefix_tokens=92)


def test_grouped_query_attention_shrinks_only_k_and_v() -> None:
    gqa = ModelDims.from_config_dict({**SIZES["full"], "num_key_value_heads": 8})
    saved = count_flops(FULL).llm_linear - count_flops(gqa).llm_linear
    head_dim = 4096 // 32
    assert saved == 32 * 2 * 92 * 2 * 4096 * (32 - 8) * head_dim


def test_summary_reports_every_part_in_tflop() -> None:
    summary = count_flops(FULL).summary(peak_tflops=790)
    assert summary["total_tflop"] == pytest.approx(count_flops(FULL).total() / 1e12)
    assert summary["ceiling_images_per_s"] == pytest.approx(403.5, abs=0.5)
    assert summary["spliced_length"] == 92
    assert "ceiling_images_per_s" not in count_flops(FULL).summary()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vision_layers": 0}, "vision_layers must be a positive int"),
        ({"image_size": 450}, "not a multiple of patch_size"),
        ({"num_heads": 7}, "not divisible by num_heads"),
    ],
)
def test_bad_dims_are_rejected(change: dict[str, int], message: str) -> None:
    fields = {**FULL.__dict__, **change}
    with pytest.raises(ValueError, match=message):
        ModelDims(**fields)


def test_config_without_visual_part_is_rejected() -> None:
    config = {k: v for k, v in SIZES["full"].items() if k != "visual_config"}
    with pytest.raises(ValueError, match="visual_config"):
        ModelDims.from_config_dict(config)


def test_bad_ceiling_and_head_arguments() -> None:
    count = count_flops(FULL)
    with pytest.raises(ValueError, match="peak_flops must be positive"):
        count.ceiling_images_per_s(0)
    with pytest.raises(ValueError, match="lm_head must be 'one' or 'all'"):
        count.total("some")  # type: ignore[arg-type]


@pytest.mark.parametrize("lm_head", ["one", "all"])
def test_count_matches_torch_flop_counter(lm_head: str) -> None:
    """The formulas agree with torch's operator-level counter on a real model forward."""
    pytest.importorskip("artquant_model")
    from _pipeline import build_random_model

    config = SIZES["tiny"]
    model = build_random_model(config, device=torch.device("cpu"), dtype=torch.float32)
    ids = torch.tensor([ARTQUANT_PROMPT_IDS])
    pixels = torch.randn(1, 3, 448, 448)
    keep = 1 if lm_head == "one" else 0
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(
            input_ids=ids, images=pixels, attention_mask=torch.ones_like(ids), logits_to_keep=keep
        )
    expected = count_flops(ModelDims.from_config_dict(config)).total(lm_head)  # type: ignore[arg-type]
    # the counter sees exactly the matrix products we count; the LLM attention is causal in
    # SDPA's kernel but counted in full by both
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.01)
