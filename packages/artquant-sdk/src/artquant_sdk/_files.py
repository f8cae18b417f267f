"""Turning the CLI's PATHS arguments into the ordered list of files to score.

Policy:
* A file named on the command line is always scored, whatever its extension: a non-image file
  then gets a row with an ``error``, so nothing the user asked for is silently dropped.
* A folder contributes only files with an image extension (:data:`IMAGE_EXTENSIONS`, case
  insensitive); hidden files and folders (names starting with ``.``) are skipped. Without
  ``recursive`` only the folder's own files are taken; with it, every level below.
* Order: the arguments in the order given; inside a folder, paths sorted by their components.
  A file reached twice (same real path) is kept once, at its first position.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "expand_paths"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".apng",
        ".gif",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
        ".jp2",
        ".j2k",
        ".ico",
    }
)


def _folder_files(root: Path, recursive: bool) -> tuple[list[Path], int]:
    found: list[Path] = []
    skipped = 0
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                if path.suffix.lower() in IMAGE_EXTENSIONS:
                    found.append(path)
                else:
                    skipped += 1
    else:
        for entry in os.scandir(root):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            if Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(entry.path))
            else:
                skipped += 1
    found.sort(key=lambda p: p.relative_to(root).parts)
    return found, skipped


def expand_paths(paths: Sequence[str | os.PathLike[str]], *, recursive: bool = False) -> list[str]:
    """Expand files and folders into the ordered, de-duplicated list of files to score.

    Args:
        paths: Files and folders, as given on the command line.
        recursive: Descend into sub-folders.

    Returns:
        File paths as strings (a folder's files are joined onto the folder as given, so
        relative arguments give relative paths).

    Raises:
        FileNotFoundError: An argument does not exist (the message names it).

    Example:
        >>> expand_paths([])
        []
    """
    out: list[str] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files, skipped = _folder_files(path, recursive)
            if skipped:
                logger.info("%s: skipped %d file(s) without an image extension", path, skipped)
        elif path.exists():
            files = [path]
        else:
            raise FileNotFoundError(f"{os.fspath(raw)!r} does not exist")
        for file in files:
            key = os.path.realpath(file)
            if key not in seen:
                seen.add(key)
                out.append(os.fspath(file))
    return out
