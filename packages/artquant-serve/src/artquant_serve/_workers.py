"""The model workers: LitServe ``LitAPI`` classes that hold an ``ArtQuant`` scorer each.

LitServe starts every worker in its own process (one model copy each), gathers the requests
waiting in its queue into a batch (up to ``max_batch_size`` requests, waiting at most
``batch_timeout``) and calls :meth:`ScoreAPI.predict` with the whole batch. Only the SDK's
public API is used: ``ArtQuant.from_pretrained``, ``score``, ``describe``, ``level_words`` and
``scale``.

Each worker writes what it loaded and the batches it formed into ``registry``, a
``multiprocessing.Manager`` dict shared with the HTTP process (``/v1/models``, ``/readyz``,
``/v1/stats``).

No ``from __future__ import annotations`` here: LitServe reads the request and response types
off ``decode_request`` and ``encode_response`` to build the endpoint, and needs real classes.
"""

import inspect
import logging
import os
import time
from collections.abc import MutableMapping
from importlib.metadata import version
from typing import Any

import litserve as ls

from artquant_serve._config import ServeConfig
from artquant_serve._images import score_isolated
from artquant_serve._schemas import (
    AttributeOut,
    DescribeRequest,
    DescribeResponse,
    ImageError,
    ImageScore,
    ScoreRequest,
    ScoreResponse,
    WorkerStats,
)

__all__ = ["DescribeAPI", "ScoreAPI", "load_scorer", "supports_attributes"]

logger = logging.getLogger(__name__)


def load_scorer(config: ServeConfig, device: str) -> Any:
    """``ArtQuant.from_pretrained`` with the config's model options, on ``device``."""
    from artquant_sdk import ArtQuant

    return ArtQuant.from_pretrained(
        config.model,
        base=config.base,
        tokenizer=config.tokenizer,
        device=device,
        dtype=config.dtype,
        revision=config.revision,
        local_files_only=config.offline,
        levels=config.levels,
    )


def supports_attributes(scorer: Any) -> bool:
    """Whether this SDK's ``ArtQuant.score`` takes ``attributes`` (issue 14)."""
    return "attributes" in inspect.signature(scorer.score).parameters


def _configure_logging(config: ServeConfig) -> None:
    """Worker processes start fresh: give them the server's log level and format."""
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _share_cores(config: ServeConfig, device: str, workers: int) -> None:
    """On a CPU, split the cores among the workers instead of letting each take them all."""
    if not device.startswith("cpu") or workers <= 1:
        return
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def _to_image_score(name: str, outcome: Any) -> ImageScore:
    if isinstance(outcome, ImageError):
        return ImageScore(image=name, error=outcome)
    attributes = getattr(outcome, "attributes", None)
    return ImageScore(
        image=name,
        score=outcome.score,
        std=outcome.std,
        level=outcome.level,
        probs=dict(outcome.probs),
        attributes=(
            {
                key: AttributeOut(score=a.score, std=a.std, level=a.level, probs=dict(a.probs))
                for key, a in attributes.items()
            }
            if attributes
            else None
        ),
    )


class ScoreAPI(ls.LitAPI):
    """``POST /v1/score``: batches of requests scored together.

    ``max_batch_size`` counts requests (LitServe batches requests); a request may hold several
    images, and each forward pass holds at most ``max_batch_size`` images.
    """

    def __init__(self, config: ServeConfig, registry: MutableMapping[str, Any]) -> None:
        super().__init__(
            max_batch_size=config.max_batch_size,
            batch_timeout=config.batch_timeout_ms / 1000.0,
            api_path="/v1/score",
        )
        self.config = config
        self.registry = registry
        self.scorer: Any = None
        self.worker = ""
        self._stats = WorkerStats(worker="")

    def setup(self, device: str) -> None:
        """Load the model on ``device`` and announce it in the registry."""
        _configure_logging(self.config)
        _, devices = self.config.accelerator()
        count = len(devices) if isinstance(devices, list) else devices
        _share_cores(self.config, device, count * self.config.workers_per_device)
        started = time.monotonic()
        self.scorer = load_scorer(self.config, device)
        self.worker = f"score@{device}#{os.getpid()}"
        self._stats = WorkerStats(worker=self.worker)
        logger.info("%s: loaded %r in %.1f s", self.worker, self.scorer, time.monotonic() - started)
        self.registry[f"model:{self.worker}"] = {
            "name": str(getattr(self.scorer, "name", self.config.model)),
            "scale": list(self.scorer.scale),
            "level_words": list(self.scorer.level_words),
            "device": device,
            "dtype": str(getattr(self.scorer, "dtype", self.config.dtype)).removeprefix("torch."),
            "attributes": supports_attributes(self.scorer),
            "version": version("artquant-serve"),
        }
        self.registry[f"stats:{self.worker}"] = self._stats.model_dump()

    def decode_request(self, request: ScoreRequest) -> ScoreRequest:
        """The request as validated by the HTTP process."""
        return request

    def batch(self, inputs: list[ScoreRequest]) -> list[ScoreRequest]:
        """Requests stay whole; :meth:`predict` lays their images out."""
        return list(inputs)

    def predict(self, batch: Any) -> list[ScoreResponse]:
        """Score every image of every request in ``batch``; one response per request."""
        requests: list[ScoreRequest] = batch if isinstance(batch, list) else [batch]
        started = time.monotonic()
        # Requests asking for the same attributes are scored together.
        groups: dict[tuple[tuple[str, ...] | None, bool], list[int]] = {}
        for index, request in enumerate(requests):
            names = tuple(request.attributes) if request.attributes is not None else None
            groups.setdefault((names, request.zero_shot_attributes), []).append(index)
        outcomes: list[list[Any]] = [[] for _ in requests]
        for (attributes, zero_shot), members in groups.items():
            blobs = [image.data for i in members for image in requests[i].images]
            refused = self._refused(attributes, zero_shot)
            results = (
                [refused] * len(blobs)
                if refused is not None
                else score_isolated(
                    self._scoring(attributes, zero_shot), blobs, max_pixels=self.config.max_pixels
                )
            )
            position = 0
            for i in members:
                count = len(requests[i].images)
                outcomes[i] = results[position : position + count]
                position += count
        responses = [
            ScoreResponse(
                model=str(getattr(self.scorer, "name", self.config.model)),
                scale=self.scorer.scale,
                level_words=list(self.scorer.level_words),
                results=[
                    _to_image_score(image.name or f"#{k}", outcome)
                    for k, (image, outcome) in enumerate(
                        zip(request.images, outcomes[i], strict=True)
                    )
                ],
            )
            for i, request in enumerate(requests)
        ]
        self._record(requests, time.monotonic() - started)
        return responses

    def _refused(self, attributes: tuple[str, ...] | None, zero_shot: bool) -> ImageError | None:
        """Why the model cannot score these attributes (checked before any picture is read),
        or None."""
        if attributes is None:
            return None
        try:
            self.scorer.resolve_attributes(list(attributes), zero_shot=zero_shot)
        except ValueError as error:
            return ImageError(code="invalid_request", message=str(error))
        return None

    def _scoring(self, attributes: tuple[str, ...] | None, zero_shot: bool = False) -> Any:
        extra: dict[str, Any] = {}
        if attributes is not None:
            extra = {"attributes": list(attributes), "zero_shot_attributes": zero_shot}

        def score(images: list[bytes]) -> list[Any]:
            return list(
                self.scorer.score(
                    images, batch_size=self.config.max_batch_size, progress=False, **extra
                )
            )

        return score

    def _record(self, requests: list[ScoreRequest], seconds: float) -> None:
        images = sum(len(r.images) for r in requests)
        histogram = dict(self._stats.requests_per_batch)
        histogram[len(requests)] = histogram.get(len(requests), 0) + 1
        self._stats = WorkerStats(
            worker=self.worker,
            batches=self._stats.batches + 1,
            requests=self._stats.requests + len(requests),
            images=self._stats.images + images,
            requests_per_batch=histogram,
        )
        self.registry[f"stats:{self.worker}"] = self._stats.model_dump()
        logger.info(
            "%s: batch of %d request(s), %d image(s) in %.0f ms",
            self.worker,
            len(requests),
            images,
            1000 * seconds,
        )

    def unbatch(self, output: list[ScoreResponse]) -> list[ScoreResponse]:
        """One response per request, already in order."""
        return output

    def encode_response(self, output: ScoreResponse) -> ScoreResponse:
        """The response as it is (FastAPI serialises it)."""
        return output


class DescribeAPI(ls.LitAPI):
    """``POST /v1/describe``: one generation at a time, in its own worker."""

    def __init__(self, config: ServeConfig, registry: MutableMapping[str, Any]) -> None:
        super().__init__(max_batch_size=1, api_path="/v1/describe")
        self.config = config
        self.registry = registry
        self.scorer: Any = None

    def setup(self, device: str) -> None:
        """Load the model on ``device`` and announce the worker."""
        _configure_logging(self.config)
        self.scorer = load_scorer(self.config, device)
        self.registry[f"describe:{device}#{os.getpid()}"] = True

    def decode_request(self, request: DescribeRequest) -> DescribeRequest:
        """The request as validated by the HTTP process."""
        return request

    def predict(self, request: DescribeRequest) -> DescribeResponse:
        """Describe the one image (greedy decoding)."""
        from fastapi import HTTPException

        from artquant_serve._images import check_header, decodes

        name = request.image.name or "#0"
        # One request per call here (max_batch_size 1), so raising fails only this request.
        problem = check_header(request.image.data, self.config.max_pixels) or decodes(
            request.image.data
        )
        if problem is not None:
            raise HTTPException(422, detail=f"{name}: {problem.message}")
        tokens = request.max_new_tokens or self.config.max_new_tokens
        text = self.scorer.describe(request.image.data, max_new_tokens=tokens)
        return DescribeResponse(image=name, description=text)

    def encode_response(self, output: DescribeResponse) -> DescribeResponse:
        """The response as it is."""
        return output
