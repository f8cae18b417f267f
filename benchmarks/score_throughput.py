"""Scoring throughput end to end from image files, against the FLOP count and the plain loop.

A random-weight mPLUG-Owl2 at a named size (see ``_bench.SIZES``; no checkpoint needed) scores
generated JPEG/PNG files of varied sizes and aspect ratios through the product's path, with the
product's settings for the device: files are decoded (``load_image``) and preprocessed
(``MPLUGOwl2ImageProcessor``) by worker processes into pinned batches on a GPU, and between
forward passes in threads on a CPU; the model scores each batch with fused vision-side attention
and the LM head at the read position only (on a CPU one picture per vision-tower pass). The
plain loop keeps the original's vision-side attention. Measured, per
batch size: images/s and ms/image end to end, the model alone on preloaded pixels, peak device
memory, peak host RSS, and achieved TFLOP/s against the analytic count (``flops.py``). Also the
input pipeline alone and the one-image-per-forward plain loop (full logits), and the largest
score difference between the two paths.

One JSON line per measurement on stdout (and in ``--log`` when given), then a table::

    python benchmarks/score_throughput.py --size small --device cpu --batch-sizes 1,8
    python benchmarks/score_throughput.py --size full --device cuda --dtype bfloat16 \\
        --batch-sizes 1,8,32,64 --num-images 2048 --workers 12
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from _bench import SIZES, Recorder, machine_info, make_images, peak_rss_bytes, reset_peak_rss
from _pipeline import (
    BenchPipeline,
    CliPipeline,
    ImageFiles,
    build_random_model,
    count_host_syncs,
    fast_scores,
    make_image_processor,
    matmul_peak_tflops,
    plain_scores,
    resolve_dtype,
    synchronize,
)
from _vlm_bench import VLM_SIZES, run_vlm
from flops import ModelDims, count_flops

logger = logging.getLogger("score_throughput")

GIB = 2**30
TABLE = (
    "kind",
    "batch_size",
    "repeat",
    "workers",
    "images",
    "images_per_s",
    "ms_per_image",
    "tflops",
    "util_nominal",
    "peak_device_gib",
    "peak_host_gib",
    "cpu_s_per_image",
    "load_average",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (``--help`` lists them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone",
        choices=["mplug_owl2", "qwen"],
        default="mplug_owl2",
        help="mplug_owl2 (default) or qwen: the generic backbone (a Qwen-family random model, "
        "fixed 448 px; see _vlm_bench.py) against the plain one-image-per-forward procedure",
    )
    parser.add_argument(
        "--size",
        choices=sorted(set(SIZES) | set(VLM_SIZES)),
        default="small",
        help=f"mplug_owl2: {sorted(SIZES)}; qwen: {sorted(VLM_SIZES)}",
    )
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=Path(__file__).resolve().parents[1] / ".." / "shared" / "tokenizers" / "qwen2_vl",
        help="qwen: a Qwen2-vocabulary tokenizer folder with its chat template",
    )
    parser.add_argument("--image-size", type=int, default=448, help="qwen: fixed picture side")
    parser.add_argument(
        "--resolution",
        choices=["fixed", "native"],
        default="fixed",
        help="qwen: fixed (pad to a square, resize to --image-size) or native (own aspect ratio, "
        "at most --image-size squared pixels)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype",
        default=None,
        help="float32/bfloat16/float16 (default: bf16 on cuda, fp32 on cpu)",
    )
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated, e.g. 1,8,32,64")
    parser.add_argument("--num-images", type=int, default=64, help="files scored per batch size")
    parser.add_argument(
        "--unique-images",
        type=int,
        default=64,
        help="distinct files generated (cycled to --num-images)",
    )
    parser.add_argument(
        "--baseline-images",
        type=int,
        default=None,
        help="images through the plain loop (default: --num-images, at most 64)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes (default: cli, the CLI's default for the device, none on a "
        "CPU; bench, one per core but one, up to 8)",
    )
    parser.add_argument(
        "--decode-threads",
        type=int,
        default=None,
        help="cli with no workers: files of a batch decoded at once (default: the CLI's)",
    )
    parser.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="cli on a CPU: leave glibc's malloc as it is (artquant score --no-malloc-tuning)",
    )
    parser.add_argument(
        "--no-prefix-cache",
        action="store_true",
        help="cli: recompute the prompt's text before the image in every forward pass",
    )
    parser.add_argument(
        "--vision-batch-size",
        default="auto",
        help="cli: pictures per vision-tower pass, an int, 'all' or 'auto' (the SDK's default: "
        "1 on a CPU, all elsewhere)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads of the model process"
    )
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    parser.add_argument(
        "--visual-attn",
        default=None,
        choices=["eager", "sdpa"],
        help="attention of the ViT and abstractor (default: cli, the SDK's default, sdpa; bench, "
        "the model's default, the original's matmul-softmax); sdpa is about 5e-6 away in float32",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds over the batch sizes; ratios use medians"
    )
    parser.add_argument(
        "--pipeline",
        choices=["cli", "bench"],
        default=None,
        help="cli: the SDK's decode workers and the artquant score loop (default when "
        "artquant_sdk imports); bench: the benchmark's own loader (pinned, non-blocking)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model (static shapes: the last batch is padded)",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds per measurement; stops early once spent",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="nominal device peak (default 790 on cuda, the measured matmul rate on cpu)",
    )
    parser.add_argument(
        "--image-dir", type=Path, default=None, help="reuse or create test pictures here"
    )
    parser.add_argument(
        "--log", type=Path, default=None, help="also append the JSON lines to this file"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain one-image loop")
    parser.add_argument(
        "--compare-shared-prefix",
        action="store_true",
        help="qwen: also score each batch size with the backbone's share_prefix the other way "
        "(kind product_shared_prefix, or product_full_sequence), right after the default run",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = VLM_SIZES if args.backbone == "qwen" else SIZES
    if args.size not in sizes:
        parser.error(
            f"--size {args.size} is not a {args.backbone} size; use one of {sorted(sizes)}"
        )
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        parser.error(f"--batch-sizes must be positive integers, got {args.batch_sizes}")
    for name in ("num_images", "unique_images", "workers", "decode_threads", "repeats"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "workers" else 1):
            parser.error(f"--{name.replace('_', '-')} is out of range: {value}")
    if args.vision_batch_size not in ("auto", "all"):
        try:
            args.vision_batch_size = int(args.vision_batch_size)
        except ValueError:
            parser.error(
                "--vision-batch-size must be an int, 'all' or 'auto', "
                f"got {args.vision_batch_size!r}"
            )
        if args.vision_batch_size < 1:
            parser.error(f"--vision-batch-size must be positive, got {args.vision_batch_size}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no CUDA device")
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    if args.pipeline is None:
        try:
            import artquant_sdk  # noqa: F401
        except ImportError:
            args.pipeline = "bench"
        else:
            args.pipeline = "cli"
    if args.baseline_images is None:
        args.baseline_images = min(args.num_images, 64)
    return args


def _cpu_seconds() -> float:
    """User + system CPU time of this (the model's) process; decode workers are not included.

    Their time cannot be read reliably here (``RUSAGE_CHILDREN`` missed most of it in a check),
    and their cost per image is measured on its own by ``preprocess_throughput.py``.
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


class _Meter:
    """Times a measurement (wall and CPU) and reads its peak host and device memory.

    CPU seconds matter on a shared machine: wall time there depends on what else runs, CPU time
    per image much less. The one-minute load average at the end is recorded for the same reason.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> _Meter:
        synchronize(self.device)
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.cpu_start = _cpu_seconds()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = _cpu_seconds() - self.cpu_start
        self.load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self.peak_host_gib = peak_rss_bytes() / GIB
        self.peak_device_gib = (
            torch.cuda.max_memory_allocated(self.device) / GIB
            if self.device.type == "cuda"
            else None
        )


def _cpu_fields(meter: _Meter, images: int) -> dict[str, Any]:
    return {
        "cpu_s_per_image": meter.cpu_seconds / images,
        "cpu_busy": meter.cpu_seconds / meter.seconds,
        "load_average": meter.load_average,
    }


def _rates(
    images: int, seconds: float, flop_per_image: float, peak_tflops: float, matmul_tflops: float
) -> dict[str, float]:
    per_s = images / seconds
    achieved = per_s * flop_per_image / 1e12
    return {
        "images_per_s": per_s,
        "ms_per_image": 1000 * seconds / images,
        "tflops": achieved,
        "util_nominal": achieved / peak_tflops,
        "util_matmul": achieved / matmul_tflops,
    }


def _pad(pixels: torch.Tensor, batch_size: int) -> torch.Tensor:
    missing = batch_size - pixels.shape[0]
    if missing <= 0:
        return pixels
    return torch.cat([pixels, pixels.new_zeros((missing, *pixels.shape[1:]))])


def _make_pipeline(
    args: argparse.Namespace, model: Any, processor: Any, device: torch.device, dtype: torch.dtype
) -> Any:
    if args.pipeline == "cli":
        return CliPipeline(
            model,
            processor,
            device,
            args.workers,
            threads=args.decode_threads,
            visual_attn=args.visual_attn,
            vision_batch_size=None if args.vision_batch_size == "all" else args.vision_batch_size,
            prefix_cache=not args.no_prefix_cache,
            malloc_tuning=not args.no_malloc_tuning,
        )
    workers = args.workers
    if workers is None:
        workers = max(1, min(8, (os.cpu_count() or 2) - 1))
    return BenchPipeline(model, processor, device, dtype, workers, pad_to_batch=args.compile)


def run(args: argparse.Namespace) -> Recorder:
    """Run every measurement; returns the recorder holding them."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = resolve_dtype(args.dtype)
    if args.backbone == "qwen":
        return _run_qwen(args, device, dtype)
    config = SIZES[args.size]
    count = count_flops(ModelDims.from_config_dict(config))
    flop_fast, flop_plain = count.total("one"), count.total("all")
    matmul_tflops = matmul_peak_tflops(device, dtype)
    peak_tflops = args.peak_tflops or (790.0 if device.type == "cuda" else matmul_tflops)
    recorder = Recorder(
        {
            "script": "score_throughput",
            "size": args.size,
            "device": str(device),
            "dtype": args.dtype,
            "pipeline": args.pipeline,
        },
        log_path=args.log,
    )
    recorder.emit(
        kind="machine",
        **machine_info(),
        compile=args.compile,
        attn=args.attn,
        threads=torch.get_num_threads(),
    )
    recorder.emit(kind="flops", **count.summary(peak_tflops), matmul_tflops=matmul_tflops)

    with tempfile.TemporaryDirectory() as tmp:
        image_dir = args.image_dir or Path(tmp) / "images"
        existing = sorted(p for p in image_dir.glob("img*") if p.suffix in (".jpg", ".png"))
        unique = existing[: args.unique_images] if len(existing) >= args.unique_images else None
        if unique is None:
            start = time.perf_counter()
            unique = make_images(image_dir, args.unique_images, seed=args.seed)
            logger.info("wrote %d pictures in %.1f s", len(unique), time.perf_counter() - start)
        paths = [unique[i % len(unique)] for i in range(args.num_images)]
        mean_kib = sum(p.stat().st_size for p in unique) / len(unique) / 1024
        recorder.emit(kind="images", unique=len(unique), scored=len(paths), mean_kib=mean_kib)

        processor = make_image_processor(config["visual_config"]["visual_model"]["image_size"])
        with _Meter(device) as meter:
            model = build_random_model(
                config,
                device=device,
                dtype=dtype,
                seed=args.seed,
                attn_implementation=args.attn,
                visual_attn_implementation=args.visual_attn,
            )
        params = sum(p.numel() for p in model.parameters())
        recorder.emit(
            kind="build",
            seconds=meter.seconds,
            params=params,
            peak_device_gib=meter.peak_device_gib,
            peak_host_gib=meter.peak_host_gib,
        )
        scorer = torch.compile(model, dynamic=False) if args.compile else model
        pipeline = _make_pipeline(args, scorer, processor, device, dtype)
        recorder.emit(kind="settings", **pipeline.settings)
        workers = pipeline.workers

        # The input pipeline alone: decode + preprocess in the workers, no model.
        with _Meter(device) as meter:
            done = pipeline.input_only(paths, 8)
        recorder.emit(
            kind="input_pipeline",
            batch_size=8,
            workers=workers,
            images=done,
            seconds=meter.seconds,
            images_per_s=done / meter.seconds,
            ms_per_image=1000 * meter.seconds / done,
            peak_host_gib=meter.peak_host_gib,
            load_average=meter.load_average,
        )

        dataset = ImageFiles(paths, processor, dtype)
        probe = torch.stack([dataset[i][1] for i in range(min(len(dataset), 8))]).to(device)
        syncs = count_host_syncs(lambda: fast_scores(model, probe))
        recorder.emit(kind="host_syncs", batch_size=probe.shape[0], **syncs)
        sample = torch.stack(
            [dataset[i][1] for i in range(min(len(dataset), max(args.batch_sizes)))]
        )
        sample = sample.to(device)
        fast_results: dict[int, torch.Tensor] = {}
        # Repeats interleave the batch sizes, so a busy neighbour slows each of them alike.
        for repeat in range(args.repeats):
            for batch_size in args.batch_sizes:
                _measure_batch(
                    args,
                    recorder,
                    pipeline,
                    paths,
                    sample,
                    batch_size,
                    repeat,
                    fast_results,
                    rates=(flop_fast, peak_tflops, matmul_tflops),
                )

        if not args.no_baseline:
            _baseline(
                args,
                recorder,
                model,
                dataset,
                device,
                fast_results,
                flop_plain=flop_plain,
                peak_tflops=peak_tflops,
                matmul_tflops=matmul_tflops,
            )
    _summary(recorder)
    return recorder


def _measure_batch(
    args: argparse.Namespace,
    recorder: Recorder,
    pipeline: Any,
    paths: list[Path],
    sample: torch.Tensor,
    batch_size: int,
    repeat: int,
    fast_results: dict[int, torch.Tensor],
    *,
    rates: tuple[float, float, float],
) -> None:
    """The model alone, then end to end from the files, at one batch size."""
    device = sample.device
    pixels = _pad(sample[:batch_size], batch_size)
    pipeline.model_only(pixels)  # warm-up: kernels, allocator, compilation
    synchronize(device)

    # The model alone on preloaded pixels: what the input pipeline must keep up with.
    with _Meter(device) as meter:
        done = 0
        while done < args.num_images:
            pipeline.model_only(pixels)
            done += batch_size
            if args.time_budget and time.perf_counter() - meter.start > args.time_budget:
                break
    recorder.emit(
        kind="model_only",
        batch_size=batch_size,
        repeat=repeat,
        images=done,
        seconds=meter.seconds,
        **_rates(done, meter.seconds, *rates),
        peak_device_gib=meter.peak_device_gib,
        peak_host_gib=meter.peak_host_gib,
        **_cpu_fields(meter, done),
    )

    # End to end from the files.
    with _Meter(device) as meter:
        deadline = meter.start + args.time_budget if args.time_budget else None
        done, scores = pipeline.run(paths, batch_size, deadline)
    fast_results[batch_size] = scores
    recorder.emit(
        kind="e2e",
        batch_size=batch_size,
        repeat=repeat,
        workers=pipeline.workers,
        images=done,
        seconds=meter.seconds,
        **_rates(done, meter.seconds, *rates),
        peak_device_gib=meter.peak_device_gib,
        peak_host_gib=meter.peak_host_gib,
        **_cpu_fields(meter, done),
    )


@contextlib.contextmanager
def _original_vision_settings(model: Any) -> Iterator[None]:
    """The original's vision-side attention and one vision pass per batch, restored after."""
    config, inner = model.config, model.model
    saved = config.visual_attn_implementation, inner.vision_batch_size
    config.visual_attn_implementation, inner.vision_batch_size = "eager", None
    try:
        yield
    finally:
        config.visual_attn_implementation, inner.vision_batch_size = saved


def _baseline(
    args: argparse.Namespace,
    recorder: Recorder,
    model: Any,
    dataset: ImageFiles,
    device: torch.device,
    fast_results: dict[int, torch.Tensor],
    *,
    flop_plain: float,
    peak_tflops: float,
    matmul_tflops: float,
) -> None:
    """The original's loop: read, preprocess, one forward with full logits, per image, with the
    original's matmul-softmax attention in the ViT and abstractor (so the parity lines compare
    every optimisation of the fast path at once)."""
    count = min(args.baseline_images, len(dataset))
    scores = torch.full((count,), float("nan"), dtype=torch.float64)
    with _original_vision_settings(model):
        plain_scores(model, dataset[0][1][None].to(device))  # warm-up
        with _Meter(device) as meter:
            done = 0
            for index in range(count):
                _, pixels = dataset[index]
                scores[index] = plain_scores(model, pixels[None].to(device))[0].cpu()
                done += 1
                if args.time_budget and time.perf_counter() - meter.start > args.time_budget:
                    break
    recorder.emit(
        kind="baseline_e2e",
        batch_size=1,
        workers=0,
        images=done,
        seconds=meter.seconds,
        **_rates(done, meter.seconds, flop_plain, peak_tflops, matmul_tflops),
        peak_device_gib=meter.peak_device_gib,
        peak_host_gib=meter.peak_host_gib,
        **_cpu_fields(meter, done),
    )
    for batch_size, fast in fast_results.items():
        both = ~torch.isnan(fast[:done]) & ~torch.isnan(scores[:done])
        if both.any():
            diff = (fast[:done][both] - scores[:done][both]).abs().max().item()
            recorder.emit(
                kind="parity",
                batch_size=batch_size,
                compared=int(both.sum()),
                max_abs_score_diff=diff,
            )


def _run_qwen(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Recorder:
    """The generic backbone's measurements (``_vlm_bench.run_vlm``) and their ratio."""
    recorder = Recorder(
        {
            "script": "score_throughput",
            "backbone": "qwen",
            "size": args.size,
            "device": str(device),
            "dtype": args.dtype,
        },
        log_path=args.log,
    )
    recorder.emit(kind="machine", **machine_info(), threads=torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = args.image_dir or Path(tmp) / "images"
        unique = make_images(image_dir, args.unique_images, seed=args.seed)
        paths = [unique[i % len(unique)] for i in range(args.num_images)]
        run_vlm(args, recorder, paths, device, dtype)
    product = {
        r["batch_size"]: r["images_per_s"] for r in recorder.records if r["kind"] == "product"
    }
    plain = [r for r in recorder.records if r["kind"] == "plain"]
    if plain and product:
        best = max(product, key=lambda b: product[b])
        recorder.emit(
            kind="ratios",
            best_batch=best,
            best_over_plain=product[best] / plain[0]["images_per_s"],
            **(
                {"batch8_over_plain": product[8] / plain[0]["images_per_s"]} if 8 in product else {}
            ),
            **_shared_over_full(recorder.records),
            max_score_difference=plain[0]["max_score_difference"],
        )
    rows = [r for r in recorder.records if "images_per_s" in r]
    print("\n" + recorder.table(TABLE, rows), flush=True)
    return recorder


def _shared_over_full(records: list[dict[str, Any]]) -> dict[str, float]:
    """Per batch size, the median images/s with the shared prompt prefix over without it
    (``--compare-shared-prefix``; kind ``product`` is the backbone's default setting)."""
    rates: dict[str, dict[int, list[float]]] = {}
    for row in records:
        if str(row["kind"]).startswith("product"):
            rates.setdefault(row["kind"], {}).setdefault(row["batch_size"], []).append(
                row["images_per_s"]
            )
    if "product_shared_prefix" in rates:
        shared, full = rates["product_shared_prefix"], rates.get("product", {})
    else:
        shared, full = rates.get("product", {}), rates.get("product_full_sequence", {})
    return {
        f"batch{b}_shared_over_full_sequence": statistics.median(v) / statistics.median(full[b])
        for b, v in shared.items()
        if b in full
    }


def _summary(recorder: Recorder) -> None:
    """The ratios the targets use (medians over repeats; wall and CPU time), then the table."""
    walls: dict[str, dict[int, list[float]]] = {}
    cpus: dict[str, dict[int, list[float]]] = {}
    for row in recorder.records:
        if "images_per_s" in row and "batch_size" in row:
            walls.setdefault(row["kind"], {}).setdefault(row["batch_size"], []).append(
                row["images_per_s"]
            )
            if "cpu_s_per_image" in row:
                cpus.setdefault(row["kind"], {}).setdefault(row["batch_size"], []).append(
                    row["cpu_s_per_image"]
                )
    rate = {k: {b: statistics.median(v) for b, v in d.items()} for k, d in walls.items()}
    cpu = {k: {b: statistics.median(v) for b, v in d.items()} for k, d in cpus.items()}
    e2e, model_only = rate.get("e2e", {}), rate.get("model_only", {})
    ratios: dict[str, float] = {}
    if e2e and 1 in e2e:
        best = max(e2e, key=lambda b: e2e[b])
        ratios["best_batch"] = best
        ratios["e2e_best_over_batch1"] = e2e[best] / e2e[1]
        if 8 in e2e:
            ratios["e2e_batch8_over_batch1"] = e2e[8] / e2e[1]
            ratios["e2e_batch8_over_batch1_cpu_time"] = cpu["e2e"][1] / cpu["e2e"][8]
    if model_only and 1 in model_only and 8 in model_only:
        ratios["model_batch8_over_batch1"] = model_only[8] / model_only[1]
    if e2e and "baseline_e2e" in rate:
        ratios["e2e_best_over_plain_loop"] = max(e2e.values()) / rate["baseline_e2e"][1]
    if model_only and "input_pipeline" in rate:
        ratios["pipeline_over_model"] = rate["input_pipeline"][8] / max(model_only.values())
    if ratios:
        recorder.emit(kind="ratios", **ratios)
    rows = [r for r in recorder.records if "images_per_s" in r]
    print("\n" + recorder.table(TABLE, rows), flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, print."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
