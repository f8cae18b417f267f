"""Pictures and prompts for transformers' vision-language models (the Qwen-VL families).

**Why not ``AutoProcessor``.** In transformers 5.x every Qwen-VL processor builds a video
processor, which needs torchvision, and the Python registry has no torchvision for the torch
this workspace locks (2.15); transformers 5.17's ``AutoImageProcessor`` needs torchvision too.
Pinning torch back to a release that has torchvision would hold the whole product on an old
torch for a feature (video) a scorer never uses. So pictures go through our own decoding
(:func:`artquant_model.load_image`: EXIF, bomb guard, any mode to RGB) and then the *published*
PIL image-processor class of the family (``Qwen2VLImageProcessorPil``, in transformers >= 5.17
with no torchvision import; the same class the PIL fallback of ``AutoImageProcessor`` picks in
5.24), one picture at a time; text goes through ``AutoTokenizer`` and the tokenizer's own chat
template. The pixels equal ``AutoImageProcessor``'s PIL path exactly (tested), and the token
ids equal what ``AutoProcessor`` writes (one ``<|image_pad|>`` per merged patch).

Pictures of one batch come back as a :class:`VisionBatch`: the flattened patches of all pictures
concatenated (``[sum of patches, C * T * P * P]``) and each picture's ``(t, h, w)`` patch grid,
the layout the Qwen-VL models take.

Example:
    >>> import numpy as np
    >>> from transformers import Qwen2VLImageProcessorPil
    >>> # explicit pixel limits: the class's defaults differ between transformers versions
    >>> limits = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}
    >>> processor = VisionImageProcessor(Qwen2VLImageProcessorPil(size=limits))
    >>> batch = processor([np.zeros((56, 84, 3), np.uint8)])
    >>> batch.image_grid_thw.tolist(), batch.token_counts(merge_size=2)
    ([[1, 4, 6]], [6])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
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
from artquant_model.spec import Resolution

#: The image-processor classes (as ``preprocessor_config.json`` names them) whose PIL
#: counterpart this module uses.
PIL_IMAGE_PROCESSORS = {
    "Qwen2VLImageProcessor": "Qwen2VLImageProcessorPil",
    "Qwen2VLImageProcessorFast": "Qwen2VLImageProcessorPil",
    "Qwen2VLImageProcessorPil": "Qwen2VLImageProcessorPil",
}


@dataclass
class VisionBatch:
    """The pictures of a batch as the Qwen-VL models take them.

    Attributes:
        pixel_values: ``[sum of patches, C * T * P * P]`` float32, the pictures' patches in order.
        image_grid_thw: ``[N, 3]`` long, each picture's ``(t, h, w)`` patch grid.
    """

    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor

    def __len__(self) -> int:
        return int(self.image_grid_thw.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N,)``: so code that counts ``pixels.shape[0]`` counts pictures."""
        return (len(self),)

    def patch_counts(self) -> list[int]:
        """Patches per picture (rows of :attr:`pixel_values`)."""
        return [int(n) for n in self.image_grid_thw.prod(-1).tolist()]

    def token_counts(self, merge_size: int) -> list[int]:
        """Language-model tokens per picture: patches / ``merge_size**2``."""
        return [n // merge_size**2 for n in self.patch_counts()]

    def __getitem__(self, index: int) -> VisionBatch:
        counts = self.patch_counts()
        if not -len(counts) <= index < len(counts):
            raise IndexError(f"picture {index} of a batch of {len(counts)}")
        index %= len(counts)
        start = sum(counts[:index])
        return VisionBatch(
            self.pixel_values[start : start + counts[index]],
            self.image_grid_thw[index : index + 1],
        )

    def __iter__(self) -> Iterator[VisionBatch]:
        return (self[i] for i in range(len(self)))

    @classmethod
    def stack(cls, parts: Sequence[VisionBatch]) -> VisionBatch:
        """Concatenate batches (e.g. single pictures) in order."""
        if not parts:
            raise ValueError("no pictures to stack")
        return cls(
            torch.cat([p.pixel_values for p in parts]),
            torch.cat([p.image_grid_thw for p in parts]),
        )

    def pin_memory(self) -> VisionBatch:
        """Page-locked copy, for asynchronous copies to a GPU."""
        return VisionBatch(self.pixel_values.pin_memory(), self.image_grid_thw.pin_memory())

    def unsqueeze(self, dim: int) -> VisionBatch:
        """Itself (a single picture already is a batch of one); mirrors ``Tensor.unsqueeze(0)``."""
        if dim != 0:
            raise ValueError("a VisionBatch only takes unsqueeze(0)")
        return self

    def to(
        self, device: torch.device | str, dtype: torch.dtype | None = None, **kwargs: Any
    ) -> VisionBatch:
        """The pixels on ``device`` (in ``dtype``); the grid on ``device``."""
        pixels = self.pixel_values.to(device, **kwargs)
        return VisionBatch(
            pixels if dtype is None else pixels.to(dtype),
            self.image_grid_thw.to(device),
        )


def pil_image_processor(
    folder: str | os.PathLike[str], classes: dict[str, str] = PIL_IMAGE_PROCESSORS
) -> Any:
    """The published PIL image processor for the ``preprocessor_config.json`` in ``folder``.

    Args:
        folder: The checkpoint folder.
        classes: ``image_processor_type`` values accepted -> the transformers PIL class loaded
            (default: the Qwen-VL families').

    Raises:
        FileNotFoundError: No ``preprocessor_config.json`` in ``folder``.
        ValueError: Its ``image_processor_type`` is not one this module supports.
    """
    import json

    import transformers

    path = Path(folder) / "preprocessor_config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no preprocessor_config.json in {os.fspath(folder)}: the image processor's "
            "settings (patch size, pixel limits, mean and std) are needed to score"
        )
    kind = json.loads(path.read_text(encoding="utf-8")).get("image_processor_type")
    if kind not in classes:
        raise ValueError(f"{path} names image processor {kind!r}; supported: {sorted(classes)}")
    return getattr(transformers, classes[kind]).from_pretrained(os.fspath(folder))


def each_picture(
    one: Callable[..., Any], images: Any, max_pixels: int | None, num_threads: int
) -> list[Any]:
    """``one(image, max_pixels=...)`` for one picture or each of a list, in order, on up to
    ``num_threads`` threads (the image processors' shared front half).

    Raises:
        ValueError: An empty list or ``num_threads`` < 1.
    """
    batch = list(images) if isinstance(images, list | tuple) else [images]
    if not batch:
        raise ValueError("no images given: pass one image or a non-empty list of images")
    if num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}")
    if num_threads == 1 or len(batch) == 1:
        return [one(image, max_pixels=max_pixels) for image in batch]
    with ThreadPoolExecutor(max_workers=min(num_threads, len(batch))) as pool:
        return list(pool.map(lambda image: one(image, max_pixels=max_pixels), batch))


class VisionImageProcessor:
    """Decode and preprocess pictures into a :class:`VisionBatch` (picklable, for workers).

    Args:
        image_processor: A published PIL image processor (``Qwen2VLImageProcessorPil``).
        resolution: ``"native"`` (the processor's own resizing, with optional pixel limits) or
            ``"fixed"`` (pad to a square with the mean colour, resize to ``size``, rounded to
            the patch grid), see :class:`artquant_model.spec.Resolution`.

    Example:
        >>> from transformers import Qwen2VLImageProcessorPil
        >>> fixed = VisionImageProcessor(
        ...     Qwen2VLImageProcessorPil(), Resolution(mode="fixed", size=56)
        ... )
        >>> import numpy as np
        >>> fixed([np.zeros((30, 90, 3), np.uint8)]).image_grid_thw.tolist()
        [[1, 4, 4]]
    """

    def __init__(self, image_processor: Any, resolution: Resolution | None = None) -> None:
        self.image_processor = image_processor
        self.resolution = resolution or Resolution()
        self.patch_size = int(image_processor.patch_size)
        self.merge_size = int(image_processor.merge_size)
        self.factor = self.patch_size * self.merge_size
        self.background = background_color(tuple(image_processor.image_mean))
        self._size_kwargs: dict[str, Any] = {}
        if self.resolution.mode == "fixed":
            side = max(
                self.factor, round(int(self.resolution.size or 0) / self.factor) * self.factor
            )
            self.side: int | None = side
            # smart_resize keeps a side x side picture as it is when the limits admit it.
            self._size_kwargs = {
                "size": {"shortest_edge": side * side, "longest_edge": side * side}
            }
        else:
            self.side = None
            size = dict(image_processor.size)
            limits = {
                "shortest_edge": self.resolution.min_pixels or size.get("shortest_edge"),
                "longest_edge": self.resolution.max_pixels or size.get("longest_edge"),
            }
            if self.resolution.min_pixels or self.resolution.max_pixels:
                self._size_kwargs = {"size": limits}

    def __repr__(self) -> str:
        return (
            f"VisionImageProcessor({type(self.image_processor).__name__}, "
            f"{self.resolution.model_dump(exclude_none=True)})"
        )

    def prepare(self, image: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
        """Decode one picture to RGB and, in fixed mode, pad it to a square and resize it."""
        picture = to_rgb(load_image(image, max_pixels=max_pixels), self.background)
        if self.side is not None:
            picture = expand_to_square(picture, self.background)
            if picture.size != (self.side, self.side):
                picture = picture.resize((self.side, self.side), Image.Resampling.BICUBIC)
        return picture

    def one(self, image: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> VisionBatch:
        """Preprocess one picture."""
        out = self.image_processor(
            images=[self.prepare(image, max_pixels=max_pixels)],
            return_tensors="pt",
            **self._size_kwargs,
        )
        return VisionBatch(
            out["pixel_values"].to(torch.float32).contiguous(), out["image_grid_thw"].long()
        )

    def __call__(
        self,
        images: Any,
        *,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        num_threads: int = 1,
    ) -> VisionBatch:
        """Preprocess one picture or a list of them (paths, bytes, arrays, PIL images).

        Args:
            images: One picture or a non-empty list.
            max_pixels: The decompression-bomb limit of decoding.
            num_threads: Pictures processed at once; the output does not depend on it.

        Returns:
            The pictures as one :class:`VisionBatch`, in order.

        Raises:
            ImageLoadError: A picture cannot be read (the message names it).
            ValueError: An empty list or ``num_threads`` < 1.
        """
        return VisionBatch.stack(each_picture(self.one, images, max_pixels, num_threads))


__all__ = ["PIL_IMAGE_PROCESSORS", "VisionBatch", "VisionImageProcessor", "pil_image_processor"]
