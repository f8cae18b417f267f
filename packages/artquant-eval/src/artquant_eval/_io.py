"""Reading prediction and target files, and joining them by id."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

IdMatch = Literal["exact", "basename", "stem"]
ID_MATCHES: tuple[str, ...] = ("exact", "basename", "stem")
_FORMATS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class DataFileError(ValueError):
    """A prediction or target file cannot be read or joined; the message says where and why."""


def read_records(
    path: str | Path, *, file_format: str | None = None, encoding: str = "utf-8-sig"
) -> list[dict[str, Any]]:
    """Read a table of records from CSV, TSV, JSON (a list of objects) or JSON Lines.

    Args:
        path: The file. Its suffix picks the format: ``.csv``, ``.tsv``, ``.json``,
            ``.jsonl``/``.ndjson``.
        file_format: Override the suffix: ``"csv"``, ``"tsv"``, ``"json"`` or ``"jsonl"``.
        encoding: Text encoding (a UTF-8 byte order mark is skipped by default). APDDv2's
            main CSV needs ``"gb18030"``.

    Returns:
        One dictionary per record. CSV values are strings (an empty cell is ``""``).

    Raises:
        DataFileError: Missing file, unknown format, undecodable text, malformed JSON, or
            JSON that is not a list of objects.
    """
    path = Path(path)
    kind = file_format or _FORMATS.get(path.suffix.lower())
    if kind not in set(_FORMATS.values()):
        raise DataFileError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; use one of "
            f"{sorted(_FORMATS)} or give the format (csv, tsv, json, jsonl)"
        )
    try:
        text = path.read_text(encoding=encoding)
    except FileNotFoundError as exc:
        raise DataFileError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read it as {encoding} text: {exc}") from exc
    if kind in ("csv", "tsv"):
        # StringIO(newline="") keeps line breaks inside quoted cells (free-text comments).
        reader = csv.DictReader(
            io.StringIO(text, newline=""), delimiter="," if kind == "csv" else "\t"
        )
        if reader.fieldnames is None:
            raise DataFileError(f"{path}: the file is empty (no header row)")
        return [dict(row) for row in reader]
    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{path}: invalid JSON: {exc}") from exc
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataFileError(
                f"{path}: a JSON file must hold a list of objects, one per image; got "
                f"{type(data).__name__}"
            )
        return data
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(f"{path}:{number}: invalid JSON line: {exc}") from exc
        if not isinstance(record, dict):
            raise DataFileError(f"{path}:{number}: each line must be a JSON object")
        records.append(record)
    return records


def normalise_id(value: Any, match: str = "exact") -> str:
    """The join key of an id: as is, its file name, or its file name without extension.

    Example:
        >>> normalise_id("images/a/0042.JPG", "stem")
        '0042'
    """
    text = str(value).strip()
    if match == "exact":
        return text
    name = PurePosixPath(text.replace("\\", "/")).name
    if match == "basename":
        return name
    if match == "stem":
        return PurePosixPath(name).stem
    raise ValueError(f"match must be one of {ID_MATCHES}; got {match!r}")


@dataclass(frozen=True)
class JoinedScores:
    """Predictions and targets aligned by id.

    Attributes:
        ids: The join keys of the evaluated pairs, in target-file order.
        pred: Predicted scores, aligned with ``ids``.
        target: Target scores, aligned with ``ids``.
        groups: Group label per pair, or None without a group key.
        missing: Target ids that have no prediction.
        extra: Prediction ids that have no target.
        no_value: Ids left out because their prediction or target cell is empty.
    """

    ids: list[str]
    pred: NDArray[np.float64]
    target: NDArray[np.float64]
    groups: list[str] | None
    missing: list[str]
    extra: list[str]
    no_value: list[str]


def _index(
    records: Sequence[Mapping[str, Any]], id_key: str, match: str, name: str
) -> dict[str, Mapping[str, Any]]:
    if not records:
        raise DataFileError(f"the {name} file holds no records")
    indexed: dict[str, Mapping[str, Any]] = {}
    for number, record in enumerate(records, start=1):
        if id_key not in record:
            raise DataFileError(
                f"{name} record {number} has no id column {id_key!r}; its keys are {sorted(record)}"
            )
        indexed.setdefault(normalise_id(record[id_key], match), record)
    if len(indexed) != len(records):
        counts = Counter(normalise_id(r[id_key], match) for r in records)
        repeated = sorted(k for k, c in counts.items() if c > 1)
        raise DataFileError(
            f"the {name} file repeats {len(repeated)} id(s) (after match={match!r}), e.g. "
            f"{repeated[:5]}; ids must be unique"
        )
    return indexed


def _number(record: Mapping[str, Any], key: str, name: str, key_id: str) -> float | None:
    if key not in record:
        raise DataFileError(
            f"{name} record {key_id!r} has no column {key!r}; its keys are {sorted(record)}"
        )
    value = record[key]
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise DataFileError(f"{name} {key!r} of {key_id!r} is a boolean ({value}), not a score")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise DataFileError(f"{name} {key!r} of {key_id!r} is not a number: {value!r}") from exc
    return number


def join_by_id(
    pred_records: Sequence[Mapping[str, Any]],
    target_records: Sequence[Mapping[str, Any]],
    *,
    pred_key: str = "score",
    target_key: str = "score",
    pred_id_key: str = "image",
    target_id_key: str | None = None,
    group_key: str | None = None,
    match: str = "exact",
) -> JoinedScores:
    """Join predictions to targets by id (never by order).

    Ids are compared after :func:`normalise_id` with ``match``: ``"exact"`` (default),
    ``"basename"`` (drop directories, so ``/data/x/a.png`` matches ``a.png``) or ``"stem"``
    (also drop the extension, so ``a.jpg`` matches ``a.png``). Records whose score cell is
    empty are left out and listed in ``no_value`` (an APDDv2 attribute is empty where it
    does not apply). The group label is read from the target record, or from the
    prediction record when the target has no such column.

    Args:
        pred_records: Prediction records (from :func:`read_records`).
        target_records: Target records.
        pred_key: Column of the predicted score.
        target_key: Column of the target score.
        pred_id_key: Id column of the predictions.
        target_id_key: Id column of the targets; defaults to ``pred_id_key``.
        group_key: Optional column holding a group label.
        match: How ids are compared (see above).

    Returns:
        The aligned :class:`JoinedScores`.

    Raises:
        DataFileError: An id column or score column is absent, an id repeats, a score is not
            a number, or no id is shared. NaN/inf scores are passed through for
            :func:`evaluate`'s ``nan_policy`` to handle.
        ValueError: ``match`` is unknown.

    Example:
        >>> joined = join_by_id(
        ...     [{"image": "a.jpg", "score": 3}, {"image": "c.jpg", "score": 1}],
        ...     [{"file": "a.png", "Score": 2.5}, {"file": "b.png", "Score": 4}],
        ...     target_key="Score", target_id_key="file", match="stem")
        >>> joined.ids, joined.pred.tolist(), joined.missing, joined.extra
        (['a'], [3.0], ['b'], ['c'])
    """
    if match not in ID_MATCHES:
        raise ValueError(f"match must be one of {ID_MATCHES}; got {match!r}")
    target_id_key = target_id_key or pred_id_key
    preds = _index(pred_records, pred_id_key, match, "prediction")
    targets = _index(target_records, target_id_key, match, "target")
    missing = [key for key in targets if key not in preds]
    extra = [key for key in preds if key not in targets]
    ids: list[str] = []
    pred: list[float] = []
    target: list[float] = []
    groups: list[str] = []
    no_value: list[str] = []
    for key, target_record in targets.items():
        pred_record = preds.get(key)
        if pred_record is None:
            continue
        t = _number(target_record, target_key, "target", key)
        p = _number(pred_record, pred_key, "prediction", key)
        if t is None or p is None:
            no_value.append(key)
            continue
        if group_key is not None:
            source = target_record if group_key in target_record else pred_record
            if group_key not in source:
                raise DataFileError(
                    f"neither the target nor the prediction record of {key!r} has the group "
                    f"column {group_key!r}; target keys: {sorted(target_record)}"
                )
            groups.append(str(source[group_key]))
        ids.append(key)
        pred.append(p)
        target.append(t)
    if not ids:
        raise DataFileError(
            f"no id is shared by the predictions ({len(preds)} ids, e.g. {list(preds)[:3]}) "
            f"and the targets ({len(targets)} ids, e.g. {list(targets)[:3]}) with "
            f"match={match!r}"
            + ("" if not no_value else f"; {len(no_value)} shared id(s) have an empty score")
        )
    return JoinedScores(
        ids=ids,
        pred=np.asarray(pred, dtype=np.float64),
        target=np.asarray(target, dtype=np.float64),
        groups=groups if group_key is not None else None,
        missing=missing,
        extra=extra,
        no_value=no_value,
    )


__all__ = [
    "ID_MATCHES",
    "DataFileError",
    "IdMatch",
    "JoinedScores",
    "join_by_id",
    "normalise_id",
    "read_records",
]
