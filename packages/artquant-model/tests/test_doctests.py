"""The docstring examples of every public module of artquant_model run as doctests."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "artquant_model",
    "artquant_model.configuration_mplug_owl2",
    "artquant_model.loading",
    "artquant_model.modeling_mplug_owl2",
    "artquant_model.testing",
    "artquant_model._images",
    "artquant_model.levels",
    "artquant_model.processing_mplug_owl2",
    "artquant_model.scoring",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
