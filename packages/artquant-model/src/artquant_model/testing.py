"""Tiny random models (and tokenizers) for tests: ours, other packages' and users'.

mPLUG-Owl2 (below) and the generic backbone's families, Qwen-VL, Gemma 3 and InternVL
(:func:`tiny_vlm_model`, :func:`save_tiny_vlm`: ~5 M parameters, nearly all of them Qwen2's
151,936-token embedding table, so the real Qwen2 tokenizer fits, with Gemma 3's and InternVL's
picture tokens added by :func:`tiny_vlm_tokenizer`; :func:`reference_vlm_scores` is the plain
transformers scoring procedure). A tiny Qwen3.5 saved with the real Qwen3.5 tokenizer (built
offline by ``tools/qwen3_5_tokenizer/build.py``, found by :func:`qwen3_5_tokenizer_dir`) takes
Qwen3.5's 248,320-row vocabulary instead (~8 M parameters).

Everything here builds in well under a second on a CPU. The tiny model keeps the real architecture
(ViT with interleaved QKV, abstractor with sin-cos tables, multiway LLaMA) at toy sizes: 28 px
pictures in 14 px patches (a 2x2 grid), 8 learnable queries (9 tokens per picture), a 64-wide
2-layer language model and a 512-token vocabulary that covers the tiny tokenizer.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from artquant_model._tiny_vlm import (
    QWEN2_VISION_TOKENS,
    QWEN2_VOCAB_SIZE,
    QWEN3_5_TOKENIZER_ENV,
    QWEN3_5_VISION_TOKENS,
    QWEN3_5_VOCAB_SIZE,
    TINY_VLM_MODEL_TYPES,
    plain_vlm_scores,
    qwen3_5_tokenizer_dir,
    qwen3_5_tokenizer_missing,
    qwen_vocabulary,
    reference_vlm_scores,
    save_tiny_vlm,
    tiny_preprocessor_config,
    tiny_vlm_config,
    tiny_vlm_model,
    tiny_vlm_tokenizer,
)
from artquant_model.backbones.mplug_owl2.configuration_mplug_owl2 import MPLUGOwl2Config
from artquant_model.backbones.mplug_owl2.modeling_mplug_owl2 import MPLUGOwl2ForCausalLM

__all__ = [
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
    "save_tiny_checkpoint",
    "save_tiny_model",
    "save_tiny_vlm",
    "tiny_config",
    "tiny_model",
    "tiny_preprocessor_config",
    "tiny_tokenizer",
    "tiny_vlm_config",
    "tiny_vlm_model",
    "tiny_vlm_tokenizer",
]

#: Vocabulary size of the tiny model; the tiny tokenizer's ids must stay below it.
TINY_VOCAB_SIZE = 512

_TINY_VISUAL_CONFIG: dict[str, dict[str, Any]] = {
    "visual_model": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 28,
        "patch_size": 14,
        "layer_norm_eps": 1e-6,
    },
    "visual_abstractor": {
        "num_learnable_queries": 8,
        "hidden_size": 32,
        "encoder_hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 48,
        "layer_norm_eps": 1e-6,
        "grid_size": 2,
    },
}


def tiny_config(**overrides: Any) -> MPLUGOwl2Config:
    """A tiny :class:`MPLUGOwl2Config` (64-wide, 2 layers, 28 px pictures, vocab 512).

    Args:
        **overrides: Top-level config fields to change. ``visual_config`` may be a partial
            ``{"visual_model": {...}, "visual_abstractor": {...}}``; it is merged into the tiny
            defaults.

    Returns:
        The configuration, with sdpa attention.

    Example:
        >>> tiny_config(num_key_value_heads=2).num_key_value_heads
        2
    """
    visual = copy.deepcopy(_TINY_VISUAL_CONFIG)
    for part, values in (overrides.pop("visual_config", None) or {}).items():
        visual.setdefault(part, {}).update(values)
    fields: dict[str, Any] = {
        "vocab_size": TINY_VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
        "visual_config": visual,
    }
    fields.update(overrides)
    attn_implementation = fields.pop("attn_implementation", "sdpa")
    config = MPLUGOwl2Config(**fields)
    config._attn_implementation = attn_implementation
    return config


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Give every tensor a non-trivial value (norms != 1, biases != 0, branches differ)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim >= 2 and name.endswith("weight"):
                parameter.copy_(noise / parameter[0].numel() ** 0.5)
            elif name.endswith("bias"):
                parameter.copy_(0.1 * noise)
            elif parameter.ndim == 1:
                parameter.copy_(1.0 + 0.1 * noise)
            else:  # cls_token, position_embedding, query_embeds, vit_eos
                parameter.copy_(noise)


def tiny_model(seed: int = 0, **overrides: Any) -> MPLUGOwl2ForCausalLM:
    """A tiny random :class:`MPLUGOwl2ForCausalLM` in float32 and eval mode (~0.4 M parameters).

    The weights are drawn like the parity fixtures' (weights ``N(0, 1/fan_in)``, biases
    ``0.1 N(0,1)``, norm weights ``1 + 0.1 N(0,1)``), so a mis-routed or swapped tensor changes
    the outputs.

    Args:
        seed: Seed of the weights; the same seed gives the same model.
        **overrides: Passed to :func:`tiny_config` (e.g. ``num_key_value_heads=2``,
            ``attn_implementation="eager"``).

    Returns:
        The model.

    Example:
        >>> model = tiny_model(seed=1)
        >>> sum(p.numel() for p in model.parameters()) < 1_000_000
        True
    """
    model = MPLUGOwl2ForCausalLM(tiny_config(**overrides))
    _randomise(model, seed)
    return model.eval()


def save_tiny_model(directory: str | os.PathLike[str], seed: int = 0, **overrides: Any) -> Path:
    """Save :func:`tiny_model` as a full checkpoint folder (model half of the tiny checkpoint).

    Writes ``config.json``, ``generation_config.json`` and ``model.safetensors`` (float32,
    sin-cos tables included), the layout of the released full checkpoints.

    Args:
        directory: Target folder (created if needed).
        seed: Weight seed, as in :func:`tiny_model`.
        **overrides: Passed to :func:`tiny_config`.

    Returns:
        The folder.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     sorted(p.name for p in save_tiny_model(tmp).iterdir())
        ['config.json', 'generation_config.json', 'model.safetensors']
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    tiny_model(seed, **overrides).save_pretrained(folder)
    return folder


def save_tiny_checkpoint(directory: str | os.PathLike[str], seed: int = 0) -> Path:
    """Save a complete tiny checkpoint: the model files plus tokenizer and preprocessor files.

    The folder is accepted by :func:`~artquant_model.load_model`,
    ``MPLUGOwl2ForCausalLM.from_pretrained`` and ``MPLUGOwl2Processor.from_pretrained``.

    Args:
        directory: Target folder (created if needed).
        seed: Weight seed, as in :func:`tiny_model`.

    Returns:
        The folder.
    """
    folder = save_tiny_model(directory, seed=seed)
    _save_tiny_processor(folder)
    return folder


# ---- tokenizer part (M2). The tiny vocabulary (463 pieces, ids < 512) must stay within
# TINY_VOCAB_SIZE; _tiny_tokenizer.TINY_TOKENIZER_MAX_SIZE guards it and a test checks both. ----


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A tiny LLaMA-style tokenizer built in code (about a millisecond, no files, no network).

    Same pipeline as `load_tokenizer` on the real LLaMA-2 model (SentencePiece dummy prefix, byte
    fallback, BOS 1 added, EOS 2, unk = pad = 0), over a 463-piece vocabulary in which every word
    of the scoring / description prompts and all level words are single tokens. It saves with
    `save_pretrained` and reloads with `load_tokenizer`.

    Returns:
        The tokenizer.

    Example:
        >>> tokenizer = tiny_tokenizer()
        >>> tokenizer.convert_ids_to_tokens(tokenizer("excellent").input_ids)
        ['<s>', '▁excellent']
    """
    # Imported here so that the model helpers above work without the tokenizer stack.
    from artquant_model._tiny_tokenizer import build_tiny_tokenizer

    return build_tiny_tokenizer()


def _save_tiny_processor(directory: Path) -> None:
    """Tokenizer and preprocessor files of the tiny checkpoint (M2's part; 28 px pictures)."""
    from artquant_model.backbones.mplug_owl2.processing_mplug_owl2 import (
        MPLUGOwl2ImageProcessor,
        MPLUGOwl2Processor,
    )

    image_size = tiny_config().vision_config.image_size
    processor = MPLUGOwl2Processor(tiny_tokenizer(), MPLUGOwl2ImageProcessor(image_size=image_size))
    processor.save_pretrained(directory)
