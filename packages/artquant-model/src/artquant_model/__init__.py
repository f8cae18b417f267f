"""artquant_model: mPLUG-Owl2 (the ArtQuant / Q-Align / DeQA-Score backbone) on transformers 5.

Native transformers classes for the model (no remote code, nothing patched), loaders for the
released checkpoint formats, and the tiny random models of :mod:`artquant_model.testing`.

Example:
    >>> import torch
    >>> from artquant_model.testing import tiny_model
    >>> model = tiny_model()
    >>> out = model(input_ids=torch.tensor([[1, 5, -200, 7]]), images=torch.zeros(1, 3, 28, 28))
    >>> tuple(out.logits.shape)  # 3 text tokens + 9 image tokens
    (1, 12, 512)
"""

from importlib.metadata import version as _version

from artquant_model.configuration_mplug_owl2 import (
    MPLUGOwl2AbstractorConfig,
    MPLUGOwl2Config,
    MPLUGOwl2VisionConfig,
)
from artquant_model.modeling_mplug_owl2 import (
    MPLUGOwl2ForCausalLM,
    MPLUGOwl2Model,
    MPLUGOwl2PreTrainedModel,
    MultimodalInputs,
)

__version__ = _version("artquant-model")

__all__ = [
    "MPLUGOwl2AbstractorConfig",
    "MPLUGOwl2Config",
    "MPLUGOwl2ForCausalLM",
    "MPLUGOwl2Model",
    "MPLUGOwl2PreTrainedModel",
    "MPLUGOwl2VisionConfig",
    "MultimodalInputs",
    "__version__",
]
