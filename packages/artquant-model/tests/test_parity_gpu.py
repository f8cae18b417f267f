"""The 32k-vocabulary parity on a CUDA device (skipped without one).

Float32 with TF32 disabled is held to the fixture's CPU tolerances; bfloat16, the deployment
dtype, only to a loose bound (the fixture measured 0.022 on ArtQuant scores for bf16 on CPU).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from artquant_model import load_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture
def no_tf32() -> Iterator[None]:
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _pixels(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    pictures = inputs["pixel_values_uint8_hwc"].long()
    table = inputs["pixel_value_lut"]
    return torch.stack([table[c][pictures[..., c]] for c in range(3)], dim=1)


def _artquant_scores(logits: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    probs = logits[:, -1, inputs["level_ids"].to(logits.device)].double().softmax(-1)
    return probs.cpu() @ inputs["score_weights_artquant"].double()


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 0.05)])
def test_scores_on_cuda(
    vocab32k_fixture_dir: Path, no_tf32: None, dtype: torch.dtype, atol: float
) -> None:
    inputs = load_file(vocab32k_fixture_dir / "inputs.safetensors")
    reference = load_file(vocab32k_fixture_dir / "reference_outputs.safetensors")
    model = load_model(vocab32k_fixture_dir / "checkpoint", dtype=dtype, device="cuda")
    pixels = _pixels(inputs).to("cuda", dtype)
    with torch.no_grad():
        logits = model(
            input_ids=inputs["artquant.input_ids"].cuda(), images=pixels, logits_to_keep=1
        ).logits
    scores = _artquant_scores(logits, inputs)
    torch.testing.assert_close(
        scores, reference["artquant.score_artquant"].double(), rtol=0.0, atol=atol
    )


def test_greedy_generation_on_cuda(vocab32k_fixture_dir: Path, no_tf32: None) -> None:
    inputs = load_file(vocab32k_fixture_dir / "inputs.safetensors")
    generation = load_file(vocab32k_fixture_dir / "generation_reference.safetensors")
    model = load_model(vocab32k_fixture_dir / "checkpoint", device="cuda")
    prompt = generation["generation_input_ids"].cuda()
    with torch.no_grad():
        sequence = model.generate(
            input_ids=prompt, images=_pixels(inputs)[:1].cuda(), max_new_tokens=8, do_sample=False
        )
    assert sequence[0, prompt.shape[1] :].tolist() == generation["generated_ids"].tolist()
