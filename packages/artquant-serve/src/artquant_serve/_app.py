"""The HTTP side: LitServe's FastAPI app with ArtQuant's gate, routes, page and error format.

Request flow::

    client -> uvicorn -> _Gate (key, size, type, parse + validate, timeout)
                      -> LitServe endpoint -> queue -> model worker (batched) -> response

The gate runs in the HTTP process, so a bad request is refused there and never reaches a batch
(an error raised inside a LitServe batch fails every request of that batch). Multipart uploads
are turned into the JSON form, so the worker sees one request type.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
from collections.abc import Mapping, MutableMapping
from importlib.resources import files
from typing import Any

import litserve as ls
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from artquant_serve._config import ServeConfig
from artquant_serve._schemas import (
    DescribeRequest,
    ErrorBody,
    ErrorDetail,
    ModelInfo,
    ScoreRequest,
    WorkerStats,
)
from artquant_serve._workers import DescribeAPI, ScoreAPI

__all__ = ["build_server", "error_response"]

logger = logging.getLogger(__name__)

#: Routes anyone may call, key or not: probes, the page's static files and the API docs.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/", "/docs", "/openapi.json", "/favicon.ico"})
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "not_ready",
    504: "timeout",
}
#: Validation error types that are not a 422.
_TYPE_STATUS = {"unsupported_media_type": 415, "too_many_images": 413}
_PAGE_HEADERS = {
    # The page loads only its own files; thumbnails are blob: URLs of the user's own files.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def error_response(
    status: int, message: str, *, code: str | None = None, details: list[Any] | None = None
) -> JSONResponse:
    """The JSON error every route answers with: ``{"error": {status, code, message, details}}``.

    Args:
        status: HTTP status.
        message: What went wrong, naming the value and what is allowed.
        code: Machine-readable code; default from the status.
        details: Per-field problems (validation errors).
    """
    body = ErrorBody(
        error=ErrorDetail(
            status=status,
            code=code or _STATUS_CODES.get(status, "internal_error"),  # type: ignore[arg-type]
            message=message,
            details=details,
        )
    )
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _validation_response(errors: list[Any]) -> JSONResponse:
    """422 for a malformed request, 415 for a non-image, 413 for too many images."""
    details = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "type": error.get("type"),
            "msg": error.get("msg"),
        }
        for error in errors
    ]
    status = next((_TYPE_STATUS[d["type"]] for d in details if d["type"] in _TYPE_STATUS), 422)
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"]) or "body"
    return error_response(status, f"{where}: {first['msg']}", details=details)


class _Gate:
    """Pure ASGI middleware: authentication, limits, parsing and the request timeout."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: ServeConfig,
        registry: Mapping[str, Any],
    ) -> None:
        self.app = app
        self.config = config
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if self.config.api_key and not self._public(path) and not self._authorized(scope):
            await error_response(
                401,
                "missing or wrong API key; send it as 'Authorization: Bearer KEY' or "
                "'X-API-Key: KEY'",
            )(scope, receive, send)
            return
        if scope["method"] == "POST" and path in ("/v1/score", "/v1/describe"):
            await self._job(scope, receive, send, path)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _public(path: str) -> bool:
        return path in PUBLIC_PATHS or path.startswith("/static/")

    def _authorized(self, scope: Scope) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-api-key")
        bearer = headers.get("authorization", "")
        if given is None and bearer[:7].lower() == "bearer ":
            given = bearer[7:].strip()
        expected = self.config.api_key or ""
        return given is not None and hmac.compare_digest(given.encode(), expected.encode())

    async def _job(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = self.config.max_upload_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(int(declared))(scope, receive, send)
            return
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ("application/json", "multipart/form-data"):
            await error_response(
                415,
                f"content type {media or 'none'!r} is not accepted; send multipart/form-data "
                "files or application/json with base64 images",
            )(scope, receive, send)
            return
        try:
            body = await asyncio.wait_for(
                self._read_body(receive, limit), timeout=self.config.request_timeout_s
            )
        except _TooLarge as error:
            await self._too_large(error.size)(scope, receive, send)
            return
        except TimeoutError:
            await error_response(
                408, f"the request body did not arrive within {self.config.request_timeout_s} s"
            )(scope, receive, send)
            return
        model = ScoreRequest if path == "/v1/score" else DescribeRequest
        try:
            job = await self._parse(scope, body, media, model)
        except ValidationError as error:
            await _validation_response(list(error.errors()))(scope, receive, send)
            return
        except _BadForm as error:
            await error_response(400, str(error))(scope, receive, send)
            return
        if (
            isinstance(job, ScoreRequest)
            and job.attributes is not None
            and not any(v.get("attributes") for v in self._models())
        ):
            await error_response(
                422,
                f"attributes {job.attributes} were asked for, but this server's artquant-sdk "
                "scores no attributes yet (ArtQuant.score has no 'attributes' parameter); "
                "leave 'attributes' out",
                code="attributes_unsupported",
            )(scope, receive, send)
            return
        if media == "application/json":
            forward = body
        else:
            forward = (await asyncio.to_thread(job.model_dump_json)).encode()
        await self._forward(scope, send, forward)

    def _models(self) -> list[dict[str, Any]]:
        return [v for k, v in dict(self.registry).items() if k.startswith("model:")]

    def _too_large(self, size: int) -> JSONResponse:
        return error_response(
            413,
            f"the request body has {size} bytes or more; the server takes at most "
            f"{self.config.max_upload_bytes} (--max-upload-mb {self.config.max_upload_mb:g})",
        )

    @staticmethod
    async def _read_body(receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise TimeoutError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge(size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _parse(self, scope: Scope, body: bytes, media: str, model: type[BaseModel]) -> Any:
        context = {
            "max_images": self.config.max_images_per_request,
            "max_new_tokens": self.config.max_new_tokens,
        }
        # Decoding megabytes of base64 would hold up every other connection: off the loop.
        if media == "application/json":
            return await asyncio.to_thread(model.model_validate_json, body, context=context)
        form = await self._form(scope, body, model)
        return await asyncio.to_thread(model.model_validate, form, context=context)

    async def _form(self, scope: Scope, body: bytes, model: type[BaseModel]) -> dict[str, Any]:
        """A multipart form as the JSON request it stands for."""
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        request = Request(scope, replay)
        try:
            form = await request.form(
                max_files=self.config.max_images_per_request + 1, max_fields=16
            )
        except (MultiPartException, StarletteHTTPException) as error:
            raise _BadForm(f"the multipart body cannot be read: {_detail(error)}") from error
        images: list[dict[str, Any]] = []
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                fields[key] = value
                continue
            data = await value.read()
            images.append({"name": value.filename or "", "data": base64.b64encode(data)})
        if model is DescribeRequest:
            out: dict[str, Any] = {"image": images[0] if len(images) == 1 else images}
            if "max_new_tokens" in fields:
                out["max_new_tokens"] = fields.pop("max_new_tokens")
        else:
            out = {"images": images}
            if "attributes" in fields:
                names = [a.strip() for a in fields.pop("attributes").split(",")]
                out["attributes"] = [a for a in names if a]
        if fields:
            out.update(fields)  # unknown fields are named by the model's extra="forbid"
        return out

    async def _forward(self, scope: Scope, send: Send, body: bytes) -> None:
        headers = [
            (k, v)
            for k, v in scope["headers"]
            if k.lower() not in (b"content-type", b"content-length")
        ]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        inner = dict(scope, headers=headers)
        sent = False
        started = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                # The body is delivered; from here on only a disconnect could come.
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(
                self.app(inner, receive, tracked_send), timeout=self.config.request_timeout_s
            )
        except TimeoutError:
            if started:
                raise
            await error_response(
                503,
                f"the request was not answered within {self.config.request_timeout_s} s "
                "(the server is busy); retry later",
                code="timeout",
            )(scope, _never, send)


async def _never() -> Message:
    return {"type": "http.disconnect"}


def _detail(error: Exception) -> str:
    return str(getattr(error, "detail", None) or getattr(error, "message", None) or error)


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class _BadForm(Exception):
    pass


def _static_dir() -> str:
    return str(files("artquant_serve") / "static")


def _install_routes(app: FastAPI, config: ServeConfig, registry: Mapping[str, Any]) -> None:
    devices = _device_count(config)
    wanted = devices * (config.workers_per_device + (1 if config.describe else 0))

    def models() -> list[dict[str, Any]]:
        return [v for k, v in dict(registry).items() if k.startswith("model:")]

    # LitServe answers "/" with a plain text line; the page takes its place.
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/"]

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(f"{_static_dir()}/index.html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=_static_dir()), name="static")

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """The process answers (liveness)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], responses={503: {"model": ErrorBody}})
    async def readyz() -> Any:
        """Every model worker has loaded its model (readiness)."""
        loaded = len(models())
        described = sum(1 for k in dict(registry) if k.startswith("describe:"))
        if loaded + described < wanted:
            return error_response(
                503, f"{loaded + described} of {wanted} model workers are ready", code="not_ready"
            )
        return {"status": "ready", "workers": wanted}

    @app.get("/v1/models", tags=["api"], responses={503: {"model": ErrorBody}})
    async def v1_models() -> Any:
        """The loaded model: name, scale, level words, device, and the server's limits."""
        loaded = models()
        if not loaded:
            return error_response(503, "no model is loaded yet", code="not_ready")
        first = loaded[0]
        return ModelInfo(
            **first,
            describe=config.describe,
            max_batch_size=config.max_batch_size,
            batch_timeout_ms=config.batch_timeout_ms,
            max_images_per_request=config.max_images_per_request,
            max_upload_mb=config.max_upload_mb,
            max_pixels=config.max_pixels,
            workers=len(loaded),
        )

    @app.get("/v1/stats", tags=["api"])
    async def v1_stats() -> dict[str, Any]:
        """Batches the scoring workers formed: requests and images per batch."""
        workers = [WorkerStats(**v) for k, v in dict(registry).items() if k.startswith("stats:")]
        batches = sum(w.batches for w in workers)
        requests = sum(w.requests for w in workers)
        return {
            "workers": [w.model_dump() for w in workers],
            "batches": batches,
            "requests": requests,
            "images": sum(w.images for w in workers),
            "mean_requests_per_batch": requests / batches if batches else 0.0,
        }


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, error: Exception) -> JSONResponse:
        status = getattr(error, "status_code", 500)
        message = _detail(error)
        if status == 504:  # LitServe: waited in the queue past the request timeout
            return error_response(503, f"the server is busy: {message}", code="timeout")
        if status >= 500:
            logger.error("request failed: %s", message)
        return error_response(status, message)

    async def invalid(request: Request, error: Exception) -> JSONResponse:
        return _validation_response(list(getattr(error, "errors", list)()))

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return error_response(500, f"internal error: {type(error).__name__}")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, unexpected)


def _device_count(config: ServeConfig) -> int:
    _, devices = config.accelerator()
    return len(devices) if isinstance(devices, list) else devices


def build_server(config: ServeConfig, registry: MutableMapping[str, Any]) -> ls.LitServer:
    """The LitServer for ``config``: the workers, the gate, the routes and the page.

    Args:
        config: The settings.
        registry: A ``multiprocessing.Manager().dict()`` the workers report into.

    Returns:
        The server; ``server.run(...)`` starts it (see :func:`artquant_serve.serve`).
    """
    accelerator, devices = config.accelerator()
    apis: list[ls.LitAPI] = [ScoreAPI(config, registry)]
    # scoring gets --workers-per-device workers per device; describing one
    workers = {"/v1/score": config.workers_per_device}
    if config.describe:
        apis.append(DescribeAPI(config, registry))
        workers["/v1/describe"] = 1
    middlewares: list[Any] = [(_Gate, {"config": config, "registry": registry})]
    if config.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        middlewares.append(
            (
                CORSMiddleware,
                {
                    "allow_origins": list(config.cors_origins),
                    "allow_methods": ["GET", "POST"],
                    "allow_headers": ["Authorization", "X-API-Key", "Content-Type"],
                },
            )
        )
    server = ls.LitServer(
        apis,
        accelerator=accelerator,
        devices=devices,
        workers_per_device=workers,
        timeout=config.request_timeout_s,
        middlewares=middlewares,
    )
    server.app.title = "ArtQuant"
    server.app.description = "Aesthetic scores of artworks (ArtQuant-family models)."
    _install_routes(server.app, config, registry)
    _install_error_handlers(server.app)
    return server
