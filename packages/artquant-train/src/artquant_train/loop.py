"""The training loop: ``train(config)``.

One optimizer step consumes ``grad_accum`` global micro-batches of ``batch_size × processes``
rows (micro-batches left over at the end of an epoch, fewer than ``grad_accum``, are skipped;
the next epoch reshuffles). Before a step, the answer-token and score-row counts of all its
micro-batches are summed over processes, and every micro-batch's loss is normalised by those
totals (:mod:`artquant_train.losses`), so the step's gradient is the same whether the rows sit
in one process or several, and a process without score rows contributes a zero score term
instead of skipping it. Each micro-batch is one forward pass over its mixed score/description
rows.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from artquant_train.attributes import (
    ATTRIBUTE_MEAN,
    AttributeQuestion,
    attribute_metrics,
    ordered_attributes,
    questions_and_level_spec,
    read_attribute_items,
)
from artquant_train.backbones import TrainingBackbone, training_backbone
from artquant_train.checkpointing import (
    OPTIMIZER_FILE,
    SCHEDULER_FILE,
    STATE_FILE,
    TRAINABLE_FILE,
    TrainerState,
    atomic_directory,
    capture_rng_state,
    checkpoint_name,
    clean_stale_temporaries,
    latest_checkpoint,
    load_torch_state,
    load_trainable,
    prune_checkpoints,
    read_trainer_state,
    restore_rng_state,
    save_trainable,
)
from artquant_train.config import TrainConfig
from artquant_train.conversation import encode_conversation, level_token_ids
from artquant_train.data import (
    TrainingDataset,
    TrainItem,
    encode_samples,
    global_micro_batches,
    mix_sources,
    rank_slice,
)
from artquant_train.errors import (
    EmptyDatasetError,
    NonFiniteLossError,
    SampleError,
    TrainError,
)
from artquant_train.losses import (
    LossWeights,
    combine_losses,
    count_answer_tokens,
    loss_terms,
)
from artquant_train.modeling import core_model
from artquant_train.validation import (
    ValItem,
    metrics_of,
    read_validation_items,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepInfo:
    """What :func:`train` reports to ``on_step_end`` after every optimizer step.

    Attributes:
        step: optimizer steps done.
        epoch: the epoch of the step.
        loss: the step's total loss (all processes).
        terms: mean ``ce_description``, ``ce_score``, ``kl`` (NaN where a term had no rows).
        lr: learning rate used for the step.
        grad_norm: gradient norm before clipping (``None`` if not computed).
        rank / world_size: this process and the process count.
        model: the prepared (unwrapped) model, to inspect weights.
    """

    step: int
    epoch: int
    loss: float
    terms: dict[str, float]
    lr: float
    grad_norm: float | None
    rank: int
    world_size: int
    model: torch.nn.Module


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
        output_dir: the run folder.
        final_dir: ``OUTPUT_DIR/final`` when written.
        best_dir: ``OUTPUT_DIR/best`` when a validation wrote it.
        global_step: optimizer steps done.
        best_metric: best validation value of ``validation.metric``.
        validations: every validation as ``{"step": ..., "srcc": ..., ...}``.
        last_loss: the last step's loss.
    """

    output_dir: Path
    final_dir: Path | None
    best_dir: Path | None
    global_step: int
    best_metric: float | None
    validations: list[dict[str, float]] = field(default_factory=list)
    last_loss: float | None = None


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, kind: str) -> float:
    """Learning-rate factor for optimizer step ``step`` (0-based): linear warm-up, then decay.

    Args:
        step: the step about to be taken.
        total_steps: steps of the whole run.
        warmup_steps: warm-up length (``ceil(warmup_ratio × total)`` as HF computes it).
        kind: ``cosine`` (to 0), ``linear`` (to 0) or ``constant``.

    Returns:
        The factor in ``[0, 1]``.

    Example:
        >>> [round(lr_multiplier(s, 10, 2, "cosine"), 3) for s in (0, 1, 2, 6, 9)]
        [0.0, 0.5, 1.0, 0.5, 0.038]
    """
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    if kind == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"scheduler must be cosine, linear or constant, got {kind!r}")


def _precision(config: TrainConfig) -> tuple[str, torch.dtype]:
    """(accelerate mixed_precision, dtype of the frozen weights)."""
    wanted = config.model.precision
    if wanted == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        wanted = "bf16" if cuda_bf16 else "fp32"
    if wanted == "bf16":
        return "bf16", torch.bfloat16
    if wanted == "fp16":
        return "fp16", torch.float16
    return "no", torch.float32


def _level_probs_reader(
    config: TrainConfig, samples: Sequence[Any]
) -> Callable[[Any], tuple[float, ...]]:
    from artquant_data import estimate_level_distribution

    count = len(config.levels.words)
    # Samples without level_probs get the paper's estimate from gt_score. One batched call for
    # every distinct score of the file costs ~35x less than one call per sample (5 ms each).
    missing = sorted(
        {
            float(sample.gt_score)
            for sample in samples
            if sample.level_probs is None
            and sample.gt_score is not None
            and math.isfinite(sample.gt_score)
        }
    )
    estimated: dict[float, Sequence[float]] = {}
    if missing:
        table = estimate_level_distribution(missing, config.levels.values)
        estimated = dict(zip(missing, table.tolist(), strict=True))

    def read(sample: Any) -> tuple[float, ...]:
        probs = getattr(sample, "level_probs", None)
        if probs is None:
            score = getattr(sample, "gt_score", None)
            if score is None:
                raise SampleError("a score sample needs level_probs or gt_score")
            probs = estimated.get(float(score))
            if probs is None:  # not in the file's table: estimate it alone (errors name it)
                probs = estimate_level_distribution(float(score), config.levels.values)
        values = tuple(float(p) for p in probs)
        if len(values) != count:
            raise SampleError(f"level_probs has {len(values)} values but levels.words has {count}")
        total = sum(values)
        if any(v < 0 for v in values) or abs(total - 1.0) > 1e-3:
            raise SampleError(f"level_probs must be a distribution (>= 0, sum 1), got {values}")
        return tuple(v / total for v in values)

    return read


def build_training_items(
    config: TrainConfig,
    tokenizer: Any,
    *,
    progress: bool = False,
    backbone: TrainingBackbone | None = None,
) -> tuple[list[TrainItem], tuple[int, ...]]:
    """Read, encode and mix the training files.

    Args:
        config: the run configuration (``data``, ``levels``).
        tokenizer: the tokenizer.
        progress: show encoding progress.
        backbone: the training backbone whose conversation encoder is used (default
            mPLUG-Owl2's).

    Returns:
        ``(items, level_ids)``.

    Raises:
        EmptyDatasetError: a file or the mixed list is empty.
        MissingImageError, SampleError, LevelTokenError: see :func:`encode_samples`.
    """
    from artquant_data import read_training_json

    prefix_ids, level_ids = level_token_ids(tokenizer, config.levels)
    encoder = encode_conversation if backbone is None else backbone.encoder(config)
    per_source: list[list[TrainItem]] = []
    for source in config.data.train:
        path = Path(source.path)
        samples = read_training_json(path)
        root = Path(config.data.image_root) if config.data.image_root else path.parent
        per_source.append(
            encode_samples(
                samples,
                tokenizer=tokenizer,
                template=config.data.template,
                score_levels=(prefix_ids, level_ids),
                level_prefix=config.levels.prefix,
                level_probs_for=_level_probs_reader(config, samples),
                image_root=root,
                max_length=config.data.max_length,
                source=str(path),
                progress=progress,
                level_words=config.levels.words,
                attribute_samples=config.data.attribute_samples,
                encoder=encoder,
            )
        )
    items = mix_sources(per_source, [s.weight for s in config.data.train], config.run.seed)
    if not items:
        raise EmptyDatasetError("the mixed training list is empty (check data.train weights)")
    return items, level_ids


def resolve_base(base: str, environ: Mapping[str, str] | None = None) -> Path:
    """The folder of the base checkpoint named by ``model.base``.

    A folder is taken as it is. A ModelZoo name (``mplug-owl2-llama2-7b``) is looked up where
    ``artquant download NAME`` puts it: ``$ARTQUANT_MODELZOO/NAME``, else ``ModelZoo/NAME`` in
    the working directory or one of its parents. A hub id (``Qwen/Qwen2.5-VL-3B-Instruct``) is
    taken from the local Hugging Face cache (``$HF_HUB_CACHE`` or ``$HF_HOME/hub``, else the
    default). Nothing is downloaded here: fetch the model first (``artquant download``, or
    ``hf download`` for a hub id).

    Args:
        base: A folder, or a ModelZoo name.
        environ: Environment to read ``ARTQUANT_MODELZOO`` from (default ``os.environ``).

    Returns:
        The checkpoint folder.

    Raises:
        TrainError: Neither a folder nor a downloaded ModelZoo name; the message says how to get it.

    Example:
        >>> resolve_base(".").is_dir()
        True
    """
    path = Path(base).expanduser()
    if path.is_dir():
        return path
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if "/" not in base and "\\" not in base and base not in ("", ".", ".."):
        if env.get("ARTQUANT_MODELZOO"):
            candidates.append(Path(env["ARTQUANT_MODELZOO"]).expanduser() / base)
        candidates += [parent / "ModelZoo" / base for parent in (Path.cwd(), *Path.cwd().parents)]
        for candidate in candidates:
            if candidate.is_dir():
                return candidate
    if base.count("/") == 1 and not base.startswith((".", "/", "~")):
        cached = _cached_hub_snapshot(base, env)
        if cached is not None:
            return cached
    looked = f" (looked in {', '.join(str(c) for c in candidates[:3])})" if candidates else ""
    raise TrainError(
        f"model.base {base!r} is not a checkpoint folder nor a downloaded ModelZoo model{looked}. "
        "Pass the folder of the base model, or fetch a ModelZoo model first with "
        f"`artquant download {base if candidates else 'NAME'}` (e.g. mplug-owl2-llama2-7b), or "
        "a hub model with `hf download ORG/NAME` (taken from the local cache, never downloaded)."
    )


def _cached_hub_snapshot(repo_id: str, env: Mapping[str, str]) -> Path | None:
    """The local Hugging Face cache's snapshot of ``repo_id`` (never downloads), or None."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # transformers depends on it; guards odd environments only
        return None
    cache = env.get("HF_HUB_CACHE") or (
        str(Path(env["HF_HOME"]) / "hub") if env.get("HF_HOME") else None
    )
    try:
        folder = snapshot_download(repo_id, local_files_only=True, cache_dir=cache)
    except Exception:  # not cached, or not a valid id: the caller's error says what to do
        return None
    return Path(folder)


class _Run:
    """State of one training run (kept out of :func:`train` to keep each piece short)."""

    def __init__(self, config: TrainConfig, on_step_end: Callable[[StepInfo], None] | None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import (
            DistributedDataParallelKwargs,
            DistributedType,
            InitProcessGroupKwargs,
            set_seed,
        )

        base = resolve_base(config.model.base)
        if str(base) != config.model.base:
            # the resolved folder is what checkpoints and the release's adapter config record
            config = config.model_copy(
                update={"model": config.model.model_copy(update={"base": str(base)})}
            )
        self.backbone = training_backbone(base)
        try:
            # the family's defaults where the configuration leaves None (printed below)
            config = self.backbone.resolve(config)
        except ValueError as error:
            raise TrainError(str(error)) from error
        self.config = config
        self.on_step_end = on_step_end
        from artquant_model import detect_checkpoint_format

        if detect_checkpoint_format(config.model.base) == "lora":
            raise TrainError(
                f"model.base {config.model.base!r} is a LoRA release; train on a full checkpoint "
                "(a new LoRA release needs a base folder to point to). Merge it first, e.g. "
                "load_model(release, base=...).save_pretrained(merged_dir), and pass merged_dir."
            )
        mixed, self.weight_dtype = _precision(config)
        use_cpu = config.distributed.cpu
        if use_cpu is None:
            use_cpu = not _accelerator_available()
        self.accelerator = Accelerator(
            cpu=use_cpu,
            mixed_precision=mixed,
            gradient_accumulation_steps=config.run.grad_accum,
            kwargs_handlers=[
                DistributedDataParallelKwargs(
                    find_unused_parameters=config.distributed.find_unused_parameters
                ),
                InitProcessGroupKwargs(timeout=timedelta(seconds=config.distributed.timeout_s)),
            ],
        )
        acc = self.accelerator
        _sharding_on_cpu_processes(acc)
        self.rank, self.world = acc.process_index, acc.num_processes
        if acc.is_main_process:
            logger.info("resolved configuration:\n%s", config.to_yaml())
        self.sharded = acc.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
        plugin = acc.state.deepspeed_plugin
        self.shards_weights = shards_weights = acc.distributed_type == DistributedType.FSDP or (
            plugin is not None and getattr(plugin, "zero_stage", 0) == 3
        )
        if shards_weights and config.data.val:
            raise TrainError(
                "validation during training reads the weights directly, which FSDP and ZeRO-3 "
                "shard; use DDP or ZeRO-1/2 for runs with data.val, or drop data.val and score "
                "final/ afterwards with `artquant score`"
            )
        self.output_dir = Path(config.run.output_dir)
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            clean_stale_temporaries(self.output_dir)
            config.save(self.output_dir / "train_config.yaml")
        acc.wait_for_everyone()
        set_seed(config.run.seed)

        backbone = self.backbone
        backbone.load_processing(config)
        self.tokenizer = backbone.tokenizer
        self.image_processor = backbone.image_processor
        self.items, self.level_ids = build_training_items(
            config, self.tokenizer, progress=acc.is_main_process, backbone=backbone
        )
        self.lengths = [len(item) for item in self.items]
        self.dataset = TrainingDataset(self.items, backbone.load_pixels, len(config.levels.words))
        self.val_items: list[ValItem] = []
        self.val_attributes: dict[str, list[ValItem]] = {}
        if config.data.val:
            root = Path(config.data.image_root) if config.data.image_root else None
            self.val_items = read_validation_items(config.data.val, root)
            grouped = read_attribute_items(config.data.val, root)
            self.val_attributes = {n: grouped[n] for n in ordered_attributes(grouped)}
            cap = config.validation.max_samples
            if cap:
                self.val_items = self.val_items[:cap]
                self.val_attributes = {k: v[:cap] for k, v in self.val_attributes.items()}
            _check_validation_sets(config, self.val_items, self.val_attributes)
        trained = [item.attribute for item in self.items if item.attribute]
        total_prompt = config.validation.prompt or backbone.default_prompt(config)
        self.questions, self.level_spec = questions_and_level_spec(
            config, trained, self.val_attributes, total_prompt
        )
        self.trained_questions = [self.questions[n] for n in ordered_attributes(trained)]
        backbone.set_scoring(config, total_prompt, self.level_ids)
        try:  # at the start of a run, not when the first release is written
            backbone.check_spec(config, self.level_spec, self.trained_questions)
        except ValueError as error:
            raise ValueError(f"the trained model's spec would be invalid: {error}") from error

        global_batch = config.run.batch_size * self.world
        first = global_micro_batches(
            self.lengths,
            global_batch=global_batch,
            seed=config.run.seed,
            epoch=0,
            group_by_length=config.data.group_by_length,
            min_rows=self.world,
        )
        self.steps_per_epoch = len(first) // config.run.grad_accum
        if self.steps_per_epoch == 0:
            raise EmptyDatasetError(
                f"{len(self.items)} training samples make {len(first)} micro-batches of "
                f"{global_batch}, fewer than grad_accum={config.run.grad_accum}: one step "
                "needs more data (or a smaller batch)"
            )
        self.total_steps = config.run.max_steps or math.ceil(
            config.run.epochs * self.steps_per_epoch
        )
        self.warmup_steps = math.ceil(config.optim.warmup_ratio * self.total_steps)

        model = backbone.load_model(config, self.weight_dtype)
        self.prepared = backbone.prepare(model, config)
        self.trainable_names = [n for n, p in self.prepared.named_parameters() if p.requires_grad]
        params = [p for p in self.prepared.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params,
            lr=config.optim.lr,
            betas=config.optim.betas,
            eps=config.optim.eps,
            weight_decay=config.optim.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda step: lr_multiplier(
                step, self.total_steps, self.warmup_steps, config.optim.scheduler
            ),
        )
        if acc.distributed_type == DistributedType.DEEPSPEED:
            plugin = acc.state.deepspeed_plugin
            ds_config = plugin.deepspeed_config  # type: ignore[union-attr]
            ds_config["train_micro_batch_size_per_gpu"] = config.run.batch_size
            ds_config["gradient_accumulation_steps"] = config.run.grad_accum
            ds_config["train_batch_size"] = global_batch * config.run.grad_accum
            ds_config["gradient_clipping"] = config.optim.max_grad_norm or 0.0
        forward = backbone.training_forward(self.prepared)
        # FSDP's default wrap policy shards each of the model's `_no_split_modules` (decoder
        # layers, vision blocks) as its own unit; it reads them from the module it is given,
        # which is this wrapper: without them the whole model would be one unit.
        units = getattr(core_model(self.prepared), "_no_split_modules", None) or []
        forward._no_split_modules = list(units)  # type: ignore[assignment]
        self.wrapped, self.optimizer = acc.prepare(forward, self.optimizer)
        self.device = acc.device
        self.state = TrainerState(0, 0, 0, 0, world_size=self.world)
        self.validations: list[dict[str, float]] = []
        self.writer: Any = None
        self.weights = LossWeights(
            config.loss.weight_description, config.loss.weight_next_token, config.loss.weight_kl
        )

    # -- checkpoints ---------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        acc = self.accelerator
        target = self.output_dir / checkpoint_name(self.state.global_step)
        rng_states = _gather_objects(acc, capture_rng_state())
        if self.sharded:
            tmp = self.output_dir / f".tmp-{target.name}-sharded"
            acc.save_state(str(tmp))
            acc.wait_for_everyone()
            if acc.is_main_process:
                with atomic_directory(target) as fresh:
                    for child in tmp.iterdir():
                        child.rename(fresh / child.name)
                    tmp.rmdir()
                    self._write_state_files(fresh, rng_states)
                prune_checkpoints(self.output_dir, self.config.checkpoint.keep_last)
        elif acc.is_main_process:
            with atomic_directory(target) as fresh:
                save_trainable(core_model(self.prepared), fresh / TRAINABLE_FILE)
                torch.save(self.optimizer.state_dict(), fresh / OPTIMIZER_FILE)
                self._write_state_files(fresh, rng_states)
            prune_checkpoints(self.output_dir, self.config.checkpoint.keep_last)
        acc.wait_for_everyone()
        logger.info("saved checkpoint %s", target)
        return target

    def _write_state_files(self, folder: Path, rng_states: list[Any]) -> None:
        torch.save(self.scheduler.state_dict(), folder / SCHEDULER_FILE)
        for rank, state in enumerate(rng_states):
            torch.save(state, folder / f"rng_state_{rank}.pt")
        (folder / STATE_FILE).write_text(self.state.to_json(), encoding="utf-8")
        self.config.save(folder / "train_config.yaml")

    def resume(self) -> None:
        checkpoint = latest_checkpoint(self.output_dir)
        if checkpoint is None:
            logger.warning("resume: no complete checkpoint in %s, starting fresh", self.output_dir)
            return
        state = read_trainer_state(checkpoint)
        changed = _changed_settings(checkpoint / "train_config.yaml", self.config)
        if changed:
            logger.warning(
                "resume: these settings differ from the checkpoint's, so the run will not be "
                "an exact continuation: %s",
                ", ".join(changed),
            )
        if self.sharded:
            self.accelerator.load_state(str(checkpoint))
        else:
            load_trainable(core_model(self.prepared), checkpoint / TRAINABLE_FILE)
            self.optimizer.load_state_dict(load_torch_state(checkpoint / OPTIMIZER_FILE))
        self.scheduler.load_state_dict(load_torch_state(checkpoint / SCHEDULER_FILE))
        rng_file = checkpoint / f"rng_state_{self.rank}.pt"
        if state.world_size == self.world and rng_file.is_file():
            restore_rng_state(load_torch_state(rng_file))
        else:
            logger.warning(
                "resume: checkpoint written by %d processes, running %d: RNG states not restored",
                state.world_size,
                self.world,
            )
        self.state = replace(state, world_size=self.world)
        logger.info("resumed from %s at step %d", checkpoint, state.global_step)

    # -- steps ---------------------------------------------------------------------------

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        return global_micro_batches(
            self.lengths,
            global_batch=self.config.run.batch_size * self.world,
            seed=self.config.run.seed,
            epoch=epoch,
            group_by_length=self.config.data.group_by_length,
            min_rows=self.world,
        )

    def loader(self, local_batches: list[list[int]], epoch: int) -> DataLoader[Any]:
        # A DataLoader iterator draws its workers' base seed from its generator, by default
        # the global torch generator, which also drives dropout. A run resumed in the middle
        # of an epoch starts an iterator the uninterrupted run did not, and that extra draw
        # would change every later dropout mask. Its own generator per epoch draws nothing
        # from the global one and gives the workers the same seed either way.
        generator = torch.Generator().manual_seed(self.config.run.seed * 100_003 + epoch)
        return DataLoader(
            self.dataset,
            batch_sampler=local_batches,
            collate_fn=self.backbone.collate_fn(),  # picklable
            num_workers=self.config.data.num_workers,
            generator=generator,
        )

    def train_step(
        self, micro_batches: list[dict[str, torch.Tensor]]
    ) -> tuple[float, dict[str, float], float | None]:
        acc, config = self.accelerator, self.config
        kl_mode = config.loss.kl
        local_counts = sum(
            (count_answer_tokens(b["labels"], b["level_rank"], kl=kl_mode) for b in micro_batches),
            torch.zeros(3, dtype=torch.float64),
        )
        totals = acc.reduce(local_counts.to(self.device), reduction="sum")
        level_ids = torch.tensor(self.level_ids, device=self.device)
        logged = torch.zeros(4, dtype=torch.float64, device=self.device)
        self.wrapped.train()
        for batch in micro_batches:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with acc.accumulate(self.wrapped), acc.autocast():
                sums = self.backbone.loss_sums(
                    self.wrapped, batch, level_ids, kl=kl_mode, dtype=self.weight_dtype
                )
                # DDP averages gradients over processes; the totals already span all of them.
                loss = combine_losses(sums, self.weights, totals) * self.world
                acc.backward(loss * config.run.grad_accum)
            detached = torch.cat([sums.detached_sums(), loss.detach().double().reshape(1)])
            logged += detached.to(self.device)
        logged = acc.reduce(logged, reduction="sum").cpu()
        terms = loss_terms(logged[:3], totals.cpu())
        # each process's loss carries a factor world_size; their sum / world is the step loss
        loss_value = float(logged[3]) / self.world
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"loss is {loss_value} at step {self.state.global_step + 1} (terms {terms}); "
                f"training stopped before the update. The last good checkpoint in "
                f"{self.output_dir} is kept; lower optim.lr or check the data."
            )
        grad_norm = None
        if config.optim.max_grad_norm is not None:
            norm = acc.clip_grad_norm_(self.wrapped.parameters(), config.optim.max_grad_norm)
            grad_norm = None if norm is None else float(norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, terms, grad_norm

    # -- validation ----------------------------------------------------------------------

    def validate(self) -> dict[str, float] | None:
        if not self.val_items and not self.val_attributes:
            return None
        acc = self.accelerator
        metrics: dict[str, float] = {}
        if self.val_items:
            pred = self._score_sharded(self.val_items, None)
            target = [item.score for item in self.val_items]
            metrics.update(metrics_of(np.asarray(pred), np.asarray(target)))
        if self.val_attributes:
            metrics.update(self._validate_attributes())
        record = {"step": float(self.state.global_step), **metrics}
        self.validations.append(record)
        if acc.is_main_process:
            logger.info("validation %s", _json_line(record))
            self._log_scalars({f"val/{k}": v for k, v in metrics.items()})
            with (self.output_dir / "validation.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(_json_line(record) + "\n")
        self._maybe_update_best(metrics)
        return metrics

    def _validate_attributes(self) -> dict[str, float]:
        """Each attribute scored with its own question; metrics per attribute and their mean."""
        predictions: dict[str, np.ndarray] = {}
        targets: dict[str, np.ndarray] = {}
        for name, items in self.val_attributes.items():
            question: AttributeQuestion = self.questions[name]
            predictions[question.id] = np.asarray(self._score_sharded(items, question))
            targets[question.id] = np.asarray([item.score for item in items])
        return attribute_metrics(predictions, targets)

    def _score_sharded(
        self, items: list[ValItem], question: AttributeQuestion | None
    ) -> list[float]:
        """Score ``items`` with one question (``None``: the total), each process a strided
        share; all scores, in order."""
        shard = items[self.rank :: self.world]
        core = core_model(self.prepared)
        was_training = core.training
        core.eval()
        scores = self.backbone.score(
            self.prepared,
            [item.image for item in shard],
            question=question,
            device=self.device,
            batch_size=self.config.validation.batch_size,
            autocast=self.accelerator.autocast,
        )
        core.train(was_training)
        gathered = _gather_objects(self.accelerator, scores.tolist())
        pred = [0.0] * len(items)
        for rank, values in enumerate(gathered):
            for offset, value in enumerate(values):
                pred[rank + offset * self.world] = value
        return pred

    def _maybe_update_best(self, metrics: dict[str, float]) -> None:
        name = self.config.validation.metric
        key = name if self.config.validation.best_on == "total" else f"{ATTRIBUTE_MEAN}/{name}"
        value = metrics[key]
        if not math.isfinite(value):
            return
        best = self.state.best_metric
        better = best is None or (value < best if name == "mae" else value > best)
        if not better:
            return
        self.state = replace(self.state, best_metric=value, best_step=self.state.global_step)
        self.export(self.output_dir / "best")

    def export(self, folder: Path) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        state = None
        if self.shards_weights:
            # FSDP and ZeRO-3 hold a shard of each tensor per process: gather the full tensors
            # (a collective, so every process takes part; the main process receives them)
            state = _prepared_names(acc.get_state_dict(self.wrapped))
        if acc.is_main_process:
            self.backbone.write_release(
                self.prepared,
                folder,
                config=self.config,
                dtype=None if self.weight_dtype == torch.float32 else self.weight_dtype,
                level_spec=self.level_spec,
                questions=self.trained_questions,
                state_dict=state,
            )
        acc.wait_for_everyone()

    # -- logging -------------------------------------------------------------------------

    def open_writer(self) -> None:
        mode = self.config.logging.tensorboard
        if mode == "off" or not self.accelerator.is_main_process:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            if mode == "on":
                raise TrainError(
                    "logging.tensorboard=on needs TensorBoard: "
                    "pip install 'artquant-train[tensorboard]'"
                ) from exc
            logger.info("TensorBoard not installed; logging to metrics.jsonl only")
            return
        self.writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))

    def _log_scalars(self, values: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if math.isfinite(value):
                self.writer.add_scalar(key, value, self.state.global_step)


# Settings that may change between an interrupted run and its resumption without changing what
# the remaining steps compute. (run.max_steps / run.epochs are not among them: they set the
# length of the learning-rate schedule.)
_RESUME_FREE = (
    "run.resume",
    "checkpoint.",
    "validation.",
    "logging.",
    "run.output_dir",
    "data.num_workers",
    "data.val",
)


def _check_validation_sets(
    config: TrainConfig, total: list[ValItem], attributes: dict[str, list[ValItem]]
) -> None:
    """The validation file must hold what ``validation.best_on`` reads."""
    if not total and not attributes:
        raise TrainError(f"validation file {config.data.val} holds no score or attribute samples")
    if config.validation.best_on == "attribute_mean" and not attributes:
        raise TrainError(
            f"validation.best_on=attribute_mean but {config.data.val} holds no attribute samples "
            "(task_type 'attribute'); prepare it with --tasks score,attribute, or pick best/ on "
            "the total (validation.best_on=total)"
        )
    if config.validation.best_on == "total" and not total:
        raise TrainError(
            f"validation.best_on=total but {config.data.val} holds no score samples; add them or "
            "set validation.best_on=attribute_mean"
        )


def _write_curves(output_dir: Path, *, required: bool) -> None:
    from artquant_train.plotting import plot_training

    try:
        import matplotlib.pyplot as plt
    except ImportError:
        if required:
            raise TrainError(
                "logging.plot=on needs matplotlib: pip install 'artquant-train[plot]'"
            ) from None
        logger.info("matplotlib not installed; no training_curves.png")
        return
    try:
        figure = plot_training(output_dir, output_dir / "training_curves.png")
    except TrainError as error:
        # e.g. a resumed run whose folder lost metrics.jsonl and logged no step since: the
        # weights are written by now, so a figure that cannot be drawn does not fail the run
        if required:
            raise
        logger.info("no training_curves.png: %s", error)
        return
    plt.close(figure)


def _json_line(record: dict[str, Any]) -> str:
    """Strict JSON (NaN, e.g. a loss term without rows, becomes null)."""
    clean = {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in record.items()
    }
    return json.dumps(clean)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flatten(value, f"{prefix}{key}."))
    return out


def _changed_settings(saved: Path, config: TrainConfig) -> list[str]:
    """Dotted keys whose value differs from the checkpoint's config (ignoring harmless ones)."""
    import yaml

    if not saved.is_file():
        return []
    before = _flatten(yaml.safe_load(saved.read_text(encoding="utf-8")) or {})
    after = _flatten(config.model_dump(mode="json"))
    return sorted(
        key
        for key in set(before) | set(after)
        if before.get(key) != after.get(key) and not key.startswith(_RESUME_FREE)
    )


def _sharding_on_cpu_processes(accelerator: Any) -> None:
    """Run FSDP when the launch asks for it on CPU processes (gloo).

    accelerate (1.x) turns an FSDP launch (``ACCELERATE_USE_FSDP=true``, set by ``accelerate
    launch`` with an FSDP config) into FSDP only on GPUs and other accelerators; on CPU
    processes it keeps plain data parallelism without a word, so a run the user asked to shard
    would hold the whole model in every process. torch's FSDP2 (``fully_shard``) shards over a
    CPU device mesh with gloo, so the run gets the FSDP state accelerate would have given it on
    a GPU, and ``accelerator.prepare`` shards the model.

    A DeepSpeed launch on CPU processes would likewise run as plain data parallelism; it is
    refused (DeepSpeed's own CPU support is not reachable through accelerate).

    Raises:
        TrainError: the launch asks for FSDP version 1, which needs a GPU, or for DeepSpeed.
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if accelerator.distributed_type != DistributedType.MULTI_CPU:
        return
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        raise TrainError(
            "a DeepSpeed launch on CPU processes: accelerate hands DeepSpeed to GPUs only and "
            "would run plain data parallelism here, every process holding the whole model. On "
            "the CPU use accelerate_fsdp.yaml (FSDP2 over gloo) or accelerate_cpu_gloo.yaml"
        )
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables of the launch
    if plugin.fsdp_version != 2:
        raise TrainError(
            f"FSDP version {plugin.fsdp_version} runs on GPUs only; on CPU processes use "
            "fsdp_version: 2 (FSDP2, what accelerate_fsdp.yaml sets) or DDP"
        )
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    accelerator.state.fsdp_plugin = plugin
    accelerator.state.distributed_type = DistributedType.FSDP
    # accelerate re-reads the process-level state when it builds its state again (prepare
    # does): set it there too, as accelerate does for the GPU types
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    if accelerator.is_main_process:
        logger.info("FSDP2 on %d CPU processes (gloo)", accelerator.num_processes)


def _prepared_names(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of the training wrapper keyed as the prepared model's own (the wrapper
    holds the prepared model as ``model``)."""
    prefix = "model."
    return {key.removeprefix(prefix): tensor for key, tensor in state.items()}


def _accelerator_available() -> bool:
    if torch.cuda.is_available():
        return True
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return True
    return bool(torch.backends.mps.is_available())


def _gather_objects(accelerator: Any, obj: Any) -> list[Any]:
    if accelerator.num_processes == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * accelerator.num_processes
    dist.all_gather_object(out, obj)
    return out


def train(
    config: TrainConfig, *, on_step_end: Callable[[StepInfo], None] | None = None
) -> TrainResult:
    """Run the ArtQuant training recipe described by ``config``.

    Run it in one process (``artquant-train ...``) or several (``accelerate launch`` /
    ``torchrun``); each process calls ``train`` with the same configuration.

    Args:
        config: the resolved configuration (see :func:`artquant_train.load_config`).
        on_step_end: called on every process after every optimizer step with a
            :class:`StepInfo` (progress hooks, tests).

    Returns:
        The :class:`TrainResult`.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (the last good checkpoint stays).
        MissingImageError, EmptyDatasetError, SampleError, LevelTokenError: bad data.

    Example:
        >>> result = train(load_config("train.yaml"))  # doctest: +SKIP
        >>> result.final_dir  # doctest: +SKIP
        PosixPath('runs/artquant/final')
    """
    run = _Run(config, on_step_end)
    acc = run.accelerator
    if acc.is_main_process:
        logger.info(
            "training: %d samples, %d processes, %d steps (%d per epoch), global batch %d",
            len(run.items),
            run.world,
            run.total_steps,
            run.steps_per_epoch,
            config.run.batch_size * run.world * config.run.grad_accum,
        )
    if config.run.resume:
        run.resume()
    run.open_writer()
    progress = None
    if config.logging.progress_bar and acc.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(
            total=run.total_steps,
            initial=run.state.global_step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
    metrics_file = run.output_dir / "metrics.jsonl"
    last_loss: float | None = None
    last_saved = run.state.global_step
    last_validated = -1
    started = time.perf_counter()
    samples_at_start = run.state.samples_seen
    try:
        while run.state.global_step < run.total_steps:
            state = run.state
            batches = run.epoch_batches(state.epoch)
            usable = (len(batches) // config.run.grad_accum) * config.run.grad_accum
            if state.micro_batches_done >= usable:
                run.state = replace(state, epoch=state.epoch + 1, micro_batches_done=0)
                continue
            remaining = batches[state.micro_batches_done : usable]
            local = [rank_slice(b, run.rank, run.world) for b in remaining]
            iterator = iter(run.loader(local, state.epoch))
            position = 0
            while position < len(remaining) and run.state.global_step < run.total_steps:
                group = [next(iterator) for _ in range(config.run.grad_accum)]
                rows = sum(len(b) for b in remaining[position : position + config.run.grad_accum])
                position += config.run.grad_accum
                lr = float(run.scheduler.get_last_lr()[0])
                loss, terms, grad_norm = run.train_step(group)
                last_loss = loss
                s = run.state
                run.state = replace(
                    s,
                    global_step=s.global_step + 1,
                    micro_batches_done=s.micro_batches_done + config.run.grad_accum,
                    samples_seen=s.samples_seen + rows,
                )
                step = run.state.global_step
                elapsed = max(time.perf_counter() - started, 1e-9)
                rate = (run.state.samples_seen - samples_at_start) / elapsed
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(
                        loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}"
                    )
                if acc.is_main_process and (step % config.logging.every == 0 or step == 1):
                    record = {
                        "step": step,
                        "epoch": s.epoch,
                        "loss": loss,
                        "lr": lr,
                        "grad_norm": grad_norm,
                        "samples_per_s": rate,
                        **terms,
                    }
                    logger.info("step %s", _json_line(record))
                    with metrics_file.open("a", encoding="utf-8") as handle:
                        handle.write(_json_line(record) + "\n")
                    run._log_scalars(
                        {
                            "train/loss": loss,
                            "train/lr": lr,
                            "train/samples_per_s": rate,
                            **{f"train/{k}": v for k, v in terms.items()},
                        }
                    )
                if run.on_step_end is not None:
                    run.on_step_end(
                        StepInfo(
                            step,
                            s.epoch,
                            loss,
                            terms,
                            lr,
                            grad_norm,
                            run.rank,
                            run.world,
                            run.prepared,
                        )
                    )
                every_val = config.validation.every
                if (run.val_items or run.val_attributes) and every_val and step % every_val == 0:
                    run.validate()
                    last_validated = step
                every = config.checkpoint.every
                if every and step % every == 0 and step < run.total_steps:
                    run.save_checkpoint()
                    last_saved = step
    finally:
        if progress is not None:
            progress.close()
    if (run.val_items or run.val_attributes) and last_validated != run.state.global_step:
        run.validate()
    if config.checkpoint.every and last_saved != run.state.global_step:
        run.save_checkpoint()
    final_dir = None
    if config.checkpoint.save_final:
        final_dir = run.output_dir / "final"
        run.export(final_dir)
    best_dir = run.output_dir / "best" if run.state.best_metric is not None else None
    if config.checkpoint.merge_lora and config.lora.enabled and acc.is_main_process:
        for folder in (final_dir, best_dir):
            if folder is not None:
                run.backbone.merge_release(
                    folder,
                    config=run.config,
                    level_spec=run.level_spec,
                    questions=run.trained_questions,
                )
    if acc.is_main_process and config.logging.plot != "off":
        _write_curves(run.output_dir, required=config.logging.plot == "on")
    acc.wait_for_everyone()
    if run.writer is not None:
        run.writer.close()
    acc.end_training()
    return TrainResult(
        output_dir=run.output_dir,
        final_dir=final_dir,
        best_dir=best_dir,
        global_step=run.state.global_step,
        best_metric=run.state.best_metric,
        validations=list(run.validations),
        last_loss=last_loss,
    )


__all__ = ["StepInfo", "TrainResult", "build_training_items", "lr_multiplier", "train"]
