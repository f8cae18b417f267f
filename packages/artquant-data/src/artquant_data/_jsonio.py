"""One parser for the JSON and JSON Lines files every reader of this package accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The file's text without a leading byte-order mark (files saved by Excel carry one)."""
    return path.read_text(encoding=encoding).removeprefix("\ufeff")


def parse_json(text: str, source: Path, *, lines: bool) -> Any:
    """Parse a JSON document, or JSON Lines into a list, with errors that name the file.

    Args:
        text: The file's text (see :func:`read_text`).
        source: The file, for error messages.
        lines: ``True`` parses one JSON value per non-blank line into a list.

    Returns:
        The parsed document, or the list of per-line values.

    Raises:
        ValueError: Invalid JSON, naming the file and the line.

    Example:
        >>> parse_json('{"a": 1}\\n\\n{"a": 2}\\n', Path("x.jsonl"), lines=True)
        [{'a': 1}, {'a': 2}]
    """
    if not lines:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{source} line {number}: invalid JSON ({exc.msg})") from exc
    return values


__all__ = ["parse_json", "read_text"]
