"""Training throughput: ``artquant_train.train`` against a plain hand-written PyTorch loop with
the same loss on the same model, in the same run, for both backbone families.

Both loops train the same random-weight base (mPLUG-Owl2 from ``_bench.SIZES``, a Qwen2.5-VL from
``_vlm_bench.VLM_SIZES``) with the same trainable parts (the backbone's default LoRA and fully
trained modules, set up by the trainer's own ``prepare``), the same AdamW, batch size, precision
and data: 448 px pictures of random texture, score and description samples 1 : 1.

* **trainer**: ``train(config)``: its data loader decodes and preprocesses each batch, the
  backbone's forward (mPLUG-Owl2: full logits, as the original; Qwen: the LM head at the
  supervised positions only), the recipe loss normalised over the step, gradient clipping,
  scheduler, logging. Validation, checkpoints and the release are off.
* **plain**: a loop written the obvious way: batches collated *before* the clock starts (so the
  plain loop pays no decoding), the model's full-vocabulary logits at every position, the same
  loss (``loss_sums`` + ``combine_losses``), ``backward``, clipping, ``optimizer.step``.

Samples/s are measured over the steps after ``--warmup`` steps (the first steps allocate), by
wall clock and by this process's CPU time (steadier on a shared machine). The target is
trainer >= 0.9 x plain.

Usage::

    python benchmarks/train_throughput.py --backbone both --size small --steps 4
    python benchmarks/train_throughput.py --backbone qwen --device cuda --dtype bfloat16

The Qwen base needs a Qwen2-vocabulary tokenizer with a chat template (``--tokenizer``, default
``../shared/tokenizers/qwen2_vl``); the mPLUG-Owl2 base uses the tiny LLaMA-style tokenizer
of ``artquant_model.testing`` (ids < 512 of the 32,000-word vocabulary; sequence lengths differ
from the real tokenizer's by a few tokens, the same for both loops).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import SIZES, Recorder, machine_info

logger = logging.getLogger("train_throughput")

PROMPT = "How would you rate the quality of this painting?\n<|image|>"
WORDS = ("excellent", "good", "fair", "poor", "bad")


def _make_data(folder: Path, count: int, seed: int) -> Path:
    """``count`` 448 px pictures, a score and a description sample each; returns train.json."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for index in range(count):
        brightness = float(rng.uniform())
        pixels = np.clip(brightness + rng.normal(0, 0.08, (448, 448, 3)), 0, 1)
        name = f"img_{index:04d}.png"
        Image.fromarray((pixels * 255).astype(np.uint8)).save(images / name)
        level = min(4, int((1 - brightness) * 5))
        word = WORDS[level]
        score = 1.0 + 9.0 * brightness
        # a soft target given outright: no distribution estimation (no scipy on the GPU image)
        probs = [0.1] * len(WORDS)
        probs[level] = 0.6
        rows.append(
            {
                "id": name,
                "image": f"images/{name}",
                "gt_score": score,
                "level_probs": probs,
                "conversations": [
                    {"from": "human", "value": PROMPT},
                    {"from": "gpt", "value": f"The quality of the painting is {word}."},
                ],
            }
        )
        rows.append(
            {
                "id": f"{name}-d",
                "image": f"images/{name}",
                "task_type": "description",
                "conversations": [
                    {"from": "human", "value": "Describe this painting.\n<|image|>"},
                    {"from": "gpt", "value": "The light of the painting is good and warm."},
                ],
            }
        )
    path = folder / "train.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def _make_base(backbone: str, size: str, folder: Path, tokenizer_dir: Path) -> Path:
    """A random-weight base folder (model, tokenizer, preprocessor) of ``size``."""
    import torch

    if backbone == "mplug":
        from _pipeline import build_random_model

        from artquant_model import MPLUGOwl2ImageProcessor
        from artquant_model.testing import tiny_tokenizer

        model = build_random_model(SIZES[size], device=torch.device("cpu"), dtype=torch.float32)
        model.save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)
        MPLUGOwl2ImageProcessor().save_pretrained(folder)
        return folder
    from _vlm_bench import VLM_SIZES, build_vlm
    from transformers import AutoTokenizer

    from artquant_model.testing import tiny_preprocessor_config

    model = build_vlm(size, torch.device("cpu"), torch.float32, seed=0)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(folder)
    settings = tiny_preprocessor_config(VLM_SIZES[size]["model_type"], max_pixels=448 * 448)
    (folder / "preprocessor_config.json").write_text(json.dumps(settings), encoding="utf-8")
    return folder


def _config(base: Path, data: Path, out: Path, args: argparse.Namespace, backbone: str) -> Any:
    from artquant_train import load_config

    values: dict[str, Any] = {
        "model.base": str(base),
        "model.precision": "bf16" if args.dtype == "bfloat16" else "fp32",
        "model.gradient_checkpointing": False,
        "data.train": [{"path": str(data)}],
        "data.group_by_length": False,
        "data.template.system": "",
        "data.template.image_first": False,
        "run.output_dir": str(out),
        "run.batch_size": args.batch_size,
        "run.grad_accum": 1,
        "run.max_steps": args.warmup + args.steps,
        "run.seed": 0,
        "lora.r": 16,
        "optim.lr": 1e-4,
        "optim.warmup_ratio": 0.0,
        "checkpoint.every": 0,
        "checkpoint.save_final": False,
        "validation.every": 0,
        "logging.progress_bar": False,
        "logging.tensorboard": "off",
        "logging.plot": "off",
        "distributed.cpu": args.device == "cpu",
    }
    if backbone == "qwen":
        values["model.resolution"] = {"mode": "fixed", "size": 448}
    return load_config(overrides=values, environ={})


def _rates(
    start: tuple[float, float], end: tuple[float, float], args: argparse.Namespace
) -> tuple[float, float]:
    """Samples per wall second and per CPU second of this process between two stamps.

    On a shared machine the wall rate moves with the other processes' load; the CPU-time
    rate (all of this process's threads) does much less, so both are reported.
    """
    samples = args.steps * args.batch_size
    return samples / (end[0] - start[0]), samples / (end[1] - start[1])


def _trainer_rate(config: Any, args: argparse.Namespace) -> tuple[float, float]:
    from artquant_train import StepInfo, train

    stamps: dict[int, tuple[float, float]] = {}

    def stamp(info: StepInfo) -> None:
        stamps[info.step] = (time.perf_counter(), time.process_time())

    train(config, on_step_end=stamp)
    return _rates(stamps[args.warmup], stamps[args.warmup + args.steps], args)


def _plain_rate(config: Any, args: argparse.Namespace) -> tuple[float, float]:
    """The hand-written loop (see the module docstring)."""
    import torch
    from torch.utils.data import DataLoader

    from artquant_train.backbones import training_backbone
    from artquant_train.data import TrainingDataset, level_positions_from_rank
    from artquant_train.loop import build_training_items
    from artquant_train.losses import LossWeights, combine_losses, loss_sums
    from artquant_train.modeling import core_model

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    torch.manual_seed(0)
    backbone = training_backbone(config.model.base)
    config = backbone.resolve(config)
    backbone.load_processing(config)
    items, level_ids = build_training_items(config, backbone.tokenizer, backbone=backbone)
    dataset = TrainingDataset(items, backbone.load_pixels, len(WORDS))
    order = np.random.default_rng(0).permutation(len(items))[
        : (args.warmup + args.steps) * args.batch_size
    ]
    loader = DataLoader(
        dataset,
        batch_sampler=[
            order[i : i + args.batch_size].tolist() for i in range(0, len(order), args.batch_size)
        ],
        collate_fn=backbone.collate_fn(),
    )
    batches = [{k: v.to(device) for k, v in batch.items()} for batch in loader]
    model = backbone.prepare(backbone.load_model(config, dtype), config).to(device)
    core = core_model(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    ids = torch.tensor(level_ids, device=device)
    weights = LossWeights()
    model.train()
    stamps: list[tuple[float, float]] = []
    for batch in batches:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            if backbone.family == "hf_vlm":
                logits = core(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    mm_token_type_ids=batch["mm_token_type_ids"],
                    pixel_values=batch["pixel_values"].to(dtype),
                    image_grid_thw=batch["image_grid_thw"],
                    use_cache=False,
                ).logits
                labels = batch["labels"]
            else:
                inputs = core.build_multimodal_inputs(
                    batch["input_ids"],
                    images=batch["images"].to(dtype),
                    attention_mask=batch["attention_mask"],
                    labels=batch["labels"],
                    padding_side="right",
                )
                logits = core(
                    inputs_embeds=inputs.inputs_embeds,
                    attention_mask=inputs.attention_mask,
                    position_ids=inputs.position_ids,
                    modality_indicators=inputs.modality_indicators,
                    use_cache=False,
                ).logits
                labels = inputs.labels
            positions = level_positions_from_rank(labels, batch["level_rank"])
            sums = loss_sums(logits, labels, positions, batch["level_probs"], ids, kl="open")
            loss = combine_losses(sums, weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        stamps.append((time.perf_counter(), time.process_time()))
    # the same steps as the trainer's: warmup + 1 .. warmup + steps
    return _rates(stamps[args.warmup - 1], stamps[args.warmup + args.steps - 1], args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", choices=["mplug", "qwen", "both"], default="both")
    parser.add_argument("--size", choices=["tiny", "small"], default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="measured steps (after warm-up)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "tokenizers" / "qwen2_vl",
        help="Qwen2 tokenizer folder with a chat template (for --backbone qwen)",
    )
    parser.add_argument("--log", type=Path, default=None, help="also write JSON lines here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1 (rates run between step stamps)")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    recorder = Recorder(
        {"script": "train_throughput", "size": args.size, "device": args.device,
         "dtype": args.dtype, "batch_size": args.batch_size},
        log_path=args.log,
    )  # fmt: skip
    recorder.emit(kind="machine", **machine_info())
    backbones = ["mplug", "qwen"] if args.backbone == "both" else [args.backbone]
    if "qwen" in backbones and not (args.tokenizer / "tokenizer.json").is_file():
        print(f"train_throughput: no tokenizer.json in {args.tokenizer}; Qwen skipped")
        backbones.remove("qwen")
    with tempfile.TemporaryDirectory(prefix="aq-train-bench-") as tmp:
        root = Path(tmp)
        count = (args.warmup + args.steps) * args.batch_size
        data = _make_data(root / "data", (count + 1) // 2, seed=0)
        for backbone in backbones:
            base = _make_base(backbone, args.size, root / f"base-{backbone}", args.tokenizer)
            config = _config(base, data, root / f"run-{backbone}", args, backbone)
            plain = _plain_rate(config, args)
            trainer = _trainer_rate(config, args)
            recorder.emit(
                kind="throughput",
                backbone=backbone,
                trainer_samples_per_s=round(trainer[0], 4),
                plain_samples_per_s=round(plain[0], 4),
                ratio=round(trainer[0] / plain[0], 3),
                trainer_samples_per_cpu_s=round(trainer[1], 4),
                plain_samples_per_cpu_s=round(plain[1], 4),
                cpu_ratio=round(trainer[1] / plain[1], 3),
            )
    rows = [r for r in recorder.records if r["kind"] == "throughput"]
    columns = ["backbone", "trainer_samples_per_s", "plain_samples_per_s", "ratio", "cpu_ratio"]
    print(recorder.table(columns, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
