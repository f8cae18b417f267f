"""BAID (Dreemurr-T/BAID): 60,337 artworks with a mean score on 0–10."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from artquant_data._records import ArtRecord, normalise_split
from artquant_data.datasets._csv import parse_float, read_csv, require_columns

logger = logging.getLogger(__name__)

_SPLIT_FILES = {"train": "train_set.csv", "val": "val_set.csv", "test": "test_set.csv"}


def load_baid(root: str | Path, *, splits: Iterable[str] | None = None) -> list[ArtRecord]:
    """Load the BAID labels: ``{train,val,test}_set.csv`` with columns ``image,score`` (0–10).

    The official split has 50,737 / 3,200 / 6,400 images. Note that the test scores are
    compressed (std about 0.6 against 1.65 in train).

    Args:
        root: Folder holding the split CSVs (or its ``dataset/`` subfolder).
        splits: Keep only these splits (``"train"``, ``"val"``, ``"test"``); default all.

    Returns:
        Records in file order, train then val then test.

    Raises:
        FileNotFoundError: If a requested split file is missing (or none is found).
        ValueError: On missing columns, bad or out-of-range scores, or duplicate images.

    Example:
        >>> len(load_baid("shared/data/baid", splits=["val"]))  # doctest: +SKIP
        3200
    """
    root = Path(root)
    if not any((root / f).is_file() for f in _SPLIT_FILES.values()) and (root / "dataset").is_dir():
        root = root / "dataset"
    wanted = ["train", "val", "test"] if splits is None else [normalise_split(s) for s in splits]
    present = [s for s in wanted if (root / _SPLIT_FILES[s]).is_file()]
    absent = [s for s in wanted if s not in present]
    if (splits is not None and absent) or not present:
        names = [_SPLIT_FILES[s] for s in (absent or wanted)]
        raise FileNotFoundError(f"BAID split file(s) {names} not found in {root}")
    records: list[ArtRecord] = []
    seen: set[str] = set()
    for split in present:
        path = root / _SPLIT_FILES[split]
        rows = read_csv(path)
        require_columns(path, rows, ["image", "score"])
        for i, row in enumerate(rows, start=2):
            name = row["image"].strip()
            if name in seen:
                raise ValueError(f"{path} row {i}: duplicate image {name!r}")
            seen.add(name)
            score = parse_float(row["score"], path=path, row=i, column="score")
            if not 0.0 <= score <= 10.0:
                raise ValueError(f"{path} row {i}: score {score} outside BAID's 0–10 scale")
            records.append(
                ArtRecord(
                    image=name,
                    score=score,
                    scale=(0.0, 10.0),
                    split=normalise_split(split),
                    source="baid",
                )
            )
    logger.info("loaded %d BAID records from %s", len(records), root)
    return records
