"""Image checks and per-image scoring: what keeps one bad upload from failing its batch.

Two stages, split by where they run:

* :func:`sniff_format` (HTTP process): the first bytes decide whether an upload is an image at
  all. Anything else (text, PDF, an archive) is refused with 415 before it is queued.
* :func:`score_isolated` (model worker): the header of every image is read (format, size, the
  decompression-bomb limit), the readable ones are scored together with ``ArtQuant.score``, and
  only when that batch fails is each image decoded alone to find the culprit, so one corrupt
  file costs the others nothing but a retry.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image, UnidentifiedImageError

from artquant_serve._schemas import ImageError

__all__ = [
    "ACCEPTED_FORMATS",
    "DEFAULT_MAX_PIXELS",
    "check_header",
    "decodes",
    "score_isolated",
    "sniff_format",
]

logger = logging.getLogger(__name__)

#: Formats the service accepts, by PIL name, with their leading bytes.
ACCEPTED_FORMATS: dict[str, tuple[bytes, ...]] = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*"),
    "WEBP": (),  # RIFF....WEBP, checked below
}

#: 50 megapixels: a 10,000 x 5,000 picture. A decoded RGB image of that size takes 150 MB; the
#: SDK's own limit (PIL's, about 179 megapixels) is meant for a trusted local folder.
DEFAULT_MAX_PIXELS = 50_000_000


def sniff_format(data: bytes) -> str | None:
    """The image format of ``data`` by its first bytes, or None when it is no accepted image.

    Args:
        data: The upload's bytes.

    Returns:
        A key of :data:`ACCEPTED_FORMATS`, or None.

    Example:
        >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n...")
        'PNG'
        >>> sniff_format(b"%PDF-1.7") is None
        True
    """
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for name, magics in ACCEPTED_FORMATS.items():
        if any(data.startswith(magic) for magic in magics):
            return name
    return None


def check_header(data: bytes, max_pixels: int) -> ImageError | None:
    """Read only the header: None when the image may be decoded, else why not.

    Args:
        data: Encoded image bytes.
        max_pixels: The largest ``width * height`` allowed (decompression-bomb limit).

    Returns:
        None, or an :class:`ImageError` with code ``too_many_pixels`` or ``unreadable_image``.
    """
    try:
        with warnings.catch_warnings():
            # PIL warns above its own limit and raises above twice that; both mean too big here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS)) as image:
                width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return ImageError(code="too_many_pixels", message=str(error))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return ImageError(code="unreadable_image", message=f"cannot read the image: {error}")
    if width * height > max_pixels:
        return ImageError(
            code="too_many_pixels",
            message=f"{width}x{height} = {width * height} pixels is more than the server's "
            f"limit of {max_pixels} (a decompression-bomb guard)",
        )
    return None


def decodes(data: bytes) -> ImageError | None:
    """Decode the whole image (what the header check cannot see: truncated or corrupt data)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.convert("RGB").load()
    except Exception as error:
        # Any decoder failure (OSError for truncation, ValueError, SyntaxError, zlib.error...)
        # belongs to this one image.
        return ImageError(
            code="unreadable_image",
            message=f"cannot decode the image: {type(error).__name__}: {error}",
        )
    return None


def score_isolated(
    score: Callable[[list[bytes]], Sequence[Any]],
    images: Sequence[bytes],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Any]:
    """Score ``images``; each gets its result or its own :class:`ImageError`, in input order.

    Args:
        score: Scores a list of encoded images in one call (``ArtQuant.score`` with the
            server's batch size), returning one result per image, in order.
        images: Encoded images.
        max_pixels: Decompression-bomb limit, checked on the header before any decoding.

    Returns:
        Per image the result of ``score`` or an :class:`ImageError`.

    Example:
        >>> score_isolated(lambda xs: [len(x) for x in xs], [b"not an image"])[0].code
        'unreadable_image'
    """
    out: list[Any] = [check_header(data, max_pixels) for data in images]

    def together(todo: list[int]) -> bool:
        """Score ``todo`` in one call; False (and nothing written) if that call fails."""
        try:
            results = list(score([images[i] for i in todo]))
        except Exception as error:
            logger.info("a batch of %d failed (%s)", len(todo), error)
            return False
        for i, result in zip(todo, results, strict=True):
            out[i] = result
        return True

    todo = [i for i, verdict in enumerate(out) if verdict is None]
    if not todo or together(todo):
        return out
    # Find the image(s) at fault: decode each alone, then retry the rest together.
    for i in todo:
        out[i] = decodes(images[i])
    todo = [i for i in todo if out[i] is None]
    if not todo or together(todo):
        return out
    logger.warning("the decodable images still failed together; scoring them one by one")
    for i in todo:
        try:
            (out[i],) = score([images[i]])
        except Exception as error:
            out[i] = ImageError(code="scoring_failed", message=f"{type(error).__name__}: {error}")
    return out
