"""Where the engine finds its bundled assets and its user data."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = Path(os.environ.get("SAPIENS_ASSETS", REPO_ROOT / "assets"))


def asset(*parts: str) -> Path:
    return ASSETS_DIR.joinpath(*parts)
