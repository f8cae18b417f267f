"""Behaviour of the model on tiny random weights: splice rules, padding, GQA, checkpointing."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch
from transformers import AttentionInterface, AutoConfig, AutoModelForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from artquant_model import MPLUGOwl2Config, MPLUGOwl2ForCausalLM, load_model
from artquant_model.testing import save_tiny_model, tiny_config, tiny_model

IMG = -200
ATOL = 1e-5
TOKENS_PER_IMAGE = 9  # 8 learnable queries + vit_eos in the tiny config


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 28, 28, generator=torch.Generator().manual_seed(seed))


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float = ATOL) -> None:
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=atol)


@pytest.fixture(scope="module")
def model() -> MPLUGOwl2ForCausalLM:
    return tiny_model(seed=3)


# ---- the tiny model itself ------------------------------------------------------------------


def test_tiny_model_is_small_fast_and_deterministic() -> None:
    start = time.perf_counter()
    first = tiny_model(seed=5)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    assert sum(p.numel() for p in first.parameters()) < 1_000_000
    second = tiny_model(seed=5)
    for (name, a), (_, b) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert not torch.equal(first.lm_head.weight, tiny_model(seed=6).lm_head.weight)


def test_module_tree_uses_the_original_checkpoint_names(model: MPLUGOwl2ForCausalLM) -> None:
    names = set(model.state_dict())
    for name in (
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.self_attn.k_proj.multiway.0.weight",
        "model.layers.1.self_attn.v_proj.multiway.1.weight",
        "model.layers.0.input_layernorm.multiway.1.weight",
        "model.layers.0.post_attention_layernorm.multiway.0.weight",
        "model.norm.weight",
        "model.vision_model.embeddings.patch_embed.weight",
        "model.vision_model.encoder.layers.1.self_attn.query_key_value.weight",
        "model.visual_abstractor.encoder.layers.0.crossattention.attention.k_pos_embed",
        "model.visual_abstractor.vit_eos",
        "lm_head.weight",
    ):
        assert name in names
    assert not any("inv_freq" in name for name in names)
    assert isinstance(model.model.layers[0].self_attn.v_proj.multiway[1], torch.nn.Linear)


# ---- config ---------------------------------------------------------------------------------


def test_config_reads_nested_visual_config_and_ignores_unknown_keys() -> None:
    config = tiny_config(
        visual_config={"visual_model": {"use_flash_attn": True, "projection_dim": 16}},
        score_weight=[10.0, 7.5, 5.0, 3.5, 1.0],
    )
    assert config.vision_config.image_size == 28
    assert "use_flash_attn" not in config.visual_config["visual_model"]
    reloaded = MPLUGOwl2Config.from_dict(config.to_dict())
    assert reloaded.visual_config == config.visual_config
    assert reloaded.num_image_tokens == TOKENS_PER_IMAGE


def test_auto_classes_resolve_mplug_owl2(tmp_path) -> None:
    tiny_model().save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), MPLUGOwl2Config)
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), MPLUGOwl2ForCausalLM)


@pytest.mark.parametrize(
    ("visual", "message"),
    [
        ({"visual_abstractor": {"hidden_size": 48, "encoder_hidden_size": 48}}, "must be equal"),
        ({"visual_abstractor": {"grid_size": 3}}, "squared must equal"),
        ({"visual_model": {"image_size": 30}}, "multiple of"),
        (
            {
                "visual_model": {"hidden_size": 30, "num_attention_heads": 3},
                "visual_abstractor": {
                    "hidden_size": 30,
                    "encoder_hidden_size": 30,
                    "num_attention_heads": 3,
                },
            },
            "divisible by 4",
        ),
        ({"visual_model": {"num_attention_heads": 5}}, "divisible by"),
        ({"visual_abstractor": {"num_learnable_queries": 0}}, "num_learnable_queries"),
    ],
)
def test_config_rejects_impossible_shapes(visual: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_config(visual_config=visual)


def test_config_rejects_unknown_visual_attention() -> None:
    with pytest.raises(ValueError, match=r"visual_attn_implementation must be one of"):
        tiny_config(visual_attn_implementation="flash")


def test_config_rejects_kv_heads_that_do_not_divide_heads() -> None:
    with pytest.raises(ValueError, match="num_key_value_heads"):
        tiny_config(num_key_value_heads=3)


# ---- splice ---------------------------------------------------------------------------------


def test_splice_indicators_labels_and_positions(model: MPLUGOwl2ForCausalLM) -> None:
    ids = torch.tensor([[1, 10, IMG, 11, 12, IMG, 13]])
    labels = torch.tensor([[-100, 10, -100, 11, 12, -100, 13]])
    images = _images(2)
    spliced = model.build_multimodal_inputs(ids, images, labels=labels)
    length = 7 - 2 + 2 * TOKENS_PER_IMAGE
    expected_indicators = [0, 0] + [1] * 9 + [0, 0] + [1] * 9 + [0]
    assert spliced.modality_indicators.tolist() == [expected_indicators]
    assert spliced.position_ids.tolist() == [list(range(length))]
    assert spliced.labels is not None
    expected_labels = [-100, 10] + [-100] * 9 + [11, 12] + [-100] * 9 + [13]
    assert spliced.labels.tolist() == [expected_labels]
    features = model.get_image_features(images)
    _close(spliced.inputs_embeds[0, 2:11], features[0])
    _close(spliced.inputs_embeds[0, 13:22], features[1])
    _close(spliced.inputs_embeds[0, 11], model.model.embed_tokens.weight[11])


def test_sample_without_image_token_consumes_an_image(model: MPLUGOwl2ForCausalLM) -> None:
    ids = torch.tensor([[1, 10, 11, 12], [1, IMG, 13, 14]])
    images = _images(2)
    spliced = model.build_multimodal_inputs(ids, images)
    # Row 0 consumed image 0 (no tokens); row 1 got image 1, as the original's counter does.
    _close(spliced.inputs_embeds[1, 1:10], model.get_image_features(images)[1])
    assert spliced.modality_indicators[0].tolist() == [0] * 12
    assert spliced.attention_mask[0].tolist() == [1] * 4 + [0] * 8
    with pytest.raises(ValueError, match="consume 2 images"):
        model.build_multimodal_inputs(ids, images[:1])


def test_splice_padding_sides(model: MPLUGOwl2ForCausalLM) -> None:
    ids = torch.tensor([[1, IMG, 5, 0], [1, 6, 7, 8]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    right = model.build_multimodal_inputs(ids, _images(2), mask, padding_side="right")
    left = model.build_multimodal_inputs(ids, _images(2), mask, padding_side="left")
    assert right.attention_mask.tolist() == [[1] * 11 + [0], [1] * 4 + [0] * 8]
    assert left.attention_mask.tolist() == [[1] * 11 + [0], [0] * 8 + [1] * 4]
    assert left.position_ids[1, -4:].tolist() == [0, 1, 2, 3]
    assert right.position_ids[0, :11].tolist() == list(range(11))


@pytest.mark.parametrize(
    ("ids", "images", "message"),
    [
        ([[1, IMG, 5]], None, "no images"),
        ([[1, IMG, 5, IMG]], 1, "consume 2 images"),
        ([[1, IMG, 5]], 3, "3 were given"),
    ],
)
def test_splice_count_errors(
    model: MPLUGOwl2ForCausalLM, ids: list, images: int | None, message: str
) -> None:
    pixels = _images(images) if images else None
    with pytest.raises(ValueError, match=message):
        model(input_ids=torch.tensor(ids), images=pixels)


def test_bad_inputs_give_clear_errors(model: MPLUGOwl2ForCausalLM) -> None:
    ids = torch.tensor([[1, IMG, 5]])
    with pytest.raises(ValueError, match=r"\[n_images, 3, 28, 28\]"):
        model(input_ids=ids, images=torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="padding_side"):
        model.build_multimodal_inputs(ids, _images(1), padding_side="middle")
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model()
    embeds = torch.zeros(1, 3, 64)
    with pytest.raises(ValueError, match=r"modality_indicators must be 0 \(text\) or 1"):
        model(inputs_embeds=embeds, modality_indicators=torch.tensor([[0, 2, 1]]))
    with pytest.raises(ValueError, match="attention_mask must be"):
        model(input_ids=torch.tensor([[1, 5, 6]]), attention_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match="logits_to_keep"):
        model(input_ids=torch.tensor([[1, 5, 6]]), logits_to_keep=-1)


# ---- forward semantics ----------------------------------------------------------------------


def test_inputs_embeds_path_equals_ids_path(model: MPLUGOwl2ForCausalLM) -> None:
    ids = torch.tensor([[1, 10, IMG, 11, 12]])
    images = _images(1)
    with torch.no_grad():
        direct = model(input_ids=ids, images=images).logits
        spliced = model.build_multimodal_inputs(ids, images)
        via_embeds = model(
            inputs_embeds=spliced.inputs_embeds,
            modality_indicators=spliced.modality_indicators,
            attention_mask=spliced.attention_mask,
            position_ids=spliced.position_ids,
        ).logits
    _close(via_embeds, direct)


def test_image_tokens_use_the_image_branch(model: MPLUGOwl2ForCausalLM) -> None:
    ids = torch.tensor([[1, 10, IMG, 11, 12]])
    with torch.no_grad():
        spliced = model.build_multimodal_inputs(ids, _images(1))
        routed = model(
            inputs_embeds=spliced.inputs_embeds, modality_indicators=spliced.modality_indicators
        )
        all_text = model(inputs_embeds=spliced.inputs_embeds)
    assert (routed.logits - all_text.logits).abs().max() > 1e-2


@pytest.mark.parametrize("step", [1, 2, 5, 6])
def test_vision_batch_size_does_not_change_features_or_logits(step: int) -> None:
    model = tiny_model(seed=4)
    ids = torch.tensor([[1, 10, IMG, 11, 12]] * 5)
    images = _images(5, seed=2)
    with torch.no_grad():
        whole = model.get_image_features(images)
        logits = model(input_ids=ids, images=images).logits
        model.model.vision_batch_size = step
        calls: list[int] = []
        hook = model.model.vision_model.register_forward_pre_hook(
            lambda _module, args: calls.append(args[0].shape[0])
        )
        try:
            chunked = model.get_image_features(images)
            chunked_logits = model(input_ids=ids, images=images).logits
        finally:
            hook.remove()
    # the vision tower really ran in pieces of at most `step` pictures, covering all five
    assert calls[: len(calls) // 2] == [min(step, 5 - i) for i in range(0, 5, step)]
    # other matrix shapes reorder float32 sums (measured up to 3e-6 here): the parity tolerance
    _close(chunked, whole)
    _close(chunked_logits, logits)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_vision_batch_size_rejects_non_positive_ints(value: object) -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match=r"vision_batch_size must be None or a positive int, got"):
        model.model.vision_batch_size = value  # type: ignore[assignment]
    assert model.model.vision_batch_size is None
    model.model.vision_batch_size = 3
    model.model.vision_batch_size = None
    assert model.model.vision_batch_size is None


def test_logits_to_keep(model: MPLUGOwl2ForCausalLM) -> None:
    ids = torch.tensor([[1, 10, IMG, 11, 12]])
    images = _images(1)
    with torch.no_grad():
        full = model(input_ids=ids, images=images).logits
        last = model(input_ids=ids, images=images, logits_to_keep=1).logits
        last3 = model(input_ids=ids, images=images, logits_to_keep=3).logits
    assert last.shape == (1, 1, 512)
    _close(last, full[:, -1:])
    _close(last3, full[:, -3:])


def test_loss_is_next_token_cross_entropy_over_spliced_labels(model: MPLUGOwl2ForCausalLM) -> None:
    ids = torch.tensor([[1, 10, IMG, 11, 12, 13], [1, IMG, 20, 21, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    labels = torch.where(mask.bool(), ids, torch.tensor(-100)).masked_fill(ids == IMG, -100)
    images = _images(2)
    with torch.no_grad():
        out = model(input_ids=ids, images=images, attention_mask=mask, labels=labels)
        spliced = model.build_multimodal_inputs(ids, images, mask, labels)
    assert spliced.labels is not None
    logits, targets = out.logits[:, :-1].reshape(-1, 512), spliced.labels[:, 1:].reshape(-1)
    keep = targets != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    _close(out.loss, expected)
    assert int(keep.sum()) == 4 + 2  # row 0: 10, 11, 12, 13; row 1: 20, 21


def _batch_of_one(model: MPLUGOwl2ForCausalLM, ids: list[int], images: torch.Tensor | None):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), images=images).logits[0]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_left_padded_batch_equals_batch_of_one(attn: str) -> None:
    model = tiny_model(seed=4, attn_implementation=attn)
    prompts = [[1, 10, 11, IMG, 12, 13, 14, 15], [1, IMG, 20], [1, 30, IMG, 31, IMG, 32]]
    counts = [1, 1, 2]
    images = _images(4, seed=1)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        batch = model(input_ids=ids, images=images, attention_mask=mask).logits
    start = 0
    for row, (prompt, count) in enumerate(zip(prompts, counts, strict=True)):
        alone = _batch_of_one(model, prompt, images[start : start + count])
        start += count
        _close(batch[row, -alone.shape[0] :], alone)


def test_right_padded_batch_equals_batch_of_one(model: MPLUGOwl2ForCausalLM) -> None:
    prompts = [[1, 10, 11, IMG, 12, 13, 14], [1, IMG, 20]]
    images = _images(2, seed=2)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([p + [0] * (width - len(p)) for p in prompts])
    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in prompts])
    with torch.no_grad():
        batch = model(input_ids=ids, images=images, attention_mask=mask).logits
    for row, prompt in enumerate(prompts):
        alone = _batch_of_one(model, prompt, images[row : row + 1])
        _close(batch[row, : alone.shape[0]], alone)


# ---- grouped-query attention ----------------------------------------------------------------


def _mha_equivalent(gqa: MPLUGOwl2ForCausalLM) -> MPLUGOwl2ForCausalLM:
    """An MHA model whose K/V weights repeat each GQA head ``groups`` times (the repeat-kv rule)."""
    config = gqa.config
    mha = MPLUGOwl2ForCausalLM(
        tiny_config(attn_implementation=config._attn_implementation, num_key_value_heads=4)
    ).eval()
    groups = config.num_attention_heads // config.num_key_value_heads
    head_dim = config.hidden_size // config.num_attention_heads
    state = {}
    for name, tensor in gqa.state_dict().items():
        if ".k_proj." in name or ".v_proj." in name:
            heads = tensor.view(-1, head_dim, tensor.shape[-1])
            tensor = heads.repeat_interleave(groups, dim=0).reshape(-1, tensor.shape[-1])
        state[name] = tensor
    mha.load_state_dict(state)
    return mha


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_gqa_matches_a_repeat_kv_reference(attn: str) -> None:
    gqa = tiny_model(seed=7, num_key_value_heads=2, attn_implementation=attn)
    assert gqa.model.layers[0].self_attn.k_proj.multiway[0].weight.shape == (32, 64)
    mha = _mha_equivalent(gqa)
    ids = torch.tensor([[1, 10, IMG, 11, 12], [0, 1, IMG, 13, 14]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    images = _images(2)
    with torch.no_grad():
        ours = gqa(input_ids=ids, images=images, attention_mask=mask).logits
        reference = mha(input_ids=ids, images=images, attention_mask=mask).logits
    _close(ours, reference)


# ---- gradient checkpointing -----------------------------------------------------------------


def _gradients(model: MPLUGOwl2ForCausalLM) -> dict[str, torch.Tensor]:
    ids = torch.tensor([[1, 10, IMG, 11, 12, 13]])
    labels = torch.tensor([[-100, 10, -100, 11, 12, 13]])
    model.train()
    model.zero_grad()
    out = model(input_ids=ids, images=_images(1), labels=labels)
    out.loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    plain = _gradients(tiny_model(seed=8))
    model = tiny_model(seed=8)
    # transformers >= 5.2x renamed the switch; older 5.x only has the first name.
    enable = getattr(model, "activation_checkpointing_enable", None)
    (enable or model.gradient_checkpointing_enable)()
    assert model.model.layers[0].gradient_checkpointing
    checkpointed = _gradients(model)
    assert set(checkpointed) == set(plain)
    assert any("vision_model" in name for name in plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_return_dict_false_gives_a_tuple(model: MPLUGOwl2ForCausalLM) -> None:
    ids = torch.tensor([[1, 10, IMG, 11]])
    images = _images(1)
    with torch.no_grad():
        as_tuple = model(input_ids=ids, images=images, use_cache=False, return_dict=False)
        as_output = model(input_ids=ids, images=images, use_cache=False)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], as_output.logits)


def test_unknown_attention_implementation_is_refused() -> None:
    with pytest.raises(ValueError, match="bogus"):
        tiny_model(attn_implementation="bogus")


def test_llm_attention_goes_through_transformers_attention_interface(
    monkeypatch: pytest.MonkeyPatch, model: MPLUGOwl2ForCausalLM
) -> None:
    # The same dispatch serves flash_attention_2: a registered back-end is what the layers call.
    calls: list[tuple[int, ...]] = []

    def probe(module, query, key, value, attention_mask, **kwargs):
        calls.append(tuple(query.shape))
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, "artquant_probe", probe)
    probed = tiny_model(seed=3, attn_implementation="artquant_probe")
    ids = torch.tensor([[1, 10, IMG, 11]])
    with torch.no_grad():
        logits = probed(input_ids=ids, images=_images(1)).logits
        reference = model(input_ids=ids, images=_images(1)).logits
    layers, heads = probed.config.num_hidden_layers, probed.config.num_attention_heads
    head_dim = probed.config.hidden_size // heads
    assert calls == [(1, heads, 3 + TOKENS_PER_IMAGE, head_dim)] * layers
    _close(logits, reference)


@pytest.mark.skipif(
    importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed here"
)
def test_flash_attention_2_without_the_package_is_a_clear_import_error(tmp_path) -> None:
    with pytest.raises(ImportError, match="FlashAttention2"):
        tiny_model(attn_implementation="flash_attention_2")
    folder = save_tiny_model(tmp_path / "tiny")
    with pytest.raises(ImportError, match="FlashAttention2"):
        load_model(folder, attn_implementation="flash_attention_2")
