"""APDDv2 (BestiVictory/APDDv2): 10,023 paintings, total score, 10 attributes, comments."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from artquant_data._attributes import APDDV2_ATTRIBUTE_SPECS
from artquant_data._records import ArtRecord, Split, normalise_split
from artquant_data.datasets._csv import parse_float, parse_optional_float, read_csv, require_columns

logger = logging.getLogger(__name__)


MAIN_CSV = "APDDv2-10023.csv"
_TOTAL = "Total aesthetic score"
_SPLIT_FILES = {"train": "train", "val": "valid", "test": "test"}
_SPLIT_TOLERANCE = 0.006  # split CSVs round total/10 to 3 decimals


def _find_main(root: Path) -> Path:
    direct = root / MAIN_CSV
    if direct.is_file():
        return direct
    candidates = sorted(root.glob("APDDv2*.csv"))
    if len(candidates) == 1:
        return candidates[0]
    raise FileNotFoundError(
        f"APDDv2 main label file {MAIN_CSV!r} not found in {root}"
        + (f" (candidates: {[c.name for c in candidates]})" if candidates else "")
    )


def _find_split(root: Path, split: str) -> Path | None:
    name = _SPLIT_FILES[split]
    for candidate in (
        root / f"split_{name}.csv",
        root / "csvfiles" / f"{name}.csv",
        root / f"{name}.csv",
    ):
        if candidate.is_file():
            return candidate
    return None


def load_apddv2(
    root: str | Path,
    *,
    splits: Iterable[str] | None = None,
    encoding: str = "gb18030",
) -> list[ArtRecord]:
    """Load the APDDv2 labels, joined with the official train/valid/test split.

    The main CSV (``APDDv2-10023.csv``, GB18030) gives the total score (0–100), the ten
    attribute scores (0–10; empty cells mean "not rated" and become ``None``), the category
    (``"painting type*style*subject"``) and the language comment. The split CSVs
    (``split_{train,valid,test}.csv``, or the repository's ``csvfiles/{train,valid,test}.csv``)
    give the official 8019/1002/1002 split and ``Score`` = total / 10, which becomes
    :attr:`ArtRecord.score` on the 0–10 scale. Without split files every record has
    ``split=None`` and the score is total / 10.

    Args:
        root: Folder holding the label files.
        splits: Keep only these splits (``"train"``, ``"valid"``/``"val"``, ``"test"``).
        encoding: Encoding of the main CSV.

    Returns:
        Records in split-file order (train, val, test), then any rows in no split.

    Raises:
        FileNotFoundError: If the main CSV is missing, or ``splits`` asks for a split whose
            file is missing.
        ValueError: On undecodable text, missing columns, bad numbers, duplicate file names,
            split rows absent from the main CSV, or a split score disagreeing with the total.

    Example:
        >>> records = load_apddv2("shared/data/apddv2", splits=["test"])  # doctest: +SKIP
        >>> len(records), records[0].scale
        (1002, (0.0, 10.0))
    """
    root = Path(root)
    main_path = _find_main(root)
    rows = read_csv(main_path, encoding=encoding)
    columns = [a.column for a in APDDV2_ATTRIBUTE_SPECS]
    require_columns(main_path, rows, ["filename", "Artistic Categories", _TOTAL, *columns])
    wanted = None if splits is None else {normalise_split(s) for s in splits}

    by_name: dict[str, tuple[int, dict[str, str]]] = {}
    for i, row in enumerate(rows, start=2):
        name = row["filename"].strip()
        if name in by_name:
            raise ValueError(f"{main_path} row {i}: duplicate filename {name!r}")
        by_name[name] = (i, row)

    split_rows: list[tuple[Split | None, float | None, str]] = []
    seen: set[str] = set()
    for split in ("train", "val", "test"):
        path = _find_split(root, split)
        if path is None:
            if wanted is not None and split in wanted:
                raise FileNotFoundError(f"APDDv2 {split!r} split file not found in {root}")
            continue
        srows = read_csv(path)
        require_columns(path, srows, ["filename", "Score"])
        missing = [r["filename"] for r in srows if r["filename"].strip() not in by_name]
        if missing:
            raise ValueError(
                f"{path}: {len(missing)} file name(s) not in {main_path.name}, e.g. {missing[:3]}"
            )
        for j, srow in enumerate(srows, start=2):
            name = srow["filename"].strip()
            if name in seen:
                raise ValueError(f"{path} row {j}: {name!r} already belongs to another split")
            seen.add(name)
            score = parse_float(srow["Score"], path=path, row=j, column="Score")
            split_rows.append((split, score, name))
    split_rows.extend((None, None, name) for name in by_name if name not in seen)

    records: list[ArtRecord] = []
    disagreements = 0
    for split_name, split_score, name in split_rows:
        if wanted is not None and split_name not in wanted:
            continue
        line, row = by_name[name]
        total = parse_float(row[_TOTAL], path=main_path, row=line, column=_TOTAL)
        score = total / 10.0 if split_score is None else split_score
        if split_score is not None and abs(split_score - total / 10.0) > _SPLIT_TOLERANCE:
            disagreements += 1
        # an empty cell: the attribute does not apply to this category -> None, never 0
        attributes = {
            a.name: parse_optional_float(row[a.column], path=main_path, row=line, column=a.column)
            for a in APDDV2_ATTRIBUTE_SPECS
        }
        comment = row.get("Language Comment", "").strip() or None
        records.append(
            ArtRecord(
                image=name,
                score=score,
                scale=(0.0, 10.0),
                attributes=attributes,
                attribute_scale=(0.0, 10.0),
                category=row["Artistic Categories"].strip() or None,
                split=split_name,
                source="apddv2",
                comment=comment,
            )
        )
    if disagreements:
        raise ValueError(
            f"{disagreements} APDDv2 split score(s) differ from the main CSV's total / 10 by more"
            f" than {_SPLIT_TOLERANCE}; the label files do not belong together"
        )
    logger.info("loaded %d APDDv2 records from %s", len(records), root)
    return records
