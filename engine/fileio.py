"""File-level building blocks every writer shares: atomic output directories and EXR images.

An output directory (a bundle, an avatar, an animation) is written into a hidden temporary
directory beside its target and renamed into place only when complete, so a crash, a cancel or a
full disk never leaves something that looks finished. An older output at the target is moved aside
first and deleted after, so a failed rename never leaves neither.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from engine.errors import EngineError


def staging_dir(out_dir: Path, error: type[EngineError] = EngineError) -> Path:
    """A fresh hidden directory beside `out_dir`, on the same file system so a rename is atomic."""
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    except OSError as exc:
        raise error(f"{out_dir}: cannot create the output directory ({exc.strerror or exc})") from exc


def publish_dir(tmp: Path, out_dir: Path) -> None:
    """Rename the finished `tmp` to `out_dir`, replacing whatever output was there."""
    os.chmod(tmp, 0o755)  # mkdtemp makes it private
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_directory(out_dir: str | os.PathLike, error: type[EngineError] = EngineError):
    """`with atomic_directory(out) as tmp:` write into tmp; out appears whole, or not at all."""
    out_dir = Path(out_dir)
    tmp = staging_dir(out_dir, error)
    try:
        yield tmp
        publish_dir(tmp, out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise error(f"{out_dir}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_exr(path: str | os.PathLike, rgb: np.ndarray, half: bool = False) -> None:
    """H x W x 3 values as a zip-compressed RGB EXR (float32, or half floats)."""
    import OpenEXR

    pixels = np.ascontiguousarray(rgb, dtype=np.float16 if half else np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"RGB": pixels}) as exr:
        exr.write(str(path))


def read_exr(path: str | os.PathLike, error: type[EngineError] = EngineError) -> np.ndarray:
    """H x W x 3 float32 from an RGB EXR (half or float channels)."""
    import OpenEXR

    try:
        channels = OpenEXR.File(str(path), separate_channels=True).channels()
    except Exception as exc:  # OpenEXR raises plain RuntimeError on a damaged file
        raise error(f"{path}: not a readable EXR file ({exc})") from exc
    missing = [c for c in "RGB" if c not in channels]
    if missing:
        raise error(f"{path}: EXR lacks channel(s) {', '.join(missing)} (has {sorted(channels)})")
    return np.stack([channels[c].pixels for c in "RGB"], axis=-1).astype(np.float32)
