"""``python -m artquant_train.configs NAME``: print a shipped config's path (or list them)."""

from __future__ import annotations

import sys

from artquant_train.configs import available_configs, config_path


def main(argv: list[str]) -> int:
    """Print the path of ``argv[0]``, or the available names without an argument."""
    if not argv:
        print("\n".join(available_configs()))
        return 0
    try:
        print(config_path(argv[0]))
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
