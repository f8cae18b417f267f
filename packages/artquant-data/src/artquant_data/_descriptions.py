"""Hierarchical descriptions from a file, merged into records by image id."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from artquant_data._jsonio import parse_json, read_text
from artquant_data._records import ArtRecord, HierarchicalDescription

logger = logging.getLogger(__name__)

_LEVELS = ("perception", "cognition", "emotion")


def _description_from(value: Any, where: str) -> HierarchicalDescription:
    if isinstance(value, str):
        return HierarchicalDescription(perception=value)
    if isinstance(value, Mapping):
        if "perception" in value:
            return HierarchicalDescription.model_validate({k: value.get(k) for k in _LEVELS})
        if "description" in value and isinstance(value["description"], str):
            return HierarchicalDescription(perception=value["description"])
        turns = value.get("conversations")
        if isinstance(turns, list) and turns and isinstance(turns[-1], Mapping):
            # an original-format description sample: the gpt answer is the description
            return HierarchicalDescription(perception=str(turns[-1].get("value", "")))
    raise ValueError(
        f"{where}: expected a text, an object with 'perception' (and optionally 'cognition',"
        " 'emotion'), a 'description' text, or a description sample with 'conversations'"
    )


def load_descriptions(path: str | Path) -> dict[str, HierarchicalDescription]:
    """Read descriptions keyed by image id.

    Accepted layouts (JSON or JSON Lines):

    * a list of objects with ``image`` (or ``id``) and ``perception`` / ``cognition`` /
      ``emotion``, or a single ``description`` text;
    * original-format description samples (``conversations``; the gpt answer is used);
    * one object mapping image id -> text or -> ``{"perception": ..., ...}``.

    Args:
        path: The file.

    Returns:
        Image id (as written in the file) -> description.

    Raises:
        FileNotFoundError: If the file is missing.
        ValueError: On invalid JSON, an entry without an id, or an unreadable entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"description file not found: {path}")
    data = parse_json(read_text(path), path, lines=path.suffix.lower() == ".jsonl")
    out: dict[str, HierarchicalDescription] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out[str(key)] = _description_from(value, f"{path} entry {key!r}")
        return out
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list or object, got {type(data).__name__}")
    for i, entry in enumerate(data):
        if not isinstance(entry, Mapping):
            raise ValueError(f"{path} entry {i}: expected an object, got {type(entry).__name__}")
        key = entry.get("image") or entry.get("id")
        if not key:
            raise ValueError(f"{path} entry {i}: no 'image' or 'id'")
        out[str(key)] = _description_from(entry, f"{path} entry {i}")
    return out


def _keys(ref: str) -> list[str]:
    pure = PurePosixPath(ref.replace("\\", "/"))
    return [pure.as_posix(), pure.name, pure.stem]


def attach_descriptions(
    records: Iterable[ArtRecord], descriptions: Mapping[str, HierarchicalDescription]
) -> list[ArtRecord]:
    """Attach descriptions to records by image id.

    A record matches a description key by its image path, else its file name, else its file
    name without extension (so ``"x.jpg"`` matches a key ``"x"`` or ``"imgs/x.jpg"``).
    Records without a match keep their description; unused descriptions are logged.

    Args:
        records: The records.
        descriptions: Image id -> description, e.g. from :func:`load_descriptions`.

    Returns:
        New records (the input is not changed), in order.
    """
    # exact paths win over file names, which win over stems
    index: dict[str, str] = {}
    for level in range(3):
        for key in descriptions:
            index.setdefault(_keys(key)[level], key)
    used: set[str] = set()
    out = []
    matched = 0
    for rec in records:
        found = [index[k] for k in _keys(rec.image) if k in index]
        if not found:
            out.append(rec)
            continue
        key = found[0]
        used.add(key)
        matched += 1
        out.append(rec.model_copy(update={"description": descriptions[key]}))
    unused = [k for k in descriptions if k not in used]
    logger.info("attached %d description(s); %d record(s) without one", matched, len(out) - matched)
    if unused:
        logger.warning(
            "%d description(s) match no record, e.g. %s", len(unused), ", ".join(unused[:5])
        )
    return out


__all__ = ["attach_descriptions", "load_descriptions"]
