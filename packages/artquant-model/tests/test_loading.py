"""Checkpoint formats and their errors: full (safetensors, sharded, .bin), LoRA releases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from artquant_model import (
    DTYPE_NAMES,
    CheckpointError,
    MPLUGOwl2ForCausalLM,
    detect_checkpoint_format,
    load_model,
    lora_base_folder,
    parse_dtype,
)
from artquant_model.testing import save_tiny_model, tiny_model

IMG = -200
ATOL = 1e-5
# The LoRA fixture's logits: its float32 forward is 0.8-1.3e-5 from the same forward in float64
# (measured with AVX2 and with scalar torch/MKL kernels); the reference is another float32 run,
# on another machine, so the two may differ by up to about twice that. Scalar kernels measured
# 1.07e-5 against it unmerged.
LORA_LOGITS_ATOL = 3e-5
SINCOS = "model.visual_abstractor.encoder.layers.{}.crossattention.attention.{}_pos_embed"


def _probe(model: torch.nn.Module) -> torch.Tensor:
    ids = torch.tensor([[1, 30, IMG, 31, 32]])
    images = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(input_ids=ids, images=images).logits


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name, tensor in state_a.items():
        assert torch.equal(tensor, state_b[name]), name


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    return save_tiny_model(tmp_path / "tiny", seed=21)


def _rewrite_weights(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path, metadata={"format": "pt"})


# ---- full checkpoints -----------------------------------------------------------------------


def test_save_load_round_trip_is_exact(tiny_dir: Path) -> None:
    original = tiny_model(seed=21)
    loaded = load_model(tiny_dir)
    assert isinstance(loaded, MPLUGOwl2ForCausalLM)
    assert not loaded.training
    assert detect_checkpoint_format(tiny_dir) == "full"
    _assert_same_weights(loaded, original)
    assert torch.equal(_probe(loaded), _probe(original))
    via_transformers = MPLUGOwl2ForCausalLM.from_pretrained(tiny_dir)
    _assert_same_weights(via_transformers, original)


def test_from_pretrained_accepts_torch_dtype_and_dtype(tiny_dir: Path) -> None:
    legacy = MPLUGOwl2ForCausalLM.from_pretrained(tiny_dir, torch_dtype=torch.bfloat16)
    current = MPLUGOwl2ForCausalLM.from_pretrained(tiny_dir, dtype=torch.bfloat16)
    assert legacy.dtype == current.dtype == torch.bfloat16
    _assert_same_weights(legacy, current)


def test_sharded_safetensors(tiny_dir: Path, tmp_path: Path) -> None:
    sharded = tmp_path / "sharded"
    tiny_model(seed=21).save_pretrained(sharded, max_shard_size="200KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    _assert_same_weights(load_model(sharded), load_model(tiny_dir))


def test_pytorch_bin_single_and_sharded(tiny_dir: Path, tmp_path: Path) -> None:
    state = load_file(tiny_dir / "model.safetensors")
    single = tmp_path / "bin"
    single.mkdir()
    shutil.copy(tiny_dir / "config.json", single)
    torch.save(state, single / "pytorch_model.bin")
    sharded = tmp_path / "bin_sharded"
    sharded.mkdir()
    shutil.copy(tiny_dir / "config.json", sharded)
    names = sorted(state)
    halves = {
        "pytorch_model-00001-of-00002.bin": names[::2],
        "pytorch_model-00002-of-00002.bin": names[1::2],
    }
    weight_map = {}
    for file, keys in halves.items():
        torch.save({key: state[key] for key in keys}, sharded / file)
        weight_map.update(dict.fromkeys(keys, file))
    (sharded / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    reference = load_model(tiny_dir)
    _assert_same_weights(load_model(single), reference)
    _assert_same_weights(load_model(sharded), reference)


def test_dtype_options(tiny_dir: Path) -> None:
    assert load_model(tiny_dir, dtype="bfloat16").dtype == torch.bfloat16
    assert load_model(tiny_dir, dtype=torch.float16).dtype == torch.float16
    assert load_model(tiny_dir, dtype="auto").dtype == torch.float32  # as saved
    config = json.loads((tiny_dir / "config.json").read_text())
    (tiny_dir / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}))
    assert load_model(tiny_dir, dtype="auto").dtype == torch.bfloat16
    legacy = {key: value for key, value in config.items() if key != "dtype"}
    (tiny_dir / "config.json").write_text(json.dumps({**legacy, "torch_dtype": "float16"}))
    assert load_model(tiny_dir, dtype="auto").dtype == torch.float16  # transformers 4 name
    assert load_model(tiny_dir).dtype == torch.float32  # None: float32 whatever is recorded
    with pytest.raises(ValueError, match=r"unknown dtype 'float8'; use one of 'auto', 'float32'"):
        load_model(tiny_dir, dtype="float8")
    with pytest.raises(ValueError, match=r"torch\.int8 is not supported; use torch\.float32"):
        load_model(tiny_dir, dtype=torch.int8)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("float32", torch.float32),
        (" FP32 ", torch.float32),
        ("bf16", torch.bfloat16),
        ("Half", torch.float16),
        (torch.float16, torch.float16),
    ],
)
def test_parse_dtype_names(value: str | torch.dtype, expected: torch.dtype) -> None:
    assert parse_dtype(value) is expected
    assert set(DTYPE_NAMES.values()) == {torch.float32, torch.bfloat16, torch.float16}


def test_parse_dtype_auto_and_errors() -> None:
    assert parse_dtype("auto", auto=torch.bfloat16) is torch.bfloat16
    with pytest.raises(ValueError, match=r"unknown dtype 'auto'; use one of 'float32'"):
        parse_dtype("auto")  # only where the caller says what auto means
    with pytest.raises(ValueError, match=r"torch\.float64 is not supported"):
        parse_dtype(torch.float64)
    with pytest.raises(ValueError, match=r"unknown dtype 3; use one of"):
        parse_dtype(3)  # type: ignore[arg-type]


def test_attention_implementation_option(tiny_dir: Path) -> None:
    eager = load_model(tiny_dir, attn_implementation="eager")
    assert eager.config._attn_implementation == "eager"
    torch.testing.assert_close(_probe(eager), _probe(load_model(tiny_dir)), rtol=0, atol=ATOL)


def test_omitted_sin_cos_tables_and_stale_inv_freq(tiny_dir: Path) -> None:
    reference = load_model(tiny_dir)

    def edit(state: dict[str, torch.Tensor]) -> None:
        for layer in (0, 1):
            for kind in ("q", "k"):
                del state[SINCOS.format(layer, kind)]
        state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)

    _rewrite_weights(tiny_dir, edit)
    loaded = load_model(tiny_dir)
    _assert_same_weights(loaded, reference)
    via_transformers = MPLUGOwl2ForCausalLM.from_pretrained(tiny_dir)
    _assert_same_weights(via_transformers, reference)


def test_missing_and_unexpected_weights_are_listed(tiny_dir: Path) -> None:
    def edit(state: dict[str, torch.Tensor]) -> None:
        del state["model.layers.1.mlp.up_proj.weight"]
        del state["lm_head.weight"]
        state["model.layers.0.self_attn.k_proj.multiway.2.weight"] = torch.zeros(64, 64)

    _rewrite_weights(tiny_dir, edit)
    with pytest.raises(CheckpointError) as error:
        load_model(tiny_dir)
    message = str(error.value)
    assert "2 missing: lm_head.weight, model.layers.1.mlp.up_proj.weight" in message
    assert "1 unexpected: model.layers.0.self_attn.k_proj.multiway.2.weight" in message


def test_wrong_shape_and_dtype_name_the_tensor(tiny_dir: Path) -> None:
    _rewrite_weights(tiny_dir, lambda s: s.update({"model.norm.weight": torch.ones(65)}))
    with pytest.raises(CheckpointError, match=r"model\.norm\.weight has shape \(65,\).*\(64,\)"):
        load_model(tiny_dir)
    _rewrite_weights(
        tiny_dir, lambda s: s.update({"model.norm.weight": torch.ones(64, dtype=torch.int32)})
    )
    with pytest.raises(CheckpointError, match=r"model\.norm\.weight has dtype torch\.int32"):
        load_model(tiny_dir)


def test_unreadable_and_missing_files(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        detect_checkpoint_format(tmp_path)
    with pytest.raises(CheckpointError, match="a checkpoint is a folder"):
        load_model(tiny_dir / "config.json")
    (tiny_dir / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        load_model(tiny_dir)
    (tiny_dir / "model.safetensors").unlink()
    (tiny_dir / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_model(tiny_dir)
    (tiny_dir / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_model(tiny_dir)


def test_bin_with_non_tensor_objects_is_refused(tiny_dir: Path) -> None:
    (tiny_dir / "model.safetensors").unlink()
    torch.save({"weights": {"a": torch.zeros(1)}, "step": 3}, tiny_dir / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="flat state dict"):
        load_model(tiny_dir)


class _Payload:
    """Unpickling this would create ``marker``: weights_only loading must refuse it first."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_bin_with_code_in_its_pickle_is_refused_without_running_it(
    tiny_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pickle-ran"
    state = load_file(tiny_dir / "model.safetensors")
    (tiny_dir / "model.safetensors").unlink()
    torch.save({**state, "payload": _Payload(marker)}, tiny_dir / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"weights_only=True"):
        load_model(tiny_dir)
    assert not marker.exists()


def test_model_is_built_once_on_the_meta_device(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No random initialisation and no second copy: the checkpoint tensors are the weights.
    built: list[set[str]] = []
    init = MPLUGOwl2ForCausalLM.__init__

    def spy(self: MPLUGOwl2ForCausalLM, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)
        built.append({tensor.device.type for tensor in self.parameters()})

    monkeypatch.setattr(MPLUGOwl2ForCausalLM, "__init__", spy)
    model = load_model(tiny_dir)
    assert built == [{"meta"}]
    assert {tensor.device.type for tensor in model.state_dict().values()} == {"cpu"}


# ---- the tiny fixture's files and LoRA release --------------------------------------------


@pytest.fixture(scope="module")
def fixture_inputs(tiny_fixture_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(tiny_fixture_dir / "inputs.safetensors")


@pytest.mark.parametrize("folder", ["checkpoint", "checkpoint_bin"])
def test_fixture_checkpoint_files(tiny_fixture_dir: Path, fixture_inputs, folder: str) -> None:
    reference = load_file(tiny_fixture_dir / "reference_outputs.safetensors")
    model = load_model(tiny_fixture_dir / folder)
    with torch.no_grad():
        logits = model(
            input_ids=fixture_inputs["input_ids"], images=fixture_inputs["images"]
        ).logits
    torch.testing.assert_close(logits, reference["logits"], rtol=0, atol=ATOL)


@pytest.fixture(scope="module")
def lora_reference(tiny_fixture_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(tiny_fixture_dir / "artquant_style_lora_reference.safetensors")


def test_fixture_lora_release_merged(
    tiny_fixture_dir: Path, fixture_inputs, lora_reference
) -> None:
    release = tiny_fixture_dir / "artquant_style_lora"
    assert detect_checkpoint_format(release) == "lora"
    model = load_model(release, base=tiny_fixture_dir / "checkpoint")
    assert isinstance(model, MPLUGOwl2ForCausalLM)
    layers = model.model.layers
    torch.testing.assert_close(
        layers[0].self_attn.q_proj.weight, lora_reference["merged_q_proj_layer0"], rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        layers[0].self_attn.v_proj.multiway[1].weight,
        lora_reference["merged_v_proj_multiway1_layer0"],
        rtol=0,
        atol=1e-6,
    )
    with torch.no_grad():
        logits = model(
            input_ids=fixture_inputs["input_ids"], images=fixture_inputs["images"]
        ).logits
    torch.testing.assert_close(logits, lora_reference["logits"], rtol=0, atol=LORA_LOGITS_ATOL)
    # The base is found through adapter_config.json's relative base_model_name_or_path too.
    assert lora_base_folder(release).resolve() == (tiny_fixture_dir / "checkpoint").resolve()
    _assert_same_weights(load_model(release), model)


def test_fixture_lora_release_as_peft_adapter(
    tiny_fixture_dir: Path, fixture_inputs, lora_reference
) -> None:
    release = tiny_fixture_dir / "artquant_style_lora"
    adapted = load_model(release, base=tiny_fixture_dir / "checkpoint", merge_lora=False)
    assert isinstance(adapted, PeftModel)
    assert not any(p.requires_grad for n, p in adapted.named_parameters() if "lora_" in n)
    with torch.no_grad():
        logits = adapted(
            input_ids=fixture_inputs["input_ids"], images=fixture_inputs["images"]
        ).logits
    # Unmerged, the LoRA product is added after the base matmul instead of into W (another
    # float32 rounding order): measured 5.0e-6 against the merged reference.
    torch.testing.assert_close(logits, lora_reference["logits"], rtol=0, atol=LORA_LOGITS_ATOL)


def _copy_release(tiny_fixture_dir: Path, tmp_path: Path) -> Path:
    release = tmp_path / "release"
    shutil.copytree(tiny_fixture_dir / "artquant_style_lora", release)
    return release


def test_lora_release_errors(tiny_fixture_dir: Path, tmp_path: Path) -> None:
    release = _copy_release(tiny_fixture_dir, tmp_path)
    base = tiny_fixture_dir / "checkpoint"
    assert lora_base_folder(release) is None  # the copy's relative base does not exist
    with pytest.raises(CheckpointError, match="pass base="):
        load_model(release)
    with pytest.raises(CheckpointError, match="must be a full checkpoint"):
        load_model(release, base=tiny_fixture_dir / "artquant_style_lora")
    config = json.loads((release / "adapter_config.json").read_text())
    (release / "adapter_config.json").write_text(json.dumps({**config, "fan_in_fan_out": True}))
    with pytest.raises(CheckpointError, match="fan_in_fan_out=True is not supported"):
        load_model(release, base=base)
    (release / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    with pytest.raises(CheckpointError, match=r"expected A \(8, 64\)"):
        load_model(release, base=base)
    (release / "adapter_config.json").write_text(json.dumps(config))
    non_lora = torch.load(release / "non_lora_trainables.bin", weights_only=True)
    non_lora["base_model.model.model.vision_model.low.post_layernorm.weight"] = torch.ones(32)
    torch.save(non_lora, release / "non_lora_trainables.bin")
    with pytest.raises(CheckpointError, match=r"1 unexpected: model\.vision_model\.low"):
        load_model(release, base=base)
    (release / "adapter_model.bin").unlink()
    with pytest.raises(CheckpointError, match="none of"):
        load_model(release, base=base)
    (release / "adapter_config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="must hold a JSON object"):
        lora_base_folder(release)


def test_writing_to_a_loaded_model_leaves_the_checkpoint_intact(tiny_dir: Path) -> None:
    # Same-dtype tensors stay memory-mapped (no second copy); the mapping must be private.
    model = load_model(tiny_dir)
    before = (tiny_dir / "model.safetensors").read_bytes()
    with torch.no_grad():
        model.model.norm.weight.add_(1.0)
    assert (tiny_dir / "model.safetensors").read_bytes() == before
    assert torch.equal(
        load_model(tiny_dir).model.norm.weight, tiny_model(seed=21).model.norm.weight
    )


def test_invalid_config_is_a_checkpoint_error(tiny_dir: Path) -> None:
    config = json.loads((tiny_dir / "config.json").read_text())
    (tiny_dir / "config.json").write_text(json.dumps({**config, "num_attention_heads": 5}))
    with pytest.raises(CheckpointError, match=r"invalid .*config\.json"):
        load_model(tiny_dir)
    visual = config["visual_config"]
    visual["visual_abstractor"]["grid_size"] = 3
    (tiny_dir / "config.json").write_text(json.dumps({**config, "visual_config": visual}))
    with pytest.raises(CheckpointError, match="squared must equal"):
        load_model(tiny_dir)


def test_tied_embeddings_load_without_an_lm_head_tensor(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "tied", seed=2, tie_word_embeddings=True)
    assert "lm_head.weight" not in load_file(folder / "model.safetensors")
    model = load_model(folder)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    torch.testing.assert_close(_probe(model), _probe(tiny_model(seed=2, tie_word_embeddings=True)))
