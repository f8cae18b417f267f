"""The ``artquant`` command: score and describe images, list and download models.

Subcommands::

    artquant score PATHS... --out FILE [--model NAME|DIR] [--tokenizer DIR] [--base NAME|DIR]
                   [--batch-size N] [--device D] [--dtype T] [--recursive] [--resume]
                   [--overwrite] [--workers N] [--max-pixels N] [--levels PRESET]
                   [--attributes all|a,b,c] [--zero-shot-attributes]
    artquant describe IMAGE [--model ...] [--prompt TEXT] [--max-new-tokens N]
    artquant models [--json]
    artquant download NAME [--revision R]
    artquant serve [...]      (the HTTP service; needs the artquant-serve package)

Exit codes: 0 every input file has a row (scored or with an ``error``); 1 the run failed
(a merge could not complete, an unexpected error); 2 usage error (bad arguments, missing
inputs, an output that exists without ``--resume``/``--overwrite``); 3 the model could not be
loaded or downloaded; 130 interrupted (rerun with ``--resume``).

Several processes: ``accelerate launch --multi_gpu --num_processes N -m artquant_sdk.cli score ...``
or ``torchrun --nproc-per-node N -m artquant_sdk.cli score ...`` (see
:mod:`artquant_sdk._sharding`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MODEL = 3
EXIT_INTERRUPTED = 130

DEFAULT_MODEL = "artquant-apdd"

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_MODEL", "EXIT_OK", "EXIT_USAGE", "main"]

logger = logging.getLogger("artquant_sdk.cli")


class _UsageError(Exception):
    """A problem with the command line or the files it names (exit code 2)."""


class _ModelLoadError(Exception):
    """The model could not be resolved, downloaded or loaded (exit code 3)."""


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for integers ``>= minimum`` whose errors name the bad value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from error
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _default_workers(scorer: Any) -> int:
    """Decoding processes: enough to feed a GPU (one decodes about 40 images/s), none on a CPU.

    A GPU scores hundreds of images per second, so use every core but one, up to 16. On a CPU
    the model's threads already use every core; a background process only takes them away
    (measured on 2 cores: batch 8 end to end 125 ms per image with one worker, 94 ms decoding
    each batch between forward passes on all cores), so decode in this process, in threads.
    """
    if scorer.device.type == "cpu":
        return 0
    cap = 16 if scorer.device.type == "cuda" else 4
    return max(0, min(cap, (os.cpu_count() or 1) - 1))


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from error
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number >= 0")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 must be greater than 0")
    return value


# Options of --engine ray only (all default to None, so "given" is "not None").
_RAY_OPTIONS = (
    "ray_address",
    "actors",
    "gpus_per_actor",
    "cpus_per_actor",
    "path_column",
    "bytes_column",
    "id_column",
)
# Options of --engine local only.
_LOCAL_OPTIONS = ("workers", "decode_threads", "merge_timeout")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _add_ray_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "Ray engine", "with --engine ray (needs the artquant-sdk[ray] extra; --out x.parquet)"
    )
    group.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local (default): this process; ray: a Ray Data pipeline on a Ray cluster, "
        "output Parquet; PATHS may also be globs, URIs, Parquet/CSV manifests and tar shards",
    )
    group.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the cluster to join (auto, ray://host:10001); default RAY_ADDRESS, else a new "
        "local Ray instance",
    )
    group.add_argument(
        "--actors",
        type=_positive_int,
        metavar="N",
        help="scoring actors, each loading the model once (default: GPUs / --gpus-per-actor, "
        "else 1)",
    )
    group.add_argument(
        "--gpus-per-actor",
        type=_non_negative_float,
        metavar="G",
        help="GPUs per actor, fractions share a GPU (default 1 where the cluster has GPUs, else 0)",
    )
    group.add_argument(
        "--cpus-per-actor",
        type=_positive_float,
        metavar="C",
        help="CPUs per actor, also its torch threads (default 1)",
    )
    group.add_argument("--path-column", metavar="NAME", help="manifests: paths (default path)")
    group.add_argument(
        "--bytes-column", metavar="NAME", help="Parquet manifests: encoded pictures (default bytes)"
    )
    group.add_argument(
        "--id-column",
        metavar="NAME",
        help="manifests: ids (default the path, or <manifest>#<row> for bytes)",
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="NAME|DIR",
        help=f"ModelZoo name, checkpoint folder or hub id (default {DEFAULT_MODEL}; "
        "downloaded on first use unless --offline)",
    )
    group.add_argument(
        "--base", metavar="NAME|DIR", help="base checkpoint of a LoRA release (name or folder)"
    )
    group.add_argument(
        "--tokenizer", metavar="DIR", help="folder with tokenizer.model when the model has none"
    )
    group.add_argument(
        "--device", default="auto", metavar="D", help="auto (default), cpu, cuda, cuda:N, mps"
    )
    group.add_argument(
        "--dtype",
        default="auto",
        metavar="T",
        help="auto (default: bfloat16 on CUDA, float32 on CPU/MPS), float32, bfloat16, float16",
    )
    group.add_argument("--revision", metavar="REV", help="hub revision (branch, tag or commit)")
    group.add_argument(
        "--levels",
        choices=["artquant", "qalign", "onealign"],
        help="level preset for a folder not in the ModelZoo (default artquant)",
    )
    group.add_argument(
        "--offline",
        action="store_true",
        help="never download (also implied by HF_HUB_OFFLINE=1); fail with instructions instead",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``artquant`` command."""
    parser = argparse.ArgumentParser(
        prog="artquant",
        description="Score and describe artworks with ArtQuant-family models.",
        epilog="Exit codes: 0 ok, 1 failed, 2 usage error, 3 model not loadable, 130 interrupted.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    score = sub.add_parser(
        "score",
        help="score image files into a CSV or JSONL file",
        description="Score image files; one row per file: image, score, std, level, "
        "p_<word>..., error. Rows are flushed as they are done.",
    )
    score.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders")
    score.add_argument(
        "--out", required=True, metavar="FILE", help="output file, .csv or .jsonl (.ndjson)"
    )
    score.add_argument(
        "--batch-size",
        type=_positive_int,
        default=8,
        metavar="N",
        help="images per forward pass (default 8; scores do not depend on it)",
    )
    score.add_argument("--recursive", "-r", action="store_true", help="descend into sub-folders")
    score.add_argument(
        "--resume", action="store_true", help="keep the rows --out holds and score the rest"
    )
    score.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    score.add_argument(
        "--workers",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="background decoding processes (default: none on a CPU, where each batch is "
        "decoded between forward passes; with a GPU up to 16, at most one less than the cores)",
    )
    score.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="on a CPU, leave glibc's malloc as it is (by default freed blocks up to 32 MiB stay "
        "in the heap: the process keeps its peak memory, forward passes run faster)",
    )
    score.add_argument(
        "--decode-threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --workers 0: files of a batch decoded at once (default: the model's threads "
        "on a CPU, else up to 16)",
    )
    score.add_argument(
        "--max-pixels",
        type=_positive_int,
        metavar="N",
        help="refuse images with more pixels than this (decompression-bomb limit; default "
        "artquant_model's)",
    )
    score.add_argument(
        "--attributes",
        metavar="all|A,B,...",
        help="also score attributes: 'all' (every attribute the model was trained on) or ids/"
        "names separated by commas (color,light_and_shadow); adds score_<id> and std_<id> "
        "columns",
    )
    score.add_argument(
        "--zero-shot-attributes",
        action="store_true",
        help="ask attributes the model was not trained on with APDDv2's questions (zero-shot) "
        "instead of refusing them",
    )
    score.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    score.add_argument(
        "--merge-timeout",
        type=float,
        metavar="SECONDS",
        help="with several processes: seconds rank 0 waits for the others (default no limit)",
    )
    _add_ray_options(score)
    _add_model_options(score)

    describe = sub.add_parser("describe", help="describe one image in words")
    describe.add_argument("image", help="image file")
    describe.add_argument(
        "--prompt",
        help="mPLUG-Owl2: the full prompt with <|image|>; chat models (Qwen-VL): the question, "
        "placed after the picture by the chat template (default: the model's)",
    )
    describe.add_argument("--max-new-tokens", type=_positive_int, default=512)
    _add_model_options(describe)

    models = sub.add_parser("models", help="list the ModelZoo")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sub.add_parser(
        "serve",
        help="serve a model over HTTP with a gallery page (needs artquant-serve; "
        "`artquant serve --help` for its options)",
        add_help=False,
    )

    download = sub.add_parser("download", help="download a ModelZoo model (and its base)")
    download.add_argument("name", help="ModelZoo name or hub id")
    download.add_argument("--revision", help="hub revision (branch, tag or commit)")
    return parser


def _offline(args: argparse.Namespace) -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return bool(args.offline) or flag in {"1", "true", "yes", "on"}


def _load_scorer(args: argparse.Namespace, device: str | None) -> Any:
    from artquant_sdk._api import ArtQuant

    try:
        return ArtQuant.from_pretrained(
            args.model,
            base=args.base,
            tokenizer=args.tokenizer,
            device=device,
            dtype=args.dtype,
            revision=args.revision,
            local_files_only=_offline(args),
            levels=args.levels,
        )
    except Exception as error:
        # Whatever stops the model from loading ends the run with its message and exit code 3.
        raise _ModelLoadError(f"could not load model {args.model!r}: {error}") from error


def _shard_device(requested: str, local_rank: int, world_size: int) -> str:
    import torch

    if world_size > 1 and requested in {"auto", "cuda"} and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return requested


def _score_rows(scorer: Any, batch: Any, attributes: Sequence[str] = ()) -> list[dict[str, object]]:
    """Rows for one :class:`~artquant_sdk._decode.DecodedBatch`, in its order.

    The readable images are scored in one forward pass (with the attribute ids asked for); if
    that fails (out of memory, say), they are retried one at a time so one image cannot sink
    the rest.
    """
    from artquant_sdk._decode import describe_error

    rows: dict[int, dict[str, object]] = {}
    good = [d for d in batch if d.pixel_values is not None]
    for d in batch:
        if d.pixel_values is None:
            rows[d.index] = {"image": d.image, "error": d.error}
    scored: list[tuple[Any, Any]] = []
    if good:
        try:
            together = scorer.score_batch(batch.pixel_values, attributes)
            scored = list(zip(good, together, strict=True))
        except Exception:
            for d in good:
                try:
                    (one,) = scorer.score_batch(d.pixel_values.unsqueeze(0), attributes)
                    scored.append((d, one))
                except Exception as error:
                    rows[d.index] = {"image": d.image, "error": describe_error(error)}
    for d, ((score, std, probs), extra) in scored:
        result = scorer.to_result(d.image, score, std, probs, extra)
        row: dict[str, object] = {
            "image": d.image,
            "score": result.score,
            "std": result.std,
            "level": result.level,
        }
        row.update({f"p_{w}": p for w, p in result.probs.items()})
        for name, value in result.attributes.items():
            row[f"score_{name}"] = value.score
            row[f"std_{name}"] = value.std
        rows[d.index] = row
    return [rows[d.index] for d in batch]


def _attribute_list(text: str | None) -> list[str] | None:
    """``--attributes``: None, ``["all"]`` or the comma-separated names."""
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise _UsageError(f"--attributes {text!r} names no attribute; use all or a,b,c")
    return names


def _cmd_score_ray(args: argparse.Namespace) -> int:
    """``artquant score --engine ray``: the same rows, from a Ray Data pipeline."""
    from artquant_sdk._sharding import dist_env

    given = [_flag(name) for name in _LOCAL_OPTIONS if getattr(args, name) is not None]
    if given:
        raise _UsageError(f"{', '.join(given)} apply only to --engine local")
    if dist_env().world_size > 1:
        raise _UsageError(
            "--engine ray runs from one driver process; start it without accelerate/torchrun "
            "(Ray spreads the work over the cluster)"
        )
    if args.resume and args.overwrite:
        raise _UsageError("--resume and --overwrite exclude each other")
    if args.zero_shot_attributes and args.attributes is None:
        raise _UsageError("--zero-shot-attributes needs --attributes (all or a,b,c)")
    try:
        from artquant_sdk import ray as engine
    except ImportError as error:
        raise _UsageError(str(error)) from error
    columns = {
        key: getattr(args, key)
        for key in ("path_column", "bytes_column", "id_column", "cpus_per_actor")
        if getattr(args, key) is not None
    }
    try:
        summary = engine.score_dataset(
            args.paths,
            args.out,
            model=args.model,
            base=args.base,
            tokenizer=args.tokenizer,
            device=None if args.device == "auto" else args.device,
            dtype=args.dtype,
            revision=args.revision,
            local_files_only=_offline(args),
            levels=args.levels,
            batch_size=args.batch_size,
            actors=args.actors,
            gpus_per_actor=args.gpus_per_actor,
            recursive=args.recursive,
            max_pixels=args.max_pixels,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            tune_malloc=not args.no_malloc_tuning,
            ray_address=args.ray_address,
            attributes=_attribute_list(args.attributes),
            zero_shot_attributes=args.zero_shot_attributes,
            **columns,
        )
    except engine.ScorerLoadError as error:
        raise _ModelLoadError(str(error)) from error
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        raise _UsageError(str(error)) from error
    startup = (
        ""
        if summary.startup_seconds is None
        else (f", first batch after {summary.startup_seconds:.1f} s on {summary.actors} actor(s)")
    )
    rate = summary.new_rows / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"artquant score: {summary.new_rows} new row(s), {summary.already_done} already done; "
        f"{summary.output} holds {summary.rows} rows ({summary.scored} scored, "
        f"{summary.errors} with an error); {rate:.1f} images/s{startup}",
        file=sys.stderr,
    )
    return EXIT_OK


def _cmd_score(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return _cmd_score_ray(args)
    given = [_flag(name) for name in _RAY_OPTIONS if getattr(args, name) is not None]
    if given:
        raise _UsageError(f"{', '.join(given)} need --engine ray")
    return _cmd_score_local(args)


def _cmd_score_local(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from artquant_sdk._decode import decoded_batches
    from artquant_sdk._files import expand_paths
    from artquant_sdk._output import (
        OutputFormatError,
        RowWriter,
        columns_for,
        output_format,
        read_rows,
    )
    from artquant_sdk._sharding import (
        dist_env,
        merge_outputs,
        part_path,
        parts_dir,
        remove_parts,
        row_key,
        shard,
        wait_for_parts,
    )

    out = Path(args.out)
    if out.suffix.lower() == ".parquet":
        raise _UsageError(
            f"output {args.out!r} must end in one of ['.csv', '.jsonl', '.ndjson'] with "
            "--engine local; Parquet output is written by --engine ray"
        )
    try:
        fmt = output_format(out)
        dist = dist_env()
        files = expand_paths(args.paths, recursive=args.recursive)
    except (OutputFormatError, ValueError, FileNotFoundError) as error:
        raise _UsageError(str(error)) from error
    if args.resume and args.overwrite:
        raise _UsageError("--resume and --overwrite exclude each other")
    if args.zero_shot_attributes and args.attributes is None:
        raise _UsageError("--zero-shot-attributes needs --attributes (all or a,b,c)")
    if args.decode_threads is not None and args.workers:
        raise _UsageError(
            f"--decode-threads {args.decode_threads} applies only with --workers 0 (each of the "
            f"--workers {args.workers} processes decodes one file at a time)"
        )
    if not files:
        raise _UsageError(
            f"no image files found in {args.paths}"
            + ("" if args.recursive else " (use --recursive for sub-folders)")
        )
    sharded = dist.world_size > 1
    mine = shard(files, dist.rank, dist.world_size) if sharded else files
    my_out = part_path(out, dist.rank, dist.world_size) if sharded else out

    leftovers = [p for p in (out, my_out) if p.exists() and p.stat().st_size > 0]
    if not (args.resume or args.overwrite) and leftovers:
        raise _UsageError(
            f"{leftovers[0]} already exists; pass --resume to continue it or --overwrite "
            "to replace it"
        )
    in_out: set[str] = set()
    done: set[str] = set()
    try:
        if args.overwrite:
            my_out.unlink(missing_ok=True)
        elif args.resume:
            # Only the process appending to a file may cut a partial last line off it.
            _, previous = read_rows(out, fmt, repair=not sharded)
            in_out = {row_key(str(r["image"])) for r in previous}
            done = set(in_out)
            if sharded:
                _, own = read_rows(my_out, fmt, repair=True)
                done |= {row_key(str(r["image"])) for r in own}
    except OutputFormatError as error:
        raise _UsageError(str(error)) from error
    todo = [f for f in mine if row_key(f) not in done]
    logger.info(
        "%d file(s) in total, %d in this process's share, %d to score",
        len(files),
        len(mine),
        len(todo),
    )

    started = time.monotonic()
    n_scored = n_errors = 0
    columns: list[str] | None = None
    if todo:
        scorer = _load_scorer(args, _shard_device(args.device, dist.local_rank, dist.world_size))
        logger.info("loaded %r in %.1f s", scorer, time.monotonic() - started)
        if scorer.device.type == "cpu" and not args.no_malloc_tuning:
            from artquant_sdk._malloc import keep_freed_memory

            keep_freed_memory()
        started = time.monotonic()  # the rate below counts scoring, not loading
        try:
            attributes = scorer.resolve_attributes(
                _attribute_list(args.attributes), zero_shot=args.zero_shot_attributes
            )
        except ValueError as error:
            raise _UsageError(str(error)) from error
        columns = columns_for(scorer.level_words, attributes)
        try:
            writer = RowWriter(my_out, columns, fmt)
        except OutputFormatError as error:
            raise _UsageError(str(error)) from error
        show = not args.no_progress and dist.is_main
        with writer, tqdm(total=len(todo), unit="img", desc="scoring", disable=not show) as bar:
            workers = args.workers if args.workers is not None else _default_workers(scorer)
            if workers and args.decode_threads is not None:
                logger.warning(
                    "--decode-threads is ignored: on %s the default is %d decoding processes "
                    "(pass --workers 0 to decode in threads)",
                    scorer.device,
                    workers,
                )
            for batch in decoded_batches(
                todo,
                scorer.processor.image_processor,
                batch_size=args.batch_size,
                workers=workers,
                threads=(
                    args.decode_threads
                    if args.decode_threads is not None
                    else scorer.default_decode_threads()
                ),
                max_pixels=args.max_pixels,
                pin_memory=scorer.device.type == "cuda",
            ):
                for row in _score_rows(scorer, batch, attributes):
                    writer.write(row)
                    if row.get("error"):
                        n_errors += 1
                        logger.info("%s: %s", row["image"], row["error"])
                    else:
                        n_scored += 1
                bar.update(len(batch))
    elapsed = time.monotonic() - started
    rate = n_scored / elapsed if elapsed > 0 and n_scored else 0.0
    print(
        f"artquant score: {n_scored} scored, {n_errors} with an error, "
        f"{len(mine) - len(todo)} already done ({rate:.1f} images/s)"
        + (f" [rank {dist.rank}/{dist.world_size}]" if sharded else ""),
        file=sys.stderr,
    )
    if not sharded or not dist.is_main:
        return EXIT_OK

    complete = wait_for_parts(
        out,
        files,
        dist.world_size,
        fmt,
        already_done=in_out,
        timeout=args.merge_timeout,
    )
    if not complete:
        print(
            f"artquant score: not every process finished; parts kept in {parts_dir(out)}. "
            "Rerun the same command with --resume to finish and merge.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    sources = ([out] if args.resume else []) + [
        part_path(out, rank, dist.world_size) for rank in range(dist.world_size)
    ]
    missing = merge_outputs(out, files, sources, fmt, columns)
    if missing:
        print(
            f"artquant score: {len(missing)} file(s) have no row after merging (first: "
            f"{missing[0]}); parts kept in {parts_dir(out)}; rerun with --resume",
            file=sys.stderr,
        )
        return EXIT_FAILED
    remove_parts(out)
    print(f"artquant score: merged {len(files)} rows into {out}", file=sys.stderr)
    return EXIT_OK


def _cmd_describe(args: argparse.Namespace) -> int:
    if not Path(args.image).is_file():
        raise _UsageError(f"{args.image!r} is not a file")
    scorer = _load_scorer(args, args.device)
    print(scorer.describe(args.image, max_new_tokens=args.max_new_tokens, prompt=args.prompt))
    return EXIT_OK


def _local_copy(name: str) -> str:
    from artquant_sdk._errors import ModelUnavailableError
    from artquant_sdk._zoo import resolve_weights

    try:
        return str(resolve_weights(name, local_files_only=True).path)
    except ModelUnavailableError:
        return "not downloaded"


def _cmd_models(args: argparse.Namespace) -> int:
    from artquant_sdk._zoo import list_models, manifest_path, modelzoo_dir

    cards = list_models()
    if args.json:
        payload = [
            {**card.model_dump(mode="json"), "local": _local_copy(card.name)} for card in cards
        ]
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return EXIT_OK
    zoo = modelzoo_dir()
    print(f"manifest: {manifest_path()}")
    print(f"weights:  {zoo if zoo is not None else 'the Hugging Face cache'}")
    for card in cards:
        low, high = card.scale
        print()
        print(f"{card.name}")
        print(f"  {card.description}")
        print(f"  hub:      {card.hub_repo} @ {card.revision}")
        print(f"  format:   {card.format}" + (f" over {card.base}" if card.base else ""))
        print(f"  levels:   {card.levels}, scale {low:g}-{high:g}")
        print(f"  licence:  {card.licence}")
        if not card.verified:
            print("  verified: no (hub id, licence and size not checked against the hub)")
        if card.reported:
            for r in card.reported:
                split = f" {r.split}" if r.split else ""
                print(f"  reported: {r.dataset}{split} {r.metric} {r.value:g} ({r.source})")
        else:
            print(f"  reported: {card.reported_note}")
        print(f"  local:    {_local_copy(card.name)}")
    return EXIT_OK


def _cmd_download(args: argparse.Namespace) -> int:
    from artquant_sdk._zoo import load_manifest, resolve_weights

    try:
        models = load_manifest().models
        names = [args.name]
        card = models.get(args.name)
        if card is not None:
            names += [n for n in (card.base, card.tokenizer_from) if n and n not in names]
        for index, name in enumerate(names):
            revision = args.revision if index == 0 else None
            resolved = resolve_weights(name, revision=revision, local_files_only=False)
            print(f"{name}: {resolved.path}")
    except Exception as error:
        # Any hub or filesystem problem is reported, not dumped as a traceback.
        raise _ModelLoadError(f"could not download {args.name!r}: {error}") from error
    return EXIT_OK


_STDOUT_COMMANDS = ("models", "describe")

SERVE_INSTALL_HINT = (
    "artquant serve: error: the HTTP service lives in the artquant-serve package, which is not "
    "installed; install it with `pip install artquant-serve` (or `uv sync` in the ArtQuant "
    "workspace, which installs every package)"
)


def _serve(argv: Sequence[str]) -> int:
    """``artquant serve``: hand the arguments to artquant_serve, or say how to install it."""
    try:
        from artquant_serve.cli import main as serve_main
    except ImportError as error:
        if error.name is not None and error.name.split(".")[0] != "artquant_serve":
            raise  # artquant_serve is there but one of its own imports failed: show that
        print(SERVE_INSTALL_HINT, file=sys.stderr)
        return EXIT_USAGE
    return int(serve_main(list(argv), prog="artquant serve"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``artquant`` command.

    Args:
        argv: Arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The exit code (see the module docstring).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve"]:
        # artquant-serve owns its options; this package only knows where to find it.
        return _serve(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    commands = {
        "score": _cmd_score,
        "describe": _cmd_describe,
        "models": _cmd_models,
        "download": _cmd_download,
    }
    try:
        return commands[args.command](args)
    except _UsageError as error:
        parser.print_usage(sys.stderr)
        print(f"artquant {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except _ModelLoadError as error:
        print(f"artquant {args.command}: error: {error}", file=sys.stderr)
        return EXIT_MODEL
    except Exception as error:
        if isinstance(error, BrokenPipeError) and args.command in _STDOUT_COMMANDS:
            # The reader went away (`artquant models | head`): stop quietly, as `cat` does;
            # stdout goes to devnull so that the interpreter's final flush does not raise again.
            # (These commands open no other pipe or socket, unlike `score` and `download`.)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FAILED
        # Anything unforeseen still ends with one readable line (the traceback with -v).
        logger.debug("unexpected error", exc_info=True)
        print(
            f"artquant {args.command}: error: {type(error).__name__}: {error}"
            + ("" if args.verbose else " (rerun with -v for the traceback)"),
            file=sys.stderr,
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(
            f"artquant {args.command}: interrupted; rows written so far are kept "
            "(rerun with --resume to continue)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
