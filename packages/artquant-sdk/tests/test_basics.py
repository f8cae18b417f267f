"""Input normalisation, devices and dtypes, and the ScoreResult type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from artquant_sdk import ScoreResult, resolve_device, resolve_dtype
from artquant_sdk._inputs import as_image_list


def test_single_inputs_become_one_item(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    assert as_image_list(str(path)) == [(str(path), str(path))]
    assert as_image_list(path) == [(str(path), path)]
    image = Image.new("RGB", (4, 4))
    assert as_image_list(image) == [("<PIL.Image>#0", image)]
    array = np.zeros((4, 4, 3), np.uint8)
    ((array_id, same),) = as_image_list(array)
    assert array_id == "<ndarray>#0"
    assert same is array
    assert as_image_list(b"\x89PNG")[0][0] == "<bytes>#0"


def test_lists_keep_order_and_index_ids(tmp_path: Path) -> None:
    image = Image.new("RGB", (4, 4))
    items = as_image_list(["x.jpg", image, np.zeros((2, 2), np.uint8), bytearray(b"1")])
    assert [i for i, _ in items] == ["x.jpg", "<PIL.Image>#1", "<ndarray>#2", "<bytes>#3"]
    # a PIL image opened from a file keeps its filename as id
    file = tmp_path / "b.png"
    image.save(file)
    with Image.open(file) as opened:
        assert as_image_list([opened])[0][0] == str(file)
    assert as_image_list(iter(["a", "b"])) == [("a", "a"), ("b", "b")]


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        (3.5, TypeError, "float"),
        ([Path("a"), 7], TypeError, r"image #1 has type int"),
        (np.zeros((2, 4, 4, 3), np.uint8), ValueError, "4-D array"),
        ([np.zeros(5, np.uint8)], ValueError, "expected HxW or HxWxC"),
    ],
)
def test_bad_inputs_name_the_problem(images: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        as_image_list(images)  # type: ignore[arg-type]


def test_cpu_device_and_default_dtype_is_float32() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback")
def test_auto_device_without_accelerators_is_cpu() -> None:
    if torch.backends.mps.is_available():
        pytest.skip("MPS present")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        ("float32", torch.float32),
        ("fp32", torch.float32),
        ("bfloat16", torch.bfloat16),
        ("BF16", torch.bfloat16),
        ("float16", torch.float16),
        ("half", torch.float16),
        (torch.bfloat16, torch.bfloat16),
    ],
)
def test_dtype_names_and_torch_dtypes(name: str | torch.dtype, dtype: torch.dtype) -> None:
    assert resolve_dtype(name, torch.device("cpu")) == dtype


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("float64", "unknown dtype 'float64'.*'bfloat16'"),
        (torch.int8, "not supported"),
        (3, "unknown"),
    ],
)
def test_bad_dtypes_list_allowed_values(value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_dtype(value, torch.device("cpu"))  # type: ignore[arg-type]


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", "cpu:0:1"])
def test_bad_device_strings_list_allowed_values(device: str) -> None:
    with pytest.raises(ValueError, match=r"unknown device.*'cuda:<index>'"):
        resolve_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:1")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
def test_mps_requested_without_mps_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_defaults() -> None:
    device = resolve_device(None)
    assert device.type == "cuda"
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert resolve_dtype(None, device) == expected
    with pytest.raises(ValueError, match="device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_score_result_is_frozen_and_checked() -> None:
    result = ScoreResult(
        image="a.png",
        score=5.0,
        std=1.0,
        probs={"excellent": 0.2, "good": 0.8},
        level="good",
        scale=(1.0, 10.0),
    )
    with pytest.raises(ValidationError):
        result.score = 3.0  # type: ignore[misc]
    assert list(result.probs) == ["excellent", "good"]
    with pytest.raises(ValidationError, match="not one of the level words"):
        ScoreResult(image="a", score=1, std=0, probs={"good": 1.0}, level="bad", scale=(1, 10))
    with pytest.raises(ValidationError, match="finite"):
        ScoreResult(image="a", score=float("nan"), std=0, probs={"g": 1.0}, level="g", scale=(0, 1))
    with pytest.raises(ValidationError, match="extra"):
        ScoreResult(image="a", score=1, std=0, probs={"g": 1.0}, level="g", scale=(0, 1), x=1)  # type: ignore[call-arg]
