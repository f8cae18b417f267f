"""What scoring APDDv2's ten attributes besides the total costs, per image, end to end from files.

    python benchmarks/attributes_cost.py --size small --num-images 32 --repeats 3

One process, one run: a random-weight mPLUG-Owl2 checkpoint of the chosen size is written with
an ``artquant_spec.json`` holding the total and the ten APDDv2 attributes, every question in
the trainer's picture-first layout (``"<system> USER: <|image|>\\n<question> ASSISTANT:
<stem>"``; ``--prompt question-first`` writes the ArtQuant release's layout instead,
``"USER: <question>\\n<|image|> ASSISTANT: <stem>"``). Then, on the same generated JPEG/PNG
files, interleaved for ``--repeats`` rounds so a neighbour's load shifts both sides alike:

1. ``total``: ``ArtQuant.score(paths, batch_size=B)``, the total alone;
2. ``attributes``: ``ArtQuant.score(paths, attributes="all", batch_size=B)``, the total and
   ten attributes (each picture computed once; with picture-first prompts also the picture's
   keys and values and every token before the question);
3. ``one_at_a_time`` (model only, on preloaded pixels of one batch): the eleven questions asked
   one after the other (``Backbone.score`` per question), what the sharing saves, and the
   largest score difference between the two ways.

The acceptance figure is ``attributes / total`` per image (target at most 1.5), the ratio of the
medians over the rounds, in wall time; the same ratio in CPU seconds of this process (which a
neighbour's load moves much less) is printed beside it. Every line carries the machine, the
UTC date and the load average.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _bench import SIZES, Recorder, machine_info, make_images

logger = logging.getLogger("attributes_cost")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOKENIZER = REPO_ROOT.parent / "shared" / "tokenizers" / "llama2"
#: The training template's system prompt (artquant-train's ``VICUNA_V1_SYSTEM``).
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
TARGET = 1.5


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--num-images", type=int, default=32, help="files scored per round")
    parser.add_argument("--unique-images", type=int, default=16, help="distinct pictures")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--prompt", choices=["picture-first", "question-first"], default="picture-first"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=DEFAULT_TOKENIZER,
        help="folder with the LLaMA-2 tokenizer.model (default ../shared/tokenizers/llama2)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=Path, default=None, help="also append the JSON lines here")
    args = parser.parse_args(argv)
    for name in ("num_images", "unique_images", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def attribute_spec(prompt: str) -> Any:
    """ArtQuant's levels with the total and APDDv2's ten attributes in the ``prompt`` layout."""
    from artquant_model import APDDV2_ATTRIBUTE_QUESTIONS, ARTQUANT_SPEC, Question

    asked = {"total": ARTQUANT_SPEC.question(), **APDDV2_ATTRIBUTE_QUESTIONS}
    questions = {}
    for name, question in asked.items():
        if prompt == "picture-first":
            raw = f"{SYSTEM} USER: <|image|>\n{question.prompt} ASSISTANT: {question.stem}"
        else:
            raw = f"USER: {question.prompt}\n<|image|> ASSISTANT: {question.stem}"
        questions[name] = Question(prompt=question.prompt, stem=question.stem, raw_prompt=raw)
    return ARTQUANT_SPEC.model_copy(update={"questions": questions})


def _load_average() -> float:
    return os.getloadavg()[0]


def _timed_score(
    scorer: Any, paths: list[Path], batch_size: int, **options: Any
) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process, every thread) per image of
    ``ArtQuant.score`` over ``paths``."""
    started, cpu = time.perf_counter(), time.process_time()
    scorer.score(paths, batch_size=batch_size, progress=False, **options)
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    return wall / len(paths), used / len(paths)


def _model_only(scorer: Any, paths: list[Path], batch_size: int) -> dict[str, Any]:
    """One batch of preloaded pixels: the questions shared against one at a time."""
    from artquant_model import Backbone, load_image

    backbone = scorer.backbone
    pixels = scorer.preprocess([load_image(p) for p in paths[:batch_size]])
    names = list(backbone.spec.questions)
    started = time.perf_counter()
    shared = backbone.score_questions(pixels, names)
    shared_s = time.perf_counter() - started
    started = time.perf_counter()
    alone = Backbone.score_questions(backbone, pixels, names)  # the default: one at a time
    alone_s = time.perf_counter() - started
    diff = max(float((shared[n].score - alone[n].score).abs().max()) for n in names)
    return {
        "questions": len(names),
        "images": int(pixels.shape[0]),
        "shared_ms_per_image": 1000 * shared_s / int(pixels.shape[0]),
        "one_at_a_time_ms_per_image": 1000 * alone_s / int(pixels.shape[0]),
        "saving": alone_s / shared_s,
        "max_score_diff": diff,
    }


def run(args: argparse.Namespace) -> Recorder:
    """Every measurement of one run; returns the recorder."""
    import torch
    from load_memory import write_random_checkpoint

    from artquant_sdk import ArtQuant

    if not (args.tokenizer / "tokenizer.model").is_file():
        raise SystemExit(f"no tokenizer.model in {args.tokenizer}; pass --tokenizer DIR")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    recorder = Recorder(
        {"script": "attributes_cost", "size": args.size, "device": "cpu", "prompt": args.prompt},
        log_path=args.log,
    )
    recorder.emit(kind="machine", **machine_info(), threads=torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        unique = make_images(Path(tmp) / "images", args.unique_images, seed=args.seed)
        paths = [unique[i % len(unique)] for i in range(args.num_images)]
        ckpt = Path(tmp) / "checkpoint"
        write_random_checkpoint(ckpt, SIZES[args.size], seed=args.seed)
        attribute_spec(args.prompt).save(ckpt)
        scorer = ArtQuant.from_pretrained(ckpt, tokenizer=args.tokenizer, device="cpu")
        warm = paths[: args.batch_size]
        scorer.score(warm, batch_size=args.batch_size, progress=False, attributes="all")
        wall: dict[str, list[float]] = {"total": [], "attributes": []}
        cpu: dict[str, list[float]] = {"total": [], "attributes": []}
        for round_ in range(1, args.repeats + 1):
            for kind, options in (("total", {}), ("attributes", {"attributes": "all"})):
                load = _load_average()
                seconds, cpu_seconds = _timed_score(scorer, paths, args.batch_size, **options)
                wall[kind].append(seconds)
                cpu[kind].append(cpu_seconds)
                recorder.emit(kind=kind, round=round_, images=len(paths),
                              batch_size=args.batch_size, ms_per_image=1000 * seconds,
                              images_per_s=1 / seconds, cpu_s_per_image=cpu_seconds,
                              load_average=load)  # fmt: skip
        load = _load_average()
        recorder.emit(kind="one_at_a_time", load_average=load,
                      **_model_only(scorer, paths, args.batch_size))  # fmt: skip
    ratio = statistics.median(wall["attributes"]) / statistics.median(wall["total"])
    cpu_ratio = statistics.median(cpu["attributes"]) / statistics.median(cpu["total"])
    recorder.emit(
        kind="summary",
        total_ms_per_image=1000 * statistics.median(wall["total"]),
        attributes_ms_per_image=1000 * statistics.median(wall["attributes"]),
        attributes_over_total=ratio,
        cpu_attributes_over_total=cpu_ratio,
        target=TARGET,
        met=ratio <= TARGET,
    )
    rows = [r for r in recorder.records if r["kind"] in ("total", "attributes")]
    columns = ["kind", "round", "ms_per_image", "cpu_s_per_image", "load_average"]
    print(recorder.table(columns, rows), file=sys.stderr)
    print(
        f"total + 10 attributes / total = {ratio:.3f} per image, wall ({cpu_ratio:.3f} in CPU "
        f"seconds; target: at most {TARGET})",
        file=sys.stderr,
    )
    return recorder


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
