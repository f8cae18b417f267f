"""The docstring examples of the root, configuration, loading, model and testing modules run."""

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
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
