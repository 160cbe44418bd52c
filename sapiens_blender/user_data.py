"""Where the add-on keeps its files: the extension's user directory (Blender 4.2+).

Installed as an extension, `bpy.utils.extension_path_user` gives a folder that survives
upgrades. Imported as a plain package (tests, `python -m sapiens_blender.batch`), it has no
extension id, so Blender's user config folder is used instead. SAPIENS_BLENDER_USER_DIR
overrides both (CI, batch farms).
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy

PACKAGE = __package__


def user_dir(*parts: str) -> Path:
    override = os.environ.get("SAPIENS_BLENDER_USER_DIR")
    if override:
        base = Path(override)
    else:
        try:
            base = Path(bpy.utils.extension_path_user(PACKAGE, create=True))
        except (ValueError, KeyError, AttributeError):  # not loaded as an extension
            base = Path(bpy.utils.user_resource("CONFIG", path="sapiens_blender", create=True))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_root() -> Path:
    """Predictions and avatars per photo (pipeline.photo_cache_dir)."""
    return user_dir("cache")


def engine_log() -> Path:
    return user_dir("logs") / "engine.log"
