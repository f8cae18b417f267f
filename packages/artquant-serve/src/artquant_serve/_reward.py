"""A reward function for diffusion fine-tuning loops, scored by a running ``artquant serve``.

The shape is ddpo-pytorch's and Flow-GRPO's: ``reward_fn(images, prompts, metadata) ->
(scores, info)``. ArtQuant judges the picture alone, so prompts and metadata are accepted and
ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from artquant_serve._client import ArtQuantClient, split_images

__all__ = ["ArtQuantReward"]


class ArtQuantReward:
    """``(images, prompts, metadata) -> (scores, info)`` backed by an ArtQuant server.

    Args:
        client: An :class:`ArtQuantClient` or the server's URL.
        api_key: The key, when ``client`` is a URL.
        normalize: Map scores from the model's scale to [0, 1] (ArtQuant: ``(s - 1) / 9``).
        chunk_size: Images per request; chunks go up concurrently so the server batches them.
        max_concurrency: Requests in flight at once.

    Example:
        >>> reward_fn = ArtQuantReward("http://127.0.0.1:8000")  # doctest: +SKIP
        >>> images = torch.rand(4, 3, 512, 512)  # float in [0, 1], NCHW  # doctest: +SKIP
        >>> scores, info = reward_fn(images, ["a cat"] * 4, [{}] * 4)  # doctest: +SKIP
        >>> scores.shape, info["scale"]  # doctest: +SKIP
        ((4,), (1.0, 10.0))
    """

    def __init__(
        self,
        client: ArtQuantClient | str,
        *,
        api_key: str | None = None,
        normalize: bool = False,
        chunk_size: int = 8,
        max_concurrency: int = 8,
    ) -> None:
        if chunk_size < 1 or max_concurrency < 1:
            raise ValueError(
                f"chunk_size ({chunk_size}) and max_concurrency ({max_concurrency}) must be "
                "at least 1"
            )
        self.client = (
            client
            if isinstance(client, ArtQuantClient)
            else ArtQuantClient(client, api_key=api_key)
        )
        self.normalize = normalize
        self.chunk_size = chunk_size
        self.max_concurrency = max_concurrency

    def __call__(
        self,
        images: Any,
        prompts: Sequence[str] | None = None,
        metadata: Sequence[Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Score a batch of generated images.

        Args:
            images: PIL images, uint8 arrays (``HxWxC``), or float arrays/tensors in [0, 1]
                (``NCHW``/``NHWC`` batches or lists of ``CHW``/``HWC``).
            prompts: Ignored (ArtQuant judges the picture alone); checked for length.
            metadata: Ignored; checked for length.

        Returns:
            ``scores``: float32 array, one per image (NaN where the server could not read one);
            ``info``: ``std`` (float32 array), ``level`` (list), ``probs`` (float32
            ``[N, levels]``), ``level_words``, ``scale`` (the raw scale, also when normalized)
            and ``errors`` (``{index: message}``).

        Raises:
            ValueError: ``prompts``/``metadata`` of another length than ``images``, or a
                float image outside [0, 1].
            ServeError: The server refused a request or could not be reached.
        """
        items = split_images(images)
        for label, values in (("prompts", prompts), ("metadata", metadata)):
            if values is not None and len(values) != len(items):
                raise ValueError(f"{len(items)} images but {len(values)} {label}")
        chunks = [items[i : i + self.chunk_size] for i in range(0, len(items), self.chunk_size)]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, max(1, len(chunks)))) as pool:
            responses = list(pool.map(self.client.score_response, chunks))
        if not responses:
            return np.zeros(0, np.float32), {"errors": {}}
        words = responses[0].level_words
        low, high = responses[0].scale
        results = [r for response in responses for r in response.results]
        nan = float("nan")
        scores = np.array([nan if r.score is None else r.score for r in results], np.float64)
        if self.normalize:
            scores = (scores - low) / (high - low)
        info = {
            "std": np.array([nan if r.std is None else r.std for r in results], np.float32),
            "level": [r.level for r in results],
            "probs": np.array(
                [[(r.probs or {}).get(w, nan) for w in words] for r in results], np.float32
            ).reshape(len(results), len(words)),
            "level_words": list(words),
            "scale": (low, high),
            "errors": {i: r.error.message for i, r in enumerate(results) if r.error is not None},
        }
        return scores.astype(np.float32), info
