"""Loading the released mPLUG-Owl2 checkpoint formats into :class:`MPLUGOwl2ForCausalLM`.

Accepted folders:

* **full**: ``config.json`` plus ``model.safetensors``, sharded safetensors with
  ``model.safetensors.index.json``, or ``pytorch_model.bin`` (sharded with
  ``pytorch_model.bin.index.json``), read with ``torch.load(weights_only=True, mmap=True)``.
  The MAGAer13/mplug-owl2, Q-Align/OneAlign, DeQA-Score and merged ArtQuant models are this.
* **lora**: an ArtQuant LoRA release (``adapter_config.json``, ``adapter_model.bin`` or
  ``.safetensors``, ``non_lora_trainables.bin``, ``config.json``) applied over a full ``base``.

The model is built on the meta device and every tensor is read, cast and assigned one at a time,
so the weights are never held twice. ``rotary_emb.inv_freq`` entries are ignored, and the
abstractor's sin-cos tables are recomputed when a checkpoint omits them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import safe_open
from torch import nn
from transformers.utils import logging as hf_logging

from artquant_model.backbones.mplug_owl2.configuration_mplug_owl2 import MPLUGOwl2Config
from artquant_model.backbones.mplug_owl2.modeling_mplug_owl2 import (
    MPLUGOwl2AbstractorAttention,
    MPLUGOwl2ForCausalLM,
    MPLUGOwl2RotaryEmbedding,
    key_position_table,
    query_position_table,
)

__all__ = [
    "DTYPE_NAMES",
    "CheckpointError",
    "CheckpointFormat",
    "detect_checkpoint_format",
    "load_model",
    "lora_base_folder",
    "parse_dtype",
]

logger = logging.getLogger(__name__)

CheckpointFormat = Literal["full", "lora"]

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
BIN_FILE = "pytorch_model.bin"
BIN_INDEX_FILE = "pytorch_model.bin.index.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
NON_LORA_FILE = "non_lora_trainables.bin"

_FULL_FILES = (SAFETENSORS_INDEX_FILE, SAFETENSORS_FILE, BIN_INDEX_FILE, BIN_FILE)
_IGNORED_KEY_SUFFIXES = ("rotary_emb.inv_freq",)
_RECOMPUTABLE_SUFFIXES = ("attention.q_pos_embed", "attention.k_pos_embed")
DTYPE_NAMES: Mapping[str, torch.dtype] = MappingProxyType(
    {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
    }
)
_SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_MAX_LISTED = 20
_PROGRESS_MIN_TENSORS = 200  # the tiny test models (112 tensors) load without a bar


class CheckpointError(ValueError):
    """A checkpoint folder cannot be loaded: missing files, missing/unexpected keys, bad tensors."""


# ---------------------------------------------------------------------------------------------
# Format detection and lazy tensor sources
# ---------------------------------------------------------------------------------------------


def _as_dir(path: str | os.PathLike[str]) -> Path:
    folder = Path(path).expanduser()
    if not folder.exists():
        raise CheckpointError(f"checkpoint path does not exist: {folder}")
    if not folder.is_dir():
        raise CheckpointError(f"a checkpoint is a folder, got a file: {folder}")
    return folder


def detect_checkpoint_format(path: str | os.PathLike[str]) -> CheckpointFormat:
    """Tell a full checkpoint folder from an ArtQuant-style LoRA release.

    Args:
        path: A checkpoint folder.

    Returns:
        ``"lora"`` when the folder holds ``adapter_config.json``, ``"full"`` when it holds
        full weights (``model.safetensors``, a safetensors index, ``pytorch_model.bin`` or its
        index).

    Raises:
        CheckpointError: When the folder does not exist or holds neither.

    Example:
        >>> detect_checkpoint_format("path/to/mplug-owl2-llama2-7b")  # doctest: +SKIP
        'full'
    """
    folder = _as_dir(path)
    if (folder / ADAPTER_CONFIG_FILE).is_file():
        return "lora"
    if any((folder / name).is_file() for name in _FULL_FILES):
        return "full"
    raise CheckpointError(
        f"{folder} is not a checkpoint folder: expected {ADAPTER_CONFIG_FILE} (a LoRA release) "
        f"or one of {', '.join(_FULL_FILES)} (full weights); found "
        f"{sorted(p.name for p in folder.iterdir())[:_MAX_LISTED]}"
    )


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    """``torch.load`` restricted to tensors, memory-mapped when the file format allows it."""
    try:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            # Files written with the legacy (pre-zip) serialisation cannot be memory-mapped.
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"cannot read {path} with torch.load(weights_only=True): {error}"
        ) from error
    if not isinstance(loaded, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise CheckpointError(f"{path} does not hold a flat state dict of tensors")
    return dict(loaded)


class _TensorSource:
    """Name -> tensor, read lazily (safetensors) or from memory-mapped pickles."""

    def __init__(self) -> None:
        self._readers: dict[str, Callable[[], torch.Tensor]] = {}

    def add_safetensors(self, path: Path) -> None:
        try:
            with safe_open(str(path), framework="pt") as handle:
                names = list(handle.keys())
        except Exception as error:
            raise CheckpointError(f"cannot read safetensors file {path}: {error}") from error
        for name in names:
            self._readers[name] = _safetensors_reader(path, name)

    def add_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        for name, tensor in tensors.items():
            self._readers[name] = _constant_reader(tensor)

    def names(self) -> list[str]:
        return list(self._readers)

    def pop(self, name: str) -> torch.Tensor:
        return self._readers.pop(name)()

    def discard(self, name: str) -> None:
        self._readers.pop(name, None)


def _safetensors_reader(path: Path, name: str) -> Callable[[], torch.Tensor]:
    def read() -> torch.Tensor:
        with safe_open(str(path), framework="pt") as handle:
            return handle.get_tensor(name)

    return read


def _constant_reader(tensor: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: tensor


def _read_index(path: Path) -> list[Path]:
    try:
        index = json.loads(path.read_text())
        weight_map = index["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} is not a valid weight index: {error}") from error
    files = []
    for name in dict.fromkeys(weight_map.values()):
        shard = path.parent / name
        if not shard.is_file():
            raise CheckpointError(f"{path.name} lists shard {name} but {shard} does not exist")
        files.append(shard)
    return files


def _full_weights(folder: Path) -> _TensorSource:
    source = _TensorSource()
    if (folder / SAFETENSORS_INDEX_FILE).is_file():
        for shard in _read_index(folder / SAFETENSORS_INDEX_FILE):
            source.add_safetensors(shard)
    elif (folder / SAFETENSORS_FILE).is_file():
        source.add_safetensors(folder / SAFETENSORS_FILE)
    elif (folder / BIN_INDEX_FILE).is_file():
        for shard in _read_index(folder / BIN_INDEX_FILE):
            source.add_tensors(_torch_load(shard))
    elif (folder / BIN_FILE).is_file():
        source.add_tensors(_torch_load(folder / BIN_FILE))
    else:
        raise CheckpointError(
            f"{folder} holds no weights: expected one of {', '.join(_FULL_FILES)}"
        )
    return source


# ---------------------------------------------------------------------------------------------
# Building and filling the model
# ---------------------------------------------------------------------------------------------


def parse_dtype(dtype: str | torch.dtype, *, auto: torch.dtype | None = None) -> torch.dtype:
    """Turn a dtype name or a torch dtype into one of the supported weight dtypes.

    Args:
        dtype: A name of :data:`DTYPE_NAMES` (case-insensitive: ``"float32"``/``"fp32"``,
            ``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"``/``"half"``), ``torch.float32``,
            ``torch.bfloat16`` or ``torch.float16``; ``"auto"`` when ``auto`` is given.
        auto: What ``"auto"`` means for the caller (None: ``"auto"`` is not accepted).

    Returns:
        The torch dtype.

    Raises:
        ValueError: An unknown name or an unsupported dtype; the message lists the allowed ones.

    Example:
        >>> parse_dtype("BF16")
        torch.bfloat16
        >>> parse_dtype("auto", auto=torch.float16)
        torch.float16
    """
    if isinstance(dtype, torch.dtype):
        if dtype in _SUPPORTED_DTYPES:
            return dtype
        raise ValueError(
            f"dtype {dtype} is not supported; use torch.float32, torch.bfloat16 or torch.float16"
        )
    name = dtype.strip().lower() if isinstance(dtype, str) else None
    if name == "auto" and auto is not None:
        return auto
    if name is not None and name in DTYPE_NAMES:
        return DTYPE_NAMES[name]
    allowed = (["auto"] if auto is not None else []) + list(DTYPE_NAMES)
    raise ValueError(
        f"unknown dtype {dtype!r}; use one of {', '.join(map(repr, allowed))} or a torch dtype"
    )


def _config_dtype(config: MPLUGOwl2Config) -> torch.dtype:
    """The dtype config.json records (``torch_dtype``), float32 when none or unsupported."""
    stored = getattr(config, "dtype", None)
    if isinstance(stored, str):
        stored = DTYPE_NAMES.get(stored.lower())
    return stored if stored in _SUPPORTED_DTYPES else torch.float32


def _resolve_dtype(dtype: torch.dtype | str | None, config: MPLUGOwl2Config) -> torch.dtype:
    if dtype is None:
        return torch.float32
    return parse_dtype(dtype, auto=_config_dtype(config))


def _read_config(folder: Path) -> MPLUGOwl2Config:
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}")
    try:
        return MPLUGOwl2Config.from_pretrained(folder)
    except (ValueError, TypeError, OSError, StrictDataclassError) as error:
        raise CheckpointError(f"invalid {folder / CONFIG_FILE}: {error}") from error


def _build_on_meta(config: MPLUGOwl2Config, attn_implementation: str) -> MPLUGOwl2ForCausalLM:
    config._attn_implementation = attn_implementation
    with torch.device("meta"):
        return MPLUGOwl2ForCausalLM(config)


def _listing(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f", ... and {more} more" if more > 0 else "")


def _fill(
    model: MPLUGOwl2ForCausalLM,
    source: _TensorSource,
    dtype: torch.dtype,
    device: torch.device,
    where: str,
) -> None:
    """Assign every checkpoint tensor to ``model`` (built on meta), checking names and shapes."""
    expected = model.state_dict()
    names = source.names()
    for name in names:
        if name.endswith(_IGNORED_KEY_SUFFIXES):
            source.discard(name)
    names = source.names()
    unexpected = [name for name in names if name not in expected]
    missing = [
        name for name in expected if name not in names and not name.endswith(_RECOMPUTABLE_SUFFIXES)
    ]
    if _config_tied(model) and "lm_head.weight" in missing:
        missing.remove("lm_head.weight")
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_listing(unexpected)}")
        raise CheckpointError(
            f"{where} does not match the mPLUG-Owl2 architecture of its config.json; "
            + "; ".join(parts)
        )
    state: dict[str, torch.Tensor] = {}
    # transformers' tqdm, so that transformers.utils.logging.disable_progress_bar() silences it.
    progress = hf_logging.tqdm(
        names, desc="Loading weights", unit="tensor", disable=len(names) < _PROGRESS_MIN_TENSORS
    )
    for name in progress:
        tensor = source.pop(name)
        target = expected[name]
        if tuple(tensor.shape) != tuple(target.shape):
            raise CheckpointError(
                f"{where}: tensor {name} has shape {tuple(tensor.shape)}, the config needs "
                f"{tuple(target.shape)}"
            )
        if target.is_floating_point() and not tensor.is_floating_point():
            raise CheckpointError(
                f"{where}: tensor {name} has dtype {tensor.dtype}, a floating point tensor is "
                "needed"
            )
        state[name] = tensor.to(device=device, dtype=dtype)
    model.load_state_dict(state, strict=False, assign=True)
    if _config_tied(model):
        model.tie_weights()
    _materialise_buffers(model, set(names), dtype, device)


def _config_tied(model: MPLUGOwl2ForCausalLM) -> bool:
    return bool(getattr(model.config, "tie_word_embeddings", False))


def _materialise_buffers(
    model: nn.Module, loaded: set[str], dtype: torch.dtype, device: torch.device
) -> None:
    """Recompute the buffers a checkpoint does not carry (sin-cos tables, RoPE frequencies)."""
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if isinstance(module, MPLUGOwl2AbstractorAttention):
            if prefix + "q_pos_embed" not in loaded:
                table = query_position_table(module.width, module.num_queries)
                module.q_pos_embed = table.to(device=device, dtype=dtype)
            if prefix + "k_pos_embed" not in loaded:
                table = key_position_table(module.width, module.grid_size)
                module.k_pos_embed = table.to(device=device, dtype=dtype)
        elif isinstance(module, MPLUGOwl2RotaryEmbedding):
            inv_freq, _ = module.compute_inverse_frequencies()
            module.inv_freq = inv_freq.to(device)
            module.original_inv_freq = inv_freq.clone().to(device)
    leftovers = [
        name
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if tensor.is_meta
    ]
    if leftovers:
        raise CheckpointError(f"tensors left uninitialised after loading: {_listing(leftovers)}")


def _load_full(
    folder: Path,
    config: MPLUGOwl2Config,
    dtype: torch.dtype,
    device: torch.device,
    attn_implementation: str,
    overrides: Mapping[str, torch.Tensor] | None = None,
) -> MPLUGOwl2ForCausalLM:
    source = _full_weights(folder)
    if overrides:
        for name in overrides:
            source.discard(name)
        source.add_tensors(overrides)
    model = _build_on_meta(config, attn_implementation)
    where = f"checkpoint {folder}" if not overrides else f"base {folder} with the release"
    _fill(model, source, dtype, device, where)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# LoRA releases
# ---------------------------------------------------------------------------------------------


def _strip_release_prefixes(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The builder's rule: strip ``base_model.``, then ``model.`` if keys start ``model.model.``."""
    renamed = {
        (name[len("base_model.") :] if name.startswith("base_model.") else name): tensor
        for name, tensor in tensors.items()
    }
    if any(name.startswith("model.model.") for name in renamed):
        renamed = {
            (name[len("model.") :] if name.startswith("model.") else name): tensor
            for name, tensor in renamed.items()
        }
    return renamed


def _read_adapter_config(folder: Path) -> dict[str, Any]:
    try:
        adapter_config = json.loads((folder / ADAPTER_CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"invalid {folder / ADAPTER_CONFIG_FILE}: {error}") from error
    if not isinstance(adapter_config, dict):
        raise CheckpointError(f"{folder / ADAPTER_CONFIG_FILE} must hold a JSON object")
    return adapter_config


def _read_adapter(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    adapter_config = _read_adapter_config(folder)
    peft_type = str(adapter_config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise CheckpointError(f"{folder}: only LoRA adapters are supported, got {peft_type}")
    for key, allowed in (("bias", "none"), ("fan_in_fan_out", False), ("use_dora", False)):
        value = adapter_config.get(key, allowed)
        if value not in (allowed, None):
            raise CheckpointError(
                f"{folder}: adapter_config {key}={value!r} is not supported (only {allowed!r})"
            )
    for key in ("rank_pattern", "alpha_pattern"):
        if adapter_config.get(key):
            raise CheckpointError(f"{folder}: adapter_config {key} is not supported")
    for name in ADAPTER_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".safetensors"):
                source = _TensorSource()
                source.add_safetensors(path)
                weights = {key: source.pop(key) for key in source.names()}
            else:
                weights = _torch_load(path)
            return adapter_config, weights
    raise CheckpointError(f"{folder} has {ADAPTER_CONFIG_FILE} but none of {ADAPTER_FILES}")


def _lora_pairs(
    weights: Mapping[str, torch.Tensor], folder: Path
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Module path -> (A, B) from peft's key names (with or without an adapter name)."""
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in weights.items():
        stripped = (
            name[len("base_model.model.") :] if name.startswith("base_model.model.") else name
        )
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in stripped:
                module, _, _ = stripped.partition(marker)
                pairs.setdefault(module, {})[part] = tensor
                break
        else:
            raise CheckpointError(f"{folder}: unexpected adapter tensor {name}")
    result = {}
    for module, parts in pairs.items():
        if set(parts) != {"lora_A", "lora_B"}:
            raise CheckpointError(f"{folder}: adapter for {module} lacks lora_A or lora_B")
        result[module] = (parts["lora_A"], parts["lora_B"])
    return result


def _merge_lora(
    model: MPLUGOwl2ForCausalLM, adapter_config: Mapping[str, Any], weights: Mapping, folder: Path
) -> None:
    """``W += (B @ A) * alpha / r`` in float32 for every adapted Linear (no dropout at merge)."""
    rank = int(adapter_config["r"])
    alpha = float(adapter_config.get("lora_alpha", rank))
    scale = alpha / rank**0.5 if adapter_config.get("use_rslora") else alpha / rank
    modules = dict(model.named_modules())
    for module_name, (lora_a, lora_b) in _lora_pairs(weights, folder).items():
        layer = modules.get(module_name)
        if not isinstance(layer, nn.Linear):
            raise CheckpointError(
                f"{folder}: adapter targets {module_name}, which is not a Linear layer of the model"
            )
        out_features, in_features = layer.weight.shape
        if tuple(lora_a.shape) != (rank, in_features) or tuple(lora_b.shape) != (
            out_features,
            rank,
        ):
            raise CheckpointError(
                f"{folder}: adapter tensors of {module_name} have shapes A {tuple(lora_a.shape)} "
                f"and B {tuple(lora_b.shape)}, expected A ({rank}, {in_features}) and "
                f"B ({out_features}, {rank})"
            )
        with torch.no_grad():
            delta = lora_b.to(layer.weight.device, torch.float32) @ lora_a.to(
                layer.weight.device, torch.float32
            )
            merged = layer.weight.float() + delta * scale
            layer.weight.copy_(merged.to(layer.weight.dtype))


def _peft_adapter(
    model: MPLUGOwl2ForCausalLM, adapter_config: Mapping[str, Any], weights: Mapping, folder: Path
) -> nn.Module:
    from peft import LoraConfig, PeftModel, set_peft_model_state_dict

    accepted = set(LoraConfig.__dataclass_fields__)
    kwargs = {key: value for key, value in adapter_config.items() if key in accepted}
    kwargs["inference_mode"] = True
    lora_config = LoraConfig(**kwargs)
    peft_model = PeftModel(model, lora_config)
    result = set_peft_model_state_dict(peft_model, dict(weights))
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing_lora = [key for key in getattr(result, "missing_keys", []) or [] if "lora_" in key]
    if unexpected or missing_lora:
        raise CheckpointError(
            f"{folder}: adapter weights do not fit the model; unexpected: "
            f"{_listing(unexpected)}; missing: {_listing(missing_lora)}"
        )
    return peft_model.eval()


def _recorded_base(folder: Path, adapter_config: Mapping[str, Any]) -> Path | None:
    recorded = adapter_config.get("base_model_name_or_path")
    if not isinstance(recorded, str) or not recorded:
        return None
    recorded_path = Path(recorded).expanduser()
    # A relative path is read against the release folder, never the working directory.
    candidate = recorded_path if recorded_path.is_absolute() else folder / recorded_path
    return candidate if candidate.is_dir() else None


def lora_base_folder(path: str | os.PathLike[str]) -> Path | None:
    """The local base checkpoint folder an ArtQuant LoRA release names, if it exists.

    This is where :func:`load_model` finds the base when ``base=`` is omitted:
    ``base_model_name_or_path`` of ``adapter_config.json``, absolute or relative to the release.

    Args:
        path: A LoRA release folder.

    Returns:
        The base folder, or None when the release names none or only a hub id / a missing path.

    Raises:
        CheckpointError: ``path`` is not a folder or its ``adapter_config.json`` is missing or
            not a JSON object.

    Example:
        >>> lora_base_folder("ArtQuant-release")  # doctest: +SKIP
        PosixPath('ArtQuant-release/../mplug-owl2-llama2-7b')
    """
    folder = _as_dir(path)
    return _recorded_base(folder, _read_adapter_config(folder))


def _resolve_base(folder: Path, base: str | os.PathLike[str] | None, adapter: Mapping) -> Path:
    if base is not None:
        return _as_dir(base)
    candidate = _recorded_base(folder, adapter)
    if candidate is not None:
        logger.info("LoRA release %s: base %s from adapter_config.json", folder, candidate)
        return candidate
    raise CheckpointError(
        f"{folder} is a LoRA release: pass base=<full mPLUG-Owl2 checkpoint folder> "
        f"(adapter_config.json names {adapter.get('base_model_name_or_path')!r}, which is not "
        "a local folder)"
    )


def _iter_non_lora(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    path = folder / NON_LORA_FILE
    if not path.is_file():
        return
    yield from _strip_release_prefixes(_torch_load(path)).items()


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------


def load_model(
    path: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str] | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    merge_lora: bool = True,
    attn_implementation: str = "sdpa",
) -> Any:
    """Load an mPLUG-Owl2 checkpoint folder (full or ArtQuant LoRA release).

    Args:
        path: A full checkpoint folder or a LoRA release folder (see the module docstring).
        base: For a LoRA release, the full base checkpoint (mplug-owl2-llama2-7b). When omitted,
            ``base_model_name_or_path`` of ``adapter_config.json`` is used if it is a local folder
            (absolute or relative to the release).
        dtype: Weight and compute dtype: a name of :data:`DTYPE_NAMES` or a torch dtype (see
            :func:`parse_dtype`), or ``"auto"`` (the dtype config.json records). Default float32.
        device: Where the weights go (default CPU). Each tensor moves there as it is read.
        merge_lora: For a LoRA release, merge ``W += B @ A * alpha / r`` into the weights and
            return a plain model; ``False`` returns a peft ``PeftModel`` with the adapter on top.
        attn_implementation: ``"sdpa"``, ``"eager"`` or ``"flash_attention_2"``.

    Returns:
        :class:`~artquant_model.MPLUGOwl2ForCausalLM` in eval mode, or a ``PeftModel`` wrapping it
        when ``merge_lora=False`` on a LoRA release.

    Raises:
        CheckpointError: Missing files, missing or unexpected weights (all listed), a tensor with
            the wrong shape or dtype (named), or an unsupported adapter.
        ValueError: An unknown ``dtype``.

    Example:
        >>> model = load_model("ArtQuant-release", base="mplug-owl2-llama2-7b",
        ...                    dtype="bfloat16", device="cuda")  # doctest: +SKIP
    """
    folder = _as_dir(path)
    kind = detect_checkpoint_format(folder)
    target_device = torch.device(device) if device is not None else torch.device("cpu")
    if kind == "full":
        config = _read_config(folder)
        target_dtype = _resolve_dtype(dtype, config)
        logger.info("loading full checkpoint %s as %s on %s", folder, target_dtype, target_device)
        return _load_full(folder, config, target_dtype, target_device, attn_implementation)

    adapter_config, adapter_weights = _read_adapter(folder)
    base_dir = _resolve_base(folder, base, adapter_config)
    if detect_checkpoint_format(base_dir) != "full":
        raise CheckpointError(f"base {base_dir} must be a full checkpoint, not a LoRA release")
    config = _read_config(folder if (folder / CONFIG_FILE).is_file() else base_dir)
    target_dtype = _resolve_dtype(dtype, config)
    non_lora = dict(_iter_non_lora(folder))
    logger.info(
        "loading LoRA release %s over %s (%d non-LoRA tensors, merge=%s) as %s on %s",
        folder,
        base_dir,
        len(non_lora),
        merge_lora,
        target_dtype,
        target_device,
    )
    model = _load_full(
        base_dir, config, target_dtype, target_device, attn_implementation, overrides=non_lora
    )
    if merge_lora:
        _merge_lora(model, adapter_config, adapter_weights, folder)
        return model
    return _peft_adapter(model, adapter_config, adapter_weights, folder)
