"""Per-backbone training: one module per family, chosen from the base's ``config.json``.

The trainer's loop, losses, schedule, checkpoints and validation are the same for every
backbone; what differs sits behind :class:`TrainingBackbone`: loading the base and its
processing, encoding a conversation (labels and the level position), collating a batch, the
training forward pass, the trainable parts and their defaults, validation scoring and the
release folder.

* ``mplug_owl2``: :class:`~artquant_train.backbones.mplug_owl2.MPLUGOwl2Training`, the paper's
  recipe and numbers.
* ``qwen2_vl``, ``qwen2_5_vl``, ``qwen3_vl``, ``qwen3_5``, ``gemma3``, ``internvl``: the
  generic backbone, :mod:`artquant_train.backbones.hf_vlm`
  (:class:`~artquant_train.backbones.hf_vlm.HFVisionLanguageTraining` for the Qwen-VL families,
  :class:`~artquant_train.backbones.hf_vlm.Gemma3Training`,
  :class:`~artquant_train.backbones.hf_vlm.InternVLTraining`): every model type the SDK scores
  with also trains.

Adding a family is one module here plus one line in :data:`_CLASSES`; the model type to family
table is ``artquant_model.backbones.family_of``'s, and a module's
:meth:`TrainingBackbone.for_model_type` picks its class for a model type.

Example:
    >>> training_backbone_class("hf_vlm").lora_targets[:2]
    ('q_proj', 'k_proj')
"""

from __future__ import annotations

import os

from artquant_train.backbones._base import Encoder, TrainingBackbone
from artquant_train.errors import TrainError

_CLASSES = {
    "mplug_owl2": "artquant_train.backbones.mplug_owl2:MPLUGOwl2Training",
    "hf_vlm": "artquant_train.backbones.hf_vlm:HFVisionLanguageTraining",
}


def training_backbone_class(family: str) -> type[TrainingBackbone]:
    """The training class of a backbone family.

    Raises:
        TrainError: no training support for ``family``.
    """
    import importlib

    if family not in _CLASSES:
        raise TrainError(
            f"backbone family {family!r} has no training support; trainable: {sorted(_CLASSES)}"
        )
    module, name = _CLASSES[family].split(":")
    cls: type[TrainingBackbone] = getattr(importlib.import_module(module), name)
    return cls


def training_backbone(base: str | os.PathLike[str]) -> TrainingBackbone:
    """A fresh :class:`TrainingBackbone` for the base checkpoint folder ``base``.

    Args:
        base: the base folder (its ``config.json`` ``model_type`` picks the family).

    Returns:
        The family's training backbone (nothing loaded yet).

    Raises:
        TrainError: the model type is not supported (the message lists those that are).
    """
    from artquant_model.backbones import UnsupportedModelError, checkpoint_model_type, family_of

    try:
        model_type = checkpoint_model_type(base)
        family = family_of(model_type)
    except UnsupportedModelError as error:
        raise TrainError(f"model.base {os.fspath(base)!r}: {error}") from error
    variant = training_backbone_class(family).for_model_type(model_type)
    if variant is None:
        trainable = [
            t for name in _CLASSES for t in training_backbone_class(name).trained_model_types()
        ]
        raise TrainError(
            f"model.base {os.fspath(base)!r} is a {model_type!r} model: the SDK scores with it, "
            f"but training supports only {trainable} so far"
        )
    return variant()


__all__ = ["Encoder", "TrainingBackbone", "training_backbone", "training_backbone_class"]
