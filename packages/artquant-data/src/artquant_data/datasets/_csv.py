"""Small CSV helpers shared by the loaders (stdlib ``csv``; no pandas dependency)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path


def read_csv(path: Path, encoding: str = "utf-8", delimiter: str = ",") -> list[dict[str, str]]:
    """Read a CSV file into a list of row dicts (header from the first line).

    Args:
        path: The file.
        encoding: Text encoding; a UTF-8 byte-order mark is removed either way.
        delimiter: Field delimiter.

    Returns:
        The rows, values as strings (missing trailing cells become "").

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it cannot be decoded with ``encoding`` or has no header.
    """
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not valid {encoding} (at byte {exc.start}:"
            f" {raw[exc.start : exc.start + 4]!r}); pass the right encoding"
        ) from exc
    text = text.removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    if not reader.fieldnames:
        raise ValueError(f"{path} has no header line")
    return [{k: (v if v is not None else "") for k, v in row.items()} for row in reader]


def require_columns(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    """Raise ``ValueError`` naming the missing columns and the available ones."""
    available = list(rows[0].keys()) if rows else []
    missing = [c for c in columns if c not in available]
    if rows and missing:
        raise ValueError(f"{path} lacks column(s) {missing}; available: {available}")


def parse_float(value: str, *, path: Path, row: int, column: str) -> float:
    """Parse a required number, with an error naming file, row and column."""
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} row {row} column {column!r}: not a number: {value!r}") from exc
    if not math.isfinite(out):
        raise ValueError(f"{path} row {row} column {column!r}: not finite: {value!r}")
    return out


def parse_optional_float(value: str, *, path: Path, row: int, column: str) -> float | None:
    """Parse a number where an empty cell means "not rated" (``None``)."""
    if value is None or not str(value).strip():
        return None
    return parse_float(str(value).strip(), path=path, row=row, column=column)
