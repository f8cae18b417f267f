"""Typed, nested, frozen configuration of an ``artquant-train`` run.

One model serves as the file schema, the environment binding and the command line. Values are
resolved in this order, each later source overriding the earlier ones:

1. the defaults below (the ArtQuant recipe of the paper, reference §5.1);
2. a YAML or JSON file (``--config train.yaml``);
3. environment variables ``ARTQUANT_TRAIN_<SECTION>__<FIELD>``, e.g.
   ``ARTQUANT_TRAIN_OPTIM__LR=1e-4`` or ``ARTQUANT_TRAIN_LORA__R=64`` (a double underscore
   separates nesting levels; values are parsed as YAML, so ``[q_proj, o_proj]`` is a list);
4. command-line flags: the named ones (``--lr 1e-4``) and generic dotted overrides
   (``--optim.lr 1e-4``, ``--lora.targets '[q_proj]'``).

Every model is frozen and forbids unknown keys, so a misspelt key fails loudly at load time and
names the allowed ones.

Example:
    >>> cfg = TrainConfig.model_validate({"model": {"base": "base_dir"},
    ...                                    "data": {"train": [{"path": "score.json"}]}})
    >>> cfg.lora.r, cfg.loss.weight_next_token
    (128, 0.05)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from artquant_model.spec import Resolution

ENV_PREFIX = "ARTQUANT_TRAIN_"
LORA_RANK = 128
"""The recipe's LoRA rank."""
LORA_ALPHA_PER_RANK = 2
"""The recipe's ``alpha / r`` (256 / 128): the default alpha is this times the rank."""

VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


class ConfigError(ValueError):
    """A configuration source (file, environment, command line) holds a bad value."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class ModelConfig(_Frozen):
    """Which base model to start from and how to run it.

    Attributes:
        base: folder of the base checkpoint (any backbone ``artquant_model`` supports, chosen
            by its ``config.json`` ``model_type``: mPLUG-Owl2, a Qwen-VL family, Gemma 3 or
            InternVL; a LoRA release must be merged first), the name of a ModelZoo model
            fetched with ``artquant download`` (found under ``$ARTQUANT_MODELZOO`` or
            ``ModelZoo/``), or a hub id already in the local Hugging Face cache (see
            ``loop.resolve_base``).
        tokenizer: folder (or ``tokenizer.model`` file) of the tokenizer; ``None`` uses ``base``.
        image_processor: folder holding ``preprocessor_config.json``; ``None`` uses the tokenizer
            folder if it has one, else ``base``, else the vision config.
        precision: ``auto`` = bf16 autocast on a GPU that supports it, fp32 elsewhere (CPU).
            Frozen weights are stored in the compute dtype; trainable ones always in fp32.
        attn_implementation: attention kernel passed to the model.
        gradient_checkpointing: recompute activations in the backward pass (saves memory).
        resolution: picture sizing of the generic backbone (``native``: the processor's own
            sizing: Qwen-VL keeps the aspect ratio within its pixel limits, Gemma 3 resizes to
            one tile, InternVL cuts aspect-ratio tiles; ``fixed``: padded to a square of
            ``size`` pixels, for Gemma 3 and InternVL the tile size); written into the
            release's ``artquant_spec.json`` so the SDK scores as the run trained. ``None``:
            fixed 448 px for the Qwen-VL backbones, fixed one tile for Gemma 3 and InternVL.
            mPLUG-Owl2 always uses its fixed 448 px and rejects a setting here.
    """

    base: str
    tokenizer: str | None = None
    image_processor: str | None = None
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    gradient_checkpointing: bool = True
    resolution: Resolution | None = None


class DataSource(_Frozen):
    """One training JSON file and its mixing weight.

    The weight follows the original ``--data_weights``: the integer part replicates the list,
    the fractional part adds a seeded random sample of that share of it (``1.5`` = the list
    once plus a random half of it; ``0.25`` = a random quarter).
    """

    path: str
    weight: float = Field(default=1.0, gt=0)


class TemplateConfig(_Frozen):
    """How a conversation is rendered into text for training.

    The defaults reproduce the original training template, ``vicuna_v1`` with its system prompt
    and the image moved to the front of the first user turn. Note that the original (and our
    SDK) *scores* with a different prompt: no system prompt and the image after the question
    (reference §2.4). Set ``name: mplug_owl2`` (``system: ""``, ``image_first: false``) to train
    with the inference layout instead.

    Attributes:
        name: a label saved with the run.
        system: system prompt; empty for none.
        user_role / assistant_role: role names.
        sep: separator after the system prompt and after user turns.
        image_first: move ``<|image|>`` to the front of the user turn (followed by a newline).
    """

    name: str = "vicuna_v1"
    system: str = VICUNA_V1_SYSTEM
    user_role: str = "USER"
    assistant_role: str = "ASSISTANT"
    sep: str = " "
    image_first: bool = True


class DataConfig(_Frozen):
    """Training and validation data.

    Attributes:
        train: one or more training JSON files (ours or the original ArtQuant/DeQA format).
        image_root: folder the samples' ``image`` paths are relative to; ``None`` = each JSON
            file's folder.
        val: a JSON file of scored samples (``image`` + ``gt_score``) for validation.
        max_length: text tokens kept per sample (images count as one token here); longer
            samples are truncated at the end, as the original collator does.
        group_by_length: form batches of similar length (less padding, faster).
        num_workers: DataLoader worker processes for image decoding.
        template: the training chat template.
        attribute_samples: how ``task_type: attribute`` samples (``The color of the painting is
            good.``) train: ``score`` = like score samples (KL on their ``level_probs`` at the
            level word, CE without it; the prefix is the answer's text before the level word),
            ``description`` = plain answer cross-entropy.
    """

    train: tuple[DataSource, ...] = Field(min_length=1)
    image_root: str | None = None
    val: str | None = None
    max_length: int = Field(default=2048, ge=8)
    group_by_length: bool = True
    num_workers: int = Field(default=0, ge=0)
    template: TemplateConfig = TemplateConfig()
    attribute_samples: Literal["score", "description"] = "score"


class LevelsConfig(_Frozen):
    """The answer the score samples teach: ``<prefix> <word>.``.

    Attributes:
        prefix: text before the level word in every score answer.
        words: level words, best first; each must be a single token after the prefix.
        values: the score of each level (same order), used by validation.
    """

    prefix: str = "The quality of the painting is"
    words: tuple[str, ...] = ("excellent", "good", "fair", "poor", "bad")
    values: tuple[float, ...] = (10.0, 7.5, 5.0, 3.5, 1.0)

    @model_validator(mode="after")
    def _same_length(self) -> LevelsConfig:
        if len(self.words) != len(self.values) or len(self.words) < 2:
            raise ValueError(
                f"levels.words ({len(self.words)}) and levels.values ({len(self.values)}) must "
                "have the same length, at least 2"
            )
        if len(set(self.words)) != len(self.words):
            raise ValueError(f"levels.words has duplicates: {self.words}")
        return self


class LoraConfig(_Frozen):
    """LoRA adapters on the language model.

    The adapter's output is multiplied by ``scale = alpha / r``. The recipe's r 128 / alpha 256
    is scale 2; when a source sets ``r`` but no source sets ``alpha``, alpha follows the same
    ratio (``alpha = 2·r``), so lowering the rank keeps the scale instead of raising it. An
    ``alpha`` set anywhere (file, environment, flag) is kept as given.

    Attributes:
        enabled: ``False`` trains the LLM weights selected by ``freeze`` directly instead.
        r / alpha / dropout: LoRA rank, scale numerator (default ``2·r``) and dropout.
        targets: module-name suffixes that get an adapter (a name matches when it equals a
            target or ends with ``.`` + target), only ``nn.Linear`` modules outside
            ``exclude``. ``None``: the backbone's default (mPLUG-Owl2: the paper's ``q_proj``
            and ``v_proj.multiway.1``; Qwen-VL, Gemma 3, InternVL: every linear layer of the
            language model),
            filled in when the run starts (:mod:`artquant_train.backbones`).
        exclude: module-name prefixes never adapted (the vision side). ``None``: the
            backbone's vision side.
    """

    enabled: bool = True
    r: int = Field(default=LORA_RANK, ge=1)
    alpha: int = Field(default=LORA_ALPHA_PER_RANK * LORA_RANK, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    targets: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _alpha_follows_rank(cls, data: Any) -> Any:
        # Only an absent (or null) alpha is derived; a rank that is not a valid integer is
        # left for the field validation to report, with the default alpha beside it.
        if not isinstance(data, Mapping) or data.get("alpha") is not None:
            return data
        rank = data.get("r", LORA_RANK)
        if isinstance(rank, str) and rank.strip().isdigit():
            rank = int(rank)
        resolved = {key: value for key, value in data.items() if key != "alpha"}
        if isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1:
            resolved["alpha"] = LORA_ALPHA_PER_RANK * rank
        return resolved

    @property
    def scale(self) -> float:
        """The factor on the adapter's output, ``alpha / r``."""
        return self.alpha / self.r


class FreezeConfig(_Frozen):
    """Which base weights are trained in full (everything else is frozen).

    ``None`` is the backbone's default, filled in when the run starts: mPLUG-Owl2 trains its
    vision tower and abstractor (the paper); the Qwen-VL, Gemma 3 and InternVL backbones train
    their projector and keep the vision tower frozen (see the README for why).

    Attributes:
        train_vision_model: the vision tower (``model.vision_model``; Qwen-VL: ``model.visual``
            without its merger; Gemma 3, InternVL: ``model.vision_tower``).
        train_abstractor: the projector: mPLUG-Owl2's visual abstractor
            (``model.visual_abstractor``), the Qwen-VL merger(s) (``model.visual.merger``,
            Qwen3-VL's ``deepstack_merger_list`` too), Gemma 3's and InternVL's
            ``model.multi_modal_projector``.
        train_llm: every LLM weight (layers, norms); for full fine-tuning without LoRA.
        train_embeddings: the token embeddings and ``lm_head``.
    """

    train_vision_model: bool | None = None
    train_abstractor: bool | None = None
    train_llm: bool = False
    train_embeddings: bool = False


class LossConfig(_Frozen):
    """``L = w_desc·CE_desc + w_next·(CE_score∖level + w_kl·KL)`` (reference §5.2).

    Attributes:
        weight_description: ``w_desc``, on the description answers' token cross-entropy.
        weight_next_token: ``w_next``, on the score answers (CE without the level token + KL).
        weight_kl: ``w_kl``, on the KL between the soft level target and the model.
        kl: ``open`` = softmax over the full vocabulary at the level position (the original);
            ``closed`` = softmax over the level words only; ``none`` = plain CE on the level
            token instead of the KL (hard labels, Q-Align style).
    """

    weight_description: float = Field(default=1.0, ge=0)
    weight_next_token: float = Field(default=0.05, ge=0)
    weight_kl: float = Field(default=1.0, ge=0)
    kl: Literal["open", "closed", "none"] = "open"


class OptimConfig(_Frozen):
    """AdamW and its learning-rate schedule (warm-up then decay, per optimizer step)."""

    lr: float = Field(default=2e-5, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    max_grad_norm: float | None = Field(default=1.0, gt=0)


class RunConfig(_Frozen):
    """Length of the run and batching.

    The global batch is ``batch_size × grad_accum × processes``; the recipe's 32 is 4 × 4 × 2.

    Attributes:
        epochs: passes over the mixed training list.
        max_steps: optimizer steps; overrides ``epochs`` when set.
        batch_size: samples per micro-batch per process.
        grad_accum: micro-batches per optimizer step.
        seed: seeds data order, mixing, dropout and initialisation of the adapters.
        output_dir: where checkpoints, ``best/``, ``final/`` and logs go.
        resume: continue from the newest complete checkpoint in ``output_dir``.
    """

    epochs: float = Field(default=3.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=4, ge=1)
    grad_accum: int = Field(default=4, ge=1)
    seed: int = 42
    output_dir: str = "runs/artquant"
    resume: bool = False


class CheckpointConfig(_Frozen):
    """Resumable checkpoints and the exported release folders.

    Attributes:
        every: save a resumable checkpoint every N optimizer steps (0 = only at the end).
        keep_last: how many resumable checkpoints to keep.
        save_final: write ``final/`` at the end.
        merge_lora: write ``final/`` and ``best/`` as merged full checkpoints instead of an
            ArtQuant LoRA release over the base.
    """

    every: int = Field(default=500, ge=0)
    keep_last: int = Field(default=2, ge=1)
    save_final: bool = True
    merge_lora: bool = False


class ValidationConfig(_Frozen):
    """Validation with artquant-eval on ``data.val``.

    Attributes:
        every: validate every N optimizer steps (0 = only at the end).
        batch_size: images per scoring forward pass.
        metric: which metric picks ``best/``; ``mae`` is minimised, the others maximised.
        best_on: what ``metric`` is read from to pick ``best/``: ``total`` (the total score's
            samples) or ``attribute_mean`` (the mean of ``metric`` over the attributes of the
            validation file's attribute samples, each scored with its own question).
        max_samples: score only the first N validation samples (``None`` = all); per
            attribute for attribute samples.
        prompt: the scoring prompt (one ``<|image|>``, ending with the level prefix); ``None``
            = ArtQuant's inference prompt ``USER: How would you rate the quality of this
            painting?\\n<|image|> ASSISTANT: <levels.prefix>``, what the SDK scores with.
        attribute_prompt: the scoring prompt of every attribute, with ``{question}`` and
            ending with ``{stem}`` (one ``<|image|>``); ``None`` = the attribute's question
            rendered by ``data.template`` with the picture first, then the stem (what
            attribute samples train on; see :mod:`artquant_train.attributes`).
    """

    every: int = Field(default=250, ge=0)
    batch_size: int = Field(default=8, ge=1)
    metric: Literal["srcc", "plcc", "krcc", "mae"] = "srcc"
    best_on: Literal["total", "attribute_mean"] = "total"
    max_samples: int | None = Field(default=None, ge=1)
    prompt: str | None = None
    attribute_prompt: str | None = None

    @model_validator(mode="after")
    def _attribute_prompt_fields(self) -> ValidationConfig:
        text = self.attribute_prompt
        if text is not None and (
            "{question}" not in text or not text.endswith("{stem}") or text.count("<|image|>") != 1
        ):
            raise ValueError(
                f"validation.attribute_prompt {text!r} must hold {{question}} and one <|image|> "
                "and end with {stem}, e.g. 'USER: <|image|>\\n{question} ASSISTANT: {stem}'"
            )
        return self


class LoggingConfig(_Frozen):
    """Progress bar, structured log lines and TensorBoard.

    Attributes:
        every: log every N optimizer steps (``metrics.jsonl`` and the log).
        tensorboard: ``auto`` = write TensorBoard events when ``tensorboard`` is installed.
        progress_bar: show a tqdm bar on the main process.
        plot: ``auto`` = write ``training_curves.png`` at the end when matplotlib is installed
            (the ``plot`` extra); ``on`` fails without it.
    """

    every: int = Field(default=10, ge=1)
    tensorboard: Literal["auto", "on", "off"] = "auto"
    progress_bar: bool = True
    plot: Literal["auto", "on", "off"] = "auto"


class DistributedConfig(_Frozen):
    """Options passed to accelerate.

    The launcher picks the strategy (``accelerate launch --config_file`` with one of the files
    in ``artquant_train/configs/``, or ``torchrun``); these only tune it.

    Attributes:
        find_unused_parameters: DDP option; needed only if a config leaves a trainable module
            out of the forward pass.
        timeout_s: process-group timeout.
        cpu: run on the CPU (several CPU processes talk over gloo); ``None`` = when no GPU (or
            other accelerator) is available.
    """

    find_unused_parameters: bool = False
    cpu: bool | None = None
    timeout_s: int = Field(default=1800, ge=10)


class TrainConfig(_Frozen):
    """Everything an ``artquant-train`` run needs; see the module docstring for the sources."""

    model: ModelConfig
    data: DataConfig
    levels: LevelsConfig = LevelsConfig()
    lora: LoraConfig = LoraConfig()
    freeze: FreezeConfig = FreezeConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    run: RunConfig = RunConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    validation: ValidationConfig = ValidationConfig()
    logging: LoggingConfig = LoggingConfig()
    distributed: DistributedConfig = DistributedConfig()

    def to_yaml(self) -> str:
        """The resolved configuration as YAML (what is printed and saved with checkpoints)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_yaml` to ``path`` and return it."""
        target = Path(path)
        target.write_text(self.to_yaml(), encoding="utf-8")
        return target


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"{source}: bad key {dotted!r} (expected section.field, e.g. optim.lr)")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = {}
            node[part] = child
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {dotted!r} goes through {part!r}, which is not a section")
        node = child
    node[parts[-1]] = value


def parse_value(text: str) -> Any:
    """Parse a value written on the command line or in the environment.

    YAML rules apply (``true``, ``3``, ``[a, b]``, ``null``); scientific notation without a
    dot (``1e-4``) is read as a number too, and an empty value stays the empty string.

    Args:
        text: the raw string.

    Returns:
        The parsed value (a string when nothing else fits).

    Example:
        >>> parse_value("1e-4"), parse_value("[q_proj, o_proj]"), parse_value("false")
        (0.0001, ['q_proj', 'o_proj'], False)
    """
    if not text.strip():
        return text  # an empty value means the empty string (e.g. no system prompt), not null
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) config file into a dict.

    Args:
        path: the file; ``.json`` is read as JSON, anything else as YAML.

    Returns:
        The file's mapping (empty for an empty file), not yet validated.

    Raises:
        ConfigError: the file is missing, unreadable or not a mapping.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    text = file.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot parse config file {file}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file} must hold a mapping, got {type(data).__name__}")
    return data


def environment_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Collect ``ARTQUANT_TRAIN_<SECTION>__<FIELD>`` variables as a nested dict.

    Args:
        environ: the environment to read; ``os.environ`` by default.

    Returns:
        Nested overrides, e.g. ``{"optim": {"lr": 0.0001}}``.

    Raises:
        ConfigError: a variable with the prefix has no ``__`` section separator.
    """
    env = os.environ if environ is None else environ
    tree: dict[str, Any] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if "__" not in key:
            raise ConfigError(
                f"environment variable {name}: expected {ENV_PREFIX}<SECTION>__<FIELD>, "
                f"e.g. {ENV_PREFIX}OPTIM__LR"
            )
        _set_dotted(tree, key.replace("__", "."), parse_value(raw), f"environment {name}")
    return tree


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def dotted_to_tree(overrides: Mapping[str, Any], source: str = "command line") -> dict[str, Any]:
    """Turn ``{"optim.lr": 1e-4}`` into ``{"optim": {"lr": 1e-4}}``.

    Args:
        overrides: dotted keys and their values.
        source: where they come from, for error messages.

    Returns:
        The nested dict.

    Raises:
        ConfigError: a key is malformed, or one goes through a key that holds a value.

    Example:
        >>> dotted_to_tree({"optim.lr": 1e-4, "lora.r": 8, "optim.eps": 1e-6})
        {'optim': {'lr': 0.0001, 'eps': 1e-06}, 'lora': {'r': 8}}
    """
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        _set_dotted(tree, key, value, source)
    return tree


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TrainConfig:
    """Resolve a :class:`TrainConfig` from file < environment < overrides.

    Args:
        path: optional YAML/JSON file.
        overrides: nested or dotted (``"optim.lr"``) values, e.g. from the command line.
        environ: environment to read ``ARTQUANT_TRAIN_*`` from (``os.environ`` by default).

    Returns:
        The validated, frozen configuration.

    Raises:
        ConfigError: a source is unreadable, or the merged values do not validate (the message
            lists each bad field).

    Example:
        >>> cfg = load_config(overrides={"model.base": "b", "data.train": [{"path": "s.json"}],
        ...                              "optim.lr": 1e-4}, environ={})
        >>> cfg.optim.lr
        0.0001
    """
    tree: dict[str, Any] = read_config_file(path) if path is not None else {}
    tree = _merge(tree, environment_overrides(environ))
    if overrides:
        nested: dict[str, Any] = {}
        for key, value in overrides.items():
            if "." in key:
                nested = _merge(nested, dotted_to_tree({key: value}))
            else:
                nested = _merge(nested, {key: value})
        tree = _merge(tree, nested)
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc)) from exc


def _describe_validation_error(exc: ValidationError) -> str:
    lines = ["invalid training configuration:"]
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "<root>"
        lines.append(f"  {where}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def parse_data_sources(
    specs: Sequence[str], weights: Sequence[float] | None = None
) -> list[dict[str, Any]]:
    """Parse ``--train-data FILE[:WEIGHT] ...`` (and an optional ``--data-weights`` list).

    Args:
        specs: entries like ``score.json`` or ``desc.json:0.5``.
        weights: weights given separately, one per spec; conflicts with inline weights.

    Returns:
        ``[{"path": ..., "weight": ...}, ...]`` for :class:`DataSource`.

    Raises:
        ConfigError: a weight is not a positive number, or counts differ.
    """
    if weights is not None and len(weights) != len(specs):
        raise ConfigError(
            f"--data-weights has {len(weights)} values for {len(specs)} --train-data files"
        )
    sources: list[dict[str, Any]] = []
    for index, spec in enumerate(specs):
        path, weight = spec, None
        head, sep, tail = spec.rpartition(":")
        if sep and head and tail and not tail.startswith(("/", "\\")):
            try:
                weight = float(tail)
                path = head
            except ValueError:
                weight = None
        if weight is not None and weights is not None:
            raise ConfigError(f"--train-data {spec!r} has an inline weight and --data-weights too")
        if weights is not None:
            weight = float(weights[index])
        if weight is not None and not weight > 0:
            raise ConfigError(f"--train-data {spec!r}: the weight must be > 0, got {weight}")
        sources.append({"path": path, "weight": 1.0 if weight is None else weight})
    return sources


__all__ = [
    "ENV_PREFIX",
    "LORA_ALPHA_PER_RANK",
    "LORA_RANK",
    "VICUNA_V1_SYSTEM",
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "DataSource",
    "DistributedConfig",
    "FreezeConfig",
    "LevelsConfig",
    "LoggingConfig",
    "LoraConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TemplateConfig",
    "TrainConfig",
    "ValidationConfig",
    "dotted_to_tree",
    "environment_overrides",
    "load_config",
    "parse_data_sources",
    "parse_value",
    "read_config_file",
]
