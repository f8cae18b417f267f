"""``artquant serve`` (also ``artquant-serve``): run the HTTP scoring service.

::

    artquant serve [--model NAME|DIR] [--base NAME|DIR] [--tokenizer DIR] [--device D]
                   [--dtype T] [--host H] [--port P] [--max-batch-size N]
                   [--batch-timeout-ms MS] [--workers-per-device N] [--api-key KEY]
                   [--max-upload-mb MB] ...

The API key may also come from ``$ARTQUANT_API_KEY`` (better than the command line, which other
users of the machine can see). Exit codes: 0 stopped cleanly (SIGTERM or Ctrl+C), 2 usage
error, 3 the model could not be loaded or the port could not be bound.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from artquant_serve._config import API_KEY_ENV, ServeConfig

__all__ = ["EXIT_OK", "EXIT_START", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_START = 3

_DEFAULTS = ServeConfig()


def build_parser(prog: str = "artquant serve") -> argparse.ArgumentParser:
    """The argument parser of ``artquant serve``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve an ArtQuant model over HTTP: POST /v1/score, POST /v1/describe, "
        "GET /v1/models, /healthz, /readyz, and a gallery page at /. API docs at /docs.",
        epilog="Exit codes: 0 stopped cleanly, 2 usage error, 3 model or port unavailable.",
    )
    model = parser.add_argument_group("model (as `artquant score`)")
    model.add_argument("--model", default=_DEFAULTS.model, metavar="NAME|DIR")
    model.add_argument("--base", metavar="NAME|DIR", help="base checkpoint of a LoRA release")
    model.add_argument(
        "--tokenizer", metavar="DIR", help="tokenizer folder when the model has none"
    )
    model.add_argument(
        "--device",
        default="auto",
        metavar="D",
        help="auto (default), cpu, cuda (every visible GPU, each with its workers), cuda:N, mps",
    )
    model.add_argument(
        "--dtype", default="auto", metavar="T", help="auto, float32, bfloat16, float16"
    )
    model.add_argument("--revision", metavar="REV", help="hub revision")
    model.add_argument("--levels", choices=["artquant", "qalign", "onealign"])
    model.add_argument("--offline", action="store_true", help="never download")

    net = parser.add_argument_group("server")
    net.add_argument(
        "--host",
        default=_DEFAULTS.host,
        help="127.0.0.1 (default: this machine only), 0.0.0.0 or :: (every interface; use a key)",
    )
    net.add_argument("--port", type=int, default=_DEFAULTS.port)
    net.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"require this key on every API route (default ${API_KEY_ENV}; none: no key)",
    )
    net.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from ORIGIN call the API (repeatable; default: no cross-origin calls)",
    )
    net.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    batching = parser.add_argument_group("batching")
    batching.add_argument(
        "--max-batch-size",
        type=int,
        default=_DEFAULTS.max_batch_size,
        metavar="N",
        help=f"requests scored together, and images per forward pass (default "
        f"{_DEFAULTS.max_batch_size})",
    )
    batching.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=_DEFAULTS.batch_timeout_ms,
        metavar="MS",
        help=f"how long a batch may wait to fill (default {_DEFAULTS.batch_timeout_ms:g})",
    )
    batching.add_argument(
        "--workers-per-device",
        type=int,
        default=_DEFAULTS.workers_per_device,
        metavar="N",
        help="model workers (processes, one model copy each) per device (default 1)",
    )
    batching.add_argument(
        "--no-describe",
        action="store_true",
        help="do not serve /v1/describe (saves its worker's copy of the model)",
    )

    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-upload-mb",
        type=float,
        default=_DEFAULTS.max_upload_mb,
        metavar="MB",
        help=f"largest request body (default {_DEFAULTS.max_upload_mb:g} MB)",
    )
    limits.add_argument(
        "--max-images",
        type=int,
        default=_DEFAULTS.max_images_per_request,
        metavar="N",
        help=f"most images per request (default {_DEFAULTS.max_images_per_request})",
    )
    limits.add_argument(
        "--max-pixels",
        type=int,
        default=_DEFAULTS.max_pixels,
        metavar="N",
        help=f"largest width x height of an image (default {_DEFAULTS.max_pixels})",
    )
    limits.add_argument(
        "--max-new-tokens",
        type=int,
        default=_DEFAULTS.max_new_tokens,
        metavar="N",
        help=f"most tokens /v1/describe generates (default {_DEFAULTS.max_new_tokens})",
    )
    limits.add_argument(
        "--request-timeout-s",
        type=float,
        default=_DEFAULTS.request_timeout_s,
        metavar="S",
        help=f"longest a request may take, queueing included (default "
        f"{_DEFAULTS.request_timeout_s:g}; then 503)",
    )
    limits.add_argument(
        "--drain-timeout-s",
        type=float,
        default=_DEFAULTS.drain_timeout_s,
        metavar="S",
        help=f"on SIGTERM, how long requests in flight may finish (default "
        f"{_DEFAULTS.drain_timeout_s:g})",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` for parsed arguments (the key falls back to the environment).

    Raises:
        pydantic.ValidationError: A value is out of range; the message names it.
    """
    return ServeConfig(
        model=args.model,
        base=args.base,
        tokenizer=args.tokenizer,
        device=args.device,
        dtype=args.dtype,
        revision=args.revision,
        levels=args.levels,
        offline=args.offline or os.environ.get("HF_HUB_OFFLINE", "") in {"1", "true", "yes", "on"},
        host=args.host,
        port=args.port,
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        workers_per_device=args.workers_per_device,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        max_upload_mb=args.max_upload_mb,
        max_images_per_request=args.max_images,
        max_pixels=args.max_pixels,
        max_new_tokens=args.max_new_tokens,
        request_timeout_s=args.request_timeout_s,
        drain_timeout_s=args.drain_timeout_s,
        describe=not args.no_describe,
        cors_origins=tuple(args.cors_origin),
        log_level=args.log_level,
    )


def main(argv: Sequence[str] | None = None, *, prog: str = "artquant-serve") -> int:
    """Run ``artquant serve``.

    Args:
        argv: Arguments without the program name (default ``sys.argv[1:]``).
        prog: The program name shown in usage lines.

    Returns:
        The exit code (see the module docstring).
    """
    from artquant_serve._run import ServerStartError, serve

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
        config.accelerator()
    except (ValidationError, ValueError) as error:
        parser.print_usage(sys.stderr)
        print(f"{prog}: error: {_first_problem(error)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        serve(config)
    except ServerStartError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_START
    return EXIT_OK


def _first_problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"--{where.replace('_', '-')} {first.get('input')!r}: {first['msg']}"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
