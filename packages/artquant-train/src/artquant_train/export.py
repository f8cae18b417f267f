"""Write ``final/`` and ``best/`` as folders the loaders and the SDK read directly.

With LoRA (the recipe) a folder is an **ArtQuant LoRA release** over the base model, the layout
the original writes (reference §9.2) with safetensors adapters:

* ``adapter_config.json`` + ``adapter_model.safetensors`` (peft; ``target_modules`` are the full
  module names, ``base_model_name_or_path`` the base folder);
* ``non_lora_trainables.bin``: the fully trained tensors (vision tower, abstractor), keys
  ``base_model.model.model.vision_model.*`` as the original;
* ``config.json`` (the base model's), the tokenizer files and ``preprocessor_config.json``;
* ``train_config.yaml``: the run's resolved configuration;
* ``artquant_spec.json``: the ``artquant_model.ScorerSpec`` ``ArtQuant.from_pretrained`` reads:
  level words and values, the total score's prompt and the question, stem and prompt of every
  attribute the model was trained on (:func:`artquant_train.attributes.write_level_spec`).

Without LoRA, or with ``checkpoint.merge_lora``, it is a full checkpoint
(``config.json`` + ``model.safetensors``) plus tokenizer and preprocessor files.
``artquant_model.load_model(folder, base=...)`` and ``ArtQuant.from_pretrained`` read both.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from artquant_train.attributes import write_level_spec
from artquant_train.checkpointing import atomic_directory
from artquant_train.config import TrainConfig
from artquant_train.modeling import core_model

logger = logging.getLogger(__name__)

NON_LORA_FILE = "non_lora_trainables.bin"


def _clean(name: str) -> str:
    return name.replace(".base_layer.", ".")


def non_lora_trainables(
    model: nn.Module,
    dtype: torch.dtype | None = None,
    *,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    trainable_names: Collection[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Trainable tensors that are not LoRA adapters, keyed as the original release.

    Args:
        model: the prepared (peft-wrapped) model.
        dtype: cast to this dtype (``None`` keeps each tensor's own).
        state_dict: the prepared model's tensors by name (``None``: its live parameters).
        trainable_names: names of the trainable tensors (``None``: those with
            ``requires_grad``).

    Returns:
        ``{"base_model.model.model.vision_model...": tensor}`` on the CPU (peft's
        ``.base_layer`` removed).
    """
    state = dict(model.named_parameters()) if state_dict is None else state_dict
    names = _trainable_names(model) if trainable_names is None else set(trainable_names)
    out: dict[str, torch.Tensor] = {}
    for name in sorted(names):
        if "lora_" in name:
            continue
        tensor = state[name].detach().to("cpu")
        key = _clean(name)
        if not key.startswith("base_model.model."):  # a plain (non-peft) model's names
            key = f"base_model.model.{key}"
        out[key] = (tensor.to(dtype) if dtype else tensor).contiguous()
    return out


def _trainable_names(model: nn.Module) -> set[str]:
    return {name for name, param in model.named_parameters() if param.requires_grad}


def write_release(
    model: nn.Module,
    directory: Path,
    *,
    tokenizer: Any,
    image_processor: Any,
    config: TrainConfig,
    dtype: torch.dtype | None = None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    trainable_names: Collection[str] | None = None,
    level_spec: Mapping[str, Any] | None = None,
) -> Path:
    """Write a loadable release folder atomically.

    Args:
        model: the prepared model (peft-wrapped when LoRA is on).
        directory: the folder to (re)write, e.g. ``OUTPUT_DIR/final``.
        tokenizer: saved with ``save_pretrained``.
        image_processor: saved with ``save_pretrained``.
        config: the run configuration (saved; ``model.base`` recorded in the adapter config).
        dtype: dtype of ``non_lora_trainables.bin`` / the full weights (``None`` = as trained).
        state_dict: the full tensors of ``model`` by its ``state_dict`` names, e.g. gathered
            from sharded processes by ``accelerator.get_state_dict``; ``None`` = the live ones.
        trainable_names: names of the trained tensors (``None``: ``requires_grad`` now).
        level_spec: written as ``artquant_spec.json`` when given.

    Returns:
        ``directory``.
    """
    core = core_model(model)
    peft_model: Any = model
    state = dict(model.state_dict()) if state_dict is None else dict(state_dict)
    with atomic_directory(Path(directory)) as tmp:
        if config.lora.enabled and hasattr(peft_model, "peft_config"):
            for adapter in peft_model.peft_config.values():
                adapter.base_model_name_or_path = str(config.model.base)
            peft_model.save_pretrained(str(tmp), state_dict=state, safe_serialization=True)
            trainables = non_lora_trainables(
                model, dtype, state_dict=state, trainable_names=trainable_names
            )
            torch.save(trainables, tmp / NON_LORA_FILE)
            core.config.save_pretrained(str(tmp))
        else:
            full = {
                name: (t.to(dtype) if dtype and t.is_floating_point() else t)
                for name, t in state.items()
            }
            core.save_pretrained(str(tmp), state_dict=full, safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        image_processor.save_pretrained(str(tmp))
        config.save(tmp / "train_config.yaml")
        if level_spec is not None:
            write_level_spec(tmp, level_spec)
    logger.info("wrote release folder %s", directory)
    return Path(directory)


def merge_release(
    directory: Path,
    *,
    base: str,
    tokenizer: Any,
    image_processor: Any,
    config: TrainConfig,
    level_spec: Mapping[str, Any] | None = None,
) -> Path:
    """Replace a LoRA release folder by the merged full checkpoint (via ``load_model``).

    Loading through :func:`artquant_model.load_model` also proves the release loads.

    Args:
        directory: a folder written by :func:`write_release` with LoRA.
        base: the base model folder.
        tokenizer / image_processor: saved beside the weights.
        config: saved as ``train_config.yaml``.
        level_spec: written as ``artquant_spec.json`` when given.

    Returns:
        ``directory``.
    """
    from artquant_model import load_model

    merged = load_model(directory, base=base, dtype="float32", merge_lora=True)
    with atomic_directory(Path(directory)) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        image_processor.save_pretrained(str(tmp))
        config.save(tmp / "train_config.yaml")
        if level_spec is not None:
            write_level_spec(tmp, level_spec)
    logger.info("merged LoRA into a full checkpoint at %s", directory)
    return Path(directory)


__all__ = ["NON_LORA_FILE", "merge_release", "non_lora_trainables", "write_release"]
