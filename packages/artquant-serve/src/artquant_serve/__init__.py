"""artquant_serve: ArtQuant as an HTTP service, with a Python client and a reward adapter.

Serve a model (the ``artquant serve`` command runs the same)::

    from artquant_serve import ServeConfig, serve

    serve(ServeConfig(model="artquant-apdd", port=8000))   # until SIGTERM / Ctrl+C

Call it::

    from artquant_serve import ArtQuantClient

    client = ArtQuantClient("http://127.0.0.1:8000", api_key=None)
    results = client.score(["a.jpg", "b.png"])           # list[ImageScore]
    results[0].score, results[0].level, results[0].probs

Use it as a reward in a diffusion fine-tuning loop::

    from artquant_serve import ArtQuantReward

    reward_fn = ArtQuantReward("http://127.0.0.1:8000")
    scores, info = reward_fn(images, prompts, metadata)  # numpy float32 scores

Requests are batched across clients by LitServe (``max_batch_size``, ``batch_timeout_ms``).
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from artquant_serve._client import ArtQuantClient, ServeError
from artquant_serve._config import API_KEY_ENV, ServeConfig
from artquant_serve._reward import ArtQuantReward
from artquant_serve._run import ServerStartError, serve
from artquant_serve._schemas import (
    AttributeOut,
    DescribeRequest,
    DescribeResponse,
    ErrorBody,
    ErrorDetail,
    ImageError,
    ImageIn,
    ImageScore,
    ModelInfo,
    ScoreRequest,
    ScoreResponse,
    WorkerStats,
)

try:
    __version__ = _version("artquant-serve")
except _PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "API_KEY_ENV",
    "ArtQuantClient",
    "ArtQuantReward",
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
    "ServeConfig",
    "ServeError",
    "ServerStartError",
    "WorkerStats",
    "__version__",
    "serve",
]
