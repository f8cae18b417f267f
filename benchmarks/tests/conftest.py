"""Make the benchmark scripts importable (they are scripts, not a package) and find ../shared."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1]
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The reference material beside the checkout (``ARTQUANT_SHARED`` overrides)."""
    root = Path(os.environ.get("ARTQUANT_SHARED") or BENCHMARKS.parent / ".." / "shared")
    if not root.is_dir():
        pytest.skip(f"../shared not found: {root} (set ARTQUANT_SHARED to its location)")
    return root.resolve()
