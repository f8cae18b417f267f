"""What differs between the vision-language families the generic backbone loads.

:class:`~artquant_model.backbones.hf_vlm.backbone.HFVisionLanguageBackbone` is one class; each
family contributes a small adapter (:class:`VLMFamily`) saying:

* which token the chat template writes for a picture (``placeholder``) and what the family's
  processor puts in its place for one picture token (``picture_text``); the backbone then
  repeats the picture token once per token the picture gives (as the processors do);
* how pictures become pixels (the published PIL image processor and a batch type);
* which extra inputs the model needs: token-type ids marking picture tokens (Qwen's
  ``mm_token_type_ids`` for its 3-D positions, Gemma 3's ``token_type_ids`` for bidirectional
  attention inside a picture) and, for models with plain 1-D positions, ``position_ids`` counted
  from the attention mask, so that left padding does not shift a row's positions.

=================  ==============================  ===========================================
family             ``model_type``                  pictures
=================  ==============================  ===========================================
:class:`Qwen`      qwen2_vl, qwen2_5_vl, qwen3_vl,  variable patch grid (``VisionBatch``)
                   qwen3_5
:class:`Gemma3`    gemma3                          one fixed-size tile, ``mm_tokens_per_image``
:class:`InternVL`  internvl                        aspect-ratio tiles + thumbnail, fixed per tile
=================  ==============================  ===========================================

Example:
    >>> vlm_family("gemma3").name, vlm_family("qwen2_5_vl").name
    ('gemma3', 'qwen')
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from artquant_model.backbones.hf_vlm.processing_hf_vlm import (
    PIL_IMAGE_PROCESSORS,
    VisionBatch,
    VisionImageProcessor,
    pil_image_processor,
)
from artquant_model.backbones.hf_vlm.processing_tiles import TileBatch, TileImageProcessor
from artquant_model.spec import Resolution


def _token(tokenizer: Any, token_id: int, what: str) -> str:
    token = tokenizer.convert_ids_to_tokens(int(token_id))
    if token is None or tokenizer.convert_tokens_to_ids(token) != int(token_id):
        raise ValueError(f"the tokenizer has no token for the model's {what} (id {token_id})")
    return str(token)


def _special(tokenizer: Any, attribute: str, default: str) -> str:
    """A special token the processor names by tokenizer attribute; it must be one token."""
    token = str(getattr(tokenizer, attribute, None) or default)
    ids = tokenizer(token, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise ValueError(
            f"{token!r} (the tokenizer's {attribute}) is not one token of this tokenizer "
            f"(it gives ids {ids}); the model's processor needs it as a special token"
        )
    return token


class VLMFamily(ABC):
    """One family's differences (see the module docstring); stateless, one instance each.

    Attributes:
        name: The family's short name.
        model_types: The ``config.json`` ``model_type`` values it covers.
        image_processors: ``image_processor_type`` in ``preprocessor_config.json`` -> the
            published PIL class used.
        batch_type: What its image processor returns.
        type_ids_key: The model's keyword for picture-token marks (1 on picture tokens), if any.
        positions_from_mask: The model takes 1-D positions that must be counted from the mask.
        unsupported_text_fields: Language-model config fields that must be unset (``None``):
            they change the logits after the LM head, which the read-out does not apply.
    """

    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    image_processors: ClassVar[dict[str, str]]
    batch_type: ClassVar[type[VisionBatch] | type[TileBatch]]
    type_ids_key: ClassVar[str | None] = None
    positions_from_mask: ClassVar[bool] = True
    unsupported_text_fields: ClassVar[tuple[str, ...]] = ()

    def check(self, config: Any) -> None:
        """Refuse a configuration whose scores the backbone's read-out would not reproduce.

        Raises:
            ValueError: One of :attr:`unsupported_text_fields` is set (names it).
        """
        text = config.get_text_config()
        for field in self.unsupported_text_fields:
            value = getattr(text, field, None)
            if value is not None:
                raise ValueError(
                    f"{field}={value}: the backbone reads the level words' raw LM-head logits, "
                    f"and {self.name} models with {field} would score differently"
                )

    def placeholder(self, config: Any, tokenizer: Any) -> str:
        """The token the chat template writes where a picture goes."""
        return _token(tokenizer, config.image_token_id, "image token")

    def picture_text(self, config: Any, tokenizer: Any) -> str:
        """What the family's processor writes instead of :meth:`placeholder` for a picture of
        one token (the picture token appears exactly once in it)."""
        return _token(tokenizer, config.image_token_id, "image token")

    @abstractmethod
    def image_processor(
        self, folder: str | os.PathLike[str], config: Any, resolution: Resolution
    ) -> Any:
        """The picklable image processor of a checkpoint folder (its
        ``preprocessor_config.json``) for this model and resolution."""

    @abstractmethod
    def pixel_inputs(
        self, pixels: Any, device: torch.device, dtype: torch.dtype
    ) -> dict[str, torch.Tensor]:
        """The model's picture keywords for a batch, on ``device`` in ``dtype``."""


class Qwen(VLMFamily):
    """Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5: the template writes the image pad token itself;
    3-D (mrope) positions, built by the model from ``mm_token_type_ids`` and the mask."""

    name = "qwen"
    model_types = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5")
    image_processors = PIL_IMAGE_PROCESSORS
    batch_type = VisionBatch
    type_ids_key = "mm_token_type_ids"
    positions_from_mask = False

    def image_processor(
        self, folder: str | os.PathLike[str], config: Any, resolution: Resolution
    ) -> VisionImageProcessor:
        return VisionImageProcessor(pil_image_processor(folder, self.image_processors), resolution)

    def pixel_inputs(
        self, pixels: VisionBatch, device: torch.device, dtype: torch.dtype
    ) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": pixels.pixel_values.to(device, non_blocking=True).to(dtype),
            "image_grid_thw": pixels.image_grid_thw.to(device),
        }


class _Tiled(VLMFamily):
    batch_type = TileBatch
    #: Native resolution cuts pictures into aspect-ratio tiles (InternVL), else one tile.
    crop_to_patches: ClassVar[bool] = False

    @abstractmethod
    def tokens_per_tile(self, config: Any) -> int:
        """Language-model tokens each tile gives (what the family's processor writes)."""

    def image_processor(
        self, folder: str | os.PathLike[str], config: Any, resolution: Resolution
    ) -> TileImageProcessor:
        return TileImageProcessor(
            pil_image_processor(folder, self.image_processors),
            tokens_per_tile=self.tokens_per_tile(config),
            resolution=resolution,
            crop_to_patches=self.crop_to_patches,
        )

    def pixel_inputs(
        self, pixels: TileBatch, device: torch.device, dtype: torch.dtype
    ) -> dict[str, torch.Tensor]:
        return {"pixel_values": pixels.pixel_values.to(device, non_blocking=True).to(dtype)}


class Gemma3(_Tiled):
    """Gemma 3: the template writes ``<start_of_image>``; ``Gemma3Processor`` replaces it with
    ``"\\n\\n<start_of_image>" + <image_soft_token> x mm_tokens_per_image +
    "<end_of_image>\\n\\n"``; ``token_type_ids`` mark the soft tokens (attention is bidirectional
    inside a picture); positions are plain."""

    name = "gemma3"
    model_types = ("gemma3",)
    image_processors: ClassVar[dict[str, str]] = {
        "Gemma3ImageProcessor": "Gemma3ImageProcessorPil",
        "Gemma3ImageProcessorFast": "Gemma3ImageProcessorPil",
        "Gemma3ImageProcessorPil": "Gemma3ImageProcessorPil",
    }
    type_ids_key = "token_type_ids"
    # released Gemma 3 models have none (Gemma 2 had 30.0)
    unsupported_text_fields = ("final_logit_softcapping",)

    def placeholder(self, config: Any, tokenizer: Any) -> str:
        return _token(tokenizer, config.boi_token_id, "start-of-image token")

    def picture_text(self, config: Any, tokenizer: Any) -> str:
        start = _token(tokenizer, config.boi_token_id, "start-of-image token")
        end = _token(tokenizer, config.eoi_token_id, "end-of-image token")
        image = _token(tokenizer, config.image_token_id, "image token")
        return f"\n\n{start}{image}{end}\n\n"

    def tokens_per_tile(self, config: Any) -> int:
        return int(config.mm_tokens_per_image)


class InternVL(_Tiled):
    """InternVL (the transformers-native ``-hf`` checkpoints): the template writes
    ``<IMG_CONTEXT>``; ``InternVLProcessor`` replaces it with ``<img>`` + ``<IMG_CONTEXT>`` x
    (tiles x tokens per tile) + ``</img>``; pictures are cut into aspect-ratio tiles; positions
    are plain."""

    name = "internvl"
    model_types = ("internvl",)
    crop_to_patches = True  # InternVLProcessor's default
    image_processors: ClassVar[dict[str, str]] = {
        "GotOcr2ImageProcessor": "GotOcr2ImageProcessorPil",
        "GotOcr2ImageProcessorFast": "GotOcr2ImageProcessorPil",
        "GotOcr2ImageProcessorPil": "GotOcr2ImageProcessorPil",
    }

    def picture_text(self, config: Any, tokenizer: Any) -> str:
        start = _special(tokenizer, "start_image_token", "<img>")
        end = _special(tokenizer, "end_image_token", "</img>")
        return f"{start}{_token(tokenizer, config.image_token_id, 'image token')}{end}"

    def tokens_per_tile(self, config: Any) -> int:
        """The vision tower's patches per tile, shrunk by the pixel shuffle
        (``downsample_ratio`` per side)."""
        vision = config.vision_config
        side = _first(vision.image_size) // _first(vision.patch_size)
        return round(side * side * float(config.downsample_ratio) ** 2)


def _first(size: Any) -> int:
    """A square size given as an int or as ``(height, width)``."""
    return int(size if isinstance(size, int) else size[0])


_ADAPTERS: tuple[VLMFamily, ...] = (Qwen(), Gemma3(), InternVL())
#: ``model_type`` -> the family adapter that handles it.
FAMILIES: dict[str, VLMFamily] = {t: a for a in _ADAPTERS for t in a.model_types}


def vlm_family(model_type: str) -> VLMFamily:
    """The adapter of a ``config.json`` ``model_type``.

    Raises:
        ValueError: The generic backbone does not handle the model type (names those it does).
    """
    if model_type not in FAMILIES:
        raise ValueError(
            f"model_type {model_type!r} is not a family of the generic backbone; "
            f"supported: {sorted(FAMILIES)}"
        )
    return FAMILIES[model_type]


__all__ = [
    "FAMILIES",
    "Gemma3",
    "InternVL",
    "Qwen",
    "VLMFamily",
    "vlm_family",
]
