"""Shared fixtures: the reference material in ../shared and an isolated hub cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


def shared_dir() -> Path:
    """``$ARTQUANT_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("ARTQUANT_SHARED")
    return Path(env) if env else (REPO_ROOT / ".." / "shared").resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    """The reference folder; skips when absent (a fresh clone has none)."""
    path = shared_dir()
    if not path.is_dir():
        pytest.skip(f"../shared not found at {path}: reference fixtures unavailable")
    return path


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy 2-core runner two OpenMP threads
    per process made them up to 100x slower (measured); subprocesses get OMP_NUM_THREADS=1.
    The previous count is restored so other packages' tests in the same session are unaffected.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _isolated_hub(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test sees an empty hub cache, offline mode, and no ModelZoo override.

    No test may reach the network; tests that exercise a download replace
    ``huggingface_hub.snapshot_download`` themselves.
    """
    import huggingface_hub.constants as constants

    cache = tmp_path_factory.mktemp("hf-cache")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("ARTQUANT_MODELZOO", raising=False)
    return cache
