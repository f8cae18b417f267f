"""Pictures for vision-language models that see square tiles of one fixed size (Gemma 3,
InternVL), each tile giving a fixed number of language-model tokens.

Where the Qwen-VL families cut a picture into a variable grid of patches
(:mod:`~artquant_model.backbones.hf_vlm.processing_hf_vlm`), these families resize to the
vision tower's input size:

* **Gemma 3** (``Gemma3ImageProcessorPil``): every picture becomes one ``S`` x ``S`` tile (the
  aspect ratio is not kept; pan-and-scan crops are off, as ``Gemma3Processor`` leaves them
  unless asked), ``mm_tokens_per_image`` tokens (256 in the released models).
* **InternVL** (``GotOcr2ImageProcessorPil``): in native resolution a picture is cut into the
  grid of tiles whose aspect ratio is closest to its own (between ``min_patches`` and
  ``max_patches`` tiles) plus a thumbnail of the whole picture when there is more than one tile,
  as ``InternVLProcessor`` does (``crop_to_patches=True``); each tile gives
  ``(image_size / patch_size)**2 * downsample_ratio**2`` tokens (256 in the released models).

The published PIL image-processor classes do the resizing and normalisation (no torchvision);
decoding is ours (:func:`artquant_model.load_image`). In **fixed** resolution every picture is
padded to a square with the mean colour (as mPLUG-Owl2 does) and becomes exactly one tile, so
every picture gives the same tokens; ``Resolution.size`` must then be the tile size, because the
vision tower takes nothing else.

Pictures of one batch come back as a :class:`TileBatch`: all tiles concatenated
(``[sum of tiles, 3, S, S]``) and each picture's tile count.

Example:
    >>> import numpy as np
    >>> from transformers import Gemma3ImageProcessorPil
    >>> processor = TileImageProcessor(
    ...     Gemma3ImageProcessorPil(size={"height": 32, "width": 32}), tokens_per_tile=4
    ... )
    >>> batch = processor([np.zeros((30, 90, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)])
    >>> batch.pixel_values.shape, batch.token_counts()
    (torch.Size([2, 3, 32, 32]), [4, 4])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from artquant_model._images import (
    DEFAULT_MAX_PIXELS,
    background_color,
    expand_to_square,
    load_image,
    to_rgb,
)
from artquant_model.backbones.hf_vlm.processing_hf_vlm import each_picture
from artquant_model.spec import Resolution


@dataclass
class TileBatch:
    """The pictures of a batch as tile-based models take them.

    Attributes:
        pixel_values: ``[sum of tiles, 3, S, S]`` float32, the pictures' tiles in order.
        tiles: ``[N]`` long, tiles per picture.
        tokens_per_tile: Language-model tokens each tile gives.
    """

    pixel_values: torch.Tensor
    tiles: torch.Tensor
    tokens_per_tile: int

    def __len__(self) -> int:
        return int(self.tiles.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N,)``: so code that counts ``pixels.shape[0]`` counts pictures."""
        return (len(self),)

    def tile_counts(self) -> list[int]:
        """Tiles per picture (rows of :attr:`pixel_values`)."""
        return [int(n) for n in self.tiles.tolist()]

    def token_counts(self, merge_size: int | None = None) -> list[int]:
        """Language-model tokens per picture: tiles x :attr:`tokens_per_tile`.

        Args:
            merge_size: Ignored (the tokens per tile are stored); accepted so that both batch
                kinds answer the same call.
        """
        return [n * self.tokens_per_tile for n in self.tile_counts()]

    def __getitem__(self, index: int) -> TileBatch:
        counts = self.tile_counts()
        if not -len(counts) <= index < len(counts):
            raise IndexError(f"picture {index} of a batch of {len(counts)}")
        index %= len(counts)
        start = sum(counts[:index])
        return TileBatch(
            self.pixel_values[start : start + counts[index]],
            self.tiles[index : index + 1],
            self.tokens_per_tile,
        )

    def __iter__(self) -> Iterator[TileBatch]:
        return (self[i] for i in range(len(self)))

    @classmethod
    def stack(cls, parts: Sequence[TileBatch]) -> TileBatch:
        """Concatenate batches (e.g. single pictures) in order.

        Raises:
            ValueError: No parts, or parts with different tokens per tile (other models).
        """
        if not parts:
            raise ValueError("no pictures to stack")
        per_tile = {p.tokens_per_tile for p in parts}
        if len(per_tile) != 1:
            raise ValueError(f"cannot stack tiles of different models (tokens per tile {per_tile})")
        return cls(
            torch.cat([p.pixel_values for p in parts]),
            torch.cat([p.tiles for p in parts]),
            parts[0].tokens_per_tile,
        )

    def pin_memory(self) -> TileBatch:
        """Page-locked copy, for asynchronous copies to a GPU."""
        return TileBatch(self.pixel_values.pin_memory(), self.tiles, self.tokens_per_tile)

    def unsqueeze(self, dim: int) -> TileBatch:
        """Itself (a single picture already is a batch of one); mirrors ``Tensor.unsqueeze(0)``."""
        if dim != 0:
            raise ValueError("a TileBatch only takes unsqueeze(0)")
        return self

    def to(
        self, device: torch.device | str, dtype: torch.dtype | None = None, **kwargs: Any
    ) -> TileBatch:
        """The pixels on ``device`` (in ``dtype``); the tile counts stay on the CPU."""
        pixels = self.pixel_values.to(device, **kwargs)
        return TileBatch(
            pixels if dtype is None else pixels.to(dtype), self.tiles, self.tokens_per_tile
        )


def _tile_side(image_processor: Any) -> int:
    size = dict(image_processor.size)
    height, width = size.get("height"), size.get("width")
    if height is None or height != width:
        raise ValueError(
            f"{type(image_processor).__name__} has size {size}; tile models need square tiles "
            "({'height': S, 'width': S})"
        )
    return int(height)


class TileImageProcessor:
    """Decode and preprocess pictures into a :class:`TileBatch` (picklable, for workers).

    Args:
        image_processor: A published PIL image processor that resizes to one square size:
            ``Gemma3ImageProcessorPil`` or ``GotOcr2ImageProcessorPil``.
        tokens_per_tile: Language-model tokens per tile (from the model's config).
        resolution: ``"native"`` (the processor's own resizing; with ``crop_to_patches`` the
            aspect-ratio tiling) or ``"fixed"`` (pad to a square, one tile); pixel limits do not
            apply to these families.
        crop_to_patches: Native resolution cuts pictures into tiles (InternVL) rather than
            resizing them to one tile (Gemma 3).

    Raises:
        ValueError: Pixel limits given, or a fixed size other than the tile size.
    """

    #: Tile models do not merge patches into tokens; the backbone reads counts per tile.
    merge_size = 1

    def __init__(
        self,
        image_processor: Any,
        *,
        tokens_per_tile: int,
        resolution: Resolution | None = None,
        crop_to_patches: bool = False,
    ) -> None:
        self.image_processor = image_processor
        self.tokens_per_tile = int(tokens_per_tile)
        self.resolution = resolution or Resolution()
        self.side = _tile_side(image_processor)
        self.background = background_color(tuple(image_processor.image_mean))
        name = type(image_processor).__name__
        if self.resolution.min_pixels is not None or self.resolution.max_pixels is not None:
            raise ValueError(
                f"{name} resizes every picture to {self.side}x{self.side} tiles: min_pixels / "
                "max_pixels do not apply; use resolution mode 'native' without limits or "
                f"'fixed' with size {self.side}"
            )
        fixed = self.resolution.mode == "fixed"
        if fixed and self.resolution.size != self.side:
            raise ValueError(
                f"resolution size {self.resolution.size} is not possible: {name}'s vision "
                f"tower takes {self.side}x{self.side} tiles; use size {self.side}"
            )
        self.fixed = fixed
        self.crop_to_patches = bool(crop_to_patches) and not fixed
        self._kwargs: dict[str, Any] = (
            {"crop_to_patches": self.crop_to_patches}
            if hasattr(image_processor, "crop_to_patches")
            else {}
        )

    def __repr__(self) -> str:
        return (
            f"TileImageProcessor({type(self.image_processor).__name__}, side={self.side}, "
            f"tokens_per_tile={self.tokens_per_tile}, crop_to_patches={self.crop_to_patches}, "
            f"{self.resolution.model_dump(exclude_none=True)})"
        )

    def prepare(self, image: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
        """Decode one picture to RGB and, in fixed mode, pad it to a square."""
        picture = to_rgb(load_image(image, max_pixels=max_pixels), self.background)
        return expand_to_square(picture, self.background) if self.fixed else picture

    def one(self, image: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> TileBatch:
        """Preprocess one picture."""
        out = self.image_processor(
            images=[self.prepare(image, max_pixels=max_pixels)], return_tensors="pt", **self._kwargs
        )
        pixels = out["pixel_values"].to(torch.float32).contiguous()
        tiles = int(out["num_patches"][0]) if "num_patches" in out else 1
        if pixels.shape[0] != tiles:
            raise ValueError(
                f"{type(self.image_processor).__name__} gave {pixels.shape[0]} tiles for one "
                f"picture but counted {tiles} (pan-and-scan crops are not supported)"
            )
        return TileBatch(pixels, torch.tensor([tiles]), self.tokens_per_tile)

    def __call__(
        self,
        images: Any,
        *,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        num_threads: int = 1,
    ) -> TileBatch:
        """Preprocess one picture or a list of them (paths, bytes, arrays, PIL images).

        Args:
            images: One picture or a non-empty list.
            max_pixels: The decompression-bomb limit of decoding.
            num_threads: Pictures processed at once; the output does not depend on it.

        Returns:
            The pictures as one :class:`TileBatch`, in order.

        Raises:
            ImageLoadError: A picture cannot be read (the message names it).
            ValueError: An empty list or ``num_threads`` < 1.
        """
        return TileBatch.stack(each_picture(self.one, images, max_pixels, num_threads))


__all__ = ["TileBatch", "TileImageProcessor"]
