"""What the trainer asks of a backbone family (one module per family implements it)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from artquant_train.config import TrainConfig
from artquant_train.conversation import EncodedConversation
from artquant_train.losses import KLMode, LossSums

#: ``encode(conversation, tokenizer, template, *, score_levels, level_prefix, max_length)``,
#: the signature of :func:`artquant_train.conversation.encode_conversation`.
Encoder = Callable[..., EncodedConversation]


class TrainingBackbone(ABC):
    """One backbone family as the trainer sees it.

    An instance belongs to one run: :meth:`load_processing` keeps the tokenizer and the
    picture preprocessing on it, and the other methods use them.

    Class attributes (the family's defaults, used where the configuration leaves ``None``):
        family: the family name (``artquant_model.backbones.family_of``).
        model_types: the ``config.json`` model types this class trains (a family may score
            more than it trains; :meth:`for_model_type` picks the class of a model type).
        lora_targets / lora_exclude: ``lora.targets`` / ``lora.exclude``.
        train_vision_model / train_projector: ``freeze.train_vision_model`` /
            ``freeze.train_abstractor``.
    """

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    lora_targets: ClassVar[tuple[str, ...]]
    lora_exclude: ClassVar[tuple[str, ...]]
    train_vision_model: ClassVar[bool]
    train_projector: ClassVar[bool]

    tokenizer: Any = None
    image_processor: Any = None
    total_prompt: str = ""
    level_ids: list[int]
    words: tuple[str, ...]
    values: list[float]
    stem: str

    @classmethod
    def for_model_type(cls, model_type: str) -> type[TrainingBackbone] | None:
        """The class that trains ``model_type`` (a module may hold one class per group of
        model types), ``None`` when this module does not train it."""
        return cls if model_type in cls.model_types else None

    @classmethod
    def trained_model_types(cls) -> tuple[str, ...]:
        """Every model type the classes of this module train."""
        return cls.model_types

    def resolve(self, config: TrainConfig) -> TrainConfig:
        """``config`` with the family's defaults in place of ``None`` (logged by the run).

        Raises:
            ValueError: a setting this family does not take.
        """
        lora, freeze = config.lora, config.freeze
        return config.model_copy(
            update={
                "lora": lora.model_copy(
                    update={
                        "targets": self.lora_targets if lora.targets is None else lora.targets,
                        "exclude": self.lora_exclude if lora.exclude is None else lora.exclude,
                    }
                ),
                "freeze": freeze.model_copy(
                    update={
                        "train_vision_model": self.train_vision_model
                        if freeze.train_vision_model is None
                        else freeze.train_vision_model,
                        "train_abstractor": self.train_projector
                        if freeze.train_abstractor is None
                        else freeze.train_abstractor,
                    }
                ),
            }
        )

    def set_scoring(self, config: TrainConfig, total_prompt: str, level_ids: Sequence[int]) -> None:
        """What validation reads: the total's prompt, the level ids, words, values and stem."""
        self.total_prompt = total_prompt
        self.level_ids = [int(i) for i in level_ids]
        self.words = tuple(config.levels.words)
        self.values = [float(v) for v in config.levels.values]
        self.stem = config.levels.prefix

    def check_spec(
        self, config: TrainConfig, level_spec: dict[str, Any], questions: Sequence[Any]
    ) -> None:
        """Fail at the start of a run when the release's ``artquant_spec.json`` would be
        invalid (default: the trainer's level-spec document, as mPLUG-Owl2 releases write it).

        Raises:
            ValueError: The spec would be invalid.
        """
        from artquant_model import spec_from_trainer_document

        spec_from_trainer_document(level_spec)

    @abstractmethod
    def default_prompt(self, config: TrainConfig) -> str:
        """The total score's prompt when ``validation.prompt`` is not set."""

    @abstractmethod
    def load_processing(self, config: TrainConfig) -> None:
        """Load the tokenizer and the picture preprocessing (``self.tokenizer``,
        ``self.image_processor``)."""

    @abstractmethod
    def load_pixels(self, path: Path) -> Any:
        """One picture file -> the pixels of one row (picklable: runs in loader workers)."""

    @abstractmethod
    def encoder(self, config: TrainConfig) -> Encoder:
        """The conversation encoder (labels on the assistant's tokens, the level position)."""

    @abstractmethod
    def collate_fn(self) -> Callable[[Sequence[dict[str, Any]]], dict[str, Any]]:
        """A picklable collate function for :class:`~artquant_train.data.TrainingDataset` rows."""

    @abstractmethod
    def load_model(self, config: TrainConfig, dtype: torch.dtype) -> nn.Module:
        """The base model, frozen weights in ``dtype``."""

    @abstractmethod
    def prepare(self, model: nn.Module, config: TrainConfig) -> nn.Module:
        """LoRA, ``requires_grad`` and gradient checkpointing per ``config`` (logged)."""

    @abstractmethod
    def training_forward(self, prepared: nn.Module) -> nn.Module:
        """The module accelerate wraps (DDP sees every trainable tensor in one forward)."""

    @abstractmethod
    def loss_sums(
        self,
        wrapped: nn.Module,
        batch: dict[str, Any],
        level_ids: torch.Tensor,
        *,
        kl: KLMode,
        dtype: torch.dtype,
    ) -> LossSums:
        """One micro-batch's forward pass and its un-normalised loss terms."""

    @abstractmethod
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
        """Validation scores of pictures (float64) with the live weights.

        ``question`` is ``None`` for the total score, else an
        :class:`~artquant_train.attributes.AttributeQuestion`.
        """

    @abstractmethod
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
        """Write ``final/`` or ``best/`` so that ``ArtQuant.from_pretrained`` loads it.

        Args:
            level_spec: the trainer's level spec document (mPLUG-Owl2 releases).
            questions: the :class:`~artquant_train.attributes.AttributeQuestion` of every
                attribute the run trained.
            state_dict: the full tensors of ``prepared`` by its ``state_dict`` names, gathered
                from the processes when FSDP or ZeRO-3 shards them; ``None``: the live ones.
        """

    @abstractmethod
    def merge_release(
        self,
        folder: Path,
        *,
        config: TrainConfig,
        level_spec: dict[str, Any],
        questions: Sequence[Any],
    ) -> Path:
        """Replace a LoRA release folder by the merged full checkpoint."""


__all__ = ["Encoder", "TrainingBackbone"]
