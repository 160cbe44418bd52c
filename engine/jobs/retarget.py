"""The `retarget` job: an animation (animate's output) onto any character (docs/retarget.md):
animation.glb (the character with the motion), animation.bvh, bone_map.json, animation.json;
with `curves`, the per-bone curves a DCC client keys onto its own armature."""

from __future__ import annotations

from pathlib import Path

from engine.errors import EngineError
from engine.jobs import checked_progress
from engine.jobs.outputs import check_output_dir, relative_files


def run(options: dict, progress=None, cancel=None) -> dict:
    out_dir = check_output_dir(options["out_dir"], "animation")
    for name, what in (("motion", "an animation directory"), ("target", "a character file")):
        if not Path(options[name]).exists():
            raise EngineError(f"{options[name]}: not found ({name} must be {what})")
    if options.get("bone_map") and not Path(options["bone_map"]).is_file():
        what = "is a folder, not a bone map file" if Path(options["bone_map"]).is_dir() else "bone map file not found"
        raise EngineError(f"{options['bone_map']}: {what}")
    out = out_dir.resolve()
    for name in ("motion", "target", "bone_map"):
        if options.get(name):
            given = Path(options[name]).resolve()
            if given == out or out in given.parents:
                raise EngineError(f"--out {out_dir}: it holds the {name} ({options[name]}); writing there would replace "
                                  f"the input. Choose another --out")
    from engine.motion.retarget_output import retarget_to_dir

    result = retarget_to_dir(options["motion"], options["target"], out_dir, bone_map=options.get("bone_map"),
                             convention=options.get("rig"),
                             formats=options["formats"], with_curves=bool(options.get("curves")),
                             feet=options.get("feet") or "lock",
                             progress=checked_progress(progress, cancel))
    result["files"] = relative_files(out_dir)
    return result
