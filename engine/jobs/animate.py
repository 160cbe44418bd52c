"""The `animate` job: a sequence of frames (images, predictions bundles or a video) -> an animated
skeleton (docs/rig.md): animation.glb, animation.bvh, skeleton.json, animation.json, frames/."""

from __future__ import annotations

import inspect
from pathlib import Path

from engine.errors import EngineError
from engine.jobs import checked_progress
from engine.jobs.outputs import check_output_dir, relative_files
from engine.jobs.predictors import predictor_for
from engine.options import BY_NAME

# option name -> animate_frames keyword, where they differ
ANIMATE_KEYWORDS = {"rig": "convention"}
ANIMATE_OPTIONS = ("rig", "fps", "smooth", "min_cutoff", "beta", "feet", "size", "checkpoints", "device",
                   "backend", "formats")


def _animate_frames():
    from engine.motion.animate import animate_frames

    return animate_frames


def run(options: dict, progress=None, cancel=None) -> dict:
    out_dir = check_output_dir(options["out_dir"], "animation")
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
    return {"output": str(output), "files": relative_files(output)}
