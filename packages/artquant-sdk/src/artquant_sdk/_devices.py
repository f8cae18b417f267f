"""Choosing the device and the compute dtype.

Defaults: the device is ``cuda`` when available, else ``mps``, else ``cpu``. The dtype is
bfloat16 on CUDA (float16 on GPUs without bfloat16 support) and float32 on CPU and MPS, where
float32 reproduces the original code's float32 references within 1e-5.
"""

from __future__ import annotations

import re

import torch

__all__ = ["default_dtype", "resolve_device", "resolve_dtype"]

_DEVICE = re.compile(r"^(cpu|mps|cuda)(:\d+)?$")
_ALLOWED_DEVICES = "'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn a device request into an available ``torch.device``.

    Args:
        device: None or ``"auto"`` (cuda, else mps, else cpu), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``, ``"mps"``, or a ``torch.device``.

    Returns:
        The device.

    Raises:
        ValueError: Unknown device string (the message lists the allowed ones), or the requested
            backend is not available on this machine.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if isinstance(device, torch.device):
        text = str(device)
    elif isinstance(device, str):
        text = device.strip().lower()
    else:
        raise ValueError(f"device must be a string or torch.device; got {type(device).__name__}")
    match = _DEVICE.match(text)
    if match is None:
        raise ValueError(f"unknown device {device!r}; use {_ALLOWED_DEVICES}")
    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here")
        if index is not None and int(index[1:]) >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible"
            )
    if kind == "mps" and not _mps_available():
        raise ValueError(f"device {device!r} requested but MPS is not available here")
    if kind == "mps" and index is not None:
        raise ValueError(f"device {device!r}: MPS has no device index; use 'mps'")
    return torch.device(text)


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on CUDA (float16 where bfloat16 is unsupported), float32 elsewhere."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Turn a dtype request into a floating ``torch.dtype``.

    Args:
        dtype: None or ``"auto"`` (see :func:`default_dtype`), a name of
            ``artquant_model.DTYPE_NAMES`` (``"float32"``/``"fp32"``, ``"bfloat16"``/``"bf16"``,
            ``"float16"``/``"fp16"``/``"half"``), or ``torch.float32`` / ``torch.bfloat16`` /
            ``torch.float16``.
        device: The device the model will run on.

    Returns:
        The compute dtype.

    Raises:
        ValueError: Unknown name or unsupported dtype; the message lists the allowed ones.

    Example:
        >>> resolve_dtype("bf16", torch.device("cpu"))
        torch.bfloat16
    """
    # Imported here: artquant_model pulls in transformers, which `artquant models` never needs.
    from artquant_model import parse_dtype

    return parse_dtype("auto" if dtype is None else dtype, auto=default_dtype(device))
