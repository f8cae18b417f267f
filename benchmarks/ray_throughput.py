"""Images/s of ``artquant score --engine ray`` next to ``--engine local``, on one machine.

The same random checkpoint scores the same generated picture files (``_bench.make_images``:
JPEG/PNG, long side 512-2048 px) both ways. ``--backbone mplug_owl2`` (default): a random
mPLUG-Owl2 of ``--size`` (``_bench.SIZES``) with the real LLaMA-2 tokenizer;
``--backbone qwen2_5_vl``: the generic backbone, a random Qwen2.5-VL of ``--size``
(``_vlm_bench.VLM_SIZES``: ``small`` is vision 256 x 4, LM 512 x 4, real 151,936-token
vocabulary) with the real Qwen2 tokenizer and chat template, at ``--resolution`` fixed or native
``--image-size`` px.

* ``local``: ``artquant score --engine local`` in a fresh process, as a user runs it, with
  ``OMP_NUM_THREADS`` set to ``--threads`` (its model and its decoding threads both follow it);
* ``ray``: :func:`artquant_sdk.ray.score_dataset` on a new local Ray instance
  (``num_cpus = --threads + 1``: one actor with ``--threads`` CPUs, hence as many torch threads,
  and one CPU for the read/decode tasks), timed from before ``ray.init``.

Reported per engine: wall time and images/s end to end; for Ray also the start-up (``ray.init``,
then until the first scored batch: actor start, model load, first batch read and decoded) and
the *per-actor* throughput once started (rows over the actor's time inside its scoring calls),
whose ratio to the local scoring rate is the check (issue 16: at least 0.8). Serialisation is
measured directly on the payload of one of the pictures (``payloads`` of the Ray record): the
engine's (``float32``, the image processor's output) and, for mPLUG-Owl2, the alternative of
uint8 pictures normalised in the actor (``uint8``): bytes per picture, the read task's
preprocessing, a batch through the object store (``ray.put`` + ``ray.get`` in another process)
and through Ray Data's Arrow conversion, and the actor's work to turn the batch into the model's
input, per picture.

Example::

    python benchmarks/ray_throughput.py --size small --num-images 200 --threads 1
    python benchmarks/ray_throughput.py --backbone qwen2_5_vl --size small --num-images 100
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench import SIZES, Recorder, machine_info, make_images

logger = logging.getLogger("ray_throughput")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOKENIZERS = {
    "mplug_owl2": ROOT / ".." / "shared" / "tokenizers" / "llama2",
    "qwen2_5_vl": ROOT / ".." / "shared" / "tokenizers" / "qwen2_vl",
}
TOKENIZER_FILES = {"mplug_owl2": "tokenizer.model", "qwen2_5_vl": "tokenizer.json"}


def save_checkpoint(size: str, folder: Path) -> Path:
    """A random mPLUG-Owl2 of ``size`` saved as a full checkpoint folder (float32 safetensors)."""
    import torch
    from _pipeline import build_random_model

    model = build_random_model(SIZES[size], device=torch.device("cpu"), dtype=torch.float32)
    model.save_pretrained(folder)
    return folder


def save_vlm_checkpoint(
    size: str, folder: Path, tokenizer: Path, resolution: str, side: int
) -> Path:
    """A random Qwen2.5-VL of ``size`` saved as a hub-style folder: weights, the tokenizer with
    its chat template, ``preprocessor_config.json`` and the spec's resolution."""
    import json

    import torch
    from _vlm_bench import VLM_SIZES, build_vlm, vlm_processor_settings
    from transformers import AutoTokenizer

    from artquant_model import ARTQUANT_SPEC, Resolution

    build_vlm(size, torch.device("cpu"), torch.float32, seed=0).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer).save_pretrained(folder)
    settings = vlm_processor_settings(side, VLM_SIZES[size]["model_type"])
    (folder / "preprocessor_config.json").write_text(json.dumps(settings, indent=2) + "\n")
    chosen = (
        Resolution(mode="fixed", size=side)
        if resolution == "fixed"
        else Resolution(mode="native", max_pixels=side * side)
    )
    ARTQUANT_SPEC.model_copy(update={"resolution": chosen}).save(folder)
    return folder


def run_local(
    files: Path, checkpoint: Path, tokenizer: Path | None, out: Path, threads: int, batch_size: int
) -> dict[str, Any]:
    """``artquant score --engine local`` in a fresh process; wall time and its own rate."""
    argv = [sys.executable, "-m", "artquant_sdk.cli", "-v", "score", str(files), "--out", str(out),
            "--model", str(checkpoint), "--device", "cpu",
            "--batch-size", str(batch_size), "--no-progress", "--overwrite"]  # fmt: skip
    if tokenizer is not None:
        argv += ["--tokenizer", str(tokenizer)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ended = time.time()
    if done.returncode != 0:
        raise RuntimeError(f"artquant score failed ({done.returncode}): {done.stderr}")
    summary = re.search(r"(\d+) scored, (\d+) with an error", done.stderr)
    # -v logs "<date> <time>,<ms> INFO artquant_sdk.cli: loaded ... in X s" once the model is in
    loaded = re.search(r"^(\S+ \S+) INFO artquant_sdk\.cli: loaded ", done.stderr, re.MULTILINE)
    if summary is None or loaded is None:
        raise RuntimeError(f"no summary or load line in: {done.stderr}")
    rows = int(summary[1]) + int(summary[2])
    ready = time.mktime(time.strptime(loaded[1].split(",")[0], "%Y-%m-%d %H:%M:%S"))
    ready += int(loaded[1].split(",")[1]) / 1000
    return {
        "engine": "local",
        "rows": rows,
        "wall_s": ended - started,
        "images_per_s": rows / (ended - started),
        # from the model loaded to the end: decoding and scoring, as the actor's figure
        "startup_s": ready - started,
        "scoring_images_per_s": rows / (ended - ready),
        # the whole command (imports and model load included): an upper bound per image
        "cpu_s_per_image_incl_startup": (
            after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        )
        / rows,
    }


def run_ray(
    files: Path, checkpoint: Path, tokenizer: Path | None, out: Path, threads: int, batch_size: int
) -> dict[str, Any]:
    """``score_dataset`` on a new local Ray instance; wall time, start-up and per-actor rate."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # the read tasks' torch, as for local
    import ray
    from ray._private import ray_constants

    from artquant_sdk.ray import score_dataset

    # workers run this interpreter (not `uv run`), nothing is uploaded
    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False
    started = time.perf_counter()
    ray.init(
        address="local", num_cpus=threads + 1, include_dashboard=False, logging_level="WARNING"
    )
    init_s = time.perf_counter() - started
    try:
        summary = score_dataset(
            files,
            out,
            model=checkpoint,
            tokenizer=tokenizer,
            device="cpu",
            batch_size=batch_size,
            actors=1,
            cpus_per_actor=threads,
            overwrite=True,
            progress=False,
        )
        wall = time.perf_counter() - started
        payloads = measure_payloads(checkpoint, tokenizer, sorted(files.iterdir())[0], batch_size)
    finally:
        ray.shutdown()
    # startup_seconds counts from score_dataset's start, after ray.init
    startup = init_s + (summary.startup_seconds or 0.0)
    return {
        "engine": "ray",
        "rows": summary.rows,
        "wall_s": wall,
        "images_per_s": summary.rows / wall,
        "startup_s": startup,
        "ray_init_s": init_s,
        "first_batch_after_init_s": summary.startup_seconds,
        "after_startup_images_per_s": summary.rows / max(wall - startup, 1e-9),
        "actor_images_per_s": summary.actor_images_per_second,
        "actor_busy_s": summary.actor_busy_seconds,
        "actor_cpu_s_per_image": summary.actor_cpu_seconds / max(summary.new_rows, 1),
        "payloads": payloads,
    }


def measure_payloads(
    checkpoint: Path, tokenizer: Path | None, picture: Path, batch_size: int, repeats: int = 5
) -> list[dict[str, Any]]:
    """Per picture: bytes, the read task's preprocessing, the object store and Arrow round trips
    of a batch, and the actor's work to make the model's input; for the engine's payload
    (``float32``: the image processor's output) and, for mPLUG-Owl2, the alternative of uint8
    ``[S, S, 3]`` pictures normalised in the actor (``uint8``)."""
    import numpy as np
    import ray
    from ray.data.block import BlockAccessor

    from artquant_model import MPLUGOwl2ImageProcessor
    from artquant_sdk.ray import _Backbone, _ScorerSpec

    @ray.remote(num_cpus=0)
    def fetch(refs: list[Any]) -> int:
        return len(ray.get(refs[0])["pixels"])

    def per_image(seconds: float) -> float:
        return seconds / repeats / batch_size * 1e3

    backbone = _Backbone(
        _ScorerSpec(model=str(checkpoint), tokenizer=None if tokenizer is None else str(tokenizer))
    )
    payload = backbone.payload
    # (name, one picture -> its columns, rows -> batch columns, batch -> model input)
    variants: list[tuple[str, Any, Any, Any]] = [
        ("float32", backbone.decode, payload.columns, payload.pixels)
    ]
    processor = backbone.image_processor
    if isinstance(processor, MPLUGOwl2ImageProcessor):
        variants.append(
            (
                "uint8",
                lambda source: {"pixels": processor.preprocess_uint8(source)},
                lambda rows: {"pixels": np.stack([r["pixels"] for r in rows])},
                lambda batch, rows: processor.normalize(batch["pixels"][rows]),
            )
        )
    results = []
    for name, encode, columns, to_input in variants:
        started = time.perf_counter()
        for _ in range(repeats):
            row = encode(str(picture))
        task = (time.perf_counter() - started) / repeats * 1e3
        batch = columns([row] * batch_size)
        ray.get(fetch.remote([ray.put(batch)]))  # warm the remote worker
        started = time.perf_counter()
        for _ in range(repeats):
            ray.get(fetch.remote([ray.put(batch)]))
        store = per_image(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(repeats):
            block = BlockAccessor.batch_to_block(batch)
            arrived = BlockAccessor.for_block(block).to_batch_format("numpy")
        arrow = per_image(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(repeats):
            to_input(arrived, list(range(batch_size)))
        actor = per_image(time.perf_counter() - started)
        results.append(
            {
                "payload": name,
                "bytes_per_image": int(block.nbytes) // batch_size,
                "task_preprocess_ms_per_image": task,
                "object_store_roundtrip_ms_per_image": store,
                "arrow_roundtrip_ms_per_image": arrow,
                "actor_to_model_input_ms_per_image": actor,
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=sorted(DEFAULT_TOKENIZERS), default="mplug_owl2")
    parser.add_argument("--size", choices=["tiny", "small"], default="small")
    parser.add_argument("--num-images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="model threads of both engines")
    parser.add_argument("--tokenizer", type=Path, help="default: ../shared/tokenizers/<backbone's>")
    parser.add_argument("--resolution", choices=["fixed", "native"], default="fixed",
                        help="generic backbone: fixed (padded square) or native (at most "
                        "--image-size squared pixels)")  # fmt: skip
    parser.add_argument("--image-size", type=int, default=448, help="generic backbone: px")
    parser.add_argument("--image-dir", type=Path, help="reuse (or write) the pictures here")
    parser.add_argument("--engines", default="local,ray", help="comma-separated, in run order")
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    tokenizer = args.tokenizer or DEFAULT_TOKENIZERS[args.backbone]
    needed = TOKENIZER_FILES[args.backbone]
    if not (tokenizer / needed).is_file():
        parser.error(f"no {needed} in {tokenizer}; pass --tokenizer DIR ({args.backbone}'s)")
    engines = args.engines.split(",")
    if not set(engines) <= {"local", "ray"}:
        parser.error(f"--engines takes local and ray; got {args.engines!r}")

    recorder = Recorder(
        {"script": "ray_throughput", "backbone": args.backbone, "size": args.size},
        log_path=args.log,
    )
    recorder.emit(kind="machine", **machine_info(), load_avg=os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = args.image_dir or work / "pics"
        if not files.is_dir() or len(list(files.iterdir())) < args.num_images:
            make_images(files, args.num_images)
        if args.backbone == "mplug_owl2":
            checkpoint = save_checkpoint(args.size, work / "checkpoint")
            tokenizer_option: Path | None = tokenizer
        else:
            checkpoint = save_vlm_checkpoint(
                args.size, work / "checkpoint", tokenizer, args.resolution, args.image_size
            )
            recorder.emit(kind="settings", resolution=args.resolution, image_size=args.image_size)
            tokenizer_option = None  # the checkpoint carries its tokenizer
        runners = {"local": run_local, "ray": run_ray}
        for engine in engines:
            out = work / ("scores.csv" if engine == "local" else "scores.parquet")
            load_before = os.getloadavg()
            result = runners[engine](
                files, checkpoint, tokenizer_option, out, args.threads, args.batch_size
            )
            recorder.emit(
                kind="engine",
                threads=args.threads,
                batch_size=args.batch_size,
                load_avg_before=load_before,
                load_avg_after=os.getloadavg(),
                **result,
            )
    runs = {r["engine"]: r for r in recorder.records if r["kind"] == "engine"}
    if {"local", "ray"} <= set(runs):
        ratio = runs["ray"]["actor_images_per_s"] / runs["local"]["scoring_images_per_s"]
        recorder.emit(kind="ratio", actor_over_local_scoring=ratio, meets_0_8=ratio >= 0.8)
    columns = ["engine", "rows", "wall_s", "images_per_s", "startup_s", "scoring_images_per_s",
               "actor_images_per_s"]  # fmt: skip
    print(recorder.table(columns, [r for r in recorder.records if r["kind"] == "engine"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
