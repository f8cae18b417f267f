"""The curated public surface: a change to it must be deliberate (and noted in the changelog)."""

from __future__ import annotations

import subprocess
import sys

import artquant_sdk

EXPECTED = [
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


def test_public_names() -> None:
    assert sorted(artquant_sdk.__all__) == sorted(EXPECTED)
    for name in EXPECTED:
        assert hasattr(artquant_sdk, name), name
    assert artquant_sdk.__version__ == "0.1.0"
    assert artquant_sdk.__doc__
    assert "ArtQuant.from_pretrained" in artquant_sdk.__doc__


def test_importing_the_sdk_does_not_import_the_model_stack() -> None:
    # `artquant models` and `artquant --help` must not pay for transformers
    code = "import sys, artquant_sdk.cli; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
