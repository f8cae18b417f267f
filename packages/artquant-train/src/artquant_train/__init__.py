"""artquant_train: the ArtQuant training recipe as a reliable, resumable, distributed trainer.

* :func:`train` runs a :class:`TrainConfig` (``artquant-train`` is its command line); the config
  resolves from a YAML/JSON file < ``ARTQUANT_TRAIN_*`` environment < flags
  (:func:`load_config`).
* The recipe of the paper by default: LoRA on the LLM's ``q_proj`` and ``v_proj.multiway.1``
  (r 128, alpha 256), vision tower and abstractor trained in full, loss
  ``CE_desc + 0.05·(CE_score∖level + KL)`` with the open-set KL at the level position
  (:mod:`artquant_train.losses`), AdamW, cosine schedule with 3 % warm-up.
* Atomic checkpoints with exact resume, validation with artquant-eval keeping ``best/``, and
  ``final/`` written as an ArtQuant LoRA release that ``artquant_model.load_model`` and the SDK
  load directly.

Example:
    >>> from artquant_train import load_config
    >>> cfg = load_config(overrides={"model.base": "base", "data.train": [{"path": "s.json"}]},
    ...                   environ={})
    >>> cfg.lora.r, cfg.loss.weight_next_token, cfg.optim.lr
    (128, 0.05, 2e-05)
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from artquant_train.checkpointing import (
    TrainerState,
    atomic_directory,
    complete_checkpoints,
    latest_checkpoint,
)
from artquant_train.config import (
    CheckpointConfig,
    ConfigError,
    DataConfig,
    DataSource,
    DistributedConfig,
    FreezeConfig,
    LevelsConfig,
    LoggingConfig,
    LoraConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TemplateConfig,
    TrainConfig,
    ValidationConfig,
    load_config,
)
from artquant_train.conversation import (
    EncodedConversation,
    encode_conversation,
    level_token_ids,
    render_rounds,
)
from artquant_train.data import global_micro_batches, mix_sources, rank_slice
from artquant_train.errors import (
    AnswerFormatError,
    CheckpointStateError,
    EmptyDatasetError,
    LevelTokenError,
    MissingImageError,
    NonFiniteLossError,
    SampleError,
    TrainError,
)
from artquant_train.export import write_release
from artquant_train.loop import StepInfo, TrainResult, lr_multiplier, train
from artquant_train.losses import (
    LossSums,
    LossWeights,
    combine_losses,
    count_answer_tokens,
    level_kl,
    loss_sums,
)
from artquant_train.modeling import find_lora_targets, prepare_for_training
from artquant_train.plotting import plot_training

try:
    __version__ = _version("artquant-train")
except _PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AnswerFormatError",
    "CheckpointConfig",
    "CheckpointStateError",
    "ConfigError",
    "DataConfig",
    "DataSource",
    "DistributedConfig",
    "EmptyDatasetError",
    "EncodedConversation",
    "FreezeConfig",
    "LevelTokenError",
    "LevelsConfig",
    "LoggingConfig",
    "LoraConfig",
    "LossConfig",
    "LossSums",
    "LossWeights",
    "MissingImageError",
    "ModelConfig",
    "NonFiniteLossError",
    "OptimConfig",
    "RunConfig",
    "SampleError",
    "StepInfo",
    "TemplateConfig",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "TrainerState",
    "ValidationConfig",
    "__version__",
    "atomic_directory",
    "combine_losses",
    "complete_checkpoints",
    "count_answer_tokens",
    "encode_conversation",
    "find_lora_targets",
    "global_micro_batches",
    "latest_checkpoint",
    "level_kl",
    "level_token_ids",
    "load_config",
    "loss_sums",
    "lr_multiplier",
    "mix_sources",
    "plot_training",
    "prepare_for_training",
    "rank_slice",
    "render_rounds",
    "train",
    "write_release",
]
