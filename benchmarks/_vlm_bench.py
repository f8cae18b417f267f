"""Scoring throughput of the generic (Qwen-family) backbone: the product's path against the plain
one-image-per-forward transformers procedure, in the same run, on random-weight models.

The product's path is ``ArtQuant.score(files, batch_size=B)`` on an ``HFVisionLanguageBackbone``
in fixed resolution (every picture padded to a square and resized to 448 px: 256 picture tokens
plus the chat template's text, the real token counts of a Qwen-VL model at 448 px; or, with
``--resolution native``, each picture at its own aspect ratio with at most 448 x 448 pixels): files
decoded and preprocessed a batch at a time, one left-padded forward per batch, only the five
level rows of the LM head at the last position. The plain procedure
(``artquant_model.testing.plain_vlm_scores``) renders the same prompt, preprocesses each
picture with the published PIL image processor, runs one picture per forward with the whole
vocabulary's logits at every position and reads the five level logits at the end. Both see the
same 448 px pictures, so their scores must agree (float32 reordering only).

Sizes (``VLM_SIZES``): ``tiny`` for dry runs; ``small`` (vision 256 wide x 4 blocks, language
model 512 x 4, the real 151,936-token vocabulary) for a CPU; ``qwen3.5-0.8b`` and ``qwen3.5-4b``
with the layer shapes of the released Qwen3.5 0.8B / 4B models as we understand them (not
checked against their config files, which this work could not download), for a GPU in bf16.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("score_throughput.vlm")

#: Per size: the model type, language-model fields and vision fields over the tiny config.
VLM_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"model_type": "qwen2_5_vl", "text": {}, "vision": {}},
    "small": {
        "model_type": "qwen2_5_vl",
        "text": {
            "hidden_size": 512,
            "intermediate_size": 1376,
            "num_hidden_layers": 4,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": [16, 8, 8],
            },
        },
        "vision": {"hidden_size": 256, "intermediate_size": 1024, "depth": 4, "num_heads": 4},
    },
    "qwen3.5-0.8b": {
        "model_type": "qwen3_5",
        "text": {
            "hidden_size": 1024,
            "intermediate_size": 3584,
            "num_hidden_layers": 24,
            "num_attention_heads": 8,
            "num_key_value_heads": 2,
            "head_dim": 256,
            "vocab_size": 248320,
            "linear_num_key_heads": 16,
            "linear_num_value_heads": 16,
            "linear_key_head_dim": 128,
            "linear_value_head_dim": 128,
        },
        "vision": {"hidden_size": 768, "intermediate_size": 3072, "depth": 12, "num_heads": 12},
    },
    "qwen3.5-4b": {
        "model_type": "qwen3_5",
        "text": {
            "hidden_size": 2560,
            "intermediate_size": 9216,
            "num_hidden_layers": 32,
            "num_attention_heads": 16,
            "num_key_value_heads": 4,
            "head_dim": 256,
            "vocab_size": 248320,
            "linear_num_key_heads": 16,
            "linear_num_value_heads": 32,
            "linear_key_head_dim": 128,
            "linear_value_head_dim": 128,
        },
        "vision": {"hidden_size": 1024, "intermediate_size": 4096, "depth": 24, "num_heads": 16},
    },
}


def vlm_config(size: str) -> Any:
    """The transformers config of a benchmark size."""
    from artquant_model.testing import tiny_vlm_config

    entry = VLM_SIZES[size]
    model_type = entry["model_type"]
    text = dict(entry["text"])
    config = tiny_vlm_config(model_type, **text)
    for key, value in entry["vision"].items():
        setattr(config.vision_config, key, value)
    if "hidden_size" in text:
        config.vision_config.out_hidden_size = text["hidden_size"]
    if model_type == "qwen3_5" and "num_hidden_layers" in text:
        # the released pattern: three linear-attention layers, then one full-attention layer
        layers = text["num_hidden_layers"]
        config.text_config.layer_types = [
            "full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(layers)
        ]
        half = text["head_dim"] // 4 // 2  # partial rotary 0.25
        config.text_config.rope_parameters["mrope_section"] = [
            half - 2 * (half // 4),
            half // 4,
            half // 4,
        ]
    return config


def build_vlm(size: str, device: torch.device, dtype: torch.dtype, seed: int) -> Any:
    """A random-weight model of ``size`` (weights N(0, 0.02), as transformers initialises)."""
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(vlm_config(size), dtype=dtype)
    return model.eval()


def vlm_processor_settings(size: int, model_type: str) -> dict[str, Any]:
    """``preprocessor_config.json`` content of the benchmark models: the tiny model's, with room
    for ``size`` x ``size`` pixels."""
    from artquant_model.testing import tiny_preprocessor_config

    settings = tiny_preprocessor_config(model_type)
    settings["max_pixels"] = max(settings["max_pixels"], size * size)
    return settings


def _processor(size: int, model_type: str) -> Any:
    from transformers import Qwen2VLImageProcessorPil

    settings = vlm_processor_settings(size, model_type)
    settings.pop("image_processor_type")
    return Qwen2VLImageProcessorPil(**settings)


def run_vlm(args: Any, recorder: Any, paths: list[Path], device: torch.device, dtype: torch.dtype):
    """Measure the product's path per batch size and the plain procedure; emit JSON records."""
    from transformers import AutoTokenizer

    from artquant_model import (
        ARTQUANT_SPEC,
        HFVisionLanguageBackbone,
        Resolution,
        VisionImageProcessor,
    )
    from artquant_model.testing import plain_vlm_scores
    from artquant_sdk import ArtQuant

    tokenizer_dir = Path(args.tokenizer)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise SystemExit(
            f"score_throughput: --tokenizer {tokenizer_dir} holds no tokenizer.json; the Qwen "
            "backbone needs a Qwen2-vocabulary tokenizer with its chat template "
            "(../shared/tokenizers/qwen2_vl)"
        )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model_type = VLM_SIZES[args.size]["model_type"]
    start = time.perf_counter()
    model = build_vlm(args.size, device, dtype, args.seed)
    params = sum(p.numel() for p in model.parameters())
    recorder.emit(kind="build", seconds=time.perf_counter() - start, params=params)
    side = args.image_size
    resolution = (
        Resolution(mode="fixed", size=side)
        if args.resolution == "fixed"
        else Resolution(mode="native", max_pixels=side * side)
    )
    spec = ARTQUANT_SPEC.model_copy(update={"resolution": resolution})
    images = VisionImageProcessor(_processor(side, model_type), spec.resolution)
    scorer = ArtQuant(HFVisionLanguageBackbone(model, tokenizer, images, spec))
    before, after = scorer.backbone.prompt_ids(spec.question().prompt, stem=spec.question().stem)
    tokens = len(before) + images([paths[0]]).token_counts(2)[0] + len(after)
    recorder.emit(
        kind="settings",
        model_type=model_type,
        image_size=side,
        resolution=args.resolution,
        tokens_first_picture=tokens,
        # what share_prefix runs once per batch instead of once per picture (0 where the model
        # cannot share it: recurrent layers)
        shared_prefix_tokens=0 if scorer.backbone.recurrent else len(before),
        share_prefix=scorer.backbone.share_prefix,
    )

    product: dict[int, list[float]] = {}
    # the backbone's default, then, when asked, the shared prompt prefix the other way: the
    # same batches one right after the other, so both see the same load
    default = bool(scorer.backbone.share_prefix)
    variants = [("product", default)]
    if getattr(args, "compare_shared_prefix", False):
        other = "product_full_sequence" if default else "product_shared_prefix"
        variants.append((other, not default))
    for repeat in range(args.repeats):
        for batch_size in args.batch_sizes:
            for kind, share in variants:
                scorer.backbone.share_prefix = share
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                start = time.perf_counter()
                results = scorer.score(paths, batch_size=batch_size, progress=False)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = time.perf_counter() - start
                scores = [r.score for r in results]
                shared = product.setdefault(batch_size, scores)
                extra = {}
                if share != default:
                    extra["max_score_difference_to_product"] = max(
                        abs(a - b) for a, b in zip(scores, shared, strict=True)
                    )
                recorder.emit(
                    kind=kind,
                    batch_size=batch_size,
                    repeat=repeat,
                    images=len(paths),
                    images_per_s=len(paths) / seconds,
                    ms_per_image=1000 * seconds / len(paths),
                    peak_device_gib=(
                        torch.cuda.max_memory_allocated(device) / 2**30
                        if device.type == "cuda"
                        else None
                    ),
                    load_average=_load(),
                    **extra,
                )
    scorer.backbone.share_prefix = default
    if args.no_baseline:
        return
    count = min(len(paths), args.baseline_images or 64)
    question = spec.question()
    start = time.perf_counter()
    plain = plain_vlm_scores(
        model,
        tokenizer,
        images.image_processor,
        [images.prepare(p) for p in paths[:count]],
        question=question.prompt,
        stem=question.stem,
        words=spec.words,
        values=spec.values,
    )
    seconds = time.perf_counter() - start
    differences = {
        b: max(abs(a - p) for a, (p, _) in zip(scores[:count], plain, strict=True))
        for b, scores in product.items()
    }
    recorder.emit(
        kind="plain",
        batch_size=1,
        images=count,
        images_per_s=count / seconds,
        ms_per_image=1000 * seconds / count,
        max_score_difference=max(differences.values()),
        load_average=_load(),
    )


def _load() -> float:
    import os

    return os.getloadavg()[0]
