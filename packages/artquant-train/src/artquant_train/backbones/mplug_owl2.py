"""mPLUG-Owl2 (ArtQuant's, Q-Align's and DeQA-Score's model): the trainer's original path.

Everything here delegates to the modules the trainer had before it took other backbones
(:mod:`~artquant_train.conversation`, :mod:`~artquant_train.modeling`,
:mod:`~artquant_train.validation`, :mod:`~artquant_train.export`), so its numbers are
unchanged: the vicuna template and ``tokenizer_image_token``, the image splice, full-sequence
logits, the LoRA release with ``non_lora_trainables.bin`` and ``artquant_spec.json``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from artquant_train.backbones._base import Encoder, TrainingBackbone
from artquant_train.config import TrainConfig
from artquant_train.conversation import encode_conversation
from artquant_train.data import collate_rows, level_positions_from_rank
from artquant_train.errors import TrainError
from artquant_train.losses import KLMode, LossSums, loss_sums
from artquant_train.modeling import TrainingForward, core_model, prepare_for_training


def image_processor_dir(config: TrainConfig) -> Path:
    """The folder holding ``preprocessor_config.json``: ``model.image_processor``, else the
    tokenizer folder when it has one, else the base."""
    if config.model.image_processor:
        return Path(config.model.image_processor)
    for candidate in (config.model.tokenizer, config.model.base):
        if candidate and (Path(candidate) / "preprocessor_config.json").is_file():
            return Path(candidate)
    return Path(config.model.base)


class _Pixels:
    """Picture file -> ``[3, 448, 448]`` (picklable for loader workers)."""

    def __init__(self, image_processor: Any, load_image: Any) -> None:
        self.image_processor = image_processor
        self.load_image = load_image

    def __call__(self, path: Path) -> torch.Tensor:
        return self.image_processor([self.load_image(path)])[0]  # type: ignore[no-any-return]


class MPLUGOwl2Training(TrainingBackbone):
    """The paper's recipe: LoRA on ``q_proj`` and ``v_proj.multiway.1``, vision tower and
    abstractor trained in full."""

    family: ClassVar[str] = "mplug_owl2"
    model_types: ClassVar[tuple[str, ...]] = ("mplug_owl2",)
    lora_targets: ClassVar[tuple[str, ...]] = ("q_proj", "v_proj.multiway.1")
    lora_exclude: ClassVar[tuple[str, ...]] = ("model.vision_model", "model.visual_abstractor")
    train_vision_model: ClassVar[bool] = True
    train_projector: ClassVar[bool] = True

    def resolve(self, config: TrainConfig) -> TrainConfig:
        if config.model.resolution is not None:
            raise ValueError(
                "model.resolution applies to the Qwen-VL backbones; mPLUG-Owl2 always sees "
                f"448 x 448 pictures (got {config.model.resolution!r})"
            )
        return super().resolve(config)

    def load_processing(self, config: TrainConfig) -> None:
        from artquant_model import MPLUGOwl2ImageProcessor, load_image, load_tokenizer

        tokenizer_path = config.model.tokenizer or config.model.base
        self.tokenizer = load_tokenizer(tokenizer_path)
        if self.tokenizer.pad_token_id is None:
            raise TrainError(f"the tokenizer at {tokenizer_path} has no pad token")
        self.image_processor = MPLUGOwl2ImageProcessor.from_pretrained(image_processor_dir(config))
        self._pixels = _Pixels(self.image_processor, load_image)

    def load_pixels(self, path: Path) -> torch.Tensor:
        return self._pixels(path)

    def encoder(self, config: TrainConfig) -> Encoder:
        return encode_conversation

    def collate_fn(self) -> Callable[[Sequence[dict[str, Any]]], dict[str, Any]]:
        return functools.partial(collate_rows, pad_token_id=int(self.tokenizer.pad_token_id))

    def load_model(self, config: TrainConfig, dtype: torch.dtype) -> nn.Module:
        from artquant_model import load_model

        return load_model(
            config.model.base, dtype=dtype, attn_implementation=config.model.attn_implementation
        )

    def prepare(self, model: nn.Module, config: TrainConfig) -> nn.Module:
        return prepare_for_training(model, config)

    def training_forward(self, prepared: nn.Module) -> nn.Module:
        return TrainingForward(prepared)

    def loss_sums(
        self,
        wrapped: nn.Module,
        batch: dict[str, Any],
        level_ids: torch.Tensor,
        *,
        kl: KLMode,
        dtype: torch.dtype,
    ) -> LossSums:
        logits, spliced = wrapped(
            batch["input_ids"], batch["attention_mask"], batch["labels"], batch["images"].to(dtype)
        )
        positions = level_positions_from_rank(spliced, batch["level_rank"])
        return loss_sums(logits, spliced, positions, batch["level_probs"], level_ids, kl=kl)

    def score(
        self,
        prepared: nn.Module,
        paths: Sequence[Path],
        *,
        question: Any,
        device: torch.device,
        batch_size: int,
        autocast: Callable[[], AbstractContextManager[Any]] | None,
    ) -> np.ndarray:
        from artquant_model import tokenizer_image_token
        from artquant_train.validation import ValItem, score_items

        prompt = self.total_prompt if question is None else question.prompt
        return score_items(
            core_model(prepared),
            [ValItem(str(path), path, float("nan")) for path in paths],
            prompt_ids=tokenizer_image_token(prompt, self.tokenizer),
            level_ids=self.level_ids,
            values=self.values,
            image_processor=self.image_processor,
            load_image=self._pixels.load_image,
            device=device,
            batch_size=batch_size,
            autocast=autocast,
        )

    def default_prompt(self, config: TrainConfig) -> str:
        from artquant_train.validation import default_validation_prompt

        return default_validation_prompt(config.levels.prefix)

    def write_release(
        self,
        prepared: nn.Module,
        folder: Path,
        *,
        config: TrainConfig,
        dtype: torch.dtype | None,
        level_spec: dict[str, Any],
        questions: Sequence[Any],
        state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> Path:
        from artquant_train.export import write_release

        return write_release(
            prepared,
            folder,
            tokenizer=self.tokenizer,
            image_processor=self.image_processor,
            config=config,
            dtype=dtype,
            level_spec=level_spec,
            state_dict=state_dict,
        )

    def merge_release(
        self,
        folder: Path,
        *,
        config: TrainConfig,
        level_spec: dict[str, Any],
        questions: Sequence[Any],
    ) -> Path:
        from artquant_train.export import merge_release

        return merge_release(
            folder,
            base=config.model.base,
            tokenizer=self.tokenizer,
            image_processor=self.image_processor,
            config=config,
            level_spec=level_spec,
        )


__all__ = ["MPLUGOwl2Training", "image_processor_dir"]
