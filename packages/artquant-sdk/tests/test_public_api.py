"""The curated public surface: a change to it must be deliberate (and noted in the changelog)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import artquant_sdk

EXPECTED = [
    "IMAGE_EXTENSIONS",
    "ArtQuant",
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


def test_version_without_installed_metadata_is_a_placeholder() -> None:
    """Imported straight from the source tree (as benchmarks/gpu.sh does on a machine without
    uv or pip), the package must still import and say its version is unknown."""
    src = Path(__file__).resolve().parents[1] / "src"
    code = (
        "import importlib.metadata as m, sys\n"
        "found = m.version\n"
        "def missing(name):\n"
        "    if name.startswith('artquant'):\n"
        "        raise m.PackageNotFoundError(name)\n"
        "    return found(name)\n"
        "m.version = missing\n"
        f"sys.path.insert(0, {str(src)!r})\n"
        "import artquant_sdk\n"
        "print(artquant_sdk.__version__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0+unknown"
