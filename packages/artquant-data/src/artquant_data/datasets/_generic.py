"""Generic loader for a user's own ratings: CSV/TSV, JSON or JSONL with a column mapping."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from artquant_data._jsonio import parse_json, read_text
from artquant_data._records import ArtRecord, HierarchicalDescription, normalise_split
from artquant_data.datasets._csv import parse_float, parse_optional_float, read_csv

logger = logging.getLogger(__name__)


class ColumnMapping(BaseModel):
    """Which column (or JSON key) holds which field of :class:`ArtRecord`.

    Only ``image`` and ``score`` are required; every other field is read only when mapped.

    Attributes:
        image: Image path relative to the image root.
        score: Mean score.
        std: Rater standard deviation.
        n_ratings: Number of ratings.
        votes: One column holding a whole histogram (a JSON list or space/comma separated
            counts), or a list of columns, one per bin.
        attributes: Attribute name -> column; empty cells mean "not rated".
        category: Category.
        split: Split name (``train``/``val``/``valid``/``test``).
        comment: Free-text comment.
        perception: Description, perception level.
        cognition: Description, cognition level.
        emotion: Description, emotion level.

    Example:
        >>> ColumnMapping(image="file", score="mos", std="sd").std
        'sd'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str = "image"
    score: str = "score"
    std: str | None = None
    n_ratings: str | None = None
    votes: str | tuple[str, ...] | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    category: str | None = None
    split: str | None = None
    comment: str | None = None
    perception: str | None = None
    cognition: str | None = None
    emotion: str | None = None

    def columns(self) -> list[str]:
        """Every column this mapping reads."""
        cols = [self.image, self.score]
        for name in ("std", "n_ratings", "category", "split", "comment"):
            value = getattr(self, name)
            if value is not None:
                cols.append(value)
        if isinstance(self.votes, str):
            cols.append(self.votes)
        elif self.votes is not None:
            cols.extend(self.votes)
        cols.extend(self.attributes.values())
        cols.extend(c for c in (self.perception, self.cognition, self.emotion) if c is not None)
        return cols


def _read_rows(path: Path, encoding: str) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return read_csv(path, encoding=encoding, delimiter="\t" if suffix == ".tsv" else ",")
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    if suffix not in (".json", ".jsonl"):
        raise ValueError(f"{path}: unsupported extension {suffix!r}; use .csv, .tsv, .json, .jsonl")
    rows = parse_json(read_text(path, encoding), path, lines=suffix == ".jsonl")
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path} entry {i}: expected an object, got {type(row).__name__}")
    return rows


def _cell(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _votes(value: str, *, path: Path, row: int, column: str) -> tuple[int, ...] | None:
    text = value.strip()
    if not text:
        return None
    try:
        parsed = json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
        counts = [float(v) for v in parsed]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} row {row} column {column!r}: bad vote list {value!r}") from exc
    if any(c < 0 or c != int(c) for c in counts):
        raise ValueError(f"{path} row {row} column {column!r}: votes must be counts: {value!r}")
    return tuple(int(c) for c in counts)


def load_table(
    path: str | Path,
    mapping: ColumnMapping | None = None,
    *,
    scale: tuple[float, float] = (0.0, 10.0),
    attribute_scale: tuple[float, float] | None = None,
    source: str | None = None,
    encoding: str = "utf-8",
) -> list[ArtRecord]:
    """Load a user's own ratings from a CSV/TSV, JSON (a list of objects) or JSONL file.

    Args:
        path: The file; the format follows the extension.
        mapping: Column names; default ``image`` and ``score`` only.
        scale: ``(low, high)`` of the score scale.
        attribute_scale: Scale of the attribute scores; default ``scale``.
        source: Dataset name stored in each record; default the file stem.
        encoding: Text encoding.

    Returns:
        One record per row, in file order.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: On an unsupported extension, missing columns (listing the available
            ones), bad numbers (naming row and column) or invalid records.

    Example:
        >>> records = load_table("ratings.csv", ColumnMapping(image="file", score="mos"),
        ...                      scale=(1, 7))  # doctest: +SKIP
    """
    path = Path(path)
    mapping = mapping or ColumnMapping()
    rows = _read_rows(path, encoding)
    if rows:
        available = set().union(*(r.keys() for r in rows[:100]))
        missing = [c for c in mapping.columns() if c not in available]
        if missing:
            raise ValueError(f"{path} lacks column(s) {missing}; available: {sorted(available)}")
    name = source or path.stem
    records: list[ArtRecord] = []
    first_line = 2 if path.suffix.lower() in (".csv", ".tsv", ".txt") else 1
    for i, row in enumerate(rows, start=first_line):

        def opt(column: str | None, row: dict[str, Any] = row) -> str | None:
            return None if column is None else (_cell(row, column).strip() or None)

        score = parse_float(_cell(row, mapping.score), path=path, row=i, column=mapping.score)
        std = None
        if mapping.std is not None:
            std = parse_optional_float(
                _cell(row, mapping.std), path=path, row=i, column=mapping.std
            )
        n_ratings = None
        if mapping.n_ratings is not None:
            n = parse_optional_float(
                _cell(row, mapping.n_ratings), path=path, row=i, column=mapping.n_ratings
            )
            n_ratings = None if n is None else int(n)
        votes = None
        if isinstance(mapping.votes, str):
            votes = _votes(_cell(row, mapping.votes), path=path, row=i, column=mapping.votes)
        elif mapping.votes is not None:
            counts = [
                parse_optional_float(_cell(row, c), path=path, row=i, column=c) or 0.0
                for c in mapping.votes
            ]
            votes = _votes(json.dumps(counts), path=path, row=i, column=",".join(mapping.votes))
        attributes = {
            attr: parse_optional_float(_cell(row, col), path=path, row=i, column=col)
            for attr, col in mapping.attributes.items()
        }
        split_name = opt(mapping.split)
        description = None
        perception = opt(mapping.perception)
        if perception is not None:
            description = HierarchicalDescription(
                perception=perception,
                cognition=opt(mapping.cognition),
                emotion=opt(mapping.emotion),
            )
        try:
            record = ArtRecord(
                image=_cell(row, mapping.image),
                score=score,
                scale=scale,
                std=std,
                n_ratings=n_ratings,
                votes=votes,
                attributes=attributes,
                attribute_scale=attribute_scale or (scale if attributes else None),
                category=opt(mapping.category),
                split=None if split_name is None else normalise_split(split_name),
                source=name,
                comment=opt(mapping.comment),
                description=description,
            )
        except ValueError as exc:
            raise ValueError(f"{path} row {i}: {exc}") from exc
        records.append(record)
    logger.info("loaded %d records from %s", len(records), path)
    return records
