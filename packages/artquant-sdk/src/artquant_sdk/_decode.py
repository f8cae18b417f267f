"""Decoding and preprocessing image files, one result per file, in input order.

Two ways, chosen by ``workers``:

* ``workers > 0`` (for an accelerator): a torch ``DataLoader`` runs :class:`DecodeDataset` in
  that many processes, so files are read, decoded and resized while the model scores the
  previous batch.
* ``workers == 0`` (for a CPU): each batch is decoded in this process when it is needed, its
  files side by side in ``threads`` threads (Pillow releases the GIL while decoding and
  resampling). On a CPU the model already uses every core, so decoding during the forward pass
  only takes cores from it; decoding between passes on all cores is faster (measured on 2 cores:
  batch 8 end to end 125 -> 94 ms per image, see benchmarks/NOTES.md).

A file that cannot be read becomes a :class:`Decoded` with an ``error`` instead of an
exception: one bad file never stops the run.

The workers also stack each batch's pixels into one tensor (:class:`DecodedBatch`), so the main
process does no per-image copying; for a CUDA model the loader pins that tensor in page-locked
memory, from which the copy to the GPU runs asynchronously (``non_blocking``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["DecodeDataset", "Decoded", "DecodedBatch", "decoded_batches", "describe_error"]

Preprocess = Callable[..., torch.Tensor]


@dataclass
class Decoded:
    """One file after decoding: its pixels (``[3, S, S]``, or a one-picture ``VisionBatch`` for
    the Qwen-VL families) or the reason it has none."""

    index: int
    image: str
    pixel_values: Any | None
    error: str | None


def describe_error(error: BaseException) -> str:
    """A one-line message for a row's ``error`` column: the exception type and its text."""
    text = " ".join(str(error).split()) or "no message"
    return f"{type(error).__name__}: {text}"


class DecodeDataset(Dataset[Decoded]):
    """Files -> :class:`Decoded`, loading with ``artquant_model.load_image``.

    Args:
        files: Paths, in output order.
        preprocess: The model's image processor (``MPLUGOwl2ImageProcessor``): maps a list of
            PIL images to pixels ``[N, 3, S, S]``, taking ``max_pixels=``. It must be picklable
            when workers use the spawn start method (so not a method of the scorer).
        max_pixels: The decompression-bomb limit passed to ``load_image`` (None: its default).
    """

    def __init__(
        self, files: Sequence[str], preprocess: Preprocess, max_pixels: int | None = None
    ) -> None:
        self.files = list(files)
        self.preprocess = preprocess
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Decoded:
        from artquant_model import load_image

        file = self.files[index]
        limit = {} if self.max_pixels is None else {"max_pixels": self.max_pixels}
        try:
            image = load_image(file, **limit)
            pixels = self.preprocess([image], **limit)[0]
        except Exception as error:
            # Any failure of one file (decoder, conversion, resize) becomes that file's row.
            return Decoded(index, file, None, describe_error(error))
        return Decoded(index, file, pixels, None)


@dataclass
class DecodedBatch:
    """One batch of files in input order, with the readable ones' pixels stacked.

    Attributes:
        items: Every file of the batch; ``pixel_values`` of a readable one is its row of
            :attr:`pixel_values`.
        pixel_values: The readable items' pixels stacked in their order (``[n, 3, S, S]``, or
            a ``VisionBatch``), or None when no file of the batch could be read.
    """

    items: list[Decoded]
    pixel_values: Any | None

    @classmethod
    def collate(cls, items: list[Decoded]) -> DecodedBatch:
        """Stack the readable items' pixels (runs in the loader's worker processes)."""
        readable = [d for d in items if d.pixel_values is not None]
        if not readable:
            return cls(items, None)
        from artquant_model import stack_pixels

        stacked = stack_pixels([d.pixel_values for d in readable])
        return cls(items, stacked)._share_rows()

    def pin_memory(self) -> DecodedBatch:
        """Page-locked copy (the DataLoader calls this when ``pin_memory=True``)."""
        if self.pixel_values is None:
            return self
        return DecodedBatch(self.items, self.pixel_values.pin_memory())._share_rows()

    def _share_rows(self) -> DecodedBatch:
        # Each readable item sees its row of the stacked tensor, so a retry of one image after
        # a failed batch needs no copy either.
        rows = iter(self.pixel_values if self.pixel_values is not None else ())
        for d in self.items:
            if d.pixel_values is not None:
                d.pixel_values = next(rows)
        return self

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Decoded]:
        return iter(self.items)


def decoded_batches(
    files: Sequence[str],
    preprocess: Preprocess,
    *,
    batch_size: int,
    workers: int,
    threads: int = 1,
    max_pixels: int | None = None,
    prefetch_batches: int = 2,
    pin_memory: bool = False,
) -> Iterator[DecodedBatch]:
    """Yield :class:`DecodedBatch` es of up to ``batch_size`` files, in input order.

    Args:
        files: The files.
        preprocess: See :class:`DecodeDataset`.
        batch_size: Files per batch.
        workers: Background decoding processes (0: decode in this process, on demand).
        threads: With ``workers == 0``: files of a batch decoded at once.
        max_pixels: Decompression-bomb limit.
        prefetch_batches: Batches each worker prepares ahead.
        pin_memory: Put each batch's pixels in page-locked memory (for a CUDA model).

    Yields:
        One batch at a time.

    Raises:
        ValueError: ``batch_size`` or ``threads`` below 1, or ``workers`` below 0.
    """
    for name, value, least in (("batch_size", batch_size, 1), ("workers", workers, 0)):
        if value < least:
            raise ValueError(f"{name} must be at least {least}, got {value}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    dataset = DecodeDataset(files, preprocess, max_pixels)
    if workers == 0:
        yield from _decode_on_demand(dataset, batch_size, threads, pin_memory)
        return
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=DecodedBatch.collate,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_batches,
        persistent_workers=False,
    )
    yield from loader


def _decode_on_demand(
    dataset: DecodeDataset, batch_size: int, threads: int, pin_memory: bool
) -> Iterator[DecodedBatch]:
    """Each batch decoded when asked for, its files in up to ``threads`` threads."""
    workers = min(threads, batch_size)
    with ThreadPoolExecutor(max_workers=workers) if workers > 1 else nullcontext() as pool:
        for start in range(0, len(dataset), batch_size):
            indices = range(start, min(start + batch_size, len(dataset)))
            # __getitem__ turns every failure into that file's error, so no future can raise
            if pool:
                futures = {
                    i: pool.submit(dataset.__getitem__, i) for i in _largest_first(dataset, indices)
                }
                items = [futures[i].result() for i in indices]
            else:
                items = [dataset[i] for i in indices]
            batch = DecodedBatch.collate(items)
            yield batch.pin_memory() if pin_memory else batch


def _largest_first(dataset: DecodeDataset, indices: range) -> list[int]:
    """``indices`` by decreasing file size: the threads then finish a batch close together
    (longest job first), instead of one decoding a large file alone at the end."""

    def size(index: int) -> int:
        try:
            return os.path.getsize(dataset.files[index])
        except OSError:
            return 0  # unreadable: it fails fast in the decoder

    return sorted(indices, key=size, reverse=True)
