"""Background decoding: batches in input order, stacked pixels, rows that survive failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from artquant_sdk._decode import Decoded, DecodedBatch, decoded_batches
from artquant_sdk.cli import _score_rows


def _preprocess(images: list[Any], **_: Any) -> torch.Tensor:
    # a stand-in image processor: the mean colour of each picture, as a 3x2x2 tensor
    return torch.stack(
        [torch.tensor(np.asarray(i.convert("RGB"), dtype=np.float32).mean((0, 1))) for i in images]
    )[:, :, None, None].expand(-1, 3, 2, 2)


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (4 + i, 3), (10 * i, 0, 0)).save(path)
        paths.append(str(path))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    paths.insert(2, str(broken))
    return paths


@pytest.mark.parametrize(("workers", "threads"), [(0, 1), (0, 3), (2, 1)])
def test_batches_keep_input_order_and_stack_readable_pixels(
    files: list[str], workers: int, threads: int
) -> None:
    batches = list(
        decoded_batches(files, _preprocess, batch_size=4, workers=workers, threads=threads)
    )
    assert [len(b) for b in batches] == [4, 2]
    items = [d for b in batches for d in b]
    assert [d.image for d in items] == files
    assert items[2].pixel_values is None
    assert items[2].error is not None
    assert items[2].error.startswith("ImageLoadError")
    first = batches[0]
    assert first.pixel_values is not None
    assert first.pixel_values.shape == (3, 3, 2, 2)  # the broken file has no row
    readable = [d for d in first if d.pixel_values is not None]
    for row, d in zip(first.pixel_values, readable, strict=True):
        # each item sees its row of the stacked tensor, not a copy
        assert d.pixel_values.data_ptr() == row.data_ptr()
    red = [float(d.pixel_values[0, 0, 0]) for d in items if d.pixel_values is not None]
    assert red == [0.0, 10.0, 20.0, 30.0, 40.0]


def test_on_demand_decoding_uses_threads_and_decodes_nothing_ahead(files: list[str]) -> None:
    import threading

    seen: list[tuple[str, int]] = []

    def recording(images: list[Any], **kwargs: Any) -> torch.Tensor:
        seen.append((threading.current_thread().name, len(images)))
        return _preprocess(images, **kwargs)

    batches = decoded_batches(files, recording, batch_size=4, workers=0, threads=2)
    first = next(batches)
    # the broken file fails before preprocessing: 3 of the first 4 files reach it
    assert len(seen) == 3
    assert len(first) == 4
    assert {name for name, _ in seen} != {threading.current_thread().name}
    rest = list(batches)
    assert [len(b) for b in rest] == [2]
    assert len(seen) == 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0, "workers": 0}, "batch_size must be at least 1, got 0"),
        ({"batch_size": 2, "workers": -1}, "workers must be at least 0, got -1"),
        ({"batch_size": 2, "workers": 0, "threads": 0}, "threads must be at least 1, got 0"),
    ],
)
def test_bad_decoding_settings_name_the_value(
    files: list[str], kwargs: dict[str, int], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        next(decoded_batches(files, _preprocess, **kwargs))


def test_a_batch_of_unreadable_files_has_no_pixels() -> None:
    batch = DecodedBatch.collate([Decoded(0, "a", None, "E: x"), Decoded(1, "b", None, "E: y")])
    assert batch.pixel_values is None
    assert batch.pin_memory() is batch


class _Scorer:
    """Scores a batch as its mean red value; refuses batches holding a 'poisoned' picture."""

    def __init__(self, poison: float | None) -> None:
        self.poison = poison
        self.calls: list[int] = []

    def score_pixel_values(self, pixels: torch.Tensor) -> list[tuple[float, float, list[float]]]:
        self.calls.append(pixels.shape[0])
        reds = pixels[:, 0, 0, 0].tolist()
        if self.poison in reds:
            raise RuntimeError("out of memory")
        return [(r, 0.0, [1.0, 0.0]) for r in reds]

    def score_batch(self, pixels: torch.Tensor, attributes: Any = ()) -> list[Any]:
        # the CLI scores through ArtQuant.score_batch; without attributes it is one
        # score_pixel_values call, as here
        assert not attributes
        return [(row, {}) for row in self.score_pixel_values(pixels)]

    def to_result(
        self, image: str, score: float, std: float, probs: list[float], attributes: Any = None
    ) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(
            score=score, std=std, level="good", probs={"a": probs[0]}, attributes={}
        )


def test_a_failing_batch_is_retried_one_image_at_a_time(files: list[str]) -> None:
    (batch,) = decoded_batches(files, _preprocess, batch_size=6, workers=0)
    scorer = _Scorer(poison=20.0)
    rows = _score_rows(scorer, batch)
    assert [r["image"] for r in rows] == files
    assert scorer.calls == [5, 1, 1, 1, 1, 1]
    by_error = {r["image"]: r.get("error") for r in rows}
    assert by_error[files[2]].startswith("ImageLoadError")  # the broken file
    assert by_error[files[3]] == "RuntimeError: out of memory"  # red 20: the poisoned one
    assert [r["score"] for r in rows if "score" in r] == [0.0, 10.0, 30.0, 40.0]


def test_a_healthy_batch_is_one_forward(files: list[str]) -> None:
    (batch,) = decoded_batches(files, _preprocess, batch_size=6, workers=0)
    scorer = _Scorer(poison=None)
    rows = _score_rows(scorer, batch)
    assert scorer.calls == [5]
    assert sum("score" in r for r in rows) == 5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pinned_batches_for_a_cuda_model(files: list[str]) -> None:
    for batch in decoded_batches(files, _preprocess, batch_size=4, workers=1, pin_memory=True):
        assert batch.pixel_values is not None
        assert batch.pixel_values.is_pinned()
        assert all(d.pixel_values.is_pinned() for d in batch if d.pixel_values is not None)


def test_threads_take_the_largest_files_first_and_keep_input_order(tmp_path: Path) -> None:
    from artquant_sdk._decode import DecodeDataset, _largest_first

    sizes = [30, 10, 50, 0, 20]
    files = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"{i}.png"
        path.write_bytes(b"x" * size)
        files.append(str(path))
    files.append(str(tmp_path / "missing.png"))  # unreadable: counts as empty, goes last
    dataset = DecodeDataset(files, _preprocess)
    assert _largest_first(dataset, range(6)) == [2, 0, 4, 1, 3, 5]
    assert _largest_first(dataset, range(1, 3)) == [2, 1]
    # whatever order they are decoded in, rows come back in input order
    batches = list(decoded_batches(files, _preprocess, batch_size=4, workers=0, threads=3))
    assert [d.image for b in batches for d in b] == files
