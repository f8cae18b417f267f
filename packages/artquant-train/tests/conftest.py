"""Shared fixtures: a tiny random base checkpoint and a small generated dataset."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_synthetic import make_dataset


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from artquant_model.testing import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "base", seed=0)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """24 training images (score + description samples each) and 8 validation images."""
    return make_dataset(tmp_path_factory.mktemp("data"), n_train=24, n_val=8, seed=0)


@pytest.fixture(autouse=True)
def _one_thread_and_fresh_accelerate_state() -> Any:
    """One intra-op thread (tiny tensors: threads only contend on a shared 2-core runner) and a
    clean accelerate singleton state for each in-process run."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    try:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    except ImportError:  # accelerate is a dependency; this only guards odd environments
        pass


@pytest.fixture(scope="session")
def qwen3_5_tokenizer_dir() -> Path:
    """The real Qwen3.5 tokenizer, built offline by ``tools/qwen3_5_tokenizer/build.py``
    (``$ARTQUANT_QWEN3_5_TOKENIZER`` or ``~/.cache/artquant/tokenizers/qwen3_5``)."""
    from artquant_model.testing import qwen3_5_tokenizer_dir, qwen3_5_tokenizer_missing

    if reason := qwen3_5_tokenizer_missing():
        pytest.skip(reason)
    return qwen3_5_tokenizer_dir()
