"""``artquant-train``: the command line of the trainer.

Precedence of values: defaults < ``--config`` file < ``ARTQUANT_TRAIN_*`` environment <
flags. Named flags exist for the common settings; any other field is set with a dotted flag,
``--optim.warmup_ratio 0.05`` or ``--lora.targets '[q_proj, o_proj]'`` (values parsed as YAML).

Examples::

    artquant-train --config train.yaml
    artquant-train --base ModelZoo/mplug-owl2-llama2-7b --tokenizer ModelZoo/mplug-owl2-llama2-7b \\
        --train-data apdd_score.json:1 apdd_description.json:1 --image-root APDDv2/images \\
        --val-data apdd_val.json --output-dir runs/apdd
    accelerate launch --config_file "$(python -m artquant_train.configs accelerate_zero2.yaml)" \\
        -m artquant_train.cli --config train.yaml
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from artquant_train.config import (
    ConfigError,
    TrainConfig,
    load_config,
    parse_data_sources,
    parse_value,
)

logger = logging.getLogger(__name__)

# flag -> dotted config key
_NAMED = {
    "base": "model.base",
    "tokenizer": "model.tokenizer",
    "image_root": "data.image_root",
    "val_data": "data.val",
    "output_dir": "run.output_dir",
    "max_steps": "run.max_steps",
    "epochs": "run.epochs",
    "batch_size": "run.batch_size",
    "grad_accum": "run.grad_accum",
    "lr": "optim.lr",
    "lora_r": "lora.r",
    "lora_alpha": "lora.alpha",
    "seed": "run.seed",
    "best_on": "validation.best_on",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (named flags; dotted overrides are parsed separately)."""
    parser = argparse.ArgumentParser(
        prog="artquant-train",
        description="Train an ArtQuant scorer (LoRA + vision tuning on mPLUG-Owl2). Any config "
        "field can also be set as --section.field VALUE; environment variables "
        "ARTQUANT_TRAIN_<SECTION>__<FIELD> sit between the config file and the flags.",
    )
    parser.add_argument("--config", help="YAML or JSON config file")
    parser.add_argument(
        "--base", help="base model folder, or a ModelZoo name already downloaded (model.base)"
    )
    parser.add_argument("--tokenizer", help="tokenizer folder or tokenizer.model (model.tokenizer)")
    parser.add_argument(
        "--train-data",
        nargs="+",
        metavar="FILE[:WEIGHT]",
        help="training JSON files, ours or the original format, each with an optional mixing "
        "weight (integer part replicates, fraction samples), e.g. score.json:1 desc.json:0.5",
    )
    parser.add_argument(
        "--data-weights",
        nargs="+",
        type=float,
        metavar="W",
        help="mixing weights, one per --train-data file (instead of FILE:WEIGHT)",
    )
    parser.add_argument("--image-root", help="folder image paths are relative to")
    parser.add_argument("--val-data", help="validation JSON (image + gt_score)")
    parser.add_argument("--output-dir", help="run folder (checkpoints, best/, final/, logs)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    parser.add_argument("--epochs", type=float, help="passes over the mixed data")
    parser.add_argument("--batch-size", type=int, help="samples per micro-batch per process")
    parser.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--lora-r", type=int, help="LoRA rank (lora.r, default 128)")
    parser.add_argument(
        "--lora-alpha",
        type=int,
        help="LoRA alpha; the adapter scale is alpha / r (lora.alpha, default 2 x the rank, "
        "the recipe's 256 / 128, unless a config file or the environment sets it)",
    )
    parser.add_argument("--seed", type=int, help="run seed")
    parser.add_argument(
        "--best-on",
        choices=("total", "attribute_mean"),
        help="pick best/ on the total score's validation metric or on its mean over the "
        "attributes (validation.best_on)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        default=None,
        help="continue from the newest complete checkpoint in the output folder",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration and exit without training",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def parse_overrides(extra: Sequence[str]) -> dict[str, Any]:
    """Parse ``--a.b VALUE`` / ``--a.b=VALUE`` pairs into dotted overrides.

    Raises:
        ConfigError: an item is not a dotted flag or lacks its value.

    Example:
        >>> parse_overrides(["--optim.lr", "1e-4", "--lora.enabled=false"])
        {'optim.lr': 0.0001, 'lora.enabled': False}
    """
    out: dict[str, Any] = {}
    items = list(extra)
    index = 0
    while index < len(items):
        item = items[index]
        if not item.startswith("--") or "." not in item.split("=", 1)[0]:
            raise ConfigError(
                f"unrecognised argument {item!r}: use a named flag (see --help) or a dotted "
                "override such as --optim.lr 1e-4"
            )
        key, sep, value = item[2:].partition("=")
        if not sep:
            if index + 1 >= len(items):
                raise ConfigError(f"{item} needs a value")
            value = items[index + 1]
            index += 1
        out[key.replace("-", "_")] = parse_value(value)
        index += 1
    return out


def resolve_config(argv: Sequence[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """Resolve the configuration from a command line (and the environment).

    Raises:
        ConfigError: bad flags or values.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides: dict[str, Any] = {}
    for flag, key in _NAMED.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    if args.train_data:
        overrides["data.train"] = parse_data_sources(args.train_data, args.data_weights)
    elif args.data_weights:
        raise ConfigError("--data-weights needs --train-data")
    if args.resume:
        overrides["run.resume"] = True
    overrides.update(parse_overrides(extra))
    return load_config(args.config, overrides=overrides), args


def _with_backbone_defaults(config: Any) -> tuple[Any, str]:
    """The config with its base's backbone defaults filled in, when the base can be read."""
    from artquant_train.backbones import training_backbone
    from artquant_train.errors import TrainError
    from artquant_train.loop import resolve_base

    try:
        backbone = training_backbone(resolve_base(config.model.base))
        return backbone.resolve(config), f" ({backbone.family} backbone)"
    except (TrainError, ValueError, OSError):
        return config, " (base not readable here: null = the backbone's default)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``artquant-train``; returns the exit status."""
    try:
        config, args = resolve_config(argv)
    except ConfigError as exc:
        print(f"artquant-train: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config, note = _with_backbone_defaults(config)
    if os.environ.get("RANK", "0") == "0":  # one copy under torchrun / accelerate launch
        print(f"# resolved artquant-train configuration{note}\n" + config.to_yaml(), flush=True)
    if args.print_config:
        return 0
    from artquant_train.errors import TrainError
    from artquant_train.loop import train

    try:
        result = train(config)
    except (TrainError, ValueError, FileNotFoundError) as exc:
        print(f"artquant-train: error: {exc}", file=sys.stderr)
        return 1
    print(f"done: {result.global_step} steps; final: {result.final_dir}; best: {result.best_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
