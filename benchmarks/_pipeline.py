"""Torch-side pieces of the benchmarks: a random-weight model at a named size, the input pipeline
(decode and preprocess in worker processes, pinned batches) and the fast and plain scoring paths.

The fast path is what the SDK and the ``artquant score`` command run: batched, LM head at the
read position only (``logits_to_keep=1``), ``inference_mode``. The plain path is the original
code's loop: one image per forward, logits over the whole vocabulary at every position.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from _bench import ARTQUANT_LEVEL_IDS, ARTQUANT_LEVEL_VALUES, ARTQUANT_PROMPT_IDS
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "ImageFiles",
    "build_random_model",
    "fast_scores",
    "iterate_batches",
    "load_image",
    "make_image_processor",
    "make_loader",
    "matmul_peak_tflops",
    "plain_scores",
    "prompt_batch",
    "resolve_dtype",
    "synchronize",
]

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: Q-Align's preprocessor_config.json (ArtQuant ships none and uses the same settings).
QALIGN_PREPROCESSOR_CONFIG: dict[str, Any] = {
    "crop_size": 448,
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": list(CLIP_MEAN),
    "image_std": list(CLIP_STD),
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": 448,
}


def resolve_dtype(name: str) -> torch.dtype:
    """Map a dtype name (float32/bfloat16/float16 or fp32/bf16/fp16) to a torch dtype.

    The names are ``artquant_model``'s (:func:`artquant_model.parse_dtype`), so a benchmark
    accepts exactly what the SDK and ``load_model`` accept.

    Raises:
        ValueError: For any other name; the message lists the allowed ones.
    """
    from artquant_model import parse_dtype

    return parse_dtype(name)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _no_init() -> contextlib.AbstractContextManager[Any]:
    """transformers' switch that skips weight initialisation (we fill the weights ourselves)."""
    import importlib

    for module in ("transformers.initialization", "transformers.modeling_utils"):
        try:
            switch = getattr(importlib.import_module(module), "no_init_weights", None)
        except ImportError:
            continue
        if switch is not None:
            return switch()  # type: ignore[no-any-return]
    return contextlib.nullcontext()


@torch.no_grad()
def build_random_model(
    config_dict: dict[str, Any],
    *,
    device: torch.device,
    dtype: torch.dtype,
    seed: int = 0,
    attn_implementation: str = "sdpa",
    visual_attn_implementation: str | None = None,
) -> Any:
    """An ``MPLUGOwl2ForCausalLM`` with seeded random weights, built directly on ``device``.

    The module tree is created under ``torch.device(device)`` with initialisation skipped and the
    parameters allocated in ``dtype``, so no host copy of the weights ever exists (the 7B model
    never touches host memory on a GPU machine) and the buffers the model computes in its
    ``__init__`` (sin-cos positions, RoPE frequencies) keep their values, which a meta-device
    build followed by ``to_empty`` would leave uninitialised. Then every parameter is filled in
    place: matrices N(0, 1 / fan_in) (activations stay O(1) at every width, so the scores
    depend on the picture), norm weights 1, biases 0, other vectors N(0, 0.02).

    Args:
        config_dict: A config in the original config.json layout (see ``_bench.SIZES``).
        device: Where the model lives.
        dtype: Parameter dtype.
        seed: Seed of the weights.
        attn_implementation: "sdpa", "eager" or "flash_attention_2" (the language model).
        visual_attn_implementation: "eager" or "sdpa" for the ViT and abstractor; None keeps
            the config's default.

    Returns:
        The model in eval mode.
    """
    from artquant_model import MPLUGOwl2Config, MPLUGOwl2ForCausalLM

    fields = json.loads(json.dumps(config_dict))
    if visual_attn_implementation is not None:
        fields["visual_attn_implementation"] = visual_attn_implementation
    config = MPLUGOwl2Config(**fields)
    with torch.device(device), _no_init():
        model = MPLUGOwl2ForCausalLM._from_config(
            config, attn_implementation=attn_implementation, dtype=dtype
        )
    generator = torch.Generator(device=device).manual_seed(seed)
    for name, param in model.named_parameters():
        if param.dim() >= 2:
            fan_in = param[0].numel()
            param.normal_(0.0, fan_in**-0.5, generator=generator)
        elif name.endswith("bias"):
            param.zero_()
        elif "norm" in name or "ln" in name.rsplit(".", 2)[-2]:
            param.fill_(1.0)
        else:  # learned vectors (cls token, eos token): small random values
            param.normal_(0.0, 0.02, generator=generator)
    return model.eval().requires_grad_(False)


def make_image_processor(image_size: int = 448) -> Any:
    """Our ``MPLUGOwl2ImageProcessor`` configured exactly like Q-Align's preprocessor_config.json.

    It is read through ``from_pretrained`` of a folder holding that file, the way the SDK loads
    it beside a checkpoint.
    """
    processor_class = product("MPLUGOwl2ImageProcessor")
    with tempfile.TemporaryDirectory() as tmp:
        config = dict(QALIGN_PREPROCESSOR_CONFIG, crop_size=image_size, size=image_size)
        (Path(tmp) / "preprocessor_config.json").write_text(json.dumps(config))
        return processor_class.from_pretrained(tmp)


class ImageFiles(Dataset[tuple[int, torch.Tensor]]):
    """Image files decoded (``load_image``) and preprocessed in whichever worker asks.

    Args:
        paths: The files.
        processor: An ``MPLUGOwl2ImageProcessor``.
        dtype: dtype of the returned pixels (cast in the worker, which halves the bytes moved
            to the device in bf16/fp16).
    """

    def __init__(self, paths: Sequence[Path], processor: Any, dtype: torch.dtype) -> None:
        self.paths = list(paths)
        self.processor = processor
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        image = load_image(self.paths[index])
        pixels = self.processor([image])[0]
        return index, pixels.to(self.dtype)


def product(name: str) -> Any:
    """A public name of ``artquant_model`` (read from its defining module if not re-exported)."""
    import importlib

    import artquant_model

    if hasattr(artquant_model, name):
        return getattr(artquant_model, name)
    for module in ("processing_mplug_owl2", "scoring", "levels", "loading"):
        try:
            found = importlib.import_module(f"artquant_model.{module}")
        except ImportError:
            continue
        if hasattr(found, name):
            return getattr(found, name)
    raise ImportError(f"artquant_model has no {name!r}")


def load_image(source: Any) -> Any:
    """``artquant_model.load_image`` (decode, EXIF orientation, first frame, size guard)."""
    return product("load_image")(source)


def _collate(items: list[tuple[int, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    indices = torch.tensor([i for i, _ in items])
    return indices, torch.stack([p for _, p in items])


def make_loader(
    dataset: ImageFiles, *, batch_size: int, workers: int, pin_memory: bool
) -> DataLoader[Any]:
    """Batches of ``(indices, pixels)`` decoded by ``workers`` processes, in file order."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
    )


def prompt_batch(batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ArtQuant's scoring prompt ids repeated ``batch_size`` times, and its all-ones mask."""
    ids = torch.tensor([ARTQUANT_PROMPT_IDS] * batch_size, dtype=torch.long, device=device)
    return ids, torch.ones_like(ids)


def _level_tensors(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor(ARTQUANT_LEVEL_IDS, dtype=torch.long, device=device)
    values = torch.tensor(ARTQUANT_LEVEL_VALUES, dtype=torch.float64, device=device)
    return ids, values


def _scores_from_level_logits(level_logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    probs = torch.softmax(level_logits.to(torch.float64), dim=-1)
    return probs @ values


def fast_scores(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """Scores of a batch through the product's scoring function (LM head at one position).

    Uses ``artquant_model.score_pixel_values`` (the function the SDK calls) when it exists, and
    otherwise the same computation written out: one batched forward with ``logits_to_keep=1``,
    softmax over the five level logits in float64, dot the level values.
    """
    device = pixel_values.device
    input_ids, mask = prompt_batch(pixel_values.shape[0], device)
    level_ids, values = _level_tensors(device)
    scorer = _product_scorer()
    with torch.inference_mode():
        if scorer is not None:
            return _as_score_tensor(scorer(model, input_ids, pixel_values, level_ids, values))
        out = model(input_ids=input_ids, images=pixel_values, attention_mask=mask, logits_to_keep=1)
        return _scores_from_level_logits(out.logits[:, -1, level_ids], values)


def plain_scores(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """Scores one image per forward with full logits at every position (the original's loop)."""
    device = pixel_values.device
    level_ids, values = _level_tensors(device)
    scores = []
    with torch.inference_mode():
        for row in range(pixel_values.shape[0]):
            input_ids, mask = prompt_batch(1, device)
            out = model(
                input_ids=input_ids, images=pixel_values[row : row + 1], attention_mask=mask
            )
            scores.append(_scores_from_level_logits(out.logits[:, -1, level_ids], values))
    return torch.cat(scores)


def _product_scorer() -> Callable[..., Any] | None:
    try:
        return product("score_pixel_values")  # type: ignore[no-any-return]
    except ImportError:
        return None


def _as_score_tensor(result: Any) -> torch.Tensor:
    """The score tensor out of whatever ``score_pixel_values`` returns (tensor or a record)."""
    if isinstance(result, torch.Tensor):
        return result
    for name in ("score", "scores"):
        value = getattr(result, name, None)
        if value is not None:
            return torch.as_tensor(value)
    raise TypeError(f"cannot read scores from {type(result).__name__}")


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Measured dense matmul rate of this device in TFLOP/s (a practical peak for utilisation)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)
    synchronize(device)
    runs, start = 0, time.perf_counter()
    while True:
        torch.matmul(a, b)
        runs += 1
        if runs % 4 == 0:
            synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return 2 * n**3 * runs / elapsed / 1e12


def iterate_batches(
    loader: DataLoader[Any], device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Move each loader batch to ``device`` (non-blocking from pinned memory)."""
    for indices, pixels in loader:
        yield indices, pixels.to(device, non_blocking=True)


class BenchPipeline:
    """The reference pipeline: loader workers, pinned batches, non-blocking copies, fast path.

    Args:
        model: The model (or its compiled wrapper).
        processor: The image processor the workers run.
        device: Where the model is.
        dtype: The model's dtype (pixels are cast to it in the workers).
        workers: Decoding processes.
        pad_to_batch: Pad the last batch to full size (static shapes for ``torch.compile``).
    """

    name = "bench"

    def __init__(
        self,
        model: Any,
        processor: Any,
        device: torch.device,
        dtype: torch.dtype,
        workers: int,
        *,
        pad_to_batch: bool = False,
    ) -> None:
        self.model, self.processor, self.device = model, processor, device
        self.dtype, self.workers, self.pad_to_batch = dtype, workers, pad_to_batch
        inner = getattr(model, "_orig_mod", model)
        #: The settings in force, for the benchmark's output.
        self.settings = {
            "visual_attn": inner.config.visual_attn_implementation,
            "vision_batch_size": inner.model.vision_batch_size,
            "workers": workers,
            "decode_threads": None,
            "prefix_cache": False,
            "malloc_tuned": False,
        }

    def _loader(self, paths: Sequence[Path], batch_size: int) -> DataLoader[Any]:
        dataset = ImageFiles(paths, self.processor, self.dtype)
        pin = self.device.type == "cuda"
        return make_loader(dataset, batch_size=batch_size, workers=self.workers, pin_memory=pin)

    def input_only(self, paths: Sequence[Path], batch_size: int) -> int:
        """Decode and preprocess every file, no model; returns the count."""
        return sum(pixels.shape[0] for _, pixels in self._loader(paths, batch_size))

    def model_only(self, pixels: torch.Tensor) -> torch.Tensor:
        """Score pixels already on the device."""
        return fast_scores(self.model, pixels)

    def run(
        self, paths: Sequence[Path], batch_size: int, deadline: float | None
    ) -> tuple[int, torch.Tensor]:
        """Score the files end to end; stop after the batch that passes ``deadline``."""
        scores = torch.full((len(paths),), float("nan"), dtype=torch.float64)
        done = 0
        for indices, batch in iterate_batches(self._loader(paths, batch_size), self.device):
            real = batch.shape[0]
            if self.pad_to_batch and real < batch_size:
                pad = batch.new_zeros((batch_size - real, *batch.shape[1:]))
                batch = torch.cat([batch, pad])
            scores[indices] = fast_scores(self.model, batch)[:real].to("cpu", torch.float64)
            done += real
            if deadline is not None and time.perf_counter() > deadline:
                break
        return done, scores


class CliPipeline:
    """What ``artquant score`` runs: the SDK's decoding, its settings and its per-batch scoring.

    An ``artquant_sdk.ArtQuant`` is wrapped around the random model; its prompt and level ids are
    set to the real tokenizer's ids (``_bench.ARTQUANT_PROMPT_IDS``) so the spliced length is the
    real 92 tokens without a tokenizer file. The model gets the settings
    ``ArtQuant.from_pretrained`` gives it (vision-side attention, vision batch size), and decoding
    the CLI's defaults (workers, threads), unless overridden. Batches come from
    ``artquant_sdk._decode.decoded_batches`` and are scored by the CLI's ``_score_rows`` (the loop
    of ``artquant score`` without the output file).

    Args:
        model: The model (changed in place: its speed settings are set).
        processor: The image processor.
        device: Where the model is.
        workers: Decoding processes; None for the CLI's default on ``device``.
        threads: Decoding threads when ``workers`` is 0; None for the CLI's default.
        visual_attn: ``"sdpa"``/``"eager"``; None for the SDK's default.
        vision_batch_size: Pictures per vision-tower pass; ``"auto"`` for the SDK's default.
        prefix_cache: Reuse the prompt's keys and values before the image (the SDK's default).
        malloc_tuning: On a CPU, keep freed blocks in glibc's heap as ``artquant score`` does
            (``artquant_sdk._malloc``; changes this whole process).
    """

    name = "cli"

    def __init__(
        self,
        model: Any,
        processor: Any,
        device: torch.device,
        workers: int | None = None,
        *,
        threads: int | None = None,
        visual_attn: str | None = None,
        vision_batch_size: int | str | None = "auto",
        prefix_cache: bool = True,
        malloc_tuning: bool = True,
    ) -> None:
        from artquant_model.testing import tiny_tokenizer
        from artquant_sdk import ArtQuant
        from artquant_sdk._api import speed_options
        from artquant_sdk.cli import _default_workers

        attention, steps = speed_options(torch.device(device), visual_attn, vision_batch_size)
        inner = getattr(model, "_orig_mod", model)  # a torch.compile wrapper holds the model
        inner.config.visual_attn_implementation = attention
        inner.model.vision_batch_size = steps
        processor_class = product("MPLUGOwl2Processor")
        levels = product("ARTQUANT_LEVELS")
        self.scorer = ArtQuant(model, processor_class(tiny_tokenizer(), processor), levels)
        # The real LLaMA-2 ids (the tiny tokenizer only builds the processor).
        backbone: Any = self.scorer.backbone
        backbone._prompt_ids["total"] = torch.tensor(ARTQUANT_PROMPT_IDS, dtype=torch.long)
        backbone._level_ids["total"] = list(ARTQUANT_LEVEL_IDS)
        if not prefix_cache:
            backbone.prefix_cache = None
        self.device = device
        tuned = False
        if malloc_tuning and torch.device(device).type == "cpu":
            from artquant_sdk._malloc import keep_freed_memory

            tuned = keep_freed_memory()
        self.workers = _default_workers(self.scorer) if workers is None else workers
        self.threads = self.scorer.default_decode_threads() if threads is None else threads
        #: The settings in force, for the benchmark's output.
        self.settings = {
            "visual_attn": attention,
            "vision_batch_size": steps,
            "workers": self.workers,
            "decode_threads": self.threads if self.workers == 0 else None,
            # a torch.compile wrapper is not an MPLUGOwl2ForCausalLM: scoring then takes the
            # plain forward (whole LM head row, no prefix cache)
            "prefix_cache": prefix_cache and inner is model,
            "malloc_tuned": tuned,
        }

    def _batches(self, paths: Sequence[Path], batch_size: int) -> Iterator[Any]:
        """The SDK's decoded batches of ``paths``, decoded as ``artquant score`` would."""
        from artquant_sdk._decode import decoded_batches

        return decoded_batches(
            [str(p) for p in paths],
            self.scorer.preprocess,
            batch_size=batch_size,
            workers=self.workers,
            threads=self.threads,
            pin_memory=torch.device(self.device).type == "cuda",
        )

    def input_only(self, paths: Sequence[Path], batch_size: int) -> int:
        """Decode and preprocess every file through the SDK's decoding, no model."""
        return sum(len(batch) for batch in self._batches(paths, batch_size))

    def model_only(self, pixels: torch.Tensor) -> torch.Tensor:
        """Score pixels through ``ArtQuant.score_pixel_values``."""
        return torch.tensor([s for s, _, _ in self.scorer.score_pixel_values(pixels)])

    def run(
        self, paths: Sequence[Path], batch_size: int, deadline: float | None
    ) -> tuple[int, torch.Tensor]:
        """The ``artquant score`` loop over the files, without the output file."""
        from artquant_sdk.cli import _score_rows

        scores = torch.full((len(paths),), float("nan"), dtype=torch.float64)
        done = 0
        for batch in self._batches(paths, batch_size):
            for decoded, row in zip(batch, _score_rows(self.scorer, batch), strict=True):
                if row.get("error"):
                    raise RuntimeError(f"{row['image']}: {row['error']}")
                scores[decoded.index] = float(row["score"])  # type: ignore[arg-type]
            done += len(batch)
            if deadline is not None and time.perf_counter() > deadline:
                break
        return done, scores


_SYNC_OPS = frozenset({"aten.is_nonzero", "aten.item", "aten._local_scalar_dense", "aten.nonzero",
                       "aten.masked_select", "aten.equal"})  # fmt: skip


def count_host_syncs(fn: Callable[[], Any]) -> dict[str, int]:
    """Operators in one call of ``fn`` that make the host wait for the device, by name.

    On a GPU each of them drains the launch queue: the device idles while Python issues the next
    kernels. They are free on a CPU, so this count (taken at the dispatcher, on any device) is
    how a CPU-only machine can see a GPU stall: ``bool(t)``/``.item()`` (``is_nonzero``,
    ``item``), ``nonzero``, ``masked_select``, and indexing or index-assignment with a boolean
    mask (``index[bool]``, ``index_put_[bool]``), which need the mask's count first.

    Returns:
        ``{"total": n, "<op>": count, ...}``.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: dict[str, int] = {}

    def has_bool_index(args: tuple[Any, ...]) -> bool:
        indices = args[1] if len(args) > 1 else ()
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())

    class _Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            name = str(func.overloadpacket)
            if name in _SYNC_OPS or (
                name in ("aten.index", "aten.index_put_", "aten.index_put") and has_bool_index(args)
            ):
                key = name + ("[bool]" if name.startswith("aten.index") else "")
                counts[key] = counts.get(key, 0) + 1
            return func(*args, **(kwargs or {}))

    with _Counter():
        fn()
    return {"total": sum(counts.values()), **dict(sorted(counts.items()))}
