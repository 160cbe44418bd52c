"""Shared fixtures.

`../shared/` (reference fixtures and synthetic samples) sits beside the checkout in every
development session and in CI, but not on a user's machine: tests that need it fail loudly
under CI (CI=true) when it is missing, and skip with a clear reason elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("SAPIENS_SHARED", REPO_ROOT.parent / "shared"))


def _require(path: Path) -> Path:
    if path.exists():
        return path
    reason = f"{path} is missing (the shared reference data sits beside the checkout)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """../shared/reference: checkpoint layouts, tables, parity fixtures."""
    return _require(SHARED_DIR / "reference")


@pytest.fixture(scope="session")
def shared_samples() -> Path:
    """../shared/samples: three synthetic people with exact ground truth."""
    return _require(SHARED_DIR / "samples")
