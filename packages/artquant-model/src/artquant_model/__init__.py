"""artquant_model: mPLUG-Owl2 (the ArtQuant / Q-Align / DeQA-Score backbone) on transformers 5.

* the model as native transformers classes (:class:`MPLUGOwl2Config`,
  :class:`MPLUGOwl2ForCausalLM`; no remote code, nothing patched) and :func:`load_model` for the
  released checkpoint formats (full folders, ArtQuant LoRA releases), :func:`parse_dtype` for
  the dtype names every package accepts;
* the original tokenizer and image preprocessing (:class:`MPLUGOwl2Processor`,
  :func:`load_tokenizer`, :class:`MPLUGOwl2ImageProcessor`, the prompt constants);
* level scoring as configuration (:class:`LevelSpec`, :data:`ARTQUANT_LEVELS`,
  :func:`level_scores`, :func:`score_images`);
* the backbone layer (:mod:`artquant_model.backbones`): :func:`load_backbone` picks
  :class:`MPLUGOwl2Backbone` or :class:`HFVisionLanguageBackbone` (Qwen2-VL, Qwen2.5-VL,
  Qwen3-VL, Qwen3.5, Gemma 3, InternVL) from a checkpoint's ``model_type``; :class:`ScorerSpec`
  (level words, values, named questions, resolution) travels with a model as
  ``artquant_spec.json``;
* tiny random models and tokenizers for tests in :mod:`artquant_model.testing`.

Example:
    >>> import torch
    >>> from artquant_model.testing import tiny_model
    >>> model = tiny_model()
    >>> out = model(input_ids=torch.tensor([[1, 5, -200, 7]]), images=torch.zeros(1, 3, 28, 28))
    >>> tuple(out.logits.shape)  # 3 text tokens + 9 image tokens
    (1, 12, 512)
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from artquant_model.backbones import (
    Backbone,
    UnsupportedModelError,
    load_backbone,
    stack_pixels,
    supported_model_types,
)
from artquant_model.backbones.hf_vlm.backbone import HFVisionLanguageBackbone
from artquant_model.backbones.hf_vlm.processing_hf_vlm import VisionBatch, VisionImageProcessor
from artquant_model.backbones.hf_vlm.processing_tiles import TileBatch, TileImageProcessor
from artquant_model.backbones.mplug_owl2.backbone import MPLUGOwl2Backbone
from artquant_model.backbones.mplug_owl2.configuration_mplug_owl2 import (
    MPLUGOwl2AbstractorConfig,
    MPLUGOwl2Config,
    MPLUGOwl2VisionConfig,
)
from artquant_model.backbones.mplug_owl2.modeling_mplug_owl2 import (
    MPLUGOwl2ForCausalLM,
    MPLUGOwl2Model,
    MPLUGOwl2PreTrainedModel,
    MultimodalInputs,
)
from artquant_model.backbones.mplug_owl2.processing_mplug_owl2 import (
    ARTQUANT_SCORE_PROMPT,
    DEFAULT_IMAGE_TOKEN,
    DESCRIBE_PROMPT,
    IMAGE_TOKEN_INDEX,
    QALIGN_AESTHETICS_PROMPT,
    QALIGN_SCORE_PROMPT,
    ImageLoadError,
    ImageProcessorConfig,
    MPLUGOwl2ImageProcessor,
    MPLUGOwl2Processor,
    load_image,
    load_tokenizer,
    tokenizer_image_token,
)
from artquant_model.levels import (
    ARTQUANT_LEVELS,
    LEVEL_PRESETS,
    ONEALIGN_LEVELS,
    QALIGN_LEVELS,
    LevelScore,
    LevelScores,
    LevelSpec,
    first_token_ids,
    level_scores,
    open_set_level_probs,
)
from artquant_model.loading import (
    DTYPE_NAMES,
    CheckpointError,
    detect_checkpoint_format,
    load_model,
    lora_base_folder,
    parse_dtype,
)
from artquant_model.scoring import PromptPrefixCache, score_images, score_pixel_values
from artquant_model.spec import (
    ARTQUANT_SPEC,
    SPEC_FILENAME,
    SPEC_PRESETS,
    Question,
    Resolution,
    ScorerSpec,
    read_spec,
)

try:
    __version__ = _version("artquant-model")
except _PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ARTQUANT_LEVELS",
    "ARTQUANT_SCORE_PROMPT",
    "ARTQUANT_SPEC",
    "DEFAULT_IMAGE_TOKEN",
    "DESCRIBE_PROMPT",
    "DTYPE_NAMES",
    "IMAGE_TOKEN_INDEX",
    "LEVEL_PRESETS",
    "ONEALIGN_LEVELS",
    "QALIGN_AESTHETICS_PROMPT",
    "QALIGN_LEVELS",
    "QALIGN_SCORE_PROMPT",
    "SPEC_FILENAME",
    "SPEC_PRESETS",
    "Backbone",
    "CheckpointError",
    "HFVisionLanguageBackbone",
    "ImageLoadError",
    "ImageProcessorConfig",
    "LevelScore",
    "LevelScores",
    "LevelSpec",
    "MPLUGOwl2AbstractorConfig",
    "MPLUGOwl2Backbone",
    "MPLUGOwl2Config",
    "MPLUGOwl2ForCausalLM",
    "MPLUGOwl2ImageProcessor",
    "MPLUGOwl2Model",
    "MPLUGOwl2PreTrainedModel",
    "MPLUGOwl2Processor",
    "MPLUGOwl2VisionConfig",
    "MultimodalInputs",
    "PromptPrefixCache",
    "Question",
    "Resolution",
    "ScorerSpec",
    "TileBatch",
    "TileImageProcessor",
    "UnsupportedModelError",
    "VisionBatch",
    "VisionImageProcessor",
    "__version__",
    "detect_checkpoint_format",
    "first_token_ids",
    "level_scores",
    "load_backbone",
    "load_image",
    "load_model",
    "load_tokenizer",
    "lora_base_folder",
    "open_set_level_probs",
    "parse_dtype",
    "read_spec",
    "score_images",
    "score_pixel_values",
    "stack_pixels",
    "supported_model_types",
    "tokenizer_image_token",
]
