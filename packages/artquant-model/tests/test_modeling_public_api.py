"""Snapshot of the public surface: other packages build on exactly these names."""

from __future__ import annotations

import artquant_model
import artquant_model.testing

PUBLIC = {
    # model, configuration and loading
    "CheckpointError",
    "DTYPE_NAMES",
    "MPLUGOwl2AbstractorConfig",
    "MPLUGOwl2Config",
    "MPLUGOwl2ForCausalLM",
    "MPLUGOwl2Model",
    "MPLUGOwl2PreTrainedModel",
    "MPLUGOwl2VisionConfig",
    "MultimodalInputs",
    "detect_checkpoint_format",
    "load_model",
    "lora_base_folder",
    "parse_dtype",
    # processing, levels and scoring
    "ARTQUANT_LEVELS",
    "ARTQUANT_SCORE_PROMPT",
    "DEFAULT_IMAGE_TOKEN",
    "DESCRIBE_PROMPT",
    "IMAGE_TOKEN_INDEX",
    "ImageLoadError",
    "ImageProcessorConfig",
    "LEVEL_PRESETS",
    "LevelScore",
    "LevelScores",
    "LevelSpec",
    "MPLUGOwl2ImageProcessor",
    "MPLUGOwl2Processor",
    "ONEALIGN_LEVELS",
    "QALIGN_AESTHETICS_PROMPT",
    "QALIGN_LEVELS",
    "QALIGN_SCORE_PROMPT",
    "level_scores",
    "load_image",
    "load_tokenizer",
    "open_set_level_probs",
    "PromptPrefixCache",
    "score_images",
    "score_pixel_values",
    "tokenizer_image_token",
    "__version__",
    # the backbone layer and the scorer spec
    "APDDV2_ATTRIBUTE_QUESTIONS",
    "ARTQUANT_SPEC",
    "Backbone",
    "HFVisionLanguageBackbone",
    "MPLUGOwl2Backbone",
    "Question",
    "Resolution",
    "SPEC_FILENAME",
    "SPEC_PRESETS",
    "ScorerSpec",
    "TileBatch",
    "TileImageProcessor",
    "UnsupportedModelError",
    "VisionBatch",
    "VisionImageProcessor",
    "first_token_ids",
    "load_backbone",
    "read_spec",
    "spec_from_trainer_document",
    "stack_pixels",
    "supported_model_types",
}


def test_package_exports_exactly_the_public_names() -> None:
    assert set(artquant_model.__all__) == PUBLIC
    assert len(artquant_model.__all__) == len(PUBLIC)  # no duplicates
    for name in PUBLIC:
        assert getattr(artquant_model, name) is not None


def test_testing_module_exports() -> None:
    assert set(artquant_model.testing.__all__) == {
        "QWEN2_VISION_TOKENS",
        "QWEN2_VOCAB_SIZE",
        "QWEN3_5_TOKENIZER_ENV",
        "QWEN3_5_VISION_TOKENS",
        "QWEN3_5_VOCAB_SIZE",
        "TINY_VLM_MODEL_TYPES",
        "TINY_VOCAB_SIZE",
        "plain_vlm_scores",
        "qwen3_5_tokenizer_dir",
        "qwen3_5_tokenizer_missing",
        "qwen_vocabulary",
        "reference_vlm_scores",
        "save_tiny_vlm",
        "tiny_preprocessor_config",
        "tiny_vlm_config",
        "tiny_vlm_model",
        "tiny_vlm_tokenizer",
        "save_tiny_checkpoint",
        "save_tiny_model",
        "tiny_config",
        "tiny_model",
        "tiny_tokenizer",
    }


def test_version_comes_from_package_metadata() -> None:
    from importlib.metadata import version

    assert artquant_model.__version__ == version("artquant-model") == "0.1.0"


def test_auto_classes_know_mplug_owl2_after_import() -> None:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.for_model("mplug_owl2")
    assert isinstance(config, artquant_model.MPLUGOwl2Config)
    assert AutoModelForCausalLM._model_mapping[type(config)] is artquant_model.MPLUGOwl2ForCausalLM
    assert AutoModel._model_mapping[type(config)] is artquant_model.MPLUGOwl2Model
