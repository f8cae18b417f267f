"""Greedy generation through GenerationMixin + DynamicCache on the tiny model."""

from __future__ import annotations

import pytest
import torch

from artquant_model import MPLUGOwl2ForCausalLM
from artquant_model.testing import tiny_model

IMG = -200


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 28, 28, generator=torch.Generator().manual_seed(seed))


def _greedy(model: MPLUGOwl2ForCausalLM, ids: torch.Tensor, images, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(
            input_ids=ids,
            images=images,
            max_new_tokens=6,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
            **kwargs,
        )


def _manual_greedy(model: MPLUGOwl2ForCausalLM, ids: torch.Tensor, images, steps: int):
    """Reference loop: a full forward over prompt + generated text at every step, no cache."""
    generated = ids
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=generated, images=images, use_cache=False).logits
            generated = torch.cat([generated, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return generated


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_cached_and_uncached_greedy_agree(attn: str) -> None:
    model = tiny_model(seed=11, attn_implementation=attn)
    ids = torch.tensor([[1, 40, IMG, 41, 42]])
    images = _images(1)
    cached = _greedy(model, ids, images, use_cache=True)
    uncached = _greedy(model, ids, images, use_cache=False)
    reference = _manual_greedy(model, ids, images, steps=6)
    assert cached.shape == (1, 5 + 6)
    assert torch.equal(cached[:, :5], ids)  # the prompt comes back with its -200
    assert torch.equal(cached, uncached)
    assert torch.equal(cached, reference)


def test_left_padded_batch_generation_equals_each_row_alone() -> None:
    model = tiny_model(seed=12)
    prompts = [[1, 40, IMG, 41, 42, 43, 44], [1, IMG, 45], [1, 46, IMG, 47, IMG]]
    counts = [1, 1, 2]
    images = _images(4, seed=3)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    batch = _greedy(model, ids, images, attention_mask=mask)
    start = 0
    for row, (prompt, count) in enumerate(zip(prompts, counts, strict=True)):
        alone = _greedy(model, torch.tensor([prompt]), images[start : start + count])
        start += count
        assert batch[row, width:].tolist() == alone[0, len(prompt) :].tolist()


def test_text_only_generation() -> None:
    model = tiny_model(seed=13)
    ids = torch.tensor([[1, 50, 51, 52]])
    cached = _greedy(model, ids, None)
    assert torch.equal(cached, _manual_greedy(model, ids, None, steps=6))


def test_multi_frame_generation() -> None:
    model = tiny_model(seed=14)
    ids = torch.tensor([[1, 40, IMG, 41]])
    frames = [_images(3, seed=4)]
    cached = _greedy(model, ids, frames)
    assert torch.equal(cached, _greedy(model, ids, frames, use_cache=False))
    assert torch.equal(cached, _manual_greedy(model, ids, frames, steps=6))
