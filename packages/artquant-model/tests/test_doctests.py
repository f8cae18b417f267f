"""The docstring examples of every public module of artquant_model run as doctests."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "artquant_model",
    "artquant_model.backbones.mplug_owl2.configuration_mplug_owl2",
    "artquant_model.loading",
    "artquant_model.backbones.mplug_owl2.modeling_mplug_owl2",
    "artquant_model.testing",
    "artquant_model._images",
    "artquant_model.levels",
    "artquant_model.backbones.mplug_owl2.processing_mplug_owl2",
    "artquant_model.scoring",
    "artquant_model.spec",
    "artquant_model.backbones",
    "artquant_model.backbones.hf_vlm.processing_hf_vlm",
    "artquant_model.backbones.hf_vlm.processing_tiles",
    "artquant_model.backbones.hf_vlm.families",
    "artquant_model.backbones.mplug_owl2.backbone",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
