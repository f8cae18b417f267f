"""The examples in the docstrings run (those not marked ``+SKIP``)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "artquant_data",
    "artquant_data._distribution",
    "artquant_data._jsonio",
    "artquant_data._records",
    "artquant_data._samples",
    "artquant_data._training_json",
    "artquant_data.datasets._generic",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    globs = {**vars(module), **vars(importlib.import_module("artquant_data"))}
    result = doctest.testmod(module, globs=globs, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
