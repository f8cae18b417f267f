"""The benchmark's model builder, input pipelines and scoring paths, on the tiny size.

The central check: the fast path (the product's ``score_pixel_values``: batched, LM head at the
read position only) gives the plain path's scores (one image per forward, full logits at every
position) within 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("artquant_model")

from _bench import SIZES, make_images
from _pipeline import (
    BenchPipeline,
    ImageFiles,
    build_random_model,
    fast_scores,
    make_image_processor,
    plain_scores,
    product,
    resolve_dtype,
)

CPU = torch.device("cpu")
# Two float32 forward passes that differ in shape (padding, batch, a prefix cache, fused
# attention) sum in another order; which order depends on the CPU's matmul and attention
# kernels, not on our code. Scores (1..10) measured up to 5e-7 apart here (AVX2); 1e-5 leaves
# room for other kernels and is still 100x below the spread between pictures that
# test_fast_path_equals_plain_path requires, so a mixed-up or mis-padded row still fails.
SCORE_ATOL = 1e-5


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return build_random_model(SIZES["tiny"], device=CPU, dtype=torch.float32, seed=1)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_images(tmp_path_factory.mktemp("pictures"), 5, seed=2)


def test_random_model_is_seeded_and_keeps_its_buffers(tiny: torch.nn.Module) -> None:
    again = build_random_model(SIZES["tiny"], device=CPU, dtype=torch.float32, seed=1)
    other = build_random_model(SIZES["tiny"], device=CPU, dtype=torch.float32, seed=2)
    name, weight = next((n, p) for n, p in tiny.named_parameters() if p.dim() == 2)
    assert torch.equal(weight, dict(again.named_parameters())[name])
    assert not torch.equal(weight, dict(other.named_parameters())[name])
    assert float(weight.std()) == pytest.approx(weight.shape[1] ** -0.5, rel=0.2)
    assert not any(p.requires_grad for p in tiny.parameters())
    # the sin-cos tables computed in __init__ survive the in-place weight fill
    attention = tiny.model.visual_abstractor.encoder.layers[0].crossattention.attention
    from artquant_model.backbones.mplug_owl2.modeling_mplug_owl2 import (
        key_position_table,
        query_position_table,
    )

    assert torch.equal(attention.k_pos_embed, key_position_table(32, 32))
    assert torch.equal(attention.q_pos_embed, query_position_table(32, 8))


def test_random_model_in_bfloat16() -> None:
    model = build_random_model(SIZES["tiny"], device=CPU, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_fast_path_equals_plain_path(tiny: torch.nn.Module) -> None:
    """Batched, LM head at one position == one image per forward, full logits; within 1e-5."""
    assert product("score_pixel_values") is not None  # the product's fast path is what runs
    generator = torch.Generator().manual_seed(0)
    offsets = torch.tensor([-1.5, -0.5, 0.5, 1.5]).view(4, 1, 1, 1)
    pixels = offsets + 0.5 * torch.randn(4, 3, 448, 448, generator=generator)
    fast = fast_scores(tiny, pixels)
    plain = plain_scores(tiny, pixels)
    assert fast.shape == plain.shape == (4,)
    assert torch.allclose(fast.double(), plain.double(), rtol=0, atol=SCORE_ATOL)
    # different pictures, different scores (spread 100x the tolerance): not a constant
    assert float(fast.max() - fast.min()) > 1e-3
    assert torch.all((fast >= 1) & (fast <= 10))


def test_bench_pipeline_scores_files_in_order(tiny: torch.nn.Module, pictures: list[Path]) -> None:
    processor = make_image_processor()
    pipeline = BenchPipeline(tiny, processor, CPU, torch.float32, workers=1)
    assert pipeline.input_only(pictures, 2) == len(pictures)
    done, scores = pipeline.run(pictures, 2, deadline=None)
    assert done == len(pictures)
    dataset = ImageFiles(pictures, processor, torch.float32)
    one_by_one = torch.cat([plain_scores(tiny, dataset[i][1][None]) for i in range(len(pictures))])
    assert torch.allclose(scores, one_by_one.double(), rtol=0, atol=SCORE_ATOL)


def test_bench_pipeline_pads_for_static_shapes(tiny: torch.nn.Module, pictures: list[Path]) -> None:
    processor = make_image_processor()
    padded = BenchPipeline(tiny, processor, CPU, torch.float32, workers=0, pad_to_batch=True)
    plain = BenchPipeline(tiny, processor, CPU, torch.float32, workers=0)
    done, with_pad = padded.run(pictures, 4, deadline=None)
    _, without = plain.run(pictures, 4, deadline=None)
    assert done == 5
    assert torch.allclose(with_pad, without, rtol=0, atol=SCORE_ATOL)


def test_cli_pipeline_is_the_sdk_loop(tiny: torch.nn.Module, pictures: list[Path]) -> None:
    pytest.importorskip("artquant_sdk")
    from _pipeline import CliPipeline

    processor = make_image_processor()
    # the original's settings, so the two loops do the same arithmetic
    pipeline = CliPipeline(
        tiny, processor, CPU, workers=0, threads=2, visual_attn="eager", vision_batch_size=None,
        malloc_tuning=False,
    )  # fmt: skip
    assert pipeline.settings == {
        "visual_attn": "eager", "vision_batch_size": None, "workers": 0, "decode_threads": 2,
        "prefix_cache": True, "malloc_tuned": False,
    }  # fmt: skip
    done, scores = pipeline.run(pictures, 3, deadline=None)
    _, reference = BenchPipeline(tiny, processor, CPU, torch.float32, workers=0).run(
        pictures, 3, deadline=None
    )
    assert done == len(pictures)
    assert torch.allclose(scores, reference, rtol=0, atol=SCORE_ATOL)


def test_cli_pipeline_takes_the_products_cpu_settings(pictures: list[Path]) -> None:
    pytest.importorskip("artquant_sdk")
    from _pipeline import CliPipeline

    from artquant_sdk._malloc import _glibc

    model = build_random_model(SIZES["tiny"], device=CPU, dtype=torch.float32, seed=1)
    processor = make_image_processor()
    _, reference = BenchPipeline(model, processor, CPU, torch.float32, workers=0).run(
        pictures, 3, deadline=None
    )
    pipeline = CliPipeline(model, processor, CPU)
    assert pipeline.settings == {
        "visual_attn": "sdpa",
        "vision_batch_size": 1,
        "workers": 0,
        "decode_threads": torch.get_num_threads(),
        "prefix_cache": True,
        "malloc_tuned": _glibc() is not None,  # as artquant score does on a CPU
    }
    assert model.config.visual_attn_implementation == "sdpa"
    done, scores = pipeline.run(pictures, 3, deadline=None)
    assert done == len(pictures)
    # fused attention and per-picture vision passes: float32 reordering only
    assert torch.allclose(scores, reference, rtol=0, atol=SCORE_ATOL)


def test_resolve_dtype() -> None:
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("Float32") is torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        resolve_dtype("int8")


def test_count_host_syncs_sees_each_kind() -> None:
    from _pipeline import count_host_syncs

    x = torch.arange(6.0)

    def work() -> None:
        bool((x > 2).any())  # one scalar read
        x[x > 2]  # boolean indexing needs the mask's count
        x.sum().item()  # another scalar read
        torch.nonzero(x)
        x + 1  # no sync

    assert count_host_syncs(work) == {
        "total": 4,
        "aten._local_scalar_dense": 2,
        "aten.index[bool]": 1,
        "aten.nonzero": 1,
    }
    assert count_host_syncs(lambda: x * 2) == {"total": 0}
