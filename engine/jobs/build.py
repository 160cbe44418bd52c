"""The `build` job: a predictions bundle -> an avatar directory (docs/avatar.md).

Before the build starts, the bundle is checked for what the chosen options need (a rig needs
keypoints and a pointmap; a camera matrix K in bundle.json must be a valid one), so a bundle that
cannot be rigged fails in words before the surface and textures are made. A bundle without K gets
one fitted to its pointmap when the build reads it (engine.avatar.stages.read), before the
surface, and the rig uses that same K.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np

from engine.bundle.format import check_file_names
from engine.errors import BundleError, EngineError
from engine.jobs.outputs import check_output_dir, relative_files
from engine.options import BY_NAME

# option name -> engine.avatar.build.build_avatar keyword, where they differ
BUILD_KEYWORDS = {"max_faces": "target_faces"}
BUILD_OPTIONS = ("detail", "resolution", "watertight", "max_faces", "texture_size", "rig", "rest_pose", "formats",
                 "detail_crops")


def check_bundle_for_build(bundle_dir: Path, options: dict, source: str | None = None) -> None:
    """What the build will need from an engine bundle, read from its bundle.json (cheap).
    `source` names the bundle in messages (default its path; the avatar job names the photo)."""
    meta_path = Path(bundle_dir) / "bundle.json"
    source = source or str(bundle_dir)
    if not meta_path.is_file():
        return  # the reference demo's outputs: the build reads and checks them itself
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{meta_path}: unreadable ({exc})") from exc
    if not isinstance(meta, dict):
        raise BundleError(f"{meta_path}: not a bundle description (a JSON object), but a JSON {type(meta).__name__}")
    files = meta.get("files") or {}
    check_file_names(files, meta_path)   # a bundle from elsewhere must not make the build read outside it
    if options.get("rig"):
        missing = [name for name in ("keypoints", "pointmap") if name not in files]
        if missing:
            raise BundleError(f"{source}: rigging needs the predicted {' and '.join(missing)}, which the "
                              "predictions lack (run the pose and pointmap tasks, or build without a rig: --rig none)")
        K = meta.get("K")  # absent: the build fits one to the pointmap when it reads the bundle
        if K is not None:
            matrix = np.asarray(K, dtype=np.float64) if isinstance(K, list) else np.zeros(0)
            if matrix.shape != (3, 3) or not np.isfinite(matrix).all() or matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
                raise BundleError(f"{source}: K is not a valid pinhole intrinsics matrix: {K!r:.120}")


def build_keywords(options: dict, build_avatar) -> dict:
    """build_avatar's keywords from the job's options."""
    takes = inspect.signature(build_avatar).parameters
    keywords = {BUILD_KEYWORDS.get(name, name): options[name] for name in BUILD_OPTIONS if name in options}
    if "formats" not in takes:
        formats = keywords.pop("formats", None)
        if formats is not None and list(formats) != list(BY_NAME["formats"].default):
            raise EngineError(f"formats {','.join(formats)}: this engine writes only "
                              f"{','.join(BY_NAME['formats'].default)} so far")
    return keywords


def build_one(bundle_dir, out_dir, options: dict, progress=None, source: str | None = None) -> Path:
    """Check, then build one avatar; returns its directory."""
    from engine.avatar.build import build_avatar

    keywords = build_keywords(options, build_avatar)
    check_bundle_for_build(Path(bundle_dir), options, source)
    return Path(build_avatar(bundle_dir, out_dir, progress=progress, **keywords))


def build_fused(bundle_dirs, out_dir, options: dict, progress=None, sources=None) -> Path:
    """Check every bundle, then fuse them (several views of one person, the first the reference)
    into one avatar; returns its directory. Options the fused build does not take are not
    applied (docs/avatar.md, Several views)."""
    from engine.avatar.fused import build_fused_avatar

    takes = inspect.signature(build_fused_avatar).parameters
    keywords = {k: v for k, v in build_keywords(options, build_fused_avatar).items() if k in takes}
    sources = sources or [None] * len(bundle_dirs)
    for i, (bundle_dir, source) in enumerate(zip(bundle_dirs, sources)):
        check_bundle_for_build(Path(bundle_dir), options if i == 0 else {**options, "rig": None}, source)
    return Path(build_fused_avatar(bundle_dirs, out_dir, progress=progress, **keywords))


def run(options: dict, progress=None, cancel=None) -> dict:
    out_dir = check_output_dir(options["out_dir"], "avatar")
    if options.get("views"):
        avatar_dir = build_fused([options["bundle_dir"], *options["views"]], out_dir, options, progress)
        return {"avatar_dir": str(avatar_dir), "files": relative_files(avatar_dir)}
    avatar_dir = build_one(options["bundle_dir"], out_dir, options, progress)
    return {"avatar_dir": str(avatar_dir), "files": relative_files(avatar_dir)}
