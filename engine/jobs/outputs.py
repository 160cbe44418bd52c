"""Output checks every job makes before any work: never replace something that is not ours.

A job's output directory may be new, empty, or an earlier output of the same kind (recognised by
its manifest file); anything else (a file, a folder of the user's things) is refused in words
before a model runs or a surface is built.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import EngineError
from engine.fileio import refusal

# the manifest that marks each kind of output directory (engine.fileio.MANIFESTS says what they are)
MANIFESTS = {"avatar": "avatar.json", "bundle": "bundle.json", "animation": "animation.json"}


def check_output_dir(path: str | os.PathLike, kind: str, flag: str = "--out") -> Path:
    """`path` if a job may write a `kind` output there; else an EngineError saying why not (the
    rule the publish step applies at the end, engine.fileio.refusal, checked before any work)."""
    path = Path(path)
    reason = refusal(path, MANIFESTS[kind])
    if reason:
        raise EngineError(f"{flag} {reason}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise EngineError(f"{flag} {path}: {parent} is a file, not a folder")
            break
    return path


def check_parent_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A folder that receives outputs side by side (one per photo): new, or an existing folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EngineError(f"{flag} {path}: is a file, not a folder; give a folder for the outputs")
    return path


def relative_files(directory: Path) -> list[str]:
    """The files under `directory`, relative to it (what a result lists)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
