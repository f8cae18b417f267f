"""The examples in the docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "artquant_sdk._api",
    "artquant_sdk._devices",
    "artquant_sdk._files",
    "artquant_sdk._inputs",
    "artquant_sdk._output",
    "artquant_sdk._sharding",
    "artquant_sdk._types",
    "artquant_sdk._zoo",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0
