"""Score image collections on a Ray cluster with Ray Data (the ``artquant-sdk[ray]`` extra).

:func:`score_dataset` builds one Ray Data pipeline:

1. **read** (CPU tasks): the sources (image folders or globs, Parquet/CSV manifests with a path or
   bytes column, WebDataset-style tar shards; local or object storage) expanded into units
   (:mod:`artquant_sdk._ray_sources`), each read by one task;
2. **decode and preprocess** (the same CPU tasks): each picture through the backbone's own
   image processor, an unreadable one to an error. A picture travels as the processor's float32
   output in raw bytes with its shape (and its patch grid or tile count for the generic
   backbone's families), so pictures of different sizes travel side by side and the actor only
   joins them;
3. **score** (actors): ``map_batches`` with a callable class, ``concurrency`` actors that each
   load the model once (``num_gpus`` each) and score ``batch_size`` pictures per
   ``Backbone.score`` call (one forward pass); each scored batch is committed as one Parquet
   part file (:mod:`artquant_sdk._ray_store`);
4. **merge** (the driver): the parts, each id once, in input order, into the output Parquet file
   with the columns of ``artquant score``.

A run killed anywhere (driver, actor, task) keeps every committed part; ``resume=True`` scores
only the ids without a row. The command line runs the same with
``artquant score ... --out scores.parquet --engine ray``.

Importing this module needs Ray Data (``pip install 'artquant-sdk[ray]'``); ``artquant_sdk``
itself never imports Ray.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

try:
    import pyarrow as pa
    import ray
    import ray.data
except ImportError as _error:  # pragma: no cover - exercised in the isolated environment
    raise ImportError(
        "artquant_sdk.ray needs Ray Data; install the extra: pip install 'artquant-sdk[ray]' "
        "(in the workspace, `uv sync` installs it)"
    ) from _error

from artquant_sdk._decode import describe_error
from artquant_sdk._ray_sources import (
    ManifestColumns,
    Unit,
    apply_resume,
    expand_sources,
    order_keys,
    read_unit,
    units_table,
)
from artquant_sdk._ray_store import (
    Location,
    commit_part,
    merge_parts,
    parts_location,
    read_done_ids,
    remove_parts,
    remove_temporary,
    rows_to_table,
)

__all__ = ["ScoreDatasetSummary", "ScorerLoadError", "score_dataset"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "artquant-apdd"
_UNITS_PER_BLOCK = 64  # files per read task: enough to amortise a task, few enough to spread
# Bytes a read task reserves: torch, transformers and the image processor (about 550 MiB) and
# its output; measured up to 1,012 MiB with Qwen2.5-VL's float32 payloads (4.8 MB a picture at
# 448 px), hence the margin.
_READ_TASK_MEMORY = 1536 * 2**20


class ScorerLoadError(RuntimeError):
    """The model could not be resolved or loaded (on the driver or in an actor)."""


class ScoreDatasetSummary(BaseModel):
    """What :func:`score_dataset` did.

    Attributes:
        output: The output Parquet file.
        rows: Rows in the output (each input id once).
        scored: Rows with a score.
        errors: Rows with an ``error``.
        already_done: Ids a resumed run found done and did not score again.
        new_rows: Rows this run produced (before removing duplicates of retried batches).
        seconds: Wall time of the run on the driver, Ray start-up and merge included.
        startup_seconds: From the start until the first scored batch was committed (Ray
            start-up, actors loading the model, the first batch read and decoded); None if
            nothing was scored.
        actor_busy_seconds: Time the actors spent inside their scoring calls, summed over actors.
        actor_cpu_seconds: CPU time of the actor processes inside those calls (all threads).
        actors: How many actors scored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    output: str
    rows: int
    scored: int
    errors: int
    already_done: int
    new_rows: int
    seconds: float
    startup_seconds: float | None
    actor_busy_seconds: float
    actor_cpu_seconds: float
    actors: int

    @property
    def actor_images_per_second(self) -> float:
        """Images per second per actor once started: new rows over the actors' busy time."""
        return self.new_rows / self.actor_busy_seconds if self.actor_busy_seconds > 0 else 0.0


class _ScorerSpec(BaseModel):
    """How each actor loads its scorer (the arguments of ``ArtQuant.from_pretrained``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    base: str | None = None
    tokenizer: str | None = None
    device: str | None = None
    dtype: str | None = None
    revision: str | None = None
    local_files_only: bool = False
    levels: str | None = None
    attributes: tuple[str, ...] | None = None
    zero_shot_attributes: bool = False
    tune_malloc: bool = True
    max_pixels: int | None = Field(default=None, ge=1)


class _PixelsPayload:
    """How a picture travels from a read task to an actor, for any backbone: the image
    processor's own output for it, as it goes into the model (float32), as raw bytes with its
    shape.

    A picture's pixels are a tensor (mPLUG-Owl2: ``[3, S, S]``), a one-picture ``VisionBatch`` for
    the Qwen-VL families (``[patches, C*T*P*P]`` patches and the ``(t, h, w)`` grid) or a
    one-picture ``TileBatch`` for Gemma 3 / InternVL (``[tiles, 3, S, S]`` and the tokens per tile),
    whose size depends on the picture's: rows of one batch have different lengths, so the pixels
    travel as an Arrow binary column (no tensor type, whose shape Ray Data would have to unify
    across blocks) beside fixed-width ``shape`` and ``grid`` columns. The actor only joins the rows,
    as ``artquant_model.stack_pixels`` does, so it scores exactly the pixels ``ArtQuant.score``
    computes, and the whole preprocessing (normalisation too) stays in the read tasks.
    (mPLUG-Owl2's uint8 ``[S, S, 3]`` pictures, normalised in the actor, are a quarter of the
    bytes but cost the actor ten times the time per picture: measured in
    ``benchmarks/ray_throughput.py``.)
    """

    def __init__(self, image_processor: Any) -> None:
        from artquant_model import TileBatch, VisionBatch

        self.image_processor = image_processor
        # One small picture tells the kind of output (tensor, VisionBatch or TileBatch) and its
        # rank. The ``grid`` column holds a picture's patch grid (t, h, w) for a VisionBatch and
        # (tiles, tokens per tile, 0) for a TileBatch.
        probe = image_processor([np.zeros((32, 32, 3), dtype=np.uint8)])
        self.kind = (
            "vision"
            if isinstance(probe, VisionBatch)
            else "tiles"
            if isinstance(probe, TileBatch)
            else "tensor"
        )
        values = probe[0] if self.kind == "tensor" else probe.pixel_values
        self.dtype = np.dtype(str(values.dtype).removeprefix("torch."))
        self.ndim = int(values.dim())

    @property
    def vision(self) -> bool:
        """Whether the pixels come with a ``grid`` column (a VisionBatch or a TileBatch)."""
        return self.kind != "tensor"

    def encode(self, source: str | bytes, limit: Mapping[str, int]) -> dict[str, Any]:
        pixels = self.image_processor([source], **limit)
        values = (pixels.pixel_values if self.vision else pixels[0]).contiguous().numpy()
        row = {"pixels": values.tobytes(), "shape": np.asarray(values.shape, dtype=np.int64)}
        if self.kind == "vision":
            row["grid"] = pixels.image_grid_thw[0].numpy().astype(np.int64)
        elif self.kind == "tiles":
            tiles = int(pixels.tiles[0])
            row["grid"] = np.asarray([tiles, pixels.tokens_per_tile, 0], dtype=np.int64)
        return row

    def placeholder(self) -> dict[str, Any]:
        row = {"pixels": b"", "shape": np.zeros(self.ndim, dtype=np.int64)}
        if self.vision:
            row["grid"] = np.zeros(3, dtype=np.int64)
        return row

    def columns(self, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        out = {
            "pixels": np.array([r["pixels"] for r in rows], dtype=object),
            "shape": np.stack([r["shape"] for r in rows]),
        }
        if self.vision:
            out["grid"] = np.stack([r["grid"] for r in rows])
        return out

    def pixels(self, batch: Mapping[str, np.ndarray], rows: list[int]) -> Any:
        import torch

        from artquant_model import TileBatch, VisionBatch

        parts = [
            np.frombuffer(batch["pixels"][i], dtype=self.dtype).reshape(batch["shape"][i])
            for i in rows
        ]
        if self.kind == "tensor":
            return torch.from_numpy(np.stack(parts))
        grid = np.asarray(batch["grid"][rows], dtype=np.int64)
        # concatenate copies out of the read-only Arrow buffers
        values = torch.from_numpy(np.concatenate(parts))
        if self.kind == "vision":
            return VisionBatch(values, torch.from_numpy(grid))
        return TileBatch(values, torch.from_numpy(grid[:, 0].copy()), int(grid[0, 1]))


class _Backbone:
    """The one adapter between this engine and the SDK's model internals, for any backbone.

    Everything model-specific the pipeline needs goes through here: the preprocessing that runs
    in CPU tasks (:meth:`decode`, with the backbone's own picklable image processor), the payload
    a picture travels as (:class:`_PixelsPayload`), loading the scorer once per actor
    (:meth:`load`), scoring a batch through ``Backbone.score`` (:meth:`score`) and the level
    words (the output's ``p_`` columns).

    Built on the driver, which reads the model's preprocessing settings and scorer spec without
    loading any weights (resolving, and if allowed downloading, the model folder there); the
    actors load the weights themselves and check that their image processor and level words are
    the driver's.
    """

    def __init__(self, spec: _ScorerSpec) -> None:
        self.spec = spec
        try:
            self.image_processor, scorer_spec = _preprocessing_for(spec)
            self.words = list(scorer_spec.words)
            self.payload = _PixelsPayload(self.image_processor)
        except Exception as error:
            raise ScorerLoadError(f"could not load model {spec.model!r}: {error}") from error
        from artquant_sdk._api import _resolve_attribute_keys

        # checked here, before any actor starts; each actor resolves them again on its model
        self.attributes, _ = _resolve_attribute_keys(
            scorer_spec, spec.model, spec.attributes, zero_shot=spec.zero_shot_attributes
        )
        self._scorer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # shipped to tasks and actors without a loaded model
        return {**self.__dict__, "_scorer": None}

    # --- CPU tasks ------------------------------------------------------------------------

    def decode(self, source: str | bytes) -> dict[str, Any]:
        """One picture (a local path or encoded bytes) to its payload columns.

        Raises:
            ImageLoadError: The picture cannot be read (the message names a path source).
        """
        limit = {} if self.spec.max_pixels is None else {"max_pixels": self.spec.max_pixels}
        return self.payload.encode(source, limit)

    def placeholder(self) -> dict[str, Any]:
        """The payload of a picture that could not be read (never scored)."""
        return self.payload.placeholder()

    # --- actors ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load the scorer (once per actor).

        Raises:
            ScorerLoadError: The model cannot be loaded, or its level words or preprocessing
                differ from those the driver read (the tasks would feed it other pixels).
        """
        import torch

        from artquant_sdk._api import ArtQuant

        spec = self.spec
        try:
            self._scorer = ArtQuant.from_pretrained(
                spec.model,
                base=spec.base,
                tokenizer=spec.tokenizer,
                device=spec.device,
                dtype=spec.dtype,
                revision=spec.revision,
                local_files_only=spec.local_files_only,
                levels=spec.levels,
            )
        except Exception as error:
            raise ScorerLoadError(f"could not load model {spec.model!r}: {error}") from error
        asked = self._scorer.resolve_attributes(
            self.attributes, zero_shot=spec.zero_shot_attributes
        )
        if asked != self.attributes:
            raise ScorerLoadError(
                f"the actor's model gives attributes {asked}, the driver expected {self.attributes}"
            )
        if self._scorer.level_words != self.words:
            raise ScorerLoadError(
                f"the actor's model has level words {self._scorer.level_words}, the driver "
                f"expected {self.words}"
            )
        loaded = _processor_settings(self._scorer.backbone.image_processor)
        driver = _processor_settings(self.image_processor)
        if loaded != driver:
            differ = sorted(
                k for k in loaded.keys() | driver.keys() if loaded.get(k) != driver.get(k)
            )
            raise ScorerLoadError(
                "the actor's model preprocesses pictures otherwise than the driver's read tasks: "
                + "; ".join(f"{k}: {loaded.get(k)!r} (driver: {driver.get(k)!r})" for k in differ)
            )
        if self._scorer.device.type == "cpu" and spec.tune_malloc:
            # the actor owns its worker process, as the command owns its own
            from artquant_sdk._malloc import keep_freed_memory

            keep_freed_memory()
        logger.info(
            "actor %d loaded %r (%d threads)", os.getpid(), self._scorer, torch.get_num_threads()
        )

    def score(self, batch: Mapping[str, np.ndarray], rows: list[int]) -> list[dict[str, object]]:
        """Score the pictures at ``rows`` of a payload batch in one ``Backbone.score`` call (with
        attributes: one ``Backbone.score_questions`` call); one ``artquant score`` row each (no
        id)."""
        pixels = self.payload.pixels(batch, rows)
        out: list[dict[str, object]] = []
        for (score, std, probs), attributes in self._scorer.score_batch(pixels, self.attributes):
            result = self._scorer.to_result("", score, std, probs, attributes)
            row: dict[str, object] = {"score": result.score, "std": result.std}
            row["level"] = result.level
            row.update({f"p_{w}": p for w, p in result.probs.items()})
            for name, value in result.attributes.items():
                row[f"score_{name}"] = value.score
                row[f"std_{name}"] = value.std
            out.append(row)
        return out


def _preprocessing_for(spec: _ScorerSpec) -> tuple[Any, Any]:
    """The image processor and scorer spec ``ArtQuant.from_pretrained`` would build, read from the
    model's folders without loading any weights.

    The same choices: the checkpoint and (for a LoRA release or adapter) its base; the first of
    them holding ``preprocessor_config.json``; the spec from ``levels``, else the ModelZoo
    entry, else the folders' ``artquant_spec.json``, else ArtQuant's. A checkpoint without a
    ``model_type`` is left to the mPLUG-Owl2 loader, as ``ArtQuant.from_pretrained`` does.
    """
    from artquant_model import ARTQUANT_SPEC, MPLUGOwl2ImageProcessor, lora_base_folder, read_spec
    from artquant_model.backbones import UnsupportedModelError, checkpoint_model_type, family_of
    from artquant_model.backbones.hf_vlm.families import vlm_family
    from artquant_sdk._api import _card_spec, _levels_spec
    from artquant_sdk._zoo import resolve_weights

    weights = resolve_weights(
        spec.model, revision=spec.revision, local_files_only=spec.local_files_only
    )
    card = weights.card
    folders = [weights.path]
    if (weights.path / "adapter_config.json").is_file():
        base = spec.base or (card.base if card else None) or lora_base_folder(weights.path)
        if base is not None:
            folders.append(resolve_weights(base, local_files_only=spec.local_files_only).path)
    scorer_spec = _levels_spec(spec.levels)
    if scorer_spec is None and card is not None:
        scorer_spec = _card_spec(card)
    if scorer_spec is None:
        scorer_spec = next((s for s in map(read_spec, folders) if s is not None), ARTQUANT_SPEC)
    try:
        model_type = checkpoint_model_type(weights.path, folders[-1])
        family = family_of(model_type)
    except UnsupportedModelError:
        family = "mplug_owl2"  # no model type to read: the mPLUG-Owl2 loader decides, as before
    folder = next((f for f in folders if (f / "preprocessor_config.json").is_file()), folders[0])
    if family == "mplug_owl2":
        return MPLUGOwl2ImageProcessor.from_pretrained(folder), scorer_spec
    from transformers import AutoConfig

    # The family's own processor (patches for Qwen, tiles for Gemma 3 / InternVL), built from
    # the base's config alone (tokens per tile): no weights are read on the driver.
    config = AutoConfig.from_pretrained(str(folders[-1]))
    images = vlm_family(model_type).image_processor(folder, config, scorer_spec.resolution)
    return images, scorer_spec


def _processor_settings(processor: Any) -> dict[str, str]:
    """What decides an image processor's pixels, setting by setting (compared between the driver
    and each actor)."""
    inner = getattr(processor, "image_processor", None)  # VisionImageProcessor wraps HF's
    settings: dict[str, Any] = {"class": type(processor).__name__}
    if inner is not None:
        settings.update(inner.to_dict())
        settings["resolution"] = processor.resolution.model_dump()
        for name in ("tokens_per_tile", "crop_to_patches"):  # TileImageProcessor's own settings
            if hasattr(processor, name):
                settings[name] = getattr(processor, name)
    else:
        settings.update(processor.to_dict())
    return {key: json.dumps(value, sort_keys=True, default=str) for key, value in settings.items()}


class _Pending(NamedTuple):
    """One decoded (or failed) picture waiting in a read task's batch."""

    image: str
    unit: int
    item: int
    payload: dict[str, Any]
    error: str


def _payload_batch(backbone: _Backbone, rows: list[_Pending]) -> dict[str, np.ndarray]:
    return {
        "image": np.array([r.image for r in rows], dtype=object),
        "unit": np.array([r.unit for r in rows], dtype=np.int64),
        "item": np.array([r.item for r in rows], dtype=np.int64),
        "error": np.array([r.error for r in rows], dtype=object),
        **backbone.payload.columns([r.payload for r in rows]),
    }


def _read_and_decode(
    units: pa.Table, *, backbone: _Backbone, columns: ManifestColumns, batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """CPU task: read the units' pictures and preprocess them, ``batch_size`` rows at a time.

    An unreadable picture gets its error (and a placeholder payload), never an exception.
    """
    pending: list[_Pending] = []
    for unit in units.to_pylist():
        for image_id, item, source, error in read_unit(unit, columns):
            payload = None
            if error is None and source is not None:
                try:
                    payload = backbone.decode(source)
                except Exception as failure:
                    # any failure of one picture (decoder, conversion, resize) becomes its row
                    error = describe_error(failure)
            pending.append(
                _Pending(
                    image_id,
                    int(unit["unit"]),
                    item,
                    payload if payload is not None else backbone.placeholder(),
                    error or "",
                )
            )
            if len(pending) >= batch_size:
                yield _payload_batch(backbone, pending)
                pending = []
    if pending:
        yield _payload_batch(backbone, pending)


class _ScoreActor:
    """Actor: loads the scorer once, then scores batches and commits each as one part file."""

    def __init__(self, backbone: _Backbone, parts: Location) -> None:
        import torch

        # As many torch threads as CPUs reserved (Ray's OMP_NUM_THREADS may come too late: torch
        # is imported while this actor's arguments are unpickled).
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
        if cpus:
            torch.set_num_threads(max(1, int(cpus)))
        self.backbone = backbone
        self.backbone.load()
        self.parts = parts
        self.words = backbone.words
        self.attributes = backbone.attributes

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        cpu = time.process_time()
        ids = [str(i) for i in batch["image"]]
        errors = [str(e) or None for e in batch["error"]]
        rows: list[dict[str, object]] = [
            {"image": image_id, "error": error} for image_id, error in zip(ids, errors, strict=True)
        ]
        good = [i for i, error in enumerate(errors) if error is None]
        if good:
            try:
                scored = list(zip(good, self.backbone.score(batch, good), strict=True))
            except Exception:
                # one picture must not sink the batch (out of memory, say): one at a time
                scored = []
                for i in good:
                    try:
                        scored.append((i, self.backbone.score(batch, [i])[0]))
                    except Exception as error:
                        rows[i]["error"] = describe_error(error)
            for i, row in scored:
                rows[i] = {"image": ids[i], **row}
        table = rows_to_table(
            rows, self.words, batch["unit"].tolist(), batch["item"].tolist(), self.attributes
        )
        commit_part(self.parts, table)
        return {
            "rows": np.array([len(rows)]),
            "errors": np.array([sum(1 for r in rows if r.get("error"))]),
            "actor": np.array([os.getpid()]),
            "busy_s": np.array([time.perf_counter() - started]),
            "cpu_s": np.array([time.process_time() - cpu]),
            # when this batch was committed (wall clock): the driver may see results later,
            # when Ray hands it a bundle of them
            "done_at": np.array([time.time()]),
        }


def _blocks(units: Sequence[Unit]) -> list[pa.Table]:
    """The units as Ray blocks, one read task each: files in groups of ``_UNITS_PER_BLOCK``, a
    shard or a manifest's row group alone (it holds many pictures already)."""
    blocks: list[pa.Table] = []
    files: list[Unit] = []
    for unit in units:
        if unit.kind == "file":
            files.append(unit)
            if len(files) == _UNITS_PER_BLOCK:
                blocks.append(units_table(files))
                files = []
        else:
            blocks.append(units_table([unit]))
    if files:
        blocks.append(units_table(files))
    return blocks


def _connect(address: str | None) -> None:
    if ray.is_initialized():
        if address is not None:
            logger.info("Ray is already initialised in this process; ignoring address %s", address)
        return
    ray.init(address=address, logging_level=logging.WARNING)


def _cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


def score_dataset(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    base: str | os.PathLike[str] | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    revision: str | None = None,
    local_files_only: bool = False,
    levels: str | None = None,
    batch_size: int = 8,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float = 1.0,
    recursive: bool = False,
    path_column: str = "path",
    bytes_column: str = "bytes",
    id_column: str | None = None,
    max_pixels: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    tune_malloc: bool = True,
    ray_address: str | None = None,
    attributes: str | Sequence[str] | None = None,
    zero_shot_attributes: bool = False,
) -> ScoreDatasetSummary:
    """Score every picture of ``sources`` on Ray into one Parquet file, each id exactly once.

    Args:
        sources: Image folders, globs, image files, Parquet/CSV manifests and tar shards; local
            paths or URIs of any pyarrow filesystem (``s3://``, ``gs://``, ...).
        output: The output ``.parquet`` file (local or a URI). Part files live in
            ``.<name>.parts/`` beside it until the merge.
        model: A ModelZoo name, a checkpoint folder or a hub id (as ``ArtQuant.from_pretrained``).
        base: The base of a LoRA release.
        tokenizer: A tokenizer folder when the checkpoint has none.
        device: The actors' device; None: ``cuda`` with GPUs per actor, else ``cpu``.
        dtype: As ``ArtQuant.from_pretrained`` (default bfloat16 on CUDA, float32 on CPU).
        revision: Hub revision.
        local_files_only: Never download.
        levels: A level preset name (``artquant``, ``qalign``, ``onealign``).
        batch_size: Pictures per forward pass (and per part file).
        actors: Scoring actors (each loads the model once); None: GPUs // ``gpus_per_actor`` on a
            cluster with GPUs, else 1.
        gpus_per_actor: GPUs each actor reserves (fractions share a GPU); None: 1 where the
            cluster has GPUs, else 0.
        cpus_per_actor: CPUs each actor reserves (Ray then gives it as many torch threads).
        recursive: Descend into sub-folders of folder sources.
        path_column: A manifest's column of picture paths.
        bytes_column: A Parquet manifest's column of encoded pictures.
        id_column: A manifest's id column (default: the path, or ``<manifest>#<row>``).
        max_pixels: Decompression-bomb limit (default ``artquant_model``'s).
        resume: Keep the rows the output and its parts hold; score only the rest.
        overwrite: Replace an existing output (and its parts).
        progress: Show a progress bar (None: when stderr is a terminal).
        tune_malloc: On CPU actors, keep freed memory in the heap (see ``artquant score``).
        ray_address: The cluster to join (``auto``, ``ray://host:10001``, ...); None: the one in
            ``RAY_ADDRESS``, else a new local instance. A Ray already initialised in this process
            is used as it is.
        attributes: Also score attributes, as ``ArtQuant.score(attributes=...)``: None,
            ``"all"`` or names; adds ``score_<id>`` and ``std_<id>`` columns (resuming needs the
            same attributes: the columns must match).
        zero_shot_attributes: Ask attributes the model was not trained on with APDDv2's
            questions, as ``ArtQuant.score``.

    Returns:
        A :class:`ScoreDatasetSummary`.

    Raises:
        ValueError: A bad argument, a manifest without the needed columns, no pictures found,
            or an output written by another model.
        FileNotFoundError: A source does not exist.
        FileExistsError: The output (or its parts) exists and neither ``resume`` nor
            ``overwrite`` was given.
        ScorerLoadError: The model could not be resolved or loaded.
        RuntimeError: The run ended without a row for every input (rerun with ``resume``).

    Example:
        >>> from artquant_sdk.ray import score_dataset  # doctest: +SKIP
        >>> score_dataset(["s3://bucket/shards/*.tar"], "s3://bucket/scores.parquet",
        ...               actors=8, gpus_per_actor=1)  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from artquant_sdk._output import OutputFormatError

    started = time.monotonic()
    started_at = time.time()
    batch_size = _positive_int("batch_size", batch_size)
    if actors is not None:
        actors = _positive_int("actors", actors)
    if gpus_per_actor is not None and not (gpus_per_actor >= 0 and math.isfinite(gpus_per_actor)):
        raise ValueError(f"gpus_per_actor must be a number >= 0; got {gpus_per_actor!r}")
    if not (cpus_per_actor > 0 and math.isfinite(cpus_per_actor)):
        raise ValueError(f"cpus_per_actor must be a number > 0; got {cpus_per_actor!r}")
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    out = Location.of(output)
    if not out.path.lower().endswith(".parquet"):
        raise ValueError(f"output {os.fspath(output)!r} must be a .parquet file")
    parts = parts_location(out)
    leftovers = [p.path for p in (out, parts) if p.exists()]
    if leftovers and not (resume or overwrite):
        raise FileExistsError(
            f"{leftovers[0]} already exists; pass resume=True (--resume) to continue it or "
            "overwrite=True (--overwrite) to replace it"
        )
    listed = [sources] if isinstance(sources, str | os.PathLike) else list(sources)
    columns = ManifestColumns(path_column, bytes_column, id_column)
    units = expand_sources(listed, recursive=recursive, columns=columns)
    if not units:
        raise ValueError(
            f"no pictures found in {[os.fspath(s) for s in listed]}"
            + ("" if recursive else " (recursive=True / --recursive for sub-folders)")
        )
    spec = _ScorerSpec(
        model=os.fspath(model),
        base=None if base is None else os.fspath(base),
        tokenizer=None if tokenizer is None else os.fspath(tokenizer),
        device=device,
        dtype=dtype,
        revision=revision,
        local_files_only=local_files_only,
        levels=levels,
        attributes=None if attributes is None else _attribute_names(attributes),
        zero_shot_attributes=zero_shot_attributes,
        tune_malloc=tune_malloc,
        max_pixels=max_pixels,
    )
    backbone = _Backbone(spec)
    words = backbone.words
    asked = backbone.attributes

    if overwrite:
        if out.exists():
            out.fs.delete_file(out.path)
        remove_parts(parts)
    done: set[str] = set()
    if resume:
        removed = remove_temporary(parts)
        if removed:
            logger.info("removed %d temporary file(s) of killed writers", removed)
        try:
            done = read_done_ids(out, parts, words, asked)
        except OutputFormatError as error:
            raise ValueError(str(error)) from error
    expected = [i for u in units for i in (u.expected_ids() or [])]
    order_of_previous = order_keys(units)
    todo = apply_resume(units, done)
    already_done = sum(1 for i in expected if i in done)
    known_todo = sum(len(u.expected_ids() or []) - len(u.skip) for u in todo)
    logger.info(
        "%d unit(s), %d known id(s), %d already done, %d unit(s) to read",
        len(units),
        len(expected),
        already_done,
        len(todo),
    )

    new_rows = 0
    first_done = math.inf
    busy: dict[int, float] = {}
    cpu_seconds = 0.0
    if todo:
        _connect(ray_address)
        gpus = gpus_per_actor if gpus_per_actor is not None else min(1.0, _cluster_gpus())
        n_actors = actors or (max(1, int(_cluster_gpus() // gpus)) if gpus > 0 else 1)
        if spec.device is None:
            spec = spec.model_copy(update={"device": "cuda" if gpus > 0 else "cpu"})
            backbone.spec = spec
        context = ray.data.DataContext.get_current()
        show = progress if progress is not None else _stderr_is_terminal()
        context.enable_progress_bars = False  # ours counts pictures; Ray's count blocks
        dataset: ray.data.Dataset = ray.data.from_arrow(_blocks(todo))
        dataset = dataset.map_batches(
            _read_and_decode,  # type: ignore[arg-type]
            batch_size=None,
            batch_format="pyarrow",
            fn_kwargs={"backbone": backbone, "columns": columns, "batch_size": batch_size},
            num_cpus=1,
            # A read worker holds torch, the image processor and its output (see
            # _READ_TASK_MEMORY). Declaring it also makes these tasks' resources differ from the
            # actors': Ray Data would otherwise fuse reading into the scoring actors on a CPU
            # cluster, and the actors would decode instead of scoring.
            memory=_READ_TASK_MEMORY,
        )
        dataset = dataset.map_batches(
            _ScoreActor,
            fn_constructor_kwargs={"backbone": backbone, "parts": parts},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_gpus=gpus,
            num_cpus=cpus_per_actor,
        )
        logger.info(
            "scoring on %d actor(s), %g GPU and %g CPU each, batch %d",
            n_actors,
            gpus,
            cpus_per_actor,
            batch_size,
        )
        with tqdm(total=known_todo or None, unit="img", desc="scoring", disable=not show) as bar:
            try:
                for summary in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    first_done = min(first_done, float(summary["done_at"].min()))
                    for rows, actor, seconds, cpu in zip(
                        summary["rows"],
                        summary["actor"],
                        summary["busy_s"],
                        summary["cpu_s"],
                        strict=True,
                    ):
                        new_rows += int(rows)
                        busy[int(actor)] = busy.get(int(actor), 0.0) + float(seconds)
                        cpu_seconds += float(cpu)
                        bar.update(int(rows))
            except Exception as error:
                raise RuntimeError(
                    f"the Ray pipeline failed ({type(error).__name__}: {error}); the scored "
                    f"batches are kept in {_uri(parts)}: rerun with resume=True (--resume)"
                ) from error

    result = merge_parts(
        out,
        parts,
        words,
        previous=resume,
        order_of_previous=order_of_previous,
        expected=expected,
        attributes=asked,
    )
    if result.missing:
        raise RuntimeError(
            f"{len(result.missing)} input(s) have no row (first: {result.missing[0]}); the parts "
            f"are kept in {_uri(parts)}: rerun with resume=True (--resume)"
        )
    remove_parts(parts)
    return ScoreDatasetSummary(
        output=_uri(out),
        rows=result.rows,
        scored=result.scored,
        errors=result.errors,
        already_done=already_done,
        new_rows=new_rows,
        seconds=time.monotonic() - started,
        startup_seconds=None if first_done == math.inf else first_done - started_at,
        actor_busy_seconds=sum(busy.values()),
        actor_cpu_seconds=cpu_seconds,
        actors=len(busy),
    )


def _attribute_names(attributes: str | Sequence[str]) -> tuple[str, ...]:
    return (attributes,) if isinstance(attributes, str) else tuple(str(a) for a in attributes)


def _uri(location: Location) -> str:
    """A location as the user would write it (the scheme of object storage kept)."""
    import pyarrow.fs as pafs

    if isinstance(location.fs, pafs.LocalFileSystem):
        return location.path
    return f"{location.fs.type_name}://{location.path}"


def _stderr_is_terminal() -> bool:
    import sys

    return sys.stderr.isatty()
