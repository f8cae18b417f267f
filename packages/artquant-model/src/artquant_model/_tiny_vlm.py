"""Tiny random vision-language models of the generic backbone's families (see
:mod:`artquant_model.testing`): Qwen-VL, Gemma 3, InternVL."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from artquant_model.spec import ScorerSpec

#: The families :func:`tiny_vlm_config` builds.
TINY_VLM_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "gemma3", "internvl")
#: Qwen2's vocabulary (151,643 ranks + 22 special tokens, padded as Qwen pads it) and the ids of
#: its vision tokens: every tiny model uses them, so the real Qwen2 tokenizer fits all four.
QWEN2_VOCAB_SIZE = 151936
QWEN2_VISION_TOKENS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}
#: Qwen3.5's vocabulary (248,044 ranks + 33 added tokens, the embedding padded to 248,320 rows as
#: the released models pad it) and its vision token ids (transformers' ``Qwen3_5Config``
#: defaults): a tiny ``qwen3_5`` saved with the real Qwen3.5 tokenizer (built by
#: ``tools/qwen3_5_tokenizer/build.py``) uses them.
QWEN3_5_VOCAB_SIZE = 248320
QWEN3_5_VISION_TOKENS = {
    "image_token_id": 248056,
    "video_token_id": 248057,
    "vision_start_token_id": 248053,
    "vision_end_token_id": 248054,
}
#: Where ``tools/qwen3_5_tokenizer/build.py`` writes the Qwen3.5 tokenizer folder by default, and
#: the variable that points elsewhere.
QWEN3_5_TOKENIZER_ENV = "ARTQUANT_QWEN3_5_TOKENIZER"
QWEN3_5_TOKENIZER_CACHE = Path.home() / ".cache" / "artquant" / "tokenizers" / "qwen3_5"
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)


def qwen3_5_tokenizer_dir() -> Path:
    """The folder of the Qwen3.5 tokenizer built by ``tools/qwen3_5_tokenizer/build.py``:
    ``$ARTQUANT_QWEN3_5_TOKENIZER`` if set, else ``~/.cache/artquant/tokenizers/qwen3_5``.

    Returns:
        The folder; it may not exist (``(folder / "tokenizer.json").is_file()`` says whether
        it was built).
    """
    override = os.environ.get(QWEN3_5_TOKENIZER_ENV)
    return Path(override).expanduser() if override else QWEN3_5_TOKENIZER_CACHE


def qwen3_5_tokenizer_missing() -> str | None:
    """Why the Qwen3.5 tokenizer cannot be used (a test's skip reason), or None when it is built.

    Example:
        >>> reason = qwen3_5_tokenizer_missing()  # None once build.py has run
    """
    path = qwen3_5_tokenizer_dir()
    if (path / "tokenizer.json").is_file():
        return None
    return (
        f"the Qwen3.5 tokenizer is not built: {path} has no tokenizer.json (run `uv run python "
        f"tools/qwen3_5_tokenizer/build.py --download`, or set {QWEN3_5_TOKENIZER_ENV})"
    )


def qwen_vocabulary(tokenizer: Any) -> dict[str, int]:
    """``vocab_size`` and the vision token ids of the tiny config that fits ``tokenizer``:
    Qwen3.5's when its ``<|image_pad|>`` has Qwen3.5's id, else Qwen2's (the stand-in)."""
    if tokenizer.convert_tokens_to_ids("<|image_pad|>") == QWEN3_5_VISION_TOKENS["image_token_id"]:
        return {"vocab_size": QWEN3_5_VOCAB_SIZE, **QWEN3_5_VISION_TOKENS}
    return {"vocab_size": QWEN2_VOCAB_SIZE, **QWEN2_VISION_TOKENS}


_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _tiny_text(vocab_size: int, hidden_size: int, layers: int, head_dim: int) -> dict[str, Any]:
    """The language-model fields every tiny family shares (one key-value head, tied head)."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden_size // head_dim),
        "num_key_value_heads": 1,
        "head_dim": head_dim,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
    }


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
    vision_token_ids: dict[str, int] | None = None,
    **text_overrides: Any,
) -> Any:
    """A tiny config of a supported family (Qwen2's vocabulary; Qwen2's vision token ids, or
    for Gemma 3 and InternVL the ids of their picture tokens in :func:`tiny_vlm_tokenizer`;
    a Qwen family takes another vocabulary's, e.g. Qwen3.5's, through ``vocab_size`` and
    ``vision_token_ids``, see :func:`qwen_vocabulary`).

    Args:
        model_type: One of :data:`TINY_VLM_MODEL_TYPES`.
        hidden_size: Language-model width (the head dimension is 16, 32 for Qwen3.5).
        num_hidden_layers: Language-model layers (Qwen3.5: linear attention then full attention,
            alternating, the last one full; Gemma 3: sliding-window (8 tokens) then global).
        vision_depth: Vision-tower blocks.
        vision_hidden_size: Vision-tower width.
        vocab_size: Vocabulary size (must cover the tokenizer).
        vision_token_ids: A Qwen family's ``image_token_id``, ``video_token_id``,
            ``vision_start_token_id``, ``vision_end_token_id`` (default Qwen2's).
        **text_overrides: Further language-model fields.

    Returns:
        The transformers config (``AutoConfig.for_model``).

    Raises:
        ValueError: Unknown ``model_type``.
    """
    from transformers import AutoConfig

    if model_type not in TINY_VLM_MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not one of {list(TINY_VLM_MODEL_TYPES)}")
    if model_type in _STAND_IN_TOKENS:
        if vision_token_ids is not None:
            raise ValueError(
                f"{model_type} takes no vision_token_ids (its picture tokens are fixed)"
            )
        return _tiny_tiled_config(
            model_type,
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            vision_depth=vision_depth,
            vision_hidden_size=vision_hidden_size,
            vocab_size=vocab_size,
            **text_overrides,
        )
    head_dim = 32 if model_type == "qwen3_5" else 16
    text = _tiny_text(vocab_size, hidden_size, num_hidden_layers, head_dim)
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
        **(QWEN2_VISION_TOKENS if vision_token_ids is None else vision_token_ids),
    )


# ---- Gemma 3 and InternVL: the real architectures at toy sizes, over the Qwen2 vocabulary. ----
# Their own tokenizers are not on the Python registry, so the tests use the real Qwen2 tokenizer
# with each family's picture and turn tokens added as special tokens (ids from 151,665 on, in the
# order below, inside Qwen's padded 151,936 rows) and a chat template written here in the
# family's format. The picture handling is the family's own; the vocabulary is a stand-in.

_STAND_IN_TOKENS: dict[str, tuple[str, ...]] = {
    "gemma3": (
        "<start_of_image>",
        "<end_of_image>",
        "<image_soft_token>",
        "<start_of_turn>",
        "<end_of_turn>",
        "<bos>",
    ),
    "internvl": ("<img>", "</img>", "<IMG_CONTEXT>"),
}
#: The tokenizer attributes the families' processors read (``tokenizer.boi_token``, ...).
_STAND_IN_NAMED: dict[str, dict[str, str]] = {
    "gemma3": {
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
        "image_token": "<image_soft_token>",
    },
    "internvl": {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
    },
}
#: The first id the stand-in tokens take (Qwen2's ranks and special tokens end at 151,664).
_FIRST_ADDED_ID = 151665

# Gemma 3's turn format (a system message opens the first user turn; images are
# <start_of_image>), written for these tests.
_GEMMA3_TEMPLATE = (
    "{{- bos_token or '' -}}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] if messages[0]['content'] is string "
    "else messages[0]['content'][0]['text'] -%}"
    "{%- set prefix = system + '\n\n' -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for message in turns -%}"
    "{{- '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role'])"
    " + '\n' + (prefix if loop.first else '') -}}"
    "{%- if message['content'] is string -%}{{- message['content'] | trim -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<start_of_image>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] | trim -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<end_of_turn>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"
)
# InternVL's (ChatML, as its Qwen2.5 language model; an image is <IMG_CONTEXT> and a newline),
# written for these tests.
_INTERNVL_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<IMG_CONTEXT>\n' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)
_STAND_IN_TEMPLATES = {"gemma3": _GEMMA3_TEMPLATE, "internvl": _INTERNVL_TEMPLATE}


def _stand_in_id(model_type: str, token: str) -> int:
    return _FIRST_ADDED_ID + _STAND_IN_TOKENS[model_type].index(token)


def tiny_vlm_tokenizer(model_type: str, qwen2_tokenizer: Any) -> Any:
    """The tokenizer a tiny model of ``model_type`` is saved with.

    Qwen families: ``qwen2_tokenizer`` itself. Gemma 3 and InternVL (whose tokenizers are not
    on the Python registry): a copy of the real Qwen2 tokenizer with the family's picture and
    turn tokens added as special tokens, the tokenizer attributes its processor reads
    (``boi_token``, ``start_image_token``, ...) and a chat template in the family's format.

    Raises:
        ValueError: ``qwen2_tokenizer`` is not the Qwen2 vocabulary (the ids would not match
            the tiny config's).
    """
    if model_type not in _STAND_IN_TOKENS:
        return qwen2_tokenizer
    if len(qwen2_tokenizer) != _FIRST_ADDED_ID:
        raise ValueError(
            f"expected the Qwen2 tokenizer ({_FIRST_ADDED_ID} tokens), got {len(qwen2_tokenizer)}"
        )
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        # named special tokens (tokenizer.boi_token, ...) are added, saved and reloaded by
        # from_pretrained's extra_special_tokens; the named ones come first in each tuple
        qwen2_tokenizer.save_pretrained(scratch)
        tokenizer = AutoTokenizer.from_pretrained(
            scratch, extra_special_tokens=dict(_STAND_IN_NAMED[model_type])
        )
    rest = _STAND_IN_TOKENS[model_type][len(_STAND_IN_NAMED[model_type]) :]
    if rest:
        tokenizer.add_tokens(list(rest), special_tokens=True)
    if model_type == "gemma3":
        tokenizer.bos_token = "<bos>"
    tokenizer.chat_template = _STAND_IN_TEMPLATES[model_type]
    for token in _STAND_IN_TOKENS[model_type]:
        if tokenizer.convert_tokens_to_ids(token) != _stand_in_id(model_type, token):
            raise ValueError(f"{token!r} did not get id {_stand_in_id(model_type, token)}")
    return tokenizer


def _tiny_tiled_config(
    model_type: str,
    *,
    hidden_size: int,
    num_hidden_layers: int,
    vision_depth: int,
    vision_hidden_size: int,
    vocab_size: int,
    **text_overrides: Any,
) -> Any:
    """Gemma 3 (32 px pictures in 8 px patches, pooled to 4 tokens; sliding window 8) or
    InternVL (32 px tiles in 8 px patches, pixel-shuffled to 4 tokens per tile; Qwen2 LM)."""
    from transformers import AutoConfig

    text = _tiny_text(vocab_size, hidden_size, num_hidden_layers, head_dim=16)
    vision: dict[str, Any] = {
        "hidden_size": vision_hidden_size,
        "intermediate_size": 2 * vision_hidden_size,
        "num_hidden_layers": vision_depth,
        "num_attention_heads": 2,
    }
    ids = {name: _stand_in_id(model_type, name) for name in _STAND_IN_TOKENS[model_type]}
    if model_type == "gemma3":
        text.update(
            sliding_window=8,
            query_pre_attn_scalar=16,
            layer_types=[
                "full_attention" if (i + 1) % 2 == 0 else "sliding_attention"
                for i in range(num_hidden_layers)
            ],
        )
        text.update(text_overrides)
        vision.update(image_size=32, patch_size=8)
        return AutoConfig.for_model(
            "gemma3",
            text_config=text,
            vision_config=vision,
            mm_tokens_per_image=4,
            boi_token_id=ids["<start_of_image>"],
            eoi_token_id=ids["<end_of_image>"],
            image_token_id=ids["<image_soft_token>"],
            tie_word_embeddings=True,
        )
    text.update(model_type="qwen2", rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    text.update(text_overrides)
    vision.update(image_size=[32, 32], patch_size=[8, 8])
    return AutoConfig.for_model(
        "internvl",
        text_config=text,
        vision_config=vision,
        downsample_ratio=0.5,
        image_token_id=ids["<IMG_CONTEXT>"],
        tie_word_embeddings=True,
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
    """``preprocessor_config.json`` content for a tiny model.

    Qwen: the family's patch size, merge 2, temporal patch 2, mean/std (CLIP's for
    Qwen2/2.5-VL, 0.5 for Qwen3), pixel limits from 8 to 64 merged patches (small, so tests stay
    fast). Gemma 3: 32 px, mean/std 0.5, bilinear. InternVL: 32 px tiles, 1 to 6 of them,
    ImageNet mean/std, bicubic.
    """
    if model_type == "gemma3":
        tiled: dict[str, Any] = {
            "image_processor_type": "Gemma3ImageProcessor",
            "size": {"height": 32, "width": 32},
            "resample": 2,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }
        return {**tiled, **overrides}
    if model_type == "internvl":
        tiled = {
            "image_processor_type": "GotOcr2ImageProcessor",
            "size": {"height": 32, "width": 32},
            "resample": 3,
            "crop_to_patches": False,
            "min_patches": 1,
            "max_patches": 6,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
        }
        return {**tiled, **overrides}
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
        tokenizer: A tokenizer with a chat template: the real Qwen2 one (any family; for
            Gemma 3 and InternVL it is turned into the stand-in of :func:`tiny_vlm_tokenizer`)
            or, for a Qwen family, another Qwen vocabulary such as the real Qwen3.5 one (the
            config then takes its size and vision ids, :func:`qwen_vocabulary`).
        seed: Seed of the weights.
        spec: Written as ``artquant_spec.json`` when given.
        preprocessor: Overrides of :func:`tiny_preprocessor_config`.
        **overrides: Passed to :func:`tiny_vlm_config`.

    Returns:
        The folder.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    if model_type.startswith("qwen") and "vocab_size" not in overrides:
        vocabulary = qwen_vocabulary(tokenizer)
        overrides = {
            "vocab_size": vocabulary.pop("vocab_size"),
            "vision_token_ids": vocabulary,
            **overrides,
        }
    tiny_vlm_model(model_type, seed=seed, **overrides).save_pretrained(folder)
    tiny_vlm_tokenizer(model_type, tokenizer).save_pretrained(folder)
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
    """:func:`plain_vlm_scores` of the model, tokenizer and processor saved in ``folder``
    (``AutoModelForImageTextToText``, ``AutoTokenizer`` and the family's published PIL image
    processor: ``Qwen2VLImageProcessorPil``, ``GotOcr2ImageProcessorPil``, or for Gemma 3 the
    model's own ``Gemma3Processor`` around ``Gemma3ImageProcessorPil``)."""
    import transformers

    path = os.fspath(folder)
    model = transformers.AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    kind = model.config.model_type
    processor: Any
    if kind == "gemma3":
        processor = transformers.Gemma3Processor(
            image_processor=transformers.Gemma3ImageProcessorPil.from_pretrained(path),
            tokenizer=tokenizer,
            image_seq_length=model.config.mm_tokens_per_image,
        )
    elif kind == "internvl":
        processor = transformers.GotOcr2ImageProcessorPil.from_pretrained(path)
    else:
        processor = transformers.Qwen2VLImageProcessorPil.from_pretrained(path)
    return plain_vlm_scores(model, tokenizer, processor, images, **question)


def _qwen_inputs(model: Any, tokenizer: Any, processor: Any, image: Any, text: str) -> Any:
    # the placeholder repeated once per merged patch (what AutoProcessor does); the marks
    # that give the model its 3-D positions
    pixels = processor(images=[image], return_tensors="pt")
    count = int(pixels["image_grid_thw"].prod()) // processor.merge_size**2
    placeholder = str(tokenizer.convert_ids_to_tokens(model.config.image_token_id))
    expanded = text.replace(placeholder, placeholder * count)
    inputs = dict(tokenizer(expanded, return_tensors="pt", add_special_tokens=False))
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == model.config.image_token_id).int()
    inputs.update(pixels)
    return inputs


def _internvl_inputs(model: Any, tokenizer: Any, processor: Any, image: Any, text: str) -> Any:
    # InternVLProcessor's layout, by hand (the processor itself needs torchvision): tiles as
    # it cuts them (crop_to_patches=True), <img> + <IMG_CONTEXT> x tiles x tokens + </img>
    pixels = processor(images=[image], crop_to_patches=True, return_tensors="pt")
    vision = model.config.vision_config
    per_tile = (vision.image_size[0] // vision.patch_size[0]) ** 2
    per_tile = int(per_tile * model.config.downsample_ratio**2)
    count = int(pixels["num_patches"][0]) * per_tile
    context = str(tokenizer.convert_ids_to_tokens(model.config.image_token_id))
    text = text.replace(context, "<img>" + context * count + "</img>")
    inputs = dict(tokenizer(text, return_tensors="pt", add_special_tokens=False))
    inputs["pixel_values"] = pixels["pixel_values"]
    return inputs


def _gemma3_inputs(model: Any, tokenizer: Any, processor: Any, image: Any, text: str) -> Any:
    # the model's own processor: it expands <start_of_image> and returns token_type_ids
    return dict(processor(images=[image], text=text, return_tensors="pt"))


_PLAIN_INPUTS = {"gemma3": _gemma3_inputs, "internvl": _internvl_inputs}


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
    off) + ``stem``; the picture as the family's processor lays it out (Qwen: the placeholder
    repeated once per merged patch, what ``AutoProcessor`` does, with ``mm_token_type_ids``;
    InternVL: ``InternVLProcessor``'s layout built by hand; Gemma 3: ``Gemma3Processor``
    itself); ``model(**inputs).logits[0, -1, level_ids]`` (full logits at every position) with
    ``level_ids`` the first token of ``" " + word``; softmax; dot the values.

    Args:
        model: An image-text-to-text model.
        tokenizer: Its tokenizer (with a chat template).
        processor: ``Qwen2VLImageProcessorPil`` (Qwen), ``GotOcr2ImageProcessorPil``
            (InternVL) or ``Gemma3Processor`` (Gemma 3).
        images: PIL pictures.
        question: The user's question.
        stem: The answer stem.
        words: Level words.
        values: Level values.

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
    inputs_of = _PLAIN_INPUTS.get(model.config.model_type, _qwen_inputs)
    level_ids = [tokenizer(" " + word, add_special_tokens=False).input_ids[0] for word in words]
    weights = torch.tensor(values, dtype=torch.float64)
    device = next(model.parameters()).device
    results: list[tuple[float, list[float]]] = []
    for image in images:
        inputs = inputs_of(model, tokenizer, processor, image, template + stem)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        probs = torch.softmax(logits[level_ids].double().cpu(), dim=-1)
        results.append((float(probs @ weights), probs.tolist()))
    return results
