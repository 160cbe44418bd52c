"""Video files -> frame images for animation, decoded with the static ffmpeg that the
`imageio-ffmpeg` package ships (imported lazily: the rest of the engine works without it)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from engine.errors import Cancelled, InputImageError

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}

Progress = Callable[[str, float, str], None] | None


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise InputImageError(
            "video input needs a video decoder: install `imageio-ffmpeg` into the engine's environment "
            "(pip install imageio-ffmpeg), or extract the frames first (`ffmpeg -i clip.mp4 frames/%05d.png`) "
            "and pass the frames directory") from exc
    return imageio_ffmpeg


def _ffmpeg_reason(exc: Exception) -> str:
    """ffmpeg's last word on a failure (its message starts with a banner of library versions):
    ' (reason)', or '' when it said nothing useful."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if ":" in last and not last.startswith(("lib", "[")):
        last = last.split(":", 1)[1].strip()
    return f" ({last[:120]})" if last and "libav" not in last else ""


def decode_video(path: str | Path, out_dir: str | Path, *, max_frames: int | None = None,
                 progress: Progress = None) -> tuple[list[Path], float]:
    """Write every frame of the video as out_dir/NNNNNN.png (sRGB); returns (paths, frames per second).

    Frames stream through ffmpeg one at a time, so long clips never sit in memory whole."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"{path}: no such video file")
    ffmpeg = _ffmpeg()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        reader = ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise InputImageError(f"{path}: not a readable video{_ffmpeg_reason(exc)}") from None
    width, height = (int(v) for v in meta["size"])
    fps = float(meta.get("fps") or 0.0)
    expected = int(meta.get("nframes") or 0) if np.isfinite(meta.get("nframes") or np.inf) else 0
    paths: list[Path] = []
    try:
        for raw in reader:
            frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
            p = out_dir / f"{len(paths):06d}.png"
            Image.fromarray(frame).save(p, compress_level=1)   # fast: the files are temporary
            paths.append(p)
            if progress:
                progress("decode", min(len(paths) / expected, 1.0) if expected else 0.0, f"frame {len(paths)}")
            if max_frames is not None and len(paths) >= max_frames:
                break
    except Cancelled:
        raise
    except RuntimeError as exc:
        raise InputImageError(f"{path}: decoding stopped at frame {len(paths)}{_ffmpeg_reason(exc)}") from None
    finally:
        reader.close()
    if not paths:
        raise InputImageError(f"{path}: the video has no frames")
    return paths, fps if fps > 0 else 30.0
