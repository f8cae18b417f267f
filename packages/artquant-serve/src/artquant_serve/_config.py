"""The server's settings: one frozen model, filled from the command line or by hand."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from artquant_serve._images import DEFAULT_MAX_PIXELS

__all__ = ["API_KEY_ENV", "ServeConfig"]

#: The environment variable the API key is read from when ``--api-key`` is not given.
API_KEY_ENV = "ARTQUANT_API_KEY"

#: Hosts LitServe binds to (it refuses other addresses).
_BINDABLE = {"127.0.0.1", "0.0.0.0", "::"}


class ServeConfig(BaseModel):
    """Everything ``artquant serve`` needs: the model, the batching, the limits.

    Attributes:
        model: ModelZoo name, checkpoint folder or hub id (as ``ArtQuant.from_pretrained``).
        base: Base checkpoint of a LoRA release.
        tokenizer: Folder with the tokenizer when the checkpoint has none.
        device: ``auto``, ``cpu``, ``cuda`` (every visible GPU), ``cuda:N`` or ``mps``.
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        revision: Hub revision.
        levels: Level preset for a folder outside the ModelZoo.
        offline: Never download.
        host: Address to bind: ``127.0.0.1`` (default, this machine only), ``0.0.0.0`` or ``::``.
        port: TCP port (1024-65535).
        max_batch_size: Requests scored together at most (and images per forward pass).
        batch_timeout_ms: How long a worker waits for a batch to fill.
        workers_per_device: Model workers on each device.
        api_key: When set, every route but ``/healthz``, ``/readyz`` and the page's files needs
            it (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``).
        max_upload_mb: Largest request body in MB (10^6 bytes).
        max_images_per_request: Most images in one ``/v1/score`` request.
        max_pixels: Largest ``width * height`` of one image (decompression-bomb limit).
        max_new_tokens: Most tokens ``/v1/describe`` may generate.
        request_timeout_s: Longest a request may take, queueing included (then 503).
        drain_timeout_s: On SIGTERM, how long in-flight requests may still run.
        describe: Serve ``/v1/describe`` (a second worker per device, with its own copy of the
            model, so that long generations never hold up scoring).
        cors_origins: Origins allowed to call the API from a browser page of theirs (CORS);
            empty (default) means none.
        log_level: Log level of the server.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = "artquant-apdd"
    base: str | None = None
    tokenizer: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    revision: str | None = None
    levels: Literal["artquant", "qalign", "onealign"] | None = None
    offline: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1024, le=65535)
    max_batch_size: int = Field(default=8, ge=1)
    batch_timeout_ms: float = Field(default=10.0, ge=0.0)
    workers_per_device: int = Field(default=1, ge=1)
    api_key: str | None = Field(default=None, repr=False)
    max_upload_mb: float = Field(default=50.0, gt=0.0)
    max_images_per_request: int = Field(default=128, ge=1)
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)
    max_new_tokens: int = Field(default=512, ge=1)
    request_timeout_s: float = Field(default=120.0, gt=0.0)
    drain_timeout_s: float = Field(default=30.0, gt=0.0)
    describe: bool = True
    cors_origins: tuple[str, ...] = ()
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("host")
    @classmethod
    def _bindable(cls, host: str) -> str:
        host = {"localhost": "127.0.0.1", "[::]": "::"}.get(host, host)
        if host not in _BINDABLE:
            raise ValueError(
                f"host {host!r} cannot be bound; use 127.0.0.1 (this machine only), 0.0.0.0 "
                "(every IPv4 interface) or :: (every IPv6 interface)"
            )
        return host

    @field_validator("api_key")
    @classmethod
    def _usable_key(cls, key: str | None) -> str | None:
        if key is not None and (len(key) < 8 or not key.isprintable() or key.strip() != key):
            raise ValueError(
                "the API key must be at least 8 printable characters without surrounding spaces"
            )
        return key

    @property
    def public(self) -> bool:
        """Whether the server listens beyond this machine."""
        return not ipaddress.ip_address(self.host).is_loopback

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return int(self.max_upload_mb * 1_000_000)

    def accelerator(self) -> tuple[str, int | list[int]]:
        """LitServe's ``(accelerator, devices)`` for :attr:`device`.

        Raises:
            ValueError: ``device`` is not one of the accepted forms.
        """
        device = self.device.strip().lower()
        if device == "auto":
            import torch

            if torch.cuda.is_available():
                return "cuda", torch.cuda.device_count()
            if torch.backends.mps.is_available():
                return "mps", 1
            return "cpu", 1
        if device in {"cpu", "mps"}:
            return device, 1
        if device == "cuda":
            import torch

            count = torch.cuda.device_count()
            if count == 0:
                raise ValueError("device 'cuda' was asked for but no CUDA device is visible")
            return "cuda", count
        if device.startswith("cuda:") and device[5:].isdigit():
            return "cuda", [int(device[5:])]
        raise ValueError(
            f"device {self.device!r} is not one of auto, cpu, cuda (every GPU), cuda:N, mps"
        )
