"""Row files of the ``artquant score`` command: CSV or JSONL, flushed row by row, resumable.

Columns: ``image, score, std, level, p_<word>..., [score_<attribute>, std_<attribute>]..., error``
(one ``p_`` column per level word, in level order; with ``--attributes`` a ``score_`` and a
``std_`` column per attribute id, in the order asked). A scored row has an empty ``error``; a
failed row has only ``image`` and ``error``.
JSONL holds the same keys, with ``null`` for empty values.

A run killed mid-write can leave a partial last line (no trailing newline). Reading for
``--resume`` drops it (and, for the file being appended to, truncates it away) so the image is
scored again and appears once.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Literal

__all__ = [
    "OutputFormatError",
    "Row",
    "RowWriter",
    "columns_for",
    "output_format",
    "read_rows",
]

Row = dict[str, object]
Format = Literal["csv", "jsonl"]
_SUFFIXES: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class OutputFormatError(ValueError):
    """An output file has an unsupported extension or content the writer did not produce."""


def output_format(path: str | os.PathLike[str]) -> Format:
    """The row format chosen by the output file's extension.

    Raises:
        OutputFormatError: The extension is not ``.csv``, ``.jsonl`` or ``.ndjson``.

    Example:
        >>> output_format("scores.csv")
        'csv'
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise OutputFormatError(
            f"output {os.fspath(path)!r} must end in one of {sorted(_SUFFIXES)} (got {suffix!r})"
        )
    return _SUFFIXES[suffix]


def columns_for(words: Sequence[str], attributes: Sequence[str] = ()) -> list[str]:
    """The output columns for a model with these level words (and attribute ids asked for).

    Attribute ids are column-safe already (``light_and_shadow``; see
    ``artquant_sdk.attribute_key``), so ``score_<id>`` / ``std_<id>`` need no quoting.

    Example:
        >>> columns_for(["good", "bad"])
        ['image', 'score', 'std', 'level', 'p_good', 'p_bad', 'error']
        >>> columns_for(["good", "bad"], ["color"])[-3:]
        ['score_color', 'std_color', 'error']
    """
    extra = [column for a in attributes for column in (f"score_{a}", f"std_{a}")]
    return ["image", "score", "std", "level", *(f"p_{w}" for w in words), *extra, "error"]


def _complete_prefix(data: bytes) -> bytes:
    """``data`` up to and including its last newline: drops a line cut off by a kill."""
    return data[: data.rfind(b"\n") + 1]


def read_rows(
    path: str | os.PathLike[str], fmt: Format, *, repair: bool = False
) -> tuple[list[str] | None, list[Row]]:
    """Read a row file written by :class:`RowWriter`, tolerating a cut-off last line.

    Args:
        path: The file; a missing file reads as no header and no rows.
        fmt: ``"csv"`` or ``"jsonl"``.
        repair: Truncate the file in place to its last complete line (only for a file this
            process owns, before appending to it).

    Returns:
        ``(columns, rows)``: the CSV header (for JSONL the keys of the first row; None when the
        file holds no complete row or header) and the complete rows, strings as stored.

    Raises:
        OutputFormatError: A complete line is not valid JSON, or a CSV row has the wrong number
            of fields (the file was not written by this tool, or was edited).
    """
    file = Path(path)
    if not file.exists():
        return None, []
    data = file.read_bytes()
    complete = _complete_prefix(data)
    if repair and len(complete) != len(data):
        with open(file, "r+b") as handle:
            handle.truncate(len(complete))
    text = complete.decode("utf-8")
    if fmt == "csv":
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        rows: list[Row] = []
        for line_number, fields in enumerate(reader, start=2):
            if header is None or len(fields) != len(header):
                raise OutputFormatError(
                    f"{file}: row {line_number} has {len(fields)} fields, the header "
                    f"{header} has {len(header or [])}; not a file written by artquant score"
                )
            rows.append(dict(zip(header, fields, strict=True)))
        return header, rows
    rows = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise OutputFormatError(f"{file}: line {line_number} is not JSON: {error}") from error
        if not isinstance(row, dict) or "image" not in row:
            raise OutputFormatError(f"{file}: line {line_number} is not a row with an 'image'")
        rows.append(row)
    return (list(rows[0]) if rows else None), rows


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


class RowWriter:
    """Appends rows to a CSV or JSONL file, flushing each one so a kill loses nothing.

    Args:
        path: The output file (created with its parent folders when missing).
        columns: The columns, see :func:`columns_for`.
        fmt: Default from the extension.

    Raises:
        OutputFormatError: The file already holds a different header (a different model's
            level words): resuming into it would mix two layouts.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "s.csv"
        >>> with RowWriter(out, columns_for(["good", "bad"])) as w:
        ...     w.write({"image": "a.png", "error": "unreadable"})
        >>> out.read_text().splitlines()[1]
        'a.png,,,,,,unreadable'
    """

    def __init__(
        self, path: str | os.PathLike[str], columns: Sequence[str], fmt: Format | None = None
    ) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self.fmt: Format = fmt or output_format(self.path)
        existing, _ = read_rows(self.path, self.fmt, repair=True)
        if existing is not None and self.fmt == "csv" and existing != self.columns:
            raise OutputFormatError(
                f"{self.path} has columns {existing}, this run writes {self.columns}; "
                "use another --out (or --overwrite)"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        # Held open across write() calls and closed by close()/__exit__.
        self._handle: IO[str] = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        self._csv = csv.writer(self._handle, lineterminator="\n") if self.fmt == "csv" else None
        if fresh and self._csv is not None:
            self._csv.writerow(self.columns)
            self._handle.flush()

    def write(self, row: Mapping[str, object]) -> None:
        """Write one row (missing columns empty) and flush it to the operating system."""
        unknown = set(row) - set(self.columns)
        if unknown:
            raise OutputFormatError(f"row has columns {sorted(unknown)} not in {self.columns}")
        if self._csv is not None:
            self._csv.writerow([_csv_cell(row.get(c)) for c in self.columns])
        else:
            record = {c: row.get(c) for c in self.columns}
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def write_many(self, rows: Iterable[Mapping[str, object]]) -> None:
        """Write several rows in order."""
        for row in rows:
            self.write(row)

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
