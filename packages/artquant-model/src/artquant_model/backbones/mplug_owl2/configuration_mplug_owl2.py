"""Configuration of mPLUG-Owl2 (LLaMA-2 with the Modality-Adaptive Module, a ViT and an abstractor).

The configuration reads the original ``config.json`` unchanged: the LLaMA fields at the top level
and the nested ``visual_config = {"visual_model": {...}, "visual_abstractor": {...}}`` that the
original code writes with the complete ``to_dict()`` of both sub-configs. Only the keys the model
needs are read from the nested dictionaries; every other key (generic ``PretrainedConfig`` fields,
ArtQuant's training keys such as ``score_weight`` or ``softkl_loss``) is ignored by the model.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from transformers import LlamaConfig

__all__ = ["MPLUGOwl2AbstractorConfig", "MPLUGOwl2Config", "MPLUGOwl2VisionConfig"]

#: Values of ``MPLUGOwl2Config.visual_attn_implementation``.
VISUAL_ATTN_IMPLEMENTATIONS = ("eager", "sdpa")


class MPLUGOwl2VisionConfig(BaseModel):
    """The ViT image encoder of mPLUG-Owl2 (``visual_config["visual_model"]``).

    Defaults are the released ViT-L/14 at 448 px. Unknown keys are ignored, so the dictionary the
    original code saves (with every generic ``PretrainedConfig`` field) is accepted as is.
    ``hidden_act`` is recorded but, as in the original, the MLP always uses QuickGELU.

    Example:
        >>> MPLUGOwl2VisionConfig(hidden_size=32, image_size=28, patch_size=14).num_patches
        4
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    hidden_size: int = Field(1024, gt=0)
    intermediate_size: int = Field(4096, gt=0)
    num_hidden_layers: int = Field(24, ge=0)
    num_attention_heads: int = Field(16, gt=0)
    num_channels: int = Field(3, gt=0)
    image_size: int = Field(448, gt=0)
    patch_size: int = Field(14, gt=0)
    layer_norm_eps: float = Field(1e-6, gt=0)
    hidden_act: str = "quick_gelu"

    @property
    def grid_size(self) -> int:
        """Patches per side, ``image_size // patch_size``."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Number of patch tokens (the CLS token not included)."""
        return self.grid_size**2


class MPLUGOwl2AbstractorConfig(BaseModel):
    """The visual abstractor (``visual_config["visual_abstractor"]``).

    ``grid_size`` ``None`` means 32, as in the original code. Unknown keys are ignored.

    Example:
        >>> MPLUGOwl2AbstractorConfig(num_learnable_queries=8).num_learnable_queries
        8
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    num_learnable_queries: int = Field(64, gt=0)
    hidden_size: int = Field(1024, gt=0)
    encoder_hidden_size: int = Field(1024, gt=0)
    num_hidden_layers: int = Field(6, ge=0)
    num_attention_heads: int = Field(16, gt=0)
    intermediate_size: int = Field(2816, gt=0)
    layer_norm_eps: float = Field(1e-6, gt=0)
    grid_size: int | None = Field(32, gt=0)

    @property
    def resolved_grid_size(self) -> int:
        """The grid size with the original's ``None -> 32`` rule applied."""
        return 32 if self.grid_size is None else self.grid_size


def _parse_sub_config(
    cls: type[MPLUGOwl2VisionConfig] | type[MPLUGOwl2AbstractorConfig], value: Any, name: str
) -> Any:
    if value is None:
        return cls.model_validate({})
    if isinstance(value, cls):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    elif hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, dict):
        raise TypeError(
            f"visual_config[{name!r}] must be a dict or {cls.__name__}, got {type(value).__name__}"
        )
    try:
        return cls.model_validate(value)
    except ValidationError as error:
        raise ValueError(f"invalid visual_config[{name!r}]: {error}") from error


def _check_visual_constraints(
    vision: MPLUGOwl2VisionConfig, abstractor: MPLUGOwl2AbstractorConfig
) -> None:
    """Raise ``ValueError`` for the shape constraints the architecture implies."""
    if vision.image_size % vision.patch_size != 0:
        raise ValueError(
            f"visual_model.image_size ({vision.image_size}) must be a multiple of "
            f"visual_model.patch_size ({vision.patch_size})"
        )
    if vision.hidden_size % vision.num_attention_heads != 0:
        raise ValueError(
            f"visual_model.hidden_size ({vision.hidden_size}) must be divisible by "
            f"visual_model.num_attention_heads ({vision.num_attention_heads})"
        )
    if not abstractor.hidden_size == abstractor.encoder_hidden_size == vision.hidden_size:
        raise ValueError(
            "the abstractor concatenates its queries with the image features, so "
            "visual_abstractor.hidden_size, visual_abstractor.encoder_hidden_size and "
            f"visual_model.hidden_size must be equal; got {abstractor.hidden_size}, "
            f"{abstractor.encoder_hidden_size} and {vision.hidden_size}"
        )
    if abstractor.hidden_size % abstractor.num_attention_heads != 0:
        raise ValueError(
            f"visual_abstractor.hidden_size ({abstractor.hidden_size}) must be divisible by "
            f"visual_abstractor.num_attention_heads ({abstractor.num_attention_heads})"
        )
    if abstractor.hidden_size % 4 != 0:
        raise ValueError(
            "the 2-D sin-cos position table needs visual_abstractor.hidden_size divisible by 4, "
            f"got {abstractor.hidden_size}"
        )
    grid = abstractor.resolved_grid_size
    if grid * grid != vision.num_patches:
        raise ValueError(
            f"visual_abstractor.grid_size ({grid}) squared must equal the number of patches "
            f"(image_size/patch_size)^2 = ({vision.image_size}/{vision.patch_size})^2 = "
            f"{vision.num_patches}"
        )


@strict
class MPLUGOwl2Config(LlamaConfig):
    """Configuration of :class:`~artquant_model.MPLUGOwl2ForCausalLM` (``model_type="mplug_owl2"``).

    The top level holds the LLaMA-2 fields (``vocab_size``, ``hidden_size``, ``num_hidden_layers``,
    ``num_attention_heads``, ``num_key_value_heads`` (grouped-query attention is allowed),
    ``rms_norm_eps``, ``rope_theta``/``rope_scaling``, ...). ``visual_config`` holds the image side
    as ``{"visual_model": {...}, "visual_abstractor": {...}}``; missing parts take the released
    defaults, unknown nested keys are dropped. After construction ``visual_config`` holds only the
    keys the model reads, and :attr:`vision_config` / :attr:`abstractor_config` give them typed.

    Args:
        visual_config: The nested image-side configuration (dicts or the typed sub-configs).
        visual_attn_implementation: Attention in the ViT and the abstractor: ``"eager"`` (the
            default) keeps the original's matmul-softmax in the tensor dtype, which reproduces
            the original's outputs bit for bit; ``"sdpa"`` uses PyTorch's fused attention,
            which stores no attention maps for backward (less memory when training the vision
            side) and differs by about 2e-6 in float32. The language model's attention is set
            separately, with ``attn_implementation``.
        **kwargs: The LLaMA fields, as :class:`transformers.LlamaConfig` takes them.

    Raises:
        ValueError: When the image side breaks a constraint of the architecture (abstractor and
            ViT widths differ, ``grid_size**2`` is not the patch count, the width is not divisible
            by 4, ...) or a nested value is invalid.

    Example:
        >>> config = MPLUGOwl2Config(
        ...     hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        ...     visual_config={"visual_model": {"hidden_size": 32, "image_size": 28},
        ...                    "visual_abstractor": {"hidden_size": 32, "encoder_hidden_size": 32,
        ...                                          "grid_size": 2}})
        >>> config.abstractor_config.num_learnable_queries + 1  # image tokens per picture
        65
    """

    model_type = "mplug_owl2"
    # The multiway K/V projections are not plain Linear layers, so the LLaMA tensor/pipeline
    # parallel plans inherited from LlamaConfig would not apply.
    base_model_tp_plan = None  # type: ignore[assignment]
    base_model_pp_plan = None  # type: ignore[assignment]

    visual_config: dict | None = None
    visual_attn_implementation: str = "eager"

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.visual_attn_implementation not in VISUAL_ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"visual_attn_implementation must be one of {VISUAL_ATTN_IMPLEMENTATIONS}, got "
                f"{self.visual_attn_implementation!r}"
            )
        kv_heads = int(self.num_key_value_heads or self.num_attention_heads)
        if kv_heads <= 0 or self.num_attention_heads % kv_heads != 0:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        raw = self.visual_config if self.visual_config is not None else {}
        if not isinstance(raw, dict):
            raise TypeError(f"visual_config must be a dict, got {type(raw).__name__}")
        vision = _parse_sub_config(MPLUGOwl2VisionConfig, raw.get("visual_model"), "visual_model")
        abstractor = _parse_sub_config(
            MPLUGOwl2AbstractorConfig, raw.get("visual_abstractor"), "visual_abstractor"
        )
        _check_visual_constraints(vision, abstractor)
        self.visual_config = {
            "visual_model": vision.model_dump(),
            "visual_abstractor": abstractor.model_dump(),
        }

    @property
    def vision_config(self) -> MPLUGOwl2VisionConfig:
        """The typed ``visual_config["visual_model"]``."""
        return MPLUGOwl2VisionConfig.model_validate(self.visual_config["visual_model"])  # type: ignore[index]

    @property
    def abstractor_config(self) -> MPLUGOwl2AbstractorConfig:
        """The typed ``visual_config["visual_abstractor"]``."""
        return MPLUGOwl2AbstractorConfig.model_validate(
            self.visual_config["visual_abstractor"]  # type: ignore[index]
        )

    @property
    def num_image_tokens(self) -> int:
        """LLM tokens one picture becomes: the learnable queries plus the ``vit_eos`` token."""
        return self.abstractor_config.num_learnable_queries + 1
