"""``artquant-eval``: score a prediction file against a target file, joined by id.

Example::

    artquant-eval --pred preds.jsonl --target split_test.csv \\
        --pred-key score --target-key Score --id-key image --target-id-key filename \\
        --group-key "Artistic Categories" --bootstrap 1000 --json report.json --plot scatter.png

Missing ids (targets without a prediction), extra ids (predictions without a target) and ids
left out for an empty score cell are printed before the table and listed in the JSON file,
which holds ``{"pred_file", "target_file", ..., "missing", "extra", "no_value", "report"}``;
``EvalReport.from_dict(document["report"])`` reads the report back.

Per attribute (``--attributes all`` or a comma list): the scores file's ``score_<attribute>``
columns against the label file's attribute columns (APDDv2's ``APDDv2-10023.csv``, GB18030),
SRCC/PLCC/KRCC with bootstrap intervals, empty labels skipped and counted::

    artquant-eval --pred scores.csv --target APDDv2-10023.csv --target-encoding gb18030 \\
        --attributes all --json attributes.json --plot attributes.png

Exit status: 0 on success, 2 on a usage or data error (the message goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from artquant_eval._attributes import evaluate_attributes
from artquant_eval._fitting import LOGISTIC_KINDS
from artquant_eval._io import ID_MATCHES, DataFileError, JoinedScores, join_by_id, read_records
from artquant_eval._report import EvalReport, evaluate
from artquant_eval._validation import MetricInputError

logger = logging.getLogger("artquant_eval.cli")

EXIT_OK = 0
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (public so that docs and tests can inspect it)."""
    parser = argparse.ArgumentParser(
        prog="artquant-eval",
        description=(
            "Evaluate predicted scores against targets: SRCC, PLCC (raw and after a VQEG "
            "logistic fit), KRCC, RMSE, MAE, optional bootstrap intervals and per-group "
            "reports. Files may be CSV, TSV, JSON (a list of objects) or JSONL; rows are "
            "joined by id, never by order."
        ),
    )
    parser.add_argument("--pred", required=True, type=Path, help="prediction file")
    parser.add_argument("--target", required=True, type=Path, help="target (ground truth) file")
    parser.add_argument("--pred-key", default="score", help="prediction column (default: score)")
    parser.add_argument(
        "--target-key", default=None, help="target column (default: the --pred-key value)"
    )
    parser.add_argument(
        "--id-key", default="image", help="id column of both files (default: image)"
    )
    parser.add_argument(
        "--target-id-key",
        default=None,
        help="id column of the target file if it differs (with --attributes: filename)",
    )
    parser.add_argument(
        "--match",
        choices=ID_MATCHES,
        default=None,
        help="how ids are compared: exact (default; basename with --attributes), basename "
        "(ignore directories) or stem (ignore directories and the extension)",
    )
    parser.add_argument("--group-key", default=None, help="column with a group label per row")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        help="bootstrap resamples for 95%% intervals (0: none; default 0, 1000 with --attributes)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    parser.add_argument(
        "--fit",
        choices=(*LOGISTIC_KINDS, "none"),
        default="logistic4",
        help="logistic mapping for the fitted PLCC and the plot (default: logistic4)",
    )
    parser.add_argument(
        "--threshold", type=float, default=None, help="good/bad threshold for binary accuracy"
    )
    parser.add_argument(
        "--omit-nonfinite",
        action="store_true",
        help="drop pairs whose score is NaN/inf (counted in the report) instead of failing",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    parser.add_argument("--plot", type=Path, default=None, help="write a scatter plot here (PNG)")
    parser.add_argument(
        "--encoding", default="utf-8-sig", help="text encoding of both files (default: UTF-8)"
    )
    parser.add_argument(
        "--target-encoding",
        default=None,
        help="text encoding of the target file if it differs (APDDv2's label CSV: gb18030)",
    )
    parser.add_argument(
        "--attributes",
        default=None,
        metavar="all|A,B,...",
        help="evaluate per attribute: the prediction columns <prefix><id> (score_color...) "
        "against the target's attribute columns; 'all' = APDDv2's ten, or a comma list of ids, "
        "names or ID=COLUMN pairs. --plot then draws the per-attribute correlations",
    )
    parser.add_argument(
        "--pred-prefix",
        default="score_",
        help="with --attributes: prefix of the prediction columns (default: score_)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the table")
    return parser


def _summarise(label: str, ids: list[str], quiet: bool) -> None:
    if ids and not quiet:
        shown = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
        print(f"{label}: {len(ids)} ({shown})")


def _document(args: argparse.Namespace, joined: JoinedScores, report: EvalReport) -> str:
    """The JSON file: where the numbers came from, the join's loose ends, then the report."""
    document = {
        "pred_file": str(args.pred),
        "target_file": str(args.target),
        "pred_key": args.pred_key,
        "target_key": args.target_key or args.pred_key,
        "match": args.match,
        "missing": joined.missing,
        "extra": joined.extra,
        "no_value": joined.no_value,
        "report": report.to_dict(),
    }
    return json.dumps(document, indent=2, allow_nan=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        0 on success, 2 on a usage or data error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    if args.bootstrap is not None and args.bootstrap < 0:
        parser.error(f"--bootstrap must be >= 0; got {args.bootstrap}")
    if args.attributes is not None:
        unused = [
            flag
            for flag, value in (
                ("--group-key", args.group_key),
                ("--threshold", args.threshold),
                ("--target-key", args.target_key),
            )
            if value is not None
        ]
        if unused:
            parser.error(f"{', '.join(unused)} cannot be combined with --attributes")
        return _attributes_main(args)
    args.bootstrap = args.bootstrap or 0
    args.match = args.match or "exact"
    fit = None if args.fit == "none" else args.fit
    try:
        joined = join_by_id(
            read_records(args.pred, encoding=args.encoding),
            read_records(args.target, encoding=args.target_encoding or args.encoding),
            pred_key=args.pred_key,
            target_key=args.target_key or args.pred_key,
            pred_id_key=args.id_key,
            target_id_key=args.target_id_key,
            group_key=args.group_key,
            match=args.match,
        )
        _summarise(
            "missing predictions (target ids without a prediction)", joined.missing, args.quiet
        )
        _summarise("extra predictions (ids not in the target file)", joined.extra, args.quiet)
        _summarise("left out (empty score cell)", joined.no_value, args.quiet)
        nonfinite = [
            key
            for key, p, t in zip(joined.ids, joined.pred, joined.target, strict=True)
            if not (math.isfinite(p) and math.isfinite(t))
        ]
        if nonfinite and not args.omit_nonfinite:
            raise DataFileError(
                f"{len(nonfinite)} pair(s) have a NaN/inf score, e.g. {nonfinite[:5]}; fix the "
                "files or pass --omit-nonfinite to drop them"
            )
        report = evaluate(
            joined.pred,
            joined.target,
            ids=joined.ids,
            groups=joined.groups,
            bootstrap=args.bootstrap,
            seed=args.seed,
            fit=fit,
            threshold=args.threshold,
            nan_policy="omit" if args.omit_nonfinite else "raise",
        )
    except (DataFileError, MetricInputError) as exc:
        print(f"artquant-eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    print(report.to_table())
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(_document(args, joined, report), encoding="utf-8")
        except OSError as exc:
            print(f"artquant-eval: error: cannot write {args.json}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not args.quiet:
            print(f"wrote {args.json}", file=sys.stderr)
    if args.plot is not None:
        from artquant_eval._plot import scatter_plot

        try:
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            scatter_plot(
                joined.pred,
                joined.target,
                report=report,
                fit=fit,
                path=args.plot,
                title=f"{args.pred.name} vs {args.target.name}",
                xlabel=f"prediction ({args.pred_key})",
                ylabel=f"target ({args.target_key or args.pred_key})",
                groups=joined.groups,
            )
        except (ImportError, OSError, ValueError) as exc:
            print(f"artquant-eval: error: cannot write the plot: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not args.quiet:
            print(f"wrote {args.plot}", file=sys.stderr)
    return EXIT_OK


def _attributes_main(args: argparse.Namespace) -> int:
    """``--attributes``: one row per attribute, the JSON document and the figure."""
    match = args.match or "basename"
    try:
        evaluation = evaluate_attributes(
            read_records(args.pred, encoding=args.encoding),
            read_records(args.target, encoding=args.target_encoding or args.encoding),
            args.attributes,
            pred_id_key=args.id_key,
            target_id_key=args.target_id_key or "filename",
            match=match,
            pred_prefix=args.pred_prefix,
            bootstrap=1000 if args.bootstrap is None else args.bootstrap,
            seed=args.seed,
        )
    except (DataFileError, MetricInputError, ValueError) as exc:
        print(f"artquant-eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _summarise(
        "missing predictions (target ids without a prediction)",
        list(evaluation.missing),
        args.quiet,
    )
    _summarise("extra predictions (ids not in the target file)", list(evaluation.extra), args.quiet)
    if not args.quiet:
        for ident, result in evaluation.attributes.items():
            print(
                f"{ident}: {result.n} evaluated, {result.skipped_no_label} skipped for an empty "
                f"label ({result.column!r}), {result.skipped_no_prediction} for an empty "
                f"prediction ({result.pred_key!r})"
            )
    print(evaluation.to_table())
    if args.json is not None:
        document = {
            "pred_file": str(args.pred),
            "target_file": str(args.target),
            "match": match,
            **evaluation.to_dict(),
        }
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
        except OSError as exc:
            print(f"artquant-eval: error: cannot write {args.json}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.plot is not None:
        from artquant_eval._plot import attribute_plot

        try:
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            attribute_plot(
                evaluation, path=args.plot, title=f"{args.pred.name} vs {args.target.name}"
            )
        except (ImportError, OSError, ValueError) as exc:
            print(f"artquant-eval: error: cannot write the plot: {exc}", file=sys.stderr)
            return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
