"""Join records (or samples) to image files under an image root, loudly."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from artquant_data._records import check_relative_image_path

logger = logging.getLogger(__name__)


class _HasImage(Protocol):
    @property
    def image(self) -> str | None: ...


T = TypeVar("T", bound=_HasImage)

_EXAMPLES = 5


class ImagePathError(ValueError):
    """An image reference is absolute, contains ``..`` or resolves outside the image root."""


class MissingImagesError(FileNotFoundError):
    """Some referenced images are not under the image root.

    Attributes:
        missing: The image references that were not found.
        total: How many references were checked.
        root: The image root.
    """

    def __init__(self, missing: Sequence[str], total: int, root: Path) -> None:
        self.missing = list(missing)
        self.total = total
        self.root = root
        super().__init__(missing_report(self.missing, total, root))


def missing_report(missing: Sequence[str], total: int, root: Path) -> str:
    """One-line summary: how many images are missing, out of how many, first examples."""
    examples = ", ".join(repr(m) for m in missing[:_EXAMPLES])
    more = f" and {len(missing) - _EXAMPLES} more" if len(missing) > _EXAMPLES else ""
    return f"{len(missing)} of {total} images missing under {root}: {examples}{more}"


@dataclass(frozen=True)
class ImageResolution(Generic[T]):
    """The result of :func:`resolve_images`: every item, either found or missing.

    Attributes:
        root: The image root (absolute).
        found: ``(item, absolute image path)`` pairs, in input order.
        missing: Items whose image was not found, in input order.
    """

    root: Path
    found: list[tuple[T, Path]] = field(default_factory=list)
    missing: list[T] = field(default_factory=list)

    @property
    def total(self) -> int:
        """How many items were checked."""
        return len(self.found) + len(self.missing)

    def report(self) -> str:
        """A human-readable summary (empty-handed: ``"all N images found under ROOT"``)."""
        if not self.missing:
            return f"all {self.total} images found under {self.root}"
        return missing_report([str(m.image) for m in self.missing], self.total, self.root)

    def raise_for_missing(self) -> None:
        """Raise :class:`MissingImagesError` if any image is missing."""
        if self.missing:
            raise MissingImagesError([str(m.image) for m in self.missing], self.total, self.root)


def resolve_images(
    items: Iterable[T],
    root: str | Path,
    *,
    on_missing: str = "raise",
    alternative_extensions: Sequence[str] = (),
) -> ImageResolution[T]:
    """Find each item's image under ``root``; report every missing one, drop none silently.

    Args:
        items: Records or samples with an ``image`` attribute (relative path).
        root: The image root folder.
        on_missing: ``"raise"`` (default): raise :class:`MissingImagesError` listing the count
            and the first examples; ``"report"``: return them in ``missing`` and log a warning.
        alternative_extensions: If the exact file is absent, try the same stem with these
            extensions (e.g. ``(".jpg", ".png", ".jpeg")`` for a re-encoded copy).

    Returns:
        The resolution: found pairs and missing items, in input order.

    Raises:
        FileNotFoundError: If ``root`` is not a folder.
        ImagePathError: If an image reference is absent, absolute, contains ``..``, or
            resolves (through a symlink) outside ``root``.
        MissingImagesError: If images are missing and ``on_missing="raise"``.
        ValueError: If ``on_missing`` is unknown.

    Example:
        >>> res = resolve_images(records, "images/", on_missing="report")  # doctest: +SKIP
        >>> print(res.report())  # doctest: +SKIP
        2 of 1002 images missing under /data/images: 'a.jpg', 'b.png'
    """
    if on_missing not in ("raise", "report"):
        raise ValueError(f"on_missing must be 'raise' or 'report', got {on_missing!r}")
    root_path = Path(root)
    if not root_path.is_dir():
        raise FileNotFoundError(f"image root is not a folder: {root_path}")
    real_root = root_path.resolve()
    result: ImageResolution[T] = ImageResolution(root=real_root)
    exts = [e if e.startswith(".") else f".{e}" for e in alternative_extensions]
    for item in items:
        ref = item.image
        if ref is None:
            raise ImagePathError(f"{item!r} has no image reference")
        try:
            rel = check_relative_image_path(ref)
        except ValueError as exc:
            raise ImagePathError(str(exc)) from exc
        candidates = [real_root / rel]
        candidates += [(real_root / rel).with_suffix(e) for e in exts]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            result.missing.append(item)
            continue
        resolved = Path(os.path.realpath(hit))
        if not resolved.is_relative_to(real_root):
            raise ImagePathError(f"image {ref!r} resolves outside the image root {real_root}")
        result.found.append((item, hit))
    if result.missing:
        if on_missing == "raise":
            result.raise_for_missing()
        logger.warning(result.report())
    return result


__all__ = [
    "ImagePathError",
    "ImageResolution",
    "MissingImagesError",
    "missing_report",
    "resolve_images",
]
