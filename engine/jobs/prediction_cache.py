"""Predictions bundles kept for reuse, keyed by the photo and everything that shaped them.

The key of a photo's predictions is a SHA-256 over: the photo's content (its bytes' SHA-256 and
size), the model files (each task's checkpoint path, size and modification time), the predict
options that change what comes out (tasks, sizes, backend, device and number format as resolved,
compile mode, person box) and the engine and bundle format versions. A second avatar of the same
photo with the same models reuses the bundle and only rebuilds; a changed photo, model file or
model option predicts again. The photo's content hash is remembered per (path, size, mtime) in
this process, so an unchanged file is read once.

Layout: CACHE_DIR/KEY/ is a predictions bundle (docs/bundle.md); entries are renamed into place
whole, so a crash never leaves half an entry under a key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

from engine.errors import EngineError, InputImageError
from engine.fileio import staging_dir

_photo_hashes: dict[tuple, str] = {}
_lock = threading.Lock()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sapiens-blender" / "predictions"


def photo_digest(path: Path) -> str:
    """SHA-256 of the photo's bytes (remembered per path, size and mtime)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputImageError(f"{path}: no such file" if not path.exists() else f"{path}: unreadable ({exc})") from exc
    if not path.is_file():
        raise InputImageError(f"{path}: not a file")
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        known = _photo_hashes.get(memo)
    if known is not None:
        return known
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise InputImageError(f"{path}: unreadable ({exc})") from exc
    value = f"{digest.hexdigest()}:{stat.st_size}"
    with _lock:
        _photo_hashes[memo] = value
    return value


def model_identity(predictor, options: dict) -> dict:
    """What about the models and options changes the predictions (see the module docstring)."""
    from engine import __version__
    from engine.bundle import FORMAT_VERSION

    files = {}
    for task, path in sorted(predictor.paths.items()):
        stat = Path(path).stat()
        files[task] = [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]
    return {
        "engine": __version__, "bundle_format": FORMAT_VERSION, "tasks": list(predictor.tasks),
        "sizes": dict(predictor.sizes), "checkpoints": files, "backend": predictor.backend,
        "device": str(predictor.device).split(":")[0], "dtype": predictor.dtype,
        "compile": options.get("compile"), "bbox": options.get("bbox"), "seg_probs": options.get("seg_probs", False),
        "detail_crops": bool(getattr(predictor, "detail_crops", False)),
    }


def cache_key(photo: Path, identity: dict) -> str:
    text = json.dumps({"photo": photo_digest(photo), "models": identity}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class PredictionCache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else default_cache_dir()
        if self.root.exists() and not self.root.is_dir():
            raise EngineError(f"cache_dir {self.root}: is a file, not a folder")

    def lookup(self, key: str) -> Path | None:
        entry = self.root / key
        return entry if (entry / "bundle.json").is_file() else None

    def staging(self) -> Path:
        """A fresh hidden folder beside the entries (same file system: entries are renamed into
        place); one a killed process left behind is removed by the next run (engine.fileio)."""
        return staging_dir(self.root / "predicting")

    def store(self, bundle: Path, key: str) -> Path:
        """Move a finished bundle under its key; an entry another job stored meanwhile wins."""
        entry = self.root / key
        try:
            os.rename(bundle, entry)
        except OSError:
            if self.lookup(key) is None:
                raise
            shutil.rmtree(bundle, ignore_errors=True)
        return entry
