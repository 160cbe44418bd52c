"""The frames of a sequence: listing them, predicting images, and reading each one's joints.

Every input frame keeps its place on the timeline: a frame that cannot be used (an unreadable
image or bundle, no person, predictions that describe no body) becomes a `Frame` without joints
and with the reason in words; the animation fills it from its neighbours and marks it. Each
frame's predictions are checked as `build` checks its bundle (a pointmap over the person,
plausible intrinsics), and its lifted joints are checked for a plausible body, before anything
is written.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine.errors import BundleError, EngineError, InputImageError
from engine.motion.video import VIDEO_SUFFIXES
from engine.rig.lift import Joints3D, lift_joints

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
MIN_POINTMAP_COVERAGE = 0.5          # share of the person's pixels with a depth in front of the camera
# a pinhole focal length this many times the image's larger side, at most / at least (a 1-degree
# telephoto to a 170-degree fisheye): outside it the intrinsics are not a camera's
FOCAL_RANGE = (0.05, 60.0)
BODY_EXTENT_M = (0.3, 3.0)           # largest distance between the trunk's joints and the feet
DEPTH_RANGE_M = (0.1, 200.0)         # camera to the body

Progress = Callable[[str, float, str], None] | None


@dataclass
class Frame:
    source: str                      # the image, bundle or video frame it came from
    joints: Joints3D | None          # None: not usable (reason says why)
    reason: str | None = None


def list_frames(frames: str | Path) -> tuple[str, list[Path]]:
    """('bundles' | 'images' | 'video', sorted paths) for a frames directory or a video file;
    a clear error otherwise."""
    path = Path(frames)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return "video", [path]
    if not path.is_dir():
        raise InputImageError(f"{path}: not a directory of frames (images or predicted bundles) "
                              f"nor a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
    from engine.bundle import is_bundle
    entries = sorted(path.iterdir())
    bundles = [p for p in entries if p.is_dir() and is_bundle(p)]
    images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
    if bundles and images:
        # which kind is the timeline? Taking one would drop the other's frames without a word
        raise InputImageError(f"{path}: holds both predictions bundles ({len(bundles)}, e.g. {bundles[0].name}) and "
                              f"images ({len(images)}, e.g. {images[0].name}); give a folder of one kind of frame")
    if bundles:
        # a frame folder whose bundle.json is damaged is still a frame: it keeps its place
        return "bundles", [p for p in entries if p.is_dir() and (p / "bundle.json").exists()]
    if images:
        return "images", images
    raise InputImageError(f"{path}: no frames in it (expected images or predictions bundles)")


FRAME_TASKS = ["pose", "seg", "pointmap"]      # what joints are lifted from


@contextmanager
def own_predictor(model: dict):
    """A Predictor for this sequence alone, closed after it (scripts; jobs share the process's)."""
    try:
        from engine.predict import Predictor
    except ImportError as exc:
        raise EngineError(f"predicting frames needs engine.predict ({exc})") from exc
    predictor = Predictor(**model)
    try:
        yield predictor
    finally:
        predictor.close()


def predict_frames(paths: list[Path], out_dir: Path, *, size="0.4b", checkpoints=None, device="auto",
                   backend="torch", progress: Progress = None, predictor_scope=None) -> list[Path | str]:
    """Predict every image; per image, in order, its bundle path or the reason it failed (str).
    The models load once for the whole sequence. predictor_scope(model keywords) -> a context
    manager giving the Predictor to use (a job passes the process's shared one, so that `serve`
    loads the models once for every animation); default: own_predictor."""
    model = {"tasks": list(FRAME_TASKS), "size": size, "checkpoints": checkpoints, "device": device,
             "backend": backend}
    with (predictor_scope or own_predictor)(model) as predictor:
        results = predictor.predict(paths, out_dir, on_error=lambda path, exc: None, progress=progress)
    out: list[Path | str] = []
    for r in results:
        if getattr(r, "bundles", None):
            out.append(Path(r.bundles[0]))
        else:
            error = getattr(r, "error", None) or {}
            out.append(error.get("message") or "no person was found")
    return out


def check_predictions(bundle) -> str | None:
    """Why a frame's predictions cannot give joints (in words), or None when they can."""
    if bundle.keypoints is None:
        return "the frame has no pose keypoints"
    if bundle.pointmap is None:
        return "the frame has no pointmap"
    if bundle.K is None:
        return "the frame has no camera intrinsics (K)"
    mask = np.asarray(bundle.mask, bool) if bundle.mask is not None else np.isfinite(bundle.pointmap).all(-1)
    person = int(mask.sum())
    if person == 0:
        return "no person was found in the frame"
    with np.errstate(invalid="ignore"):
        depth_ok = np.isfinite(bundle.pointmap).all(-1) & (bundle.pointmap[..., 2] > 0)
    coverage = float((depth_ok & mask).sum() / person)
    if coverage < MIN_POINTMAP_COVERAGE:
        return f"the pointmap is NaN or behind the camera on {1 - coverage:.0%} of the person's pixels"
    K = np.asarray(bundle.K, np.float64)
    side = max(bundle.pointmap.shape[:2])
    if K.shape != (3, 3) or not np.isfinite(K).all():
        return f"K is not a pinhole intrinsics matrix: {K.tolist()}"
    f = 0.5 * (K[0, 0] + K[1, 1])
    if not FOCAL_RANGE[0] * side <= f <= FOCAL_RANGE[1] * side:
        return (f"the focal length is {f:.3g} px for a {side} px image (a camera's is "
                f"{FOCAL_RANGE[0] * side:.0f}-{FOCAL_RANGE[1] * side:.0f} px)")
    return None


def check_joints(joints: Joints3D) -> str | None:
    """Why lifted joints are not a body (in words), or None when they are plausible."""
    if not np.isfinite(joints.positions).all():
        return "the lifted joints are not finite"
    trunk = [joints.index(n) for n in ("neck", "shoulder_L", "shoulder_R", "hip_L", "hip_R",
                                       "ankle_L", "ankle_R")]
    pts = joints.positions[trunk]
    depth = float(np.median(pts[:, 2]))
    if not DEPTH_RANGE_M[0] <= depth <= DEPTH_RANGE_M[1]:
        return f"the body lifts to {depth:.3g} m from the camera"
    extent = float(np.max(np.linalg.norm(pts[:, None] - pts[None], axis=-1)))
    if not BODY_EXTENT_M[0] <= extent <= BODY_EXTENT_M[1]:
        return f"the lifted body spans {extent:.3g} m (a person spans {BODY_EXTENT_M[0]}-{BODY_EXTENT_M[1]} m)"
    return None


def read_frame(path: Path) -> Frame:
    """One bundle frame: its lifted joints, or why there are none."""
    from engine.bundle import read_bundle
    try:
        bundle = read_bundle(path)
    except (BundleError, OSError, ValueError) as exc:
        return Frame(str(path), None, f"unreadable bundle ({exc})")
    reason = check_predictions(bundle)
    if reason is None:
        try:
            joints = lift_joints(bundle.keypoints, bundle.pointmap, bundle.seg, bundle.K, mask=bundle.mask)
        except BundleError as exc:
            return Frame(str(path), None, str(exc))
        reason = check_joints(joints)
        if reason is None:
            return Frame(str(path), joints)
    return Frame(str(path), None, reason)


def read_frames(entries: list[Path | str], sources: list[str], progress: Progress = None) -> list[Frame]:
    """A Frame per entry (a bundle path, or the reason there is none), in order."""
    frames = []
    for i, (entry, source) in enumerate(zip(entries, sources)):
        if isinstance(entry, Path):
            frame = read_frame(entry)
            frame.source = source
        else:
            frame = Frame(source, None, entry)
        frames.append(frame)
        if progress:
            progress("lift", (i + 1) / len(entries), f"frame {i + 1}/{len(entries)}")
    return frames
