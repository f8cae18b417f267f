"""``artquant-data``: prepare training JSON from rated datasets, and show dataset statistics.

Examples::

    artquant-data prepare apddv2 --labels data/apddv2 --images data/apddv2/images \\
        --split train --out apdd_score.json --format original
    artquant-data prepare ratings.csv --column image=file --column score=mos --scale 1 7 \\
        --images photos/ --out mine.json
    artquant-data stats baid --labels data/baid --plot baid.png
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from artquant_data._descriptions import attach_descriptions, load_descriptions
from artquant_data._records import ArtRecord
from artquant_data._resolve import MissingImagesError, resolve_images
from artquant_data._samples import (
    build_attribute_samples,
    build_description_samples,
    build_score_samples,
)
from artquant_data._stats import dataset_stats, format_stats, plot_stats
from artquant_data._training_json import TrainingSample, write_training_json
from artquant_data.datasets import ColumnMapping, load_apddv2, load_baid, load_table

logger = logging.getLogger("artquant_data.cli")

_NAMED = ("apddv2", "baid")
_TASKS = ("score", "attribute", "description")
_SCALAR_FIELDS = (
    "image",
    "score",
    "std",
    "n_ratings",
    "votes",
    "category",
    "split",
    "comment",
    "perception",
    "cognition",
    "emotion",
)


class CliError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def _mapping(pairs: Sequence[str]) -> ColumnMapping:
    fields: dict[str, object] = {}
    attributes: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise CliError(f"--column expects FIELD=COLUMN, got {pair!r}")
        key, column = (p.strip() for p in pair.split("=", 1))
        if key.startswith("attr:"):
            attributes[key[5:]] = column
        elif key == "votes" and "," in column:
            fields["votes"] = tuple(c.strip() for c in column.split(","))
        elif key in _SCALAR_FIELDS:
            fields[key] = column
        else:
            raise CliError(
                f"unknown field {key!r} in --column; allowed: {list(_SCALAR_FIELDS)} or attr:NAME"
            )
    return ColumnMapping(**fields, attributes=attributes)  # type: ignore[arg-type]


def _load(args: argparse.Namespace) -> list[ArtRecord]:
    splits = args.split or None
    dataset = args.dataset
    if dataset in _NAMED:
        if args.labels is None:
            raise CliError(f"{dataset}: --labels FOLDER (the label files) is required")
        if dataset == "apddv2":
            return load_apddv2(args.labels, splits=splits)
        return load_baid(args.labels, splits=splits)
    path = Path(dataset)
    if not path.is_file():
        raise CliError(
            f"dataset must be one of {list(_NAMED)} or an existing file, got {dataset!r}"
        )
    records = load_table(path, _mapping(args.column or []), scale=tuple(args.scale))
    if splits:
        from artquant_data._records import normalise_split

        wanted = {normalise_split(s) for s in splits}
        records = [r for r in records if r.split in wanted]
    return records


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help=f"{' | '.join(_NAMED)} or a CSV/TSV/JSON/JSONL file")
    p.add_argument("--labels", type=Path, help="folder with the label files (named datasets)")
    p.add_argument(
        "--column",
        action="append",
        metavar="FIELD=COLUMN",
        help="generic files: map a field (image, score, std, n_ratings, votes, category, split,"
        " comment, perception, cognition, emotion, attr:NAME) to a column; repeatable",
    )
    p.add_argument(
        "--scale", nargs=2, type=float, default=(0.0, 10.0), metavar=("LOW", "HIGH"),
        help="generic files: score scale (default 0 10)",
    )  # fmt: skip
    p.add_argument(
        "--split", action="append", help="keep only this split (train/val/test); repeatable"
    )


def _prepare(args: argparse.Namespace) -> int:
    records = _load(args)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in _TASKS]
    if bad or not tasks:
        raise CliError(f"--tasks: unknown {bad}; allowed: {list(_TASKS)}")
    if args.descriptions is not None:
        records = attach_descriptions(records, load_descriptions(args.descriptions))
        if "description" not in tasks:
            tasks.append("description")
    elif "description" in tasks and not any(r.description for r in records):
        raise CliError("--tasks description needs --descriptions FILE (or description columns)")
    alt = [e.strip() for e in (args.alt_ext or "").split(",") if e.strip()]
    try:
        resolution = resolve_images(
            records, args.images, on_missing="report", alternative_extensions=alt
        )
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    if resolution.missing:
        report_path = args.missing_report or args.out.with_name(args.out.name + ".missing.txt")
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text("\n".join(str(r.image) for r in resolution.missing) + "\n")
        if args.on_missing == "error":
            raise CliError(
                f"{resolution.report()}; full list in {report_path}"
                " (use --on-missing skip to leave them out)"
            )
        print(
            f"warning: {resolution.report()}; skipped, full list in {report_path}",
            file=sys.stderr,
        )
    kept = [rec for rec, _ in resolution.found]
    # image references relative to --images, as the trainer joins them
    samples: list[TrainingSample] = []
    if "score" in tasks:
        samples += build_score_samples(kept, seed=args.seed, distribution=args.distribution)
    if "attribute" in tasks:
        samples += build_attribute_samples(kept, seed=args.seed)
    if "description" in tasks:
        samples += build_description_samples(kept, seed=args.seed)
    try:
        write_training_json(samples, args.out, format=args.format)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    counts = {t: sum(1 for s in samples if s.task_type == t) for t in tasks}
    per_attribute: dict[str, int] = {}
    for sample in samples:
        if sample.task_type == "attribute" and sample.attribute is not None:
            per_attribute[sample.attribute] = per_attribute.get(sample.attribute, 0) + 1
    print(
        json.dumps(
            {
                "out": str(args.out),
                "format": args.format,
                "records": len(records),
                "images_found": len(kept),
                "images_missing": len(resolution.missing),
                "samples": counts,
                **({"attribute_samples": per_attribute} if "attribute" in tasks else {}),
            }
        )
    )
    return 0


def _stats(args: argparse.Namespace) -> int:
    records = _load(args)
    if not records:
        raise CliError("no records to describe")
    stats = dataset_stats(records, bins=args.bins, levels=not args.no_levels)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
    if args.plot is not None:
        try:
            path = plot_stats(stats, args.plot, title=f"{args.dataset}: {len(records)} records")
        except ImportError as exc:
            raise CliError(str(exc)) from exc
        print(f"figure written to {path}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``artquant-data`` (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="artquant-data",
        description="Prepare ArtQuant training JSON from rated artworks; dataset statistics.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prepare", help="write training JSON (score/attribute/description)")
    _add_source_args(prep)
    prep.add_argument("--images", type=Path, required=True, help="image root folder")
    prep.add_argument("--out", type=Path, required=True, help="output training JSON")
    prep.add_argument("--format", choices=("artquant", "original"), default="artquant")
    prep.add_argument(
        "--tasks", default="score", help="comma list of score, attribute, description"
    )
    prep.add_argument("--descriptions", type=Path, help="descriptions JSON/JSONL, by image id")
    prep.add_argument(
        "--distribution", choices=("score", "mean_std", "histogram"), default="score",
        help="soft target: score (the paper), mean_std (DeQA), histogram (AVA)",
    )  # fmt: skip
    prep.add_argument("--seed", type=int, default=0, help="seed of the prompt choice")
    prep.add_argument(
        "--on-missing", choices=("error", "skip"), default="error",
        help="missing images: stop (default) or leave those records out, listed in a report",
    )  # fmt: skip
    prep.add_argument("--missing-report", type=Path, help="where to list missing images")
    prep.add_argument("--alt-ext", help="other extensions to try, e.g. .jpg,.png")
    prep.set_defaults(func=_prepare)

    st = sub.add_parser("stats", help="counts, score histogram and level summary per split")
    _add_source_args(st)
    st.add_argument("--bins", type=int, default=20)
    st.add_argument("--no-levels", action="store_true", help="skip the level estimation")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.add_argument("--plot", type=Path, help="write a figure (needs artquant-data[plot])")
    st.set_defaults(func=_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 on a user error (message on stderr).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (CliError, MissingImagesError, FileNotFoundError, ValueError) as exc:
        print(f"artquant-data: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
