"""Image decoding and the mPLUG-Owl2 pixel pipeline as pure functions on PIL images and numpy.

The pipeline is the original `expand2square` followed by `CLIPImageProcessor` as configured by
mPLUG-Owl2's / Q-Align's `preprocessor_config.json` (reference-mplug-owl2.md §7). It stays on
Pillow for the geometry (the bicubic filter is Pillow's, bit for bit) and uses a 3x256 lookup
table for rescale + normalise, so no per-pixel Python runs and the floats equal
CLIPImageProcessor's.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from numpy.typing import NDArray

logger = logging.getLogger(__name__)

#: Pillow's own hard limit (2 x `PIL.Image.MAX_IMAGE_PIXELS` at its default), our default cap.
DEFAULT_MAX_PIXELS = 178_956_970

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


class ImageLoadError(ValueError):
    """An image could not be read or converted (missing, empty, truncated, corrupt, too large).

    Example:
        >>> try:
        ...     load_image(b"")
        ... except ImageLoadError as error:
        ...     print(error)
        cannot load image from <0 bytes>: the data is empty
    """


def background_color(image_mean: Sequence[float]) -> tuple[int, int, int]:
    """The padding colour of the original code: `int(255 * m)` per channel (truncation).

    Args:
        image_mean: per-channel mean in [0, 1].

    Returns:
        The colour as three bytes; (122, 116, 104) for the CLIP mean.

    Example:
        >>> background_color((0.48145466, 0.4578275, 0.40821073))
        (122, 116, 104)
    """
    red, green, blue = (int(255 * m) for m in image_mean)
    return red, green, blue


def _describe(source: object) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<numpy array shape {tuple(source.shape)} dtype {source.dtype}>"
    if isinstance(source, Image.Image):
        return f"<PIL image mode {source.mode} size {source.size}>"
    return f"<{type(source).__name__}>"


def _check_pixels(width: int, height: int, max_pixels: int | None, where: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"cannot load image from {where}: it has size {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            f"cannot load image from {where}: {width}x{height} = {width * height} pixels exceeds "
            f"max_pixels={max_pixels} (a decompression-bomb guard; pass a larger max_pixels "
            "to allow it)"
        )


def _decode(data: bytes, max_pixels: int | None, where: str) -> Image.Image:
    if len(data) == 0:
        raise ImageLoadError(f"cannot load image from {where}: the data is empty")
    try:
        with warnings.catch_warnings():
            # We apply our own limit below; Pillow's warning threshold would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_pixels(image.width, image.height, max_pixels, where)
            # Animated GIF / APNG / WebP / multi-page TIFF: the first frame, as the original does.
            image.seek(0)
            image.load()
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageLoadError(
            f"cannot load image from {where}: {error} (Pillow's own limit, "
            "PIL.Image.MAX_IMAGE_PIXELS, applies before max_pixels)"
        ) from error
    except UnidentifiedImageError as error:
        raise ImageLoadError(
            f"cannot load image from {where}: not a recognised image format ({len(data)} bytes)"
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageLoadError(
            f"cannot load image from {where}: the file is truncated or corrupt ({error})"
        ) from error
    return image


def _sixteen_to_eight(values: NDArray[Any]) -> NDArray[np.uint8]:
    """16-bit -> 8-bit: clip to [0, 65535], then round(v * 255 / 65535) (half up)."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _float_to_eight(values: NDArray[Any], where: str) -> NDArray[np.uint8]:
    """Float -> 8-bit: values in [0, 1] are scaled by 255, values in [0, 255] kept; then rounded."""
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ImageLoadError(f"cannot convert {where}: it holds NaN or infinite values")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0.0 or high > 255.0:
        raise ImageLoadError(
            f"cannot convert {where}: float pixel values span [{low:g}, {high:g}]; "
            "allowed are [0, 1] (scaled by 255) or [0, 255]"
        )
    scale = 255.0 if high <= 1.0 else 1.0
    return np.floor(values * scale + 0.5).astype(np.uint8)


def _from_array(array: np.ndarray, max_pixels: int | None, where: str) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (2, 3, 4)):
        raise ImageLoadError(
            f"cannot load image from {where}: expected an HxW or HxWxC array with C in 1..4 "
            "(channel-last; transpose channel-first arrays)"
        )
    _check_pixels(array.shape[1], array.shape[0], max_pixels, where)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        if array.ndim == 2:
            height, width = array.shape
            return Image.frombytes("I;16", (width, height), array.astype("<u2").tobytes())
        array = _sixteen_to_eight(array)
    elif np.issubdtype(array.dtype, np.floating):
        array = _float_to_eight(array, where)
    elif array.dtype != np.uint8:
        raise ImageLoadError(
            f"cannot load image from {where}: dtype {array.dtype} is not supported "
            "(allowed: uint8, uint16, bool, float in [0, 1] or [0, 255])"
        )
    mode = "L" if array.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[-1]]
    # frombytes, not fromarray(mode=...): the same on every Pillow release we support
    return Image.frombytes(mode, (array.shape[1], array.shape[0]), array.tobytes())


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate / flip an image as its EXIF orientation tag says (a no-op without the tag).

    Args:
        image: a PIL image.

    Returns:
        The upright image (the same object when there is nothing to do).
    """
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a malformed EXIF block must not make the picture unreadable
        logger.warning("ignoring an unreadable EXIF block")
        return image
    if orientation in (None, 1):
        return image
    transposed = ImageOps.exif_transpose(image)
    return transposed if transposed is not None else image


def load_image(source: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an image from a path, bytes, a numpy array or a PIL image.

    The result is fully decoded, upright (EXIF orientation applied) and a single frame (the first
    frame of an animation or multi-page file). It keeps its own mode; `to_rgb` (or the image
    processor) converts it to RGB. Numpy arrays are channel-last: HxW, HxWx1, HxWx2 (grey + alpha),
    HxWx3 (RGB) or HxWx4 (RGBA), dtype uint8, uint16 (16-bit, see `to_rgb`), bool, or float with
    values in [0, 1] (scaled by 255) or [0, 255], rounded half up.

    Args:
        source: a path (`str` / `os.PathLike`), encoded bytes, a numpy array or a PIL image.
        max_pixels: refuse images with more pixels than this (decompression-bomb guard); `None`
            for no limit of ours (Pillow's `PIL.Image.MAX_IMAGE_PIXELS` still applies to files).

    Returns:
        The decoded PIL image.

    Raises:
        ImageLoadError: for a missing, empty, truncated, corrupt or oversized image, or an
            unsupported array.

    Example:
        >>> import numpy as np
        >>> load_image(np.zeros((4, 6, 3), dtype=np.uint8)).size
        (6, 4)
    """
    where = _describe(source)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError as error:
            raise ImageLoadError(f"cannot load image from {where}: no such file") from error
        except IsADirectoryError as error:
            raise ImageLoadError(f"cannot load image from {where}: it is a directory") from error
        except OSError as error:
            raise ImageLoadError(f"cannot load image from {where}: {error}") from error
        image = _decode(data, max_pixels, where)
    elif isinstance(source, bytes | bytearray | memoryview):
        image = _decode(bytes(source), max_pixels, where)
    elif isinstance(source, np.ndarray):
        return _from_array(source, max_pixels, where)
    elif isinstance(source, Image.Image):
        _check_pixels(source.width, source.height, max_pixels, where)
        image = source
        if getattr(image, "n_frames", 1) > 1 and image.tell() != 0:
            image.seek(0)
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageLoadError(
                f"cannot load image from {where}: the file is truncated or corrupt ({error})"
            ) from error
    else:
        raise ImageLoadError(
            f"cannot load image from {where}: unsupported type {type(source).__name__} "
            "(allowed: str or os.PathLike path, bytes, numpy.ndarray, PIL.Image.Image)"
        )
    return apply_exif_orientation(image)


def _composite(rgba: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Alpha-blend an RGBA image over a solid colour: round((c*a + b*(255-a)) / 255), half up."""
    array = np.asarray(rgba, dtype=np.uint16)
    alpha = array[..., 3:4]
    colour = np.asarray(background, dtype=np.uint16)
    blended = (array[..., :3] * alpha + colour * (255 - alpha) + 127) // 255
    return Image.frombytes("RGB", rgba.size, blended.astype(np.uint8).tobytes())


def to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB by one documented rule.

    * RGB: unchanged.
    * Transparency (RGBA, RGBa, LA, La, PA, P or L or RGB with a `transparency` entry): converted
      to straight RGBA by Pillow, then composited over `background` (the padding colour, so
      transparent areas look like the padding): round((c*a + b*(255-a)) / 255), half up.
    * 16-bit (I;16, I;16B, I;16L, I;16N, I): clipped to [0, 65535], round(v * 255 / 65535),
      then grey.
    * F (32-bit float): values in [0, 1] are scaled by 255, values in [0, 255] kept, then rounded
      and grey; any other range is an error.
    * 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX: Pillow's `convert("RGB")` (CMYK without an ICC
      transform, as `Image.open(...).convert("RGB")` in the original code).

    Args:
        image: a decoded PIL image.
        background: the RGB colour that shows through transparent pixels.

    Returns:
        An RGB image (the same object when it already is RGB without transparency).

    Raises:
        ImageLoadError: for float pixels out of range or a mode Pillow cannot convert.

    Example:
        >>> from PIL import Image
        >>> to_rgb(Image.new("LA", (1, 1), (0, 0)), (122, 116, 104)).getpixel((0, 0))
        (122, 116, 104)
    """
    mode = image.mode
    has_transparency = mode in _ALPHA_MODES or "transparency" in image.info
    if mode == "RGB" and not has_transparency:
        return image
    if mode in _SIXTEEN_BIT_MODES:
        grey = _sixteen_to_eight(np.asarray(image))
        return Image.frombytes("L", image.size, grey.tobytes()).convert("RGB")
    if mode == "F":
        grey = _float_to_eight(np.asarray(image), f"a mode F image of size {image.size}")
        return Image.frombytes("L", image.size, grey.tobytes()).convert("RGB")
    try:
        if has_transparency:
            return _composite(image.convert("RGBA"), background)
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ImageLoadError(f"cannot convert a mode {mode} image to RGB: {error}") from error


def expand_to_square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """The original `expand2square`: paste onto a max(w, h) square of `background`.

    The offset is (0, (w - h) // 2) for a wide image and ((h - w) // 2, 0) for a tall one (floor
    division, as the original). A square image is returned unchanged.

    Args:
        image: an RGB image.
        background: the canvas colour.

    Returns:
        The square image.
    """
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    offset = (0, (width - height) // 2) if width > height else ((height - width) // 2, 0)
    canvas.paste(image, offset)
    return canvas


def shortest_edge_size(width: int, height: int, shortest_edge: int) -> tuple[int, int]:
    """CLIPImageProcessor's output size: the short side becomes `shortest_edge`, the long side
    `int(shortest_edge * long / short)`.

    Returns:
        `(width, height)` after resizing.
    """
    if width <= height:
        return shortest_edge, int(shortest_edge * height / width)
    return int(shortest_edge * width / height), shortest_edge


def center_crop(image: Image.Image, crop: int) -> Image.Image:
    """CLIPImageProcessor's centre crop: top-left at ((w - crop) // 2, (h - crop) // 2)."""
    width, height = image.size
    if (width, height) == (crop, crop):
        return image
    left, top = (width - crop) // 2, (height - crop) // 2
    return image.crop((left, top, left + crop, top + crop))


def normalization_table(
    image_mean: Sequence[float], image_std: Sequence[float], rescale_factor: float = 1 / 255
) -> NDArray[np.float32]:
    """Byte -> model-input float per channel, exactly as CLIPImageProcessor computes it.

    `(float32(v * rescale_factor) - float32(mean)) / float32(std)`, with the product in float64 and
    the subtraction and division in float32.

    Returns:
        A float32 array of shape [3, 256].
    """
    scaled = (np.arange(256, dtype=np.float64) * rescale_factor).astype(np.float32)
    mean = np.asarray(image_mean, dtype=np.float32)[:, None]
    std = np.asarray(image_std, dtype=np.float32)[:, None]
    return ((scaled[None, :] - mean) / std).astype(np.float32)


def apply_table(pixels: NDArray[np.uint8], table: NDArray[np.float32]) -> NDArray[np.float32]:
    """Map an HxWx3 uint8 picture through a [3, 256] table into a 3xHxW float32 array."""
    out = np.empty((3, pixels.shape[0], pixels.shape[1]), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], pixels[..., channel], out=out[channel])
    return out
