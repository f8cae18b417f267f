"""The public surface: version, exports, docstrings and the doctest examples."""

from __future__ import annotations

import doctest
import importlib
from importlib.metadata import version

import pytest

import artquant_train

MODULES = [
    "artquant_train",
    "artquant_train.attributes",
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
