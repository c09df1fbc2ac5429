"""Shared fixtures: the real data folder that sits beside the repository (``../shared/data``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MASKTOK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SHARED_SPECS = SHARED_DATA.parent / "specs"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with a clear message when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder not found at {SHARED_DATA} (set MASKTOK_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_specs() -> Path:
    """``../shared/specs``: the official checkpoints' key lists."""
    if not SHARED_SPECS.is_dir():
        pytest.skip(f"checkpoint spec folder not found at {SHARED_SPECS}")
    return SHARED_SPECS
