"""The backbone layer: what the SDK, the CLI and the trainer talk to instead of a model class.

* :class:`Backbone`: the interface (score a batch, read level ids, greedy generation, picture
  preprocessing, the scorer spec).
* :class:`MPLUGOwl2Backbone` (``model_type`` ``mplug_owl2``): ArtQuant's, Q-Align's and
  DeQA-Score's model, today's numbers.
* :class:`HFVisionLanguageBackbone` (``qwen2_vl``, ``qwen2_5_vl``, ``qwen3_vl``, ``qwen3_5``,
  ``gemma3``, ``internvl``): any of those loaded with ``AutoModelForImageTextToText``.
* :func:`load_backbone` picks the class from the checkpoint's ``config.json`` (a PEFT adapter's
  from its base's).

Nothing heavy is imported until a backbone is loaded.

Example:
    >>> sorted(supported_model_types())
    ['gemma3', 'internvl', 'mplug_owl2', 'qwen2_5_vl', 'qwen2_vl', 'qwen3_5', 'qwen3_vl']
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from artquant_model.backbones._base import Backbone, stack_pixels

if TYPE_CHECKING:
    from artquant_model.spec import ScorerSpec

_FAMILIES: dict[str, str] = {
    "mplug_owl2": "mplug_owl2",
    "qwen2_vl": "hf_vlm",
    "qwen2_5_vl": "hf_vlm",
    "qwen3_vl": "hf_vlm",
    "qwen3_5": "hf_vlm",
    "gemma3": "hf_vlm",
    "internvl": "hf_vlm",
}


class UnsupportedModelError(ValueError):
    """A checkpoint whose ``model_type`` no backbone loads (the message names the supported)."""


def supported_model_types() -> list[str]:
    """The ``config.json`` ``model_type`` values a backbone loads."""
    return list(_FAMILIES)


def backbone_class(family: str) -> type[Backbone]:
    """The backbone class of a family name (``"mplug_owl2"``, ``"hf_vlm"``)."""
    if family == "mplug_owl2":
        from artquant_model.backbones.mplug_owl2.backbone import MPLUGOwl2Backbone

        return MPLUGOwl2Backbone
    if family == "hf_vlm":
        from artquant_model.backbones.hf_vlm.backbone import HFVisionLanguageBackbone

        return HFVisionLanguageBackbone
    raise ValueError(f"unknown backbone family {family!r}; known: ['hf_vlm', 'mplug_owl2']")


def _model_type(folder: Path) -> str | None:
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, AttributeError) as error:
        raise UnsupportedModelError(f"{path} is not a JSON object: {error}") from error
    return str(value) if value is not None else None


def checkpoint_model_type(path: str | os.PathLike[str], base: Any = None) -> str:
    """The ``model_type`` of a checkpoint folder: its ``config.json``'s, else (a PEFT adapter
    without one) its base's.

    Raises:
        UnsupportedModelError: No ``config.json`` with a ``model_type`` is found.
    """
    from artquant_model.loading import lora_base_folder

    folder = Path(path)
    found = _model_type(folder)
    if found is None and (folder / "adapter_config.json").is_file():
        base_folder = Path(base) if base is not None else lora_base_folder(folder)
        found = _model_type(base_folder) if base_folder is not None else None
    if found is None:
        raise UnsupportedModelError(
            f"{folder} has no config.json naming a model_type (nor has the base of its adapter); "
            f"supported model types: {supported_model_types()}"
        )
    return found


def family_of(model_type: str) -> str:
    """The backbone family that loads ``model_type``.

    Raises:
        UnsupportedModelError: The model type is not supported; the message lists those that are.
    """
    if model_type not in _FAMILIES:
        raise UnsupportedModelError(
            f"model_type {model_type!r} is not supported; supported model types: "
            f"{supported_model_types()} (mPLUG-Owl2; the Qwen-VL families, Gemma 3 and "
            "InternVL through AutoModelForImageTextToText)"
        )
    return _FAMILIES[model_type]


def load_backbone(
    path: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    attn_implementation: str = "sdpa",
    spec: ScorerSpec | None = None,
    **options: Any,
) -> Backbone:
    """Load the backbone a local checkpoint folder needs, chosen by its ``model_type``.

    Args:
        path: A full checkpoint folder or an adapter/LoRA release folder.
        base: The base folder of an adapter (default: the one its config names).
        dtype: Compute dtype.
        device: Where to put the model.
        attn_implementation: The language model's attention (``"sdpa"``, ``"eager"``, ...).
        spec: Scorer spec; default the folder's ``artquant_spec.json``, else ArtQuant's.
        **options: Family-specific (mPLUG-Owl2: ``tokenizer=``).

    Returns:
        The backbone, in eval mode.

    Raises:
        UnsupportedModelError: Unknown ``model_type`` (names the supported ones).
    """
    family = family_of(checkpoint_model_type(path, base))
    cls = backbone_class(family)
    return cls.from_pretrained(
        path,
        base=base,
        dtype=dtype,
        device=device,
        attn_implementation=attn_implementation,
        spec=spec,
        **options,
    )


__all__ = [
    "Backbone",
    "UnsupportedModelError",
    "backbone_class",
    "checkpoint_model_type",
    "family_of",
    "load_backbone",
    "stack_pixels",
    "supported_model_types",
]
