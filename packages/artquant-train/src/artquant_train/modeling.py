"""Which weights train (LoRA, freezing) and the training forward pass.

The recipe (reference §2.2): LoRA (peft) on every LLM ``nn.Linear`` whose name ends with
``q_proj`` or ``v_proj.multiway.1`` (r 128, alpha 256, dropout 0.05), the vision tower and the
visual abstractor trained in full, everything else frozen. Trainable tensors are kept in float32
(the optimizer updates need the precision) while frozen ones stay in the compute dtype.

Example:
    >>> from artquant_model.testing import tiny_model
    >>> names = find_lora_targets(tiny_model(), ("q_proj", "v_proj.multiway.1"),
    ...                           ("model.vision_model", "model.visual_abstractor"))
    >>> names[:2]
    ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj.multiway.1']
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from artquant_train.config import TrainConfig

logger = logging.getLogger(__name__)

VISION_PREFIX = "model.vision_model."
ABSTRACTOR_PREFIX = "model.visual_abstractor."
LLM_PREFIXES = ("model.layers.", "model.norm.")
EMBEDDING_PREFIXES = ("model.embed_tokens.", "lm_head.")


def find_lora_targets(
    model: nn.Module, targets: Sequence[str], exclude: Sequence[str]
) -> list[str]:
    """Full names of the ``nn.Linear`` modules that get a LoRA adapter.

    A module matches when its name equals a target or ends with ``"." + target``, and it does
    not lie under one of the ``exclude`` prefixes.

    Args:
        model: the (unwrapped) model.
        targets: name suffixes, e.g. ``("q_proj", "v_proj.multiway.1")``.
        exclude: name prefixes to skip, e.g. the vision tower.

    Returns:
        The matching names, in module order.

    Raises:
        ValueError: nothing matches (the message lists a few Linear names to choose from).
    """
    found: list[str] = []
    linear_names: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        linear_names.append(name)
        if any(name == p or name.startswith(p.rstrip(".") + ".") for p in exclude):
            continue
        if any(name == t or name.endswith("." + t) for t in targets):
            found.append(name)
    if not found:
        raise ValueError(
            f"lora.targets {list(targets)} match no nn.Linear outside {list(exclude)}; "
            f"examples of Linear names: {linear_names[:8]}"
        )
    return found


def core_model(model: nn.Module) -> Any:
    """The :class:`~artquant_model.MPLUGOwl2ForCausalLM` inside peft/DDP/accelerate wrappers."""
    current: Any = model
    for _ in range(8):
        if hasattr(current, "module") and isinstance(current.module, nn.Module):
            current = current.module
        elif hasattr(current, "get_base_model"):
            current = current.get_base_model()
        elif isinstance(current, TrainingForward):
            current = current.model
        else:
            return current
    return current


def _wanted(name: str, config: TrainConfig) -> bool:
    clean = name.replace(".base_layer.", ".")
    freeze = config.freeze
    return (
        (freeze.train_vision_model and clean.startswith(VISION_PREFIX))
        or (freeze.train_abstractor and clean.startswith(ABSTRACTOR_PREFIX))
        or (freeze.train_llm and clean.startswith(LLM_PREFIXES))
        or (freeze.train_embeddings and clean.startswith(EMBEDDING_PREFIXES))
    )


def prepare_for_training(model: nn.Module, config: TrainConfig) -> nn.Module:
    """Add LoRA adapters and set ``requires_grad`` according to ``config``.

    Args:
        model: an :class:`~artquant_model.MPLUGOwl2ForCausalLM` (frozen weights in the compute
            dtype).
        config: the run configuration (``lora``, ``freeze``, ``model.gradient_checkpointing``).

    Returns:
        A peft ``PeftModelForCausalLM`` when LoRA is on, else ``model``; trainable tensors are
        float32.

    Raises:
        ValueError: LoRA targets match nothing, or nothing at all would be trained.
    """
    from artquant_train.backbones.mplug_owl2 import MPLUGOwl2Training

    config = MPLUGOwl2Training().resolve(config)  # the recipe where lora/freeze say None
    for param in model.parameters():
        param.requires_grad_(False)
    prepared: nn.Module = model
    if config.lora.enabled:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        names = find_lora_targets(model, config.lora.targets or (), config.lora.exclude or ())
        peft_config = PeftLoraConfig(
            r=config.lora.r,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=names,
            bias="none",
            task_type="CAUSAL_LM",
        )
        prepared = get_peft_model(model, peft_config)  # type: ignore[arg-type]
        logger.info(
            "LoRA r=%d alpha=%d (scale %g) on %d modules",
            config.lora.r,
            config.lora.alpha,
            config.lora.scale,
            len(names),
        )
    core = core_model(prepared)
    for name, param in core.named_parameters():
        if "lora_" in name or _wanted(name, config):
            param.requires_grad_(True)
            if param.dtype != torch.float32:
                param.data = param.data.float()
    counts = trainable_counts(core)
    if counts["trainable"] == 0:
        raise ValueError("the configuration trains nothing: enable LoRA or a freeze.train_* switch")
    logger.info("trainable parameters: %s", counts)
    if config.model.gradient_checkpointing:
        enable_checkpointing(core)
    return prepared


def enable_checkpointing(core: Any) -> None:
    """Turn on non-reentrant gradient checkpointing on a transformers model.

    Non-reentrant: gradients reach the LoRA/vision tensors although the inputs of a
    checkpointed block (frozen embeddings) do not require grad.
    """
    kwargs = {"use_reentrant": False}
    enable = getattr(core, "activation_checkpointing_enable", None)
    if enable is not None:  # transformers >= 5.2x; the old name warns there
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        core.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def trainable_counts(model: nn.Module) -> dict[str, int]:
    """Parameter counts: ``total``, ``trainable`` and the trainable ones per group."""
    groups = {"lora": 0, "vision_model": 0, "visual_abstractor": 0, "llm": 0, "embeddings": 0}
    total = trainable = 0
    for name, param in model.named_parameters():
        total += param.numel()
        if not param.requires_grad:
            continue
        trainable += param.numel()
        clean = name.replace(".base_layer.", ".")
        if "lora_" in clean:
            groups["lora"] += param.numel()
        elif VISION_PREFIX in clean:
            groups["vision_model"] += param.numel()
        elif ABSTRACTOR_PREFIX in clean:
            groups["visual_abstractor"] += param.numel()
        elif any(p in clean for p in EMBEDDING_PREFIXES):
            groups["embeddings"] += param.numel()
        else:
            groups["llm"] += param.numel()
    return {"total": total, "trainable": trainable, **groups}


class TrainingForward(nn.Module):
    """One forward pass over a mixed batch: image splice, decoder, full-sequence logits.

    Wrapping the splice and the decoder in one module lets DDP/FSDP see every trainable tensor
    used in a single ``forward`` call.

    Args:
        model: the prepared model (peft-wrapped or plain).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        images: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(logits [B, L, V], spliced labels [B, L])``."""
        core = core_model(self.model)
        inputs = core.build_multimodal_inputs(
            input_ids,
            images=images,
            attention_mask=attention_mask,
            labels=labels,
            padding_side="right",
        )
        output = core(
            inputs_embeds=inputs.inputs_embeds,
            attention_mask=inputs.attention_mask,
            position_ids=inputs.position_ids,
            modality_indicators=inputs.modality_indicators,
            use_cache=False,
        )
        return output.logits, inputs.labels


__all__ = [
    "ABSTRACTOR_PREFIX",
    "EMBEDDING_PREFIXES",
    "LLM_PREFIXES",
    "VISION_PREFIX",
    "TrainingForward",
    "core_model",
    "enable_checkpointing",
    "find_lora_targets",
    "prepare_for_training",
    "trainable_counts",
]
