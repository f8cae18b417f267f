"""The public surface: version, exports, docstrings and the doctest examples."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import artquant_train

MODULES = [
    "artquant_train",
    "artquant_train.checkpointing",
    "artquant_train.cli",
    "artquant_train.config",
    "artquant_train.conversation",
    "artquant_train.data",
    "artquant_train.loop",
    "artquant_train.losses",
    "artquant_train.modeling",
    "artquant_train.plotting",
    "artquant_train.validation",
]


def test_version_comes_from_the_package_metadata() -> None:
    assert artquant_train.__version__ == version("artquant-train") == "0.1.0"


def test_every_export_exists_and_is_documented() -> None:
    assert artquant_train.__doc__
    assert "placeholder" not in artquant_train.__doc__
    for name in artquant_train.__all__:
        obj = getattr(artquant_train, name)
        if callable(obj):
            assert obj.__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("module", MODULES)
def test_doctest_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


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
        "import artquant_train\n"
        "print(artquant_train.__version__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0+unknown"
