"""Write ``final/`` and ``best/`` as folders the loaders and the SDK read directly.

With LoRA (the recipe) a folder is an **ArtQuant LoRA release** over the base model, the layout
the original writes (reference §9.2) with safetensors adapters:

* ``adapter_config.json`` + ``adapter_model.safetensors`` (peft; ``target_modules`` are the full
  module names, ``base_model_name_or_path`` the base folder);
* ``non_lora_trainables.bin``: the fully trained tensors (vision tower, abstractor), keys
  ``base_model.model.model.vision_model.*`` as the original;
* ``config.json`` (the base model's), the tokenizer files and ``preprocessor_config.json``;
* ``train_config.yaml``: the run's resolved configuration.

Without LoRA, or with ``checkpoint.merge_lora``, it is a full checkpoint
(``config.json`` + ``model.safetensors``) plus tokenizer and preprocessor files.
``artquant_model.load_model(folder, base=...)`` and ``ArtQuant.from_pretrained`` read both.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from artquant_train.checkpointing import atomic_directory
from artquant_train.config import TrainConfig
from artquant_train.modeling import core_model

logger = logging.getLogger(__name__)

NON_LORA_FILE = "non_lora_trainables.bin"


def non_lora_trainables(
    model: nn.Module, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """Trainable tensors that are not LoRA adapters, keyed as the original release.

    Args:
        model: the prepared (peft-wrapped) model.
        dtype: cast to this dtype (``None`` keeps each tensor's own).

    Returns:
        ``{"base_model.model.<name>": tensor}`` on the CPU (peft's ``.base_layer`` removed).
    """
    out: dict[str, torch.Tensor] = {}
    for name, param in core_model(model).named_parameters():
        if not param.requires_grad or "lora_" in name:
            continue
        clean = name.replace(".base_layer.", ".")
        tensor = param.detach().to("cpu")
        out[f"base_model.model.{clean}"] = (tensor.to(dtype) if dtype else tensor).contiguous()
    return out


def write_release(
    model: nn.Module,
    directory: Path,
    *,
    tokenizer: Any,
    image_processor: Any,
    config: TrainConfig,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a loadable release folder atomically.

    Args:
        model: the prepared model (peft-wrapped when LoRA is on).
        directory: the folder to (re)write, e.g. ``OUTPUT_DIR/final``.
        tokenizer: saved with ``save_pretrained``.
        image_processor: saved with ``save_pretrained``.
        config: the run configuration (saved; ``model.base`` recorded in the adapter config).
        dtype: dtype of ``non_lora_trainables.bin`` / the full weights (``None`` = as trained).

    Returns:
        ``directory``.
    """
    core = core_model(model)
    peft_model: Any = model
    with atomic_directory(Path(directory)) as tmp:
        if config.lora.enabled and hasattr(peft_model, "peft_config"):
            for adapter in peft_model.peft_config.values():
                adapter.base_model_name_or_path = str(config.model.base)
            peft_model.save_pretrained(str(tmp), safe_serialization=True)
            torch.save(non_lora_trainables(model, dtype), tmp / NON_LORA_FILE)
            core.config.save_pretrained(str(tmp))
        else:
            state = {
                name: (t.to(dtype) if dtype and t.is_floating_point() else t)
                for name, t in core.state_dict().items()
            }
            core.save_pretrained(str(tmp), state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        image_processor.save_pretrained(str(tmp))
        config.save(tmp / "train_config.yaml")
    logger.info("wrote release folder %s", directory)
    return Path(directory)


def merge_release(
    directory: Path, *, base: str, tokenizer: Any, image_processor: Any, config: TrainConfig
) -> Path:
    """Replace a LoRA release folder by the merged full checkpoint (via ``load_model``).

    Loading through :func:`artquant_model.load_model` also proves the release loads.

    Args:
        directory: a folder written by :func:`write_release` with LoRA.
        base: the base model folder.
        tokenizer / image_processor: saved beside the weights.
        config: saved as ``train_config.yaml``.

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
    logger.info("merged LoRA into a full checkpoint at %s", directory)
    return Path(directory)


__all__ = ["NON_LORA_FILE", "merge_release", "non_lora_trainables", "write_release"]
