"""Shared fixtures: where ../shared lives, and a skip with a reason where it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    return Path(os.environ.get("LIBRA_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared data folder, read in place; tests needing it skip where it is absent."""
    path = _shared_dir()
    if not (path / "traces").is_dir():
        pytest.skip(f"needs the shared data folder {path} (real traces), absent in this clone")
    return path


@pytest.fixture(scope="session")
def shared_traces(shared_dir: Path) -> Path:
    return shared_dir / "traces"
