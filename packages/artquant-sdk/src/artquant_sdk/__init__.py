"""artquant_sdk: score and describe artworks with ArtQuant-family models, in Python and the shell.

One class does the work::

    from artquant_sdk import ArtQuant

    scorer = ArtQuant.from_pretrained("artquant-apdd")       # a ModelZoo name, folder or hub id
    results = scorer.score(["a.jpg", "b.png"], batch_size=8)  # list[ScoreResult]
    results[0].score, results[0].std, results[0].probs, results[0].level, results[0].scale
    scorer.score("a.jpg", attributes="all")[0].attributes["color"].score  # trained attributes
    text = scorer.describe("a.jpg")                           # perception, cognition, emotion

Scores are on the model's own scale, named in each result: 1–10 for ArtQuant, 1–5 for OneAlign,
0–1 for the Q-Align scorer prompt. The ``artquant`` command (``artquant_sdk.cli``) scores folders
robustly into CSV/JSONL; ``artquant models`` lists the ModelZoo (:func:`list_models`).
For collections that need a cluster, :func:`artquant_sdk.ray.score_dataset` (the ``[ray]`` extra;
``artquant score --engine ray``) runs the same scoring as a Ray Data pipeline into Parquet.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from artquant_sdk._api import ArtQuant, attribute_key, level_preset
from artquant_sdk._devices import resolve_device, resolve_dtype
from artquant_sdk._errors import ManifestError, ModelNotFoundError, ModelUnavailableError
from artquant_sdk._files import IMAGE_EXTENSIONS, expand_paths
from artquant_sdk._inputs import ImageInput, ImagesInput
from artquant_sdk._types import AttributeScore, ScoreResult
from artquant_sdk._zoo import (
    Manifest,
    ModelCard,
    ReportedResult,
    ResolvedWeights,
    get_model_card,
    list_models,
    load_manifest,
    manifest_path,
    modelzoo_dir,
    resolve_weights,
)

try:
    __version__ = _version("artquant-sdk")
except _PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArtQuant",
    "AttributeScore",
    "ImageInput",
    "ImagesInput",
    "Manifest",
    "ManifestError",
    "ModelCard",
    "ModelNotFoundError",
    "ModelUnavailableError",
    "ReportedResult",
    "ResolvedWeights",
    "ScoreResult",
    "__version__",
    "attribute_key",
    "expand_paths",
    "get_model_card",
    "level_preset",
    "list_models",
    "load_manifest",
    "manifest_path",
    "modelzoo_dir",
    "resolve_device",
    "resolve_dtype",
    "resolve_weights",
]
