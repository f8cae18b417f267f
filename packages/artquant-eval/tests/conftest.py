"""Shared fixtures: the reference material in ``<repo>/../shared`` (or ``$ARTQUANT_SHARED``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_dir() -> Path:
    """Where the reference material lives; it may not exist (a user's fresh clone)."""
    override = os.environ.get("ARTQUANT_SHARED")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / ".." / "shared"


def _apddv2_file(name: str) -> Path:
    path = shared_dir() / "data" / "apddv2" / name
    if not path.is_file():
        pytest.skip(f"../shared not found: {path} is absent (set ARTQUANT_SHARED to point at it)")
    return path


@pytest.fixture(scope="session")
def apddv2_test_csv() -> Path:
    return _apddv2_file("split_test.csv")


@pytest.fixture(scope="session")
def apddv2_labels_csv() -> Path:
    """APDDv2's main label file (GB18030; total, ten attributes with empty cells)."""
    return _apddv2_file("APDDv2-10023.csv")
