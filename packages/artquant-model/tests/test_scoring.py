"""score_pixel_values / score_images on the tiny model: formulas, batch invariance, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from artquant_model import load_model
from artquant_model.backbones.mplug_owl2.processing_mplug_owl2 import (
    MPLUGOwl2ImageProcessor,
    MPLUGOwl2Processor,
    tokenizer_image_token,
)
from artquant_model.levels import ARTQUANT_LEVELS, ONEALIGN_LEVELS, LevelSpec, level_scores
from artquant_model.scoring import score_images, score_pixel_values
from artquant_model.testing import save_tiny_checkpoint, tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


@pytest.fixture(scope="module")
def processor() -> MPLUGOwl2Processor:
    return MPLUGOwl2Processor(tiny_tokenizer(), MPLUGOwl2ImageProcessor(image_size=28))


def _pictures(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (20 + i, 30 - i, 3), dtype=np.uint8) for i in range(count)]


def _full_forward_reference(model, processor, spec: LevelSpec, picture) -> torch.Tensor:
    """Level logits read from a plain full-length forward, without logits_to_keep."""
    batch = processor(spec.prompt, images=[picture])
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], images=batch["images"]).logits
    return logits[0, -1, spec.token_ids(processor.tokenizer)]


def test_scores_follow_the_formula(model, processor) -> None:
    pictures = _pictures(3)
    results = score_images(model, processor, pictures)
    assert len(results) == 3
    for picture, result in zip(pictures, results, strict=True):
        reference = _full_forward_reference(model, processor, ARTQUANT_LEVELS, picture)
        got = torch.tensor(list(result.logits.values()))
        torch.testing.assert_close(got, reference, atol=1e-5, rtol=0)
        expected = level_scores(reference, ARTQUANT_LEVELS.values)
        assert result.score == pytest.approx(expected.score.item(), abs=1e-5)
        assert result.std == pytest.approx(expected.std.item(), abs=1e-5)
        assert list(result.probs) == list(ARTQUANT_LEVELS.words)
        assert sum(result.probs.values()) == pytest.approx(1.0, abs=1e-12)
        assert result.open_set_probs is not None
        assert sum(result.open_set_probs.values()) < 1.0
        assert 1.0 <= result.score <= 10.0
        assert result.spec == "artquant"


def test_closed_set_reads_only_the_level_rows_of_the_lm_head(model, processor) -> None:
    pictures = _pictures(3)
    ids = tokenizer_image_token(ARTQUANT_LEVELS.prompt, processor.tokenizer)
    level_ids = ARTQUANT_LEVELS.token_ids(processor.tokenizer)
    pixels = processor.image_processor(pictures)
    head_calls: list[int] = []
    hook = model.lm_head.register_forward_hook(lambda *_: head_calls.append(1))
    try:
        closed = score_pixel_values(
            model, ids, pixels, level_ids, ARTQUANT_LEVELS.values, open_set=False
        )
        assert head_calls == []  # the full head never ran
        full = score_pixel_values(model, ids, pixels, level_ids, ARTQUANT_LEVELS.values)
        assert head_calls == [1]
    finally:
        hook.remove()
    assert closed.open_set_probs is None
    assert full.open_set_probs is not None
    torch.testing.assert_close(closed.logits, full.logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(closed.score, full.score, atol=1e-6, rtol=0)
    for picture, logits in zip(pictures, closed.logits, strict=True):
        reference = _full_forward_reference(model, processor, ARTQUANT_LEVELS, picture)
        torch.testing.assert_close(logits, reference, atol=1e-5, rtol=0)


def test_closed_set_with_an_unusual_head_uses_the_whole_head(processor) -> None:
    odd = tiny_model(seed=3)
    plain = tiny_model(seed=3)
    linear = odd.lm_head
    odd.lm_head = torch.nn.Sequential(linear)  # not a bare Linear: rows cannot be read alone
    ids = tokenizer_image_token(ARTQUANT_LEVELS.prompt, processor.tokenizer)
    level_ids = ARTQUANT_LEVELS.token_ids(processor.tokenizer)
    pixels = processor.image_processor(_pictures(2))
    got = score_pixel_values(odd, ids, pixels, level_ids, ARTQUANT_LEVELS.values, open_set=False)
    want = score_pixel_values(plain, ids, pixels, level_ids, ARTQUANT_LEVELS.values)
    torch.testing.assert_close(got.score, want.score, atol=1e-6, rtol=0)
    assert got.open_set_probs is None


def test_batch_size_does_not_change_results(model, processor) -> None:
    pictures = _pictures(5)
    alone = score_images(model, processor, pictures, batch_size=1)
    together = score_images(model, processor, pictures, batch_size=5)
    uneven = score_images(model, processor, pictures, batch_size=2, progress=True, num_threads=2)
    for a, b, c in zip(alone, together, uneven, strict=True):
        assert abs(a.score - b.score) < 1e-5
        assert abs(a.score - c.score) < 1e-5
        assert abs(a.std - b.std) < 1e-5
        assert max(abs(a.logits[w] - b.logits[w]) for w in a.logits) < 1e-5


def test_other_spec_and_single_image(model, processor) -> None:
    [result] = score_images(model, processor, _pictures(1)[0], level_spec=ONEALIGN_LEVELS)
    assert 1.0 <= result.score <= 5.0
    assert result.spec == "onealign"
    assert score_images(model, processor, []) == []


def test_tensor_level_api_shapes_and_prompt_rows(model, processor) -> None:
    tokenizer = processor.tokenizer
    ids = tokenizer_image_token(ARTQUANT_LEVELS.prompt, tokenizer)
    level_ids = ARTQUANT_LEVELS.token_ids(tokenizer)
    pixels = processor.image_processor(_pictures(2))
    shared = score_pixel_values(model, ids, pixels, level_ids, ARTQUANT_LEVELS.values)
    rows = score_pixel_values(
        model, torch.tensor([ids, ids]), pixels, level_ids, ARTQUANT_LEVELS.values, open_set=False
    )
    assert shared.score.shape == (2,)
    assert shared.probs.shape == shared.logits.shape == (2, 5)
    assert shared.score.dtype == torch.float64
    assert rows.open_set_probs is None
    torch.testing.assert_close(shared.score, rows.score, atol=1e-6, rtol=0)
    score, std, probs = shared
    assert torch.equal(score, shared.score)
    assert torch.equal(std, shared.std)
    assert torch.equal(probs, shared.probs)


def test_left_padded_rows_equal_unpadded(model, processor) -> None:
    pictures = _pictures(2)
    level_ids = ARTQUANT_LEVELS.token_ids(processor.tokenizer)
    prompts = [ARTQUANT_LEVELS.prompt, "USER: <|image|> The quality of the painting is"]
    batch = processor(prompts, images=pictures)
    assert not bool(batch["attention_mask"].all())  # there is padding
    padded = score_pixel_values(
        model,
        batch["input_ids"],
        batch["images"],
        level_ids,
        ARTQUANT_LEVELS.values,
        attention_mask=batch["attention_mask"],
    )
    for index, prompt in enumerate(prompts):
        single = processor(prompt, images=[pictures[index]])
        alone = score_pixel_values(
            model, single["input_ids"], single["images"], level_ids, ARTQUANT_LEVELS.values
        )
        torch.testing.assert_close(padded.logits[index], alone.logits[0], atol=1e-5, rtol=0)


def test_errors(model, processor) -> None:
    tokenizer = processor.tokenizer
    ids = tokenizer_image_token(ARTQUANT_LEVELS.prompt, tokenizer)
    level_ids = ARTQUANT_LEVELS.token_ids(tokenizer)
    pixels = processor.image_processor(_pictures(2))
    values = ARTQUANT_LEVELS.values
    with pytest.raises(ValueError, match="2 prompt rows for 3 images"):
        score_pixel_values(model, [ids, ids], torch.zeros(3, 3, 28, 28), level_ids, values)
    with pytest.raises(ValueError, match="must hold exactly one image id -200, it holds 0"):
        score_pixel_values(model, [1, 5, 6], pixels, level_ids, values)
    with pytest.raises(ValueError, match=r"pixel_values must be \[N, 3, S, S\]"):
        score_pixel_values(model, ids, torch.zeros(3, 28, 28), level_ids, values)
    with pytest.raises(ValueError, match=r"input_ids must be \[L\] or \[B, L\]"):
        score_pixel_values(model, torch.zeros(1, 1, 3, dtype=torch.long), pixels, level_ids, values)
    with pytest.raises(ValueError, match="outside the model's vocabulary of 512"):
        score_pixel_values(model, ids, pixels, [15129, 1781, 6534, 6460, 4319], values)
    right = processor([ARTQUANT_LEVELS.prompt, "USER: <|image|> is"], images=_pictures(2),
                      padding_side="right")  # fmt: skip
    with pytest.raises(ValueError, match="pad prompts on the left"):
        score_pixel_values(
            model, right["input_ids"], right["images"], level_ids, values,
            attention_mask=right["attention_mask"],
        )  # fmt: skip
    with pytest.raises(ValueError, match="attention_mask shape"):
        score_pixel_values(model, ids, pixels, level_ids, values, attention_mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        score_images(model, processor, _pictures(1), batch_size=0)
    bad_spec = ARTQUANT_LEVELS.model_copy(
        update={"words": ("excellent", "good", "fair", "poor", "dreadful")}
    )
    with pytest.raises(ValueError, match=r"'dreadful' .* is not a single token"):
        score_images(model, processor, _pictures(1), level_spec=bad_spec)


def test_tiny_checkpoint_roundtrip(tmp_path: Path) -> None:
    folder = save_tiny_checkpoint(tmp_path / "tiny", seed=5)
    model = load_model(folder)
    processor = MPLUGOwl2Processor.from_pretrained(folder)
    assert processor.image_processor.image_size == 28
    in_memory = score_images(tiny_model(seed=5), processor, _pictures(2))
    loaded = score_images(model, processor, _pictures(2))
    for a, b in zip(in_memory, loaded, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-6)


# ---- the shared prompt prefix ----------------------------------------------------------------


def _prompt(processor: MPLUGOwl2Processor, spec: LevelSpec = ARTQUANT_LEVELS) -> list[int]:
    return tokenizer_image_token(spec.prompt, processor.tokenizer)


def _count_decoder_calls(model) -> tuple[list[int], object]:
    rows: list[int] = []

    def record(_module, args, kwargs) -> None:
        embeds = kwargs.get("inputs_embeds")
        ids = kwargs.get("input_ids")
        rows.append((embeds if embeds is not None else ids).shape[1])

    return rows, model.model.register_forward_pre_hook(record, with_kwargs=True)


@pytest.mark.parametrize(
    "overrides",
    [
        {"attn_implementation": "sdpa"},
        {"attn_implementation": "eager"},
        {"attn_implementation": "sdpa", "num_key_value_heads": 2},
    ],
)
@pytest.mark.parametrize("open_set", [False, True])
@pytest.mark.parametrize("count", [1, 3])
def test_prefix_cache_gives_the_full_forwards_scores(
    processor, overrides: dict, open_set: bool, count: int
) -> None:
    from artquant_model.scoring import PromptPrefixCache

    model = tiny_model(seed=6, **overrides)
    ids = _prompt(processor)
    level_ids = ARTQUANT_LEVELS.token_ids(processor.tokenizer)
    pixels = processor.image_processor(_pictures(count))
    cache = PromptPrefixCache()
    plain = score_pixel_values(model, ids, pixels, level_ids, ARTQUANT_LEVELS.values)
    fast = score_pixel_values(
        model, ids, pixels, level_ids, ARTQUANT_LEVELS.values, open_set=open_set,
        prefix_cache=cache,
    )  # fmt: skip
    assert cache.length == ids.index(-200) > 0
    # a wrong causal mask or position offset would move these by orders of magnitude more
    torch.testing.assert_close(fast.logits, plain.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.score, plain.score, atol=1e-5, rtol=0)
    if open_set:
        torch.testing.assert_close(fast.open_set_probs, plain.open_set_probs, atol=1e-6, rtol=0)
    else:
        assert fast.open_set_probs is None


def test_prefix_cache_is_reused_and_follows_prompt_and_weight_changes(processor) -> None:
    from artquant_model.scoring import PromptPrefixCache

    model = tiny_model(seed=7)
    level_ids = ARTQUANT_LEVELS.token_ids(processor.tokenizer)
    pixels = processor.image_processor(_pictures(2))
    ids = _prompt(processor)
    prefix = ids.index(-200)
    rest = len(ids) - prefix - 1 + 9  # after the prefix: 9 image tokens and the text after them
    cache = PromptPrefixCache()
    calls, hook = _count_decoder_calls(model)

    def fast(prompt: list[int] = ids, spec: LevelSpec = ARTQUANT_LEVELS) -> torch.Tensor:
        kw = {"open_set": False, "prefix_cache": cache}
        return score_pixel_values(model, prompt, pixels, level_ids, spec.values, **kw).score

    def plain() -> torch.Tensor:
        return score_pixel_values(model, ids, pixels, level_ids, ARTQUANT_LEVELS.values).score

    try:
        first = fast()
        assert calls == [prefix, rest]  # the prefix once, then the rest
        calls.clear()
        assert torch.equal(fast(), first)
        assert calls == [rest]  # reused: no prefix pass
        calls.clear()
        # a weight changed in place (as an optimiser step or load_state_dict would)
        with torch.no_grad():
            model.model.layers[0].self_attn.q_proj.weight.mul_(1.5)
        changed = fast()
        assert len(calls) == 2  # recomputed
        calls.clear()
        torch.testing.assert_close(changed, plain(), atol=1e-5, rtol=0)
        assert (changed - first).abs().max() > 1e-4
        # another prompt
        other = _prompt(processor, ONEALIGN_LEVELS)
        fast(other, ONEALIGN_LEVELS)
        assert cache.length == other.index(-200)
        calls.clear()
        cache.clear()
        assert cache.length == 0
    finally:
        hook.remove()


def test_prefix_cache_is_skipped_where_it_cannot_apply(processor) -> None:
    from artquant_model.scoring import PromptPrefixCache

    model = tiny_model(seed=8)
    level_ids = ARTQUANT_LEVELS.token_ids(processor.tokenizer)
    pixels = processor.image_processor(_pictures(2))
    ids = _prompt(processor)
    cache = PromptPrefixCache()
    # rows that differ: per-row prompts
    rows = torch.tensor([ids, [*ids[:-1], ids[-2]]])  # the last token differs
    got = score_pixel_values(
        model, rows, pixels, level_ids, ARTQUANT_LEVELS.values, prefix_cache=cache
    )
    want = score_pixel_values(model, rows, pixels, level_ids, ARTQUANT_LEVELS.values)
    assert torch.equal(got.score, want.score)
    # the image first: nothing before it to share
    image_first = [-200] + [i for i in ids if i != -200]
    got = score_pixel_values(
        model, image_first, pixels, level_ids, ARTQUANT_LEVELS.values, prefix_cache=cache
    )
    want = score_pixel_values(model, image_first, pixels, level_ids, ARTQUANT_LEVELS.values)
    assert torch.equal(got.score, want.score)
    assert cache.length == 0


def test_prefix_cache_with_inference_tensor_weights_recomputes_every_call(processor) -> None:
    from artquant_model.scoring import PromptPrefixCache

    with torch.inference_mode():  # parameters made here keep no version counter
        model = tiny_model(seed=9)
    level_ids = ARTQUANT_LEVELS.token_ids(processor.tokenizer)
    pixels = processor.image_processor(_pictures(2))
    ids = _prompt(processor)
    cache = PromptPrefixCache()
    calls, hook = _count_decoder_calls(model)
    try:
        first = score_pixel_values(
            model, ids, pixels, level_ids, ARTQUANT_LEVELS.values, prefix_cache=cache
        )
        again = score_pixel_values(
            model, ids, pixels, level_ids, ARTQUANT_LEVELS.values, prefix_cache=cache
        )
    finally:
        hook.remove()
    assert len(calls) == 4  # the prefix pass each time: no version to prove it unchanged
    assert torch.equal(first.score, again.score)
