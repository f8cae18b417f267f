"""Tiny random Qwen-family vision-language models (see :mod:`artquant_model.testing`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from artquant_model.spec import ScorerSpec

#: The families :func:`tiny_vlm_config` builds.
TINY_VLM_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5")
#: Qwen2's vocabulary (151,643 ranks + 22 special tokens, padded as Qwen pads it) and the ids of
#: its vision tokens: every tiny model uses them, so the real Qwen2 tokenizer fits all four.
QWEN2_VOCAB_SIZE = 151936
QWEN2_VISION_TOKENS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _patch_size(model_type: str) -> int:
    return 16 if model_type.startswith("qwen3") else 14


def tiny_vlm_config(
    model_type: str,
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    vision_depth: int = 2,
    vision_hidden_size: int = 32,
    vocab_size: int = QWEN2_VOCAB_SIZE,
    **text_overrides: Any,
) -> Any:
    """A tiny config of a supported family (Qwen2's vocabulary and vision token ids).

    Args:
        model_type: One of :data:`TINY_VLM_MODEL_TYPES`.
        hidden_size: Language-model width (the head dimension is 16, 32 for Qwen3.5).
        num_hidden_layers: Language-model layers (Qwen3.5: linear attention then full attention,
            alternating, the last one full).
        vision_depth: Vision-tower blocks.
        vision_hidden_size: Vision-tower width.
        vocab_size: Vocabulary size (must cover the tokenizer).
        **text_overrides: Further language-model fields.

    Returns:
        The transformers config (``AutoConfig.for_model``).

    Raises:
        ValueError: Unknown ``model_type``.
    """
    from transformers import AutoConfig

    if model_type not in TINY_VLM_MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not one of {list(TINY_VLM_MODEL_TYPES)}")
    head_dim = 32 if model_type == "qwen3_5" else 16
    heads = max(1, hidden_size // head_dim)
    text: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": 1,
        "head_dim": head_dim,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
    }
    half = head_dim // 2
    if model_type == "qwen3_5":
        rotary = head_dim // 4  # partial_rotary_factor 0.25, as the released models
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.25,
            "mrope_section": [rotary // 2 - 2, 1, 1],
            "mrope_interleaved": True,
        }
        text["layer_types"] = [
            "full_attention"
            if (i + 1) % 2 == 0 or i + 1 == num_hidden_layers
            else "linear_attention"
            for i in range(num_hidden_layers)
        ]
        text.update(
            linear_num_key_heads=2,
            linear_num_value_heads=2,
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            linear_conv_kernel_dim=4,
        )
    elif model_type == "qwen3_vl":
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 500000.0,
            "mrope_section": [half - 4, 2, 2],
            "mrope_interleaved": True,
        }
    else:
        text["rope_parameters"] = {
            "rope_type": "default",
            "rope_theta": 1000000.0,
            "mrope_section": [half - 6, 3, 3],
        }
    text.update(text_overrides)
    vision: dict[str, Any] = {
        "depth": vision_depth,
        "num_heads": 2,
        "patch_size": _patch_size(model_type),
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "in_channels": 3,
    }
    if model_type == "qwen2_vl":
        vision.update(embed_dim=vision_hidden_size, mlp_ratio=2, hidden_size=hidden_size)
    else:
        vision.update(
            hidden_size=vision_hidden_size,
            intermediate_size=2 * vision_hidden_size,
            out_hidden_size=hidden_size,
        )
    if model_type == "qwen2_5_vl":
        vision.update(window_size=112, fullatt_block_indexes=[vision_depth - 1])
    if model_type.startswith("qwen3"):
        vision.update(num_position_embeddings=256)
    if model_type == "qwen3_vl":
        vision.update(deepstack_visual_indexes=[0])
    return AutoConfig.for_model(
        model_type,
        text_config=text,
        vision_config=vision,
        tie_word_embeddings=True,
        **QWEN2_VISION_TOKENS,
    )


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Every tensor non-trivial: weights N(0, 1/fan_in), biases 0.1 N, 1-D 1 + 0.1 N."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim >= 2:
                parameter.copy_(noise / parameter[0].numel() ** 0.5)
            elif name.endswith("bias"):
                parameter.copy_(0.1 * noise)
            else:
                parameter.copy_(1.0 + 0.1 * noise)


def tiny_vlm_model(model_type: str, seed: int = 0, **overrides: Any) -> Any:
    """A tiny random model of ``model_type`` (float32, eval mode, ~5 M parameters, nearly all
    of them the 151,936 x 32 embedding table shared with the LM head).

    Args:
        model_type: One of :data:`TINY_VLM_MODEL_TYPES`.
        seed: Seed of the weights.
        **overrides: Passed to :func:`tiny_vlm_config`.
    """
    from transformers import AutoModelForImageTextToText

    config = tiny_vlm_config(model_type, **overrides)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    _randomise(model, seed)
    return model.eval()


def tiny_preprocessor_config(model_type: str, **overrides: Any) -> dict[str, Any]:
    """``preprocessor_config.json`` content for a tiny model: the family's patch size, merge 2,
    temporal patch 2, mean/std (CLIP's for Qwen2/2.5-VL, 0.5 for Qwen3), pixel limits from 8
    to 64 merged patches (small, so tests stay fast)."""
    factor = 2 * _patch_size(model_type)
    qwen3 = model_type.startswith("qwen3")
    config: dict[str, Any] = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "patch_size": _patch_size(model_type),
        "merge_size": 2,
        "temporal_patch_size": 2,
        "min_pixels": 8 * factor * factor,
        "max_pixels": 64 * factor * factor,
        "image_mean": [0.5, 0.5, 0.5] if qwen3 else list(_CLIP_MEAN),
        "image_std": [0.5, 0.5, 0.5] if qwen3 else list(_CLIP_STD),
    }
    config.update(overrides)
    return config


def save_tiny_vlm(
    directory: str | os.PathLike[str],
    model_type: str,
    tokenizer: Any,
    *,
    seed: int = 0,
    spec: ScorerSpec | None = None,
    preprocessor: dict[str, Any] | None = None,
    **overrides: Any,
) -> Path:
    """Save a tiny random model as a hub-style folder: config + safetensors, the tokenizer
    (with its chat template), ``preprocessor_config.json`` and, when given, the spec.

    Args:
        directory: Where to write (created).
        model_type: One of :data:`TINY_VLM_MODEL_TYPES`.
        tokenizer: A Qwen2-vocabulary tokenizer with a chat template (e.g. the real one).
        seed: Seed of the weights.
        spec: Written as ``artquant_spec.json`` when given.
        preprocessor: Overrides of :func:`tiny_preprocessor_config`.
        **overrides: Passed to :func:`tiny_vlm_config`.

    Returns:
        The folder.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    tiny_vlm_model(model_type, seed=seed, **overrides).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    settings = tiny_preprocessor_config(model_type, **(preprocessor or {}))
    (folder / "preprocessor_config.json").write_text(json.dumps(settings, indent=2) + "\n")
    if spec is not None:
        spec.save(folder)
    return folder


def reference_vlm_scores(
    folder: str | os.PathLike[str],
    images: list[Any],
    **question: Any,
) -> list[tuple[float, list[float]]]:
    """:func:`plain_vlm_scores` of the model, tokenizer and image processor saved in ``folder``
    (loaded with ``AutoModelForImageTextToText``, ``AutoTokenizer`` and
    ``Qwen2VLImageProcessorPil``)."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessorPil

    return plain_vlm_scores(
        AutoModelForImageTextToText.from_pretrained(os.fspath(folder), dtype=torch.float32),
        AutoTokenizer.from_pretrained(os.fspath(folder)),
        Qwen2VLImageProcessorPil.from_pretrained(os.fspath(folder)),
        images,
        **question,
    )


def plain_vlm_scores(
    model: Any,
    tokenizer: Any,
    processor: Any,
    images: list[Any],
    *,
    question: str,
    stem: str,
    words: tuple[str, ...],
    values: tuple[float, ...],
) -> list[tuple[float, list[float]]]:
    """The plain transformers procedure, one picture per forward pass, written without
    ArtQuant's code: the reference the backbone's scores are tested against.

    ``tokenizer.apply_chat_template`` (user: picture, question; generation prompt; thinking
    off) + ``stem``; the picture's placeholder repeated once per merged patch (what
    ``AutoProcessor`` does); the published PIL image processor; ``model(**inputs).logits[0, -1,
    level_ids]`` (full logits at every position) with ``level_ids`` the first token of
    ``" " + word``; softmax; dot the values.

    Returns:
        Per picture ``(score, probs)``, in float64.
    """
    messages: Any = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}
    ]
    template = str(
        tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False, enable_thinking=False
        )
    )
    placeholder = str(tokenizer.convert_ids_to_tokens(model.config.image_token_id))
    level_ids = [tokenizer(" " + word, add_special_tokens=False).input_ids[0] for word in words]
    weights = torch.tensor(values, dtype=torch.float64)
    device = next(model.parameters()).device
    results: list[tuple[float, list[float]]] = []
    for image in images:
        pixels = processor(images=[image], return_tensors="pt")
        count = int(pixels["image_grid_thw"].prod()) // processor.merge_size**2
        text = (template + stem).replace(placeholder, placeholder * count)
        inputs = dict(tokenizer(text, return_tensors="pt", add_special_tokens=False))
        inputs["mm_token_type_ids"] = (inputs["input_ids"] == model.config.image_token_id).int()
        inputs.update(pixels)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        probs = torch.softmax(logits[level_ids].double().cpu(), dim=-1)
        results.append((float(probs @ weights), probs.tolist()))
    return results
