"""Normalising what users pass as images: one or many paths, PIL images, arrays or bytes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TypeAlias

import numpy as np
from PIL import Image

__all__ = ["ImageInput", "ImagesInput", "as_image_list"]

ImageInput: TypeAlias = (
    str | os.PathLike[str] | Image.Image | np.ndarray | bytes | bytearray | memoryview
)
"""One image: a file path, a PIL image, an ``HxW`` / ``HxWxC`` uint8 array, or encoded bytes."""

ImagesInput: TypeAlias = ImageInput | Iterable[ImageInput]

_SINGLE = (str, os.PathLike, Image.Image, np.ndarray, bytes, bytearray, memoryview)
_ALLOWED = "a path (str or os.PathLike), a PIL.Image.Image, a numpy array, or bytes"


def _image_id(item: ImageInput, index: int) -> str:
    if isinstance(item, str | os.PathLike):
        return os.fspath(item)
    if isinstance(item, Image.Image):
        filename = getattr(item, "filename", "")
        return str(filename) if filename else f"<PIL.Image>#{index}"
    if isinstance(item, np.ndarray):
        return f"<ndarray>#{index}"
    return f"<bytes>#{index}"


def as_image_list(images: ImagesInput) -> list[tuple[str, ImageInput]]:
    """Turn one image or an iterable of images into ``[(image_id, image), ...]``.

    Args:
        images: One image (see :data:`ImageInput`) or a list/tuple/iterable of them.

    Returns:
        ``(id, image)`` pairs in input order. The id is the path for files, the PIL image's
        ``filename`` when it has one, else ``"<PIL.Image>#i"``, ``"<ndarray>#i"`` or
        ``"<bytes>#i"`` with ``i`` the position in the input.

    Raises:
        TypeError: An item is none of the accepted kinds.
        ValueError: A 4-D array was given (ambiguous: pass a list of ``HxWxC`` arrays).

    Example:
        >>> as_image_list("a.png")
        [('a.png', 'a.png')]
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        raise ValueError(
            f"a 4-D array of shape {images.shape} is ambiguous; pass a list of HxWxC arrays"
        )
    if isinstance(images, _SINGLE):
        items: list[object] = [images]
    elif isinstance(images, Iterable):
        items = list(images)
    else:
        raise TypeError(
            f"images must be {_ALLOWED}, or a list of them; got {type(images).__name__}"
        )
    out: list[tuple[str, ImageInput]] = []
    for index, item in enumerate(items):
        if not isinstance(item, _SINGLE):
            raise TypeError(
                f"image #{index} has type {type(item).__name__}; each image must be {_ALLOWED}"
            )
        if isinstance(item, np.ndarray) and item.ndim not in (2, 3):
            raise ValueError(
                f"image #{index} is an array of shape {item.shape}; expected HxW or HxWxC"
            )
        out.append((_image_id(item, index), item))
    return out
