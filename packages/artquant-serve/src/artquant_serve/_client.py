"""``ArtQuantClient``: the Python client of ``artquant serve``.

Images go up as multipart files: paths are read here (on the client's machine), PIL images and
arrays are encoded losslessly as PNG. Light on purpose: no torch, no model.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
import numpy as np
from PIL import Image

from artquant_serve._schemas import ImageScore, ModelInfo, ScoreResponse

__all__ = ["ArtQuantClient", "ServeError", "encode_image", "split_images"]


class ServeError(RuntimeError):
    """The server answered with an error (or could not be reached).

    Attributes:
        status: HTTP status (0 when the server could not be reached).
        code: The error code of the JSON error body (e.g. ``unauthorized``).
        message: The server's message.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message


def _is_tensor(item: object) -> bool:
    return hasattr(item, "detach") and hasattr(item, "cpu")


def _float_to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if not np.isfinite(array).all():
        raise ValueError(f"{where} holds NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"{where} is a float image with values in [{low:.4g}, {high:.4g}]; float images "
            "must lie in [0, 1] (pass uint8 for 0-255)"
        )
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def _to_hwc(array: np.ndarray, where: str) -> np.ndarray:
    if array.ndim == 2:
        return array
    if array.ndim != 3:
        raise ValueError(f"{where} has shape {array.shape}; expected HxW, HxWxC or CxHxW")
    channels_first = array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4)
    hwc = np.moveaxis(array, 0, -1) if channels_first else array
    return hwc[..., 0] if hwc.shape[-1] == 1 else hwc


def encode_image(item: Any, index: int) -> tuple[str, bytes]:
    """``(name, encoded bytes)`` for one image to upload.

    Args:
        item: A path, encoded bytes, a PIL image, a uint8 array (``HxW``, ``HxWxC`` or
            ``CxHxW``), or a float array or torch tensor with values in [0, 1].
        index: Its position (names images that have no file name).

    Returns:
        The name the server reports it under and the bytes to send (PNG for pixels).

    Raises:
        TypeError: An unsupported kind.
        ValueError: A float image outside [0, 1], NaN, or a shape that is no image.
        FileNotFoundError: A path that does not exist.
    """
    if isinstance(item, str | os.PathLike):
        with open(item, "rb") as handle:  # the client's own file, on the client's machine
            return os.fspath(item), handle.read()
    if isinstance(item, bytes | bytearray | memoryview):
        return f"<bytes>#{index}", bytes(item)
    if isinstance(item, Image.Image):
        name = str(getattr(item, "filename", "") or f"<PIL.Image>#{index}")
        return name, _png(item)
    where = f"image #{index}"
    if _is_tensor(item):
        item = item.detach().cpu().float().numpy()
    if isinstance(item, np.ndarray):
        array = item
        if array.dtype != np.uint8:
            if not np.issubdtype(array.dtype, np.floating):
                raise TypeError(f"{where} is a {array.dtype} array; use uint8 or float in [0, 1]")
            array = _float_to_uint8(array.astype(np.float32), where)
        return f"<array>#{index}", _png(
            Image.fromarray(np.ascontiguousarray(_to_hwc(array, where)))
        )
    raise TypeError(
        f"{where} has type {type(item).__name__}; use a path, bytes, a PIL image, a uint8 array "
        "or a float array/tensor in [0, 1]"
    )


def _png(image: Image.Image) -> bytes:
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P", "I;16"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def split_images(images: Any) -> list[Any]:
    """A list of single images from one image, a list, or a 4-D batch (array or tensor)."""
    if isinstance(images, str | os.PathLike | bytes | bytearray | memoryview | Image.Image):
        return [images]
    if (isinstance(images, np.ndarray) or _is_tensor(images)) and images.ndim == 4:
        return list(images)
    if isinstance(images, np.ndarray) or _is_tensor(images):
        return [images]
    if isinstance(images, Iterable):
        return list(images)
    raise TypeError(f"images must be an image or a list of images; got {type(images).__name__}")


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        raise ServeError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        raise ServeError(response.status_code, "http_error", response.text[:500]) from None


class ArtQuantClient:
    """A client of ``artquant serve``.

    Args:
        url: The server, e.g. ``"http://127.0.0.1:8000"``.
        api_key: The server's API key, if it has one.
        timeout: Seconds to wait for an answer.

    Example:
        >>> with ArtQuantClient("http://127.0.0.1:8000") as client:  # doctest: +SKIP
        ...     best = max(client.score(["a.jpg", "b.jpg"]), key=lambda r: r.score or 0)
    """

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 300.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> ArtQuantClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ServeError(0, "unreachable", f"{self.url}{path}: {error}") from error
        _raise_for(response)
        return response

    def score_response(
        self,
        images: Any,
        *,
        attributes: Sequence[str] | None = None,
        zero_shot_attributes: bool = False,
    ) -> ScoreResponse:
        """The whole :class:`ScoreResponse` (model, scale, level words, results)."""
        files = [
            ("files", (name, data, "application/octet-stream"))
            for name, data in (encode_image(item, i) for i, item in enumerate(split_images(images)))
        ]
        form: dict[str, str] | None = None
        if attributes:
            form = {"attributes": ",".join(attributes)}
            if zero_shot_attributes:
                form["zero_shot_attributes"] = "true"
        response = self._call("POST", "/v1/score", files=files, data=form)
        return ScoreResponse.model_validate_json(response.content)

    def score(
        self,
        images: Any,
        *,
        attributes: Sequence[str] | None = None,
        zero_shot_attributes: bool = False,
    ) -> list[ImageScore]:
        """Score images in one request (the server batches it with other clients' requests).

        Args:
            images: One image or a list (see :func:`encode_image` for the kinds), or a 4-D
                batch array/tensor.
            attributes: Attribute ids or names to score too (``["all"]``: every attribute
                the model was trained on); each result's ``attributes`` holds them.
            zero_shot_attributes: Let the server ask attributes the model was not trained on
                with APDDv2's zero-shot questions.

        Returns:
            One :class:`ImageScore` per image, in order; an image the server could not read
            has ``error`` set and no score.

        Raises:
            ServeError: The request failed as a whole (401, 413, 415, 422, 503...).
        """
        return self.score_response(
            images, attributes=attributes, zero_shot_attributes=zero_shot_attributes
        ).results

    def describe(self, image: Any, *, max_new_tokens: int | None = None) -> str:
        """The hierarchical description of one image (greedy decoding on the server).

        Args:
            image: One image (see :func:`encode_image`).
            max_new_tokens: Most tokens to generate; None for the server's limit.
        """
        name, data = encode_image(image, 0)
        form = {} if max_new_tokens is None else {"max_new_tokens": str(max_new_tokens)}
        response = self._call(
            "POST",
            "/v1/describe",
            files=[("image", (name, data, "application/octet-stream"))],
            data=form,
        )
        return str(response.json()["description"])

    def models(self) -> ModelInfo:
        """What the server has loaded (name, scale, level words) and its limits."""
        return ModelInfo.model_validate_json(self._call("GET", "/v1/models").content)

    def stats(self) -> dict[str, Any]:
        """The batches the server formed so far."""
        return dict(self._call("GET", "/v1/stats").json())

    def ready(self) -> bool:
        """Whether every model worker is loaded (``/readyz``); False if unreachable."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False
