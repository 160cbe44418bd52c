"""A motion directory onto a character, written out (docs/retarget.md): animation.glb (the
character with the animation), animation.bvh, bone_map.json, animation.json; and the per-bone
curves a DCC client keys onto its own armature."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from engine import fileio
from engine.errors import EngineError
from engine.formats import WRITERS
from engine.formats.scene import Animation, Scene, Skeleton, continuous_quaternions, matrix_to_quaternion
from engine.motion.bone_maps import bone_map_document, read_bone_map
from engine.motion.retarget import RetargetPlan, RetargetResult, plan_retarget, retarget
from engine.motion.retarget_feet import lock_target_feet
from engine.motion.retarget_gltf import write_glb
from engine.motion.retarget_sources import GltfCharacter, load_target, read_motion

RETARGET_FORMAT = "sapiens-animation"
RETARGET_VERSION = "1.0"
DEFAULT_FORMATS = ("glb", "bvh")

Progress = Callable[[str, float, str], None] | None


def motion_scene(result: RetargetResult, first_frame_rest: bool = True) -> Scene:
    """The retargeted motion as engine.formats' description. first_frame_rest: the skeleton's
    rest is the first frame's pose (BVH's convention: the writer measures rotations from it)."""
    target = result.plan.target
    local = result.local()
    bind = result.world[0] if first_frame_rest else target.rest
    rest_local = bind.copy()
    has = target.parents >= 0
    rest_local[has] = np.linalg.inv(bind[target.parents[has]]) @ bind[has]
    tails = None
    if target.tails is not None:
        # the tail rides with its bone: rest tail in bone axes, placed on the first frame's frame
        tail_local = np.einsum("bji,bj->bi", target.rest[:, :3, :3], target.tails - target.heads)
        tails = bind[:, :3, 3] + np.einsum("bij,bj->bi", bind[:, :3, :3], tail_local)
    skeleton = Skeleton(list(target.names), target.parents, rest_local, bind, tails, name="retargeted")
    animation = Animation(result.fps, local[..., :3, :3], local[..., :3, 3], name="retargeted")
    return Scene("motion", skeleton=skeleton, animation=animation,
                 metadata={"sapiens": {"format": RETARGET_FORMAT, "version": RETARGET_VERSION}})


def curves(result: RetargetResult, decimals: int = 6) -> dict:
    """Per-bone curves for a client's armature: for every bone that moves, its rotation per frame
    relative to its rest, in its own rest axes (quaternions x y z w: Blender's pose-bone
    rotation_quaternion as w x y z), and for the bones that travel their location likewise (the
    rest-relative offset in the bone's rest axes, Blender's pose-bone location); `pose` (keyed
    bones whose parent is not keyed): the bone's axes and head in the skeleton's space (Blender's
    pose space)."""
    plan = result.plan
    basis = result.basis()
    moving = plan.keyed
    parents = plan.target.parents
    # bones a client may have to key to their pose: keyed, under a bone that is not (only there can
    # a constraint-driven bone come between a keyed bone and the keyed bone above it)
    posed = moving & ((parents < 0) | ~moving[np.maximum(parents, 0)])
    quats = continuous_quaternions(matrix_to_quaternion(basis[..., :3, :3]))
    world = continuous_quaternions(matrix_to_quaternion(result.world[:, posed, :3, :3]))
    posed_index = np.cumsum(posed) - 1
    bones = {}
    for b, name in enumerate(plan.target.names):
        entry = {}
        if moving[b]:
            entry["rotation"] = np.round(quats[:, b], decimals).tolist()
        if posed[b]:
            # where the bone is meant to be, in the skeleton's own space (a client's armature
            # space): clients whose controls hang under constraint-driven bones key to this
            entry["pose"] = {"rotation": np.round(world[:, posed_index[b]], decimals).tolist(),
                             "location": np.round(result.world[:, b, :3, 3], decimals).tolist()}
        loc = basis[:, b, :3, 3]
        # only the travelling bone (and a keyed bone that really moves off its rest offset)
        if b == plan.hips or (moving[b] and np.abs(loc).max() > 1e-6):
            entry["location"] = np.round(loc, decimals).tolist()
        if entry:
            if name in plan.part_of:
                entry["part"] = plan.part_of[name]
            bones[name] = entry
    return {"fps": result.fps, "frames": len(result.world), "quaternion_order": "xyzw",
            "space": "rest-relative, bone rest axes (Blender pose-bone basis)", "bones": bones}


def summary(plan: RetargetPlan, result: RetargetResult) -> dict:
    return {"convention": plan.convention, "source_convention": plan.source_convention,
            "bone_map": plan.bone_map(), "parts": dict(plan.part_of), "scale": plan.scale,
            "axes": np.round(plan.axes, 6).tolist(), "frames": len(result.world), "fps": result.fps,
            "travelling_bone": plan.target.names[plan.hips] if plan.hips >= 0 else None, "notes": list(plan.notes)}


def retarget_to_dir(motion_dir: str | Path, target: str | Path, out_dir: str | Path, *,
                    bone_map: str | Path | dict | None = None, convention: str | None = None, formats=None,
                    with_curves: bool = False, feet: str = "lock", progress: Progress = None) -> dict:
    """Retarget an `animate` output onto a character file and write the result into out_dir
    (atomically). convention: read the character's bone names in this convention (a bone-map
    convention or a rig table name) instead of detecting it. feet: "lock" holds the character's
    feet where the motion's stand (when the motion carries foot contacts), "off" leaves the legs
    as retargeted. Returns the summary (and the curves when asked)."""
    if feet not in ("lock", "off"):
        raise EngineError(f"feet {feet!r}: choose lock or off")
    formats = tuple(formats or DEFAULT_FORMATS)
    unknown = [f for f in formats if f != "glb" and (f not in WRITERS or "motion" not in WRITERS[f].kinds)]
    if unknown:
        holding = ["glb"] + [n for n, w in WRITERS.items() if "motion" in w.kinds and n != "glb"]
        raise EngineError(f"formats {', '.join(unknown)}: a retargeted motion is written as {', '.join(holding)}")
    report = progress or (lambda *a: None)
    report("read", 0.0, f"reading {motion_dir}")
    source = read_motion(motion_dir)
    skeleton, character = load_target(target)
    roots = [n for n, p in zip(skeleton.names, skeleton.parents) if p < 0]
    if "bvh" in formats and len(roots) > 1:
        raise EngineError(f"{target}: BVH holds one root bone; this skeleton has {len(roots)} "
                          f"({', '.join(roots[:5])}): choose --formats glb")
    mapping = read_bone_map(bone_map) if isinstance(bone_map, (str, Path)) else bone_map
    report("retarget", 0.3, f"{len(source.world)} frames onto {len(skeleton.names)} bones")
    plan = plan_retarget(source.skeleton, skeleton, mapping, target_convention=convention)
    result = retarget(plan, source.world, source.fps)
    feet_report = {"locked": False, "note": "off"} if feet == "off" else {
        "locked": False, "note": "the motion carries no foot contacts (animate --feet lock writes them)"}
    if feet == "lock" and source.contact is not None:
        result, feet_report = lock_target_feet(plan, source.world, result, source.contact)
    out = summary(plan, result)
    out["feet"] = feet_report
    report("write", 0.6, "writing outputs")
    files: dict[str, str] = {}
    with fileio.atomic_directory(Path(out_dir)) as tmp:
        for name in formats:
            if name == "glb":
                write_glb(tmp / "animation.glb", result, character if isinstance(character, GltfCharacter) else None)
                files["gltf"] = "animation.glb"
            else:
                files.update(WRITERS[name].motion(motion_scene(result), tmp))
        (tmp / "bone_map.json").write_text(json.dumps(bone_map_document(plan.part_of | {
            t: s for t, s in plan.bone_map().items() if t not in plan.part_of}, plan.convention), indent=1))
        files["bone_map"] = "bone_map.json"
        manifest = {"format": RETARGET_FORMAT, "version": RETARGET_VERSION, "fps": result.fps,
                    "frames": len(result.world), "units": "as the target character's file",
                    "filled_frames": [int(t) for t in np.flatnonzero(source.filled)],
                    "retarget": {**out, "motion": str(motion_dir), "target": str(target)}, "files": files}
        (tmp / "animation.json").write_text(json.dumps(manifest, indent=1))
        report("write", 1.0, "done")
    out["output"] = str(out_dir)
    out["files"] = files
    if with_curves:
        out["curves"] = curves(result)
    return out
