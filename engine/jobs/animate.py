"""The `animate` job: a sequence of frames (images, predictions bundles or a video) -> an animated
skeleton (docs/rig.md): animation.glb, animation.bvh, skeleton.json, animation.json, frames/.

A sequence is one camera's frames. Each frame's joints are lifted in that frame's own camera
(its pointmap and intrinsics), so a frame of another shape (a crop, a portrait frame among
landscape ones, another shot) would put the skeleton somewhere else for that frame: such a
sequence is refused before any work, naming the frames. A frame of the same shape at another
resolution is the same camera scaled (metric pointmap, scaled intrinsics): it is animated, with
a note in the result.
"""

from __future__ import annotations

import inspect
import json
from collections import Counter
from pathlib import Path

from engine.errors import BundleError, EngineError, InputImageError
from engine.jobs import checked_progress
from engine.jobs.outputs import check_output_dir, relative_files
from engine.jobs.predictors import predictor_for
from engine.options import BY_NAME, OptionError

# option name -> animate_frames keyword, where they differ
ANIMATE_KEYWORDS = {"rig": "convention"}
ANIMATE_OPTIONS = ("rig", "fps", "smooth", "min_cutoff", "beta", "feet", "size", "checkpoints", "device",
                   "backend", "formats")


def _animate_frames():
    from engine.motion.animate import animate_frames

    return animate_frames


ASPECT_TOLERANCE = 0.01   # relative: a resized frame's rounding stays well inside it


def _photo_size(kind: str, path: Path) -> tuple[int, int] | None:
    """(width, height) of a frame as its joints see it (EXIF orientation applied); None when it
    cannot be told (the frame is then judged, and marked if unusable, when it is read)."""
    try:
        if kind == "bundles":
            photo = json.loads((path / "bundle.json").read_text(encoding="utf-8")).get("photo") or {}
            size = photo.get("width"), photo.get("height")
            return size if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size) else None
        from PIL import Image

        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(0x0112) in (5, 6, 7, 8)   # EXIF orientation: a quarter turn
        return (height, width) if turned else (width, height)
    except (OSError, ValueError, AttributeError, SyntaxError):
        return None


def check_frame_sizes(frames: str | Path) -> list[str]:
    """Notes on frames of another resolution than the sequence's (the size most frames have);
    a refusal naming the frames of another shape."""
    from engine.motion.frames import list_frames

    kind, paths = list_frames(frames)
    if kind == "video":
        return []   # one stream, one size
    sizes = {path: size for path in paths if (size := _photo_size(kind, path)) is not None}
    if len(set(sizes.values())) < 2:
        return []
    counts = Counter(sizes.values())
    first_of = {size: i for i, size in reversed(list(enumerate(sizes.values())))}
    width, height = max(counts, key=lambda size: (counts[size], -first_of[size]))
    other = {path: size for path, size in sizes.items() if size != (width, height)}

    def listed(items) -> str:
        items = list(items)
        shown = ", ".join(f"{path.name} ({w}x{h})" for path, (w, h) in items[:5])
        return shown + (f" and {len(items) - 5} more" if len(items) > 5 else "")

    shaped = [(p, s) for p, s in other.items() if abs((s[0] / s[1]) / (width / height) - 1) > ASPECT_TOLERANCE]
    if shaped:
        error = BundleError if kind == "bundles" else InputImageError
        raise error(f"{frames}: {len(shaped)} of {len(paths)} frames have another shape than the sequence's "
                    f"{width}x{height} photos: {listed(shaped)}. A sequence is one camera's frames (each frame's "
                    "joints are lifted in its own camera), so these would move the skeleton to another place; "
                    "animate them as a sequence of their own, or move them out of the folder")
    return [f"{len(other)} of {len(paths)} frames are of another resolution than the sequence's {width}x{height} "
            f"photos, with the same shape: {listed(other.items())}; animated as the same camera at another resolution"]


def run(options: dict, progress=None, cancel=None) -> dict:
    if "rig" in options and options["rig"] is None:  # `--rig none`: a motion is a rig's motion
        raise OptionError("rig", f"animate moves a rig: choose one of {', '.join(BY_NAME['rig'].allowed())}, not none")
    out_dir = check_output_dir(options["out_dir"], "animation")
    notes = check_frame_sizes(options["frames"])   # before any model loads or any frame is read
    for note in notes:
        if progress:
            progress("frames", 0.0, f"note: {note}")
    animate_frames = _animate_frames()
    takes = inspect.signature(animate_frames).parameters
    keywords = {ANIMATE_KEYWORDS.get(n, n): options[n] for n in ANIMATE_OPTIONS if n in options}
    if "formats" not in takes:
        formats = keywords.pop("formats")
        default = BY_NAME["formats"].default_for("animate")
        if list(formats) != list(default):
            raise EngineError(f"formats {','.join(formats)}: animate writes only {','.join(default)} so far")
    if "predictor_scope" in takes:
        # images and video frames are predicted with the process's Predictor: under `serve` the
        # models load once for every animation, not once per job
        keywords["predictor_scope"] = predictor_for
    output = Path(animate_frames(options["frames"], out_dir, progress=checked_progress(progress, cancel), **keywords))
    return {"output": str(output), "files": relative_files(output), "notes": notes}
