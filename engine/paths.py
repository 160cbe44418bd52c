"""Where the engine finds its bundled assets (tables, rigs, the sample).

The assets live in the repository's `assets/` folder and travel in a built package as the data
of `engine.assets` (setup.py maps one onto the other). Code finds them only through `asset()`:
an installed engine reads its own copy, a source checkout (also an editable install) the
repository's folder, and `SAPIENS_ASSETS` points anywhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parent


def _assets_dir() -> Path:
    override = os.environ.get("SAPIENS_ASSETS")
    if override:
        return Path(override)
    installed = ENGINE_DIR / "assets"  # a wheel or `pip install .`
    if installed.is_dir():
        return installed
    return ENGINE_DIR.parent / "assets"  # a source checkout


ASSETS_DIR = _assets_dir()


def asset(*parts: str) -> Path:
    return ASSETS_DIR.joinpath(*parts)
