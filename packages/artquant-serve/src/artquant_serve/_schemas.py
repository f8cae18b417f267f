"""The HTTP API's types: requests, responses and errors (pydantic, shown in the OpenAPI docs).

Requests are validated in the HTTP process with a context holding the server's limits
(``{"max_images": N, "max_new_tokens": M}``); without a context (inside the worker, or in the
client) only the fixed rules apply.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Base64Bytes,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "AttributeOut",
    "DescribeRequest",
    "DescribeResponse",
    "ErrorBody",
    "ErrorDetail",
    "ImageError",
    "ImageIn",
    "ImageScore",
    "ModelInfo",
    "ScoreRequest",
    "ScoreResponse",
    "WorkerStats",
]

#: The error codes of :class:`ImageError` (per image) and :class:`ErrorDetail` (per request).
ErrorCode = Literal[
    "bad_request",
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "request_timeout",
    "payload_too_large",
    "unsupported_media_type",
    "invalid_request",
    "attributes_unsupported",
    "not_ready",
    "timeout",
    "internal_error",
    "unreadable_image",
    "too_many_pixels",
    "scoring_failed",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def _context_limit(info: ValidationInfo, key: str) -> int | None:
    context = info.context if isinstance(info.context, dict) else {}
    value = context.get(key)
    return value if isinstance(value, int) else None


class ImageIn(BaseModel):
    """One uploaded image: its bytes (base64 in JSON) and the name to report it under.

    The name is only echoed back; the server never opens a path.
    """

    model_config = _FROZEN

    name: str = Field(default="", max_length=512, description="shown in the result; not a path")
    data: Base64Bytes = Field(description="the encoded file (PNG, JPEG, WebP, GIF, BMP, TIFF)")

    @model_validator(mode="after")
    def _is_image(self) -> ImageIn:
        from artquant_serve._images import sniff_format

        if sniff_format(self.data) is None:
            raise PydanticCustomError(
                "unsupported_media_type",
                "{name} is not an image the server reads (PNG, JPEG, WebP, GIF, BMP or TIFF); "
                "its first bytes are {head}",
                {"name": repr(self.name or "the upload"), "head": repr(self.data[:8])},
            )
        return self


class ScoreRequest(BaseModel):
    """``POST /v1/score`` as JSON. (Multipart uploads are turned into this form.)"""

    model_config = _FROZEN

    images: list[ImageIn] = Field(min_length=1, description="the images to score, in order")
    attributes: list[str] | None = Field(
        default=None,
        description="attribute ids or names to score besides the total (`all`: every "
        "attribute the model was trained on); one the model lacks fails each image with "
        "invalid_request unless zero_shot_attributes",
    )
    zero_shot_attributes: bool = Field(
        default=False,
        description="ask attributes the model was not trained on with APDDv2's zero-shot "
        "questions instead of refusing them",
    )

    @field_validator("images")
    @classmethod
    def _not_too_many(cls, images: list[ImageIn], info: ValidationInfo) -> list[ImageIn]:
        limit = _context_limit(info, "max_images")
        if limit is not None and len(images) > limit:
            raise PydanticCustomError(
                "too_many_images",
                "{count} images in one request; the server takes at most {limit}",
                {"count": len(images), "limit": limit},
            )
        return images


class DescribeRequest(BaseModel):
    """``POST /v1/describe`` as JSON."""

    model_config = _FROZEN

    image: ImageIn
    max_new_tokens: int | None = Field(
        default=None, ge=1, description="most tokens to generate (default: the server's limit)"
    )

    @field_validator("max_new_tokens")
    @classmethod
    def _within_limit(cls, value: int | None, info: ValidationInfo) -> int | None:
        limit = _context_limit(info, "max_new_tokens")
        if value is not None and limit is not None and value > limit:
            raise PydanticCustomError(
                "too_many_tokens",
                "max_new_tokens {value} is more than the server allows ({limit})",
                {"value": value, "limit": limit},
            )
        return value


class ImageError(BaseModel):
    """Why one image has no score."""

    model_config = _FROZEN

    code: ErrorCode
    message: str


class AttributeOut(BaseModel):
    """One attribute's score of one image, on the model's scale and level words."""

    model_config = _FROZEN

    score: float = Field(description="expected level value, model scale")
    std: float = Field(description="spread of the level distribution")
    level: str = Field(description="the most probable level word")
    probs: dict[str, float] = Field(description="level word -> probability")


class ImageScore(BaseModel):
    """The result for one image: its score, or its error (then the score fields are null)."""

    model_config = _FROZEN

    image: str = Field(description="the name the image was uploaded under")
    score: float | None = Field(default=None, description="expected level value, model scale")
    std: float | None = Field(default=None, description="spread of the level distribution")
    level: str | None = Field(default=None, description="the most probable level word")
    probs: dict[str, float] | None = Field(default=None, description="level word -> probability")
    attributes: dict[str, AttributeOut] | None = Field(
        default=None, description="attribute id -> its score, when the request asked for some"
    )
    error: ImageError | None = None

    @property
    def ok(self) -> bool:
        """Whether the image was scored."""
        return self.error is None


class ScoreResponse(BaseModel):
    """``POST /v1/score``: one entry per uploaded image, in upload order."""

    model_config = _FROZEN

    model: str
    scale: tuple[float, float]
    level_words: list[str]
    results: list[ImageScore]


class DescribeResponse(BaseModel):
    """``POST /v1/describe``."""

    model_config = _FROZEN

    image: str
    description: str


class ModelInfo(BaseModel):
    """``GET /v1/models``: what is loaded and how the server is configured."""

    model_config = _FROZEN

    name: str
    scale: tuple[float, float]
    level_words: list[str]
    device: str
    dtype: str
    attributes: bool = Field(description="whether /v1/score takes `attributes`")
    describe: bool = Field(description="whether /v1/describe is served")
    max_batch_size: int
    batch_timeout_ms: float
    max_images_per_request: int
    max_upload_mb: float
    max_pixels: int
    workers: int
    version: str


class WorkerStats(BaseModel):
    """Batches one scoring worker formed (``GET /v1/stats``)."""

    model_config = _FROZEN

    worker: str
    batches: int = 0
    requests: int = 0
    images: int = 0
    #: requests in a batch -> how many batches had that many
    requests_per_batch: dict[int, int] = Field(default_factory=dict)

    @property
    def mean_requests_per_batch(self) -> float:
        """Requests scored together, on average."""
        return self.requests / self.batches if self.batches else 0.0


class ErrorDetail(BaseModel):
    """What went wrong with a request."""

    model_config = _FROZEN

    status: int
    code: ErrorCode
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"status", "code", "message", "details"}}``."""

    model_config = _FROZEN

    error: ErrorDetail
