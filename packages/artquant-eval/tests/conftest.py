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


@pytest.fixture(scope="session")
def apddv2_test_csv() -> Path:
    path = shared_dir() / "data" / "apddv2" / "split_test.csv"
    if not path.is_file():
        pytest.skip(f"../shared not found: {path} is absent (set ARTQUANT_SHARED to point at it)")
    return path


@pytest.fixture(scope="session")
def apddv2_labels_csv() -> Path:
    """APDDv2's main label file (GB18030; total, ten attributes with empty cells)."""
    path = shared_dir() / "data" / "apddv2" / "APDDv2-10023.csv"
    if not path.is_file():
        pytest.skip(f"../shared not found: {path} is absent (set ARTQUANT_SHARED to point at it)")
    return path
