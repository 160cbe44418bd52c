"""Known motions and made-up characters for measuring retargeting (tests and bench/).

`synthetic_motion` turns an engine.synthetic motion (exact joint tracks, no rendering) into the
animate pipeline's Motion without smoothing, so its bone frames are the truth. `character`
makes target skeletons from the motion's own rest skeleton: another rest pose (T-pose, A-pose),
random bone rolls, other bone names (Mixamo, Unreal, VRM ...), other proportions.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from engine.motion.bone_maps import CONVENTIONS, convention_map, detect
from engine.motion.retarget import RestSkeleton, swing
from engine.motion.retarget_sources import SourceMotion, skeleton_from_json


def joint_tracks(track) -> tuple[list[str], np.ndarray]:
    """(rig joint names, T x J x 3 positions in the avatar frame) of an engine.synthetic MotionTrack:
    each rig joint at the synthetic keypoint it is lifted from."""
    from engine.rig.joints import joint_specs
    from engine.synthetic.render import keypoint_sources

    specs = joint_specs()
    frames = [keypoint_sources(track.posed(t)) for t in range(len(track.positions))]
    names = [s.name for s in specs if s.keypoint in frames[0]]
    keypoint = {s.name: s.keypoint for s in specs}
    tracks = np.array([[f[keypoint[n]][0] for n in names] for f in frames])
    return names, tracks


def _animate_motion(kind: str, n_frames: int, fps: float, height_m: float, convention: str):
    from engine.motion.animate import motion_from_tracks
    from engine.motion.contacts import SIDES, contact_runs
    from engine.synthetic import make_motion

    track = make_motion(n_frames, kind, fps=fps, height_m=height_m)
    names, tracks = joint_tracks(track)
    motion, _ = motion_from_tracks(names, tracks, np.ones(tracks.shape[:2], bool), fps,
                                   convention=convention, height=height_m, smooth=False)
    if track.contacts is not None:       # grounded motions: the truth's contacts, as --feet lock writes them
        motion.feet = {"contact_frames": {side: contact_runs(track.contacts[:, k]) for k, side in enumerate(SIDES)}}
    return motion, names, tracks, track.contacts


def synthetic_motion(kind: str = "walk", n_frames: int = 60, *, fps: float = 30.0, height_m: float = 1.75,
                     convention: str = "rigify") -> SourceMotion:
    """An exact source motion: engine.synthetic's `kind` through the animate pipeline's skeleton
    building (body frame = avatar frame: +Y up, the person faces +Z, origin on the ground); the
    grounded motions (walk_line, turn, squat, jump, side_step) carry their true foot contacts."""
    motion, _, _, contact = _animate_motion(kind, n_frames, fps, height_m, convention)
    return SourceMotion(skeleton_from_json(motion.skeleton), motion.world(), fps, np.zeros(n_frames, bool), contact)


def write_motion_dir(out_dir, kind: str = "walk", n_frames: int = 30, *, fps: float = 30.0,
                     height_m: float = 1.75, convention: str = "rigify"):
    """The same exact motion written as `animate` writes it (skeleton.json, frames/, animation.json)."""
    import json
    from pathlib import Path

    from engine.motion.animate import write_frame_json

    motion, names, tracks, _ = _animate_motion(kind, n_frames, fps, height_m, convention)
    out = Path(out_dir)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    write_frame_json(out / "frames", motion, tracks, names, [f"synthetic {kind} {t}" for t in range(n_frames)])
    (out / "skeleton.json").write_text(json.dumps(motion.skeleton, indent=1))
    (out / "animation.json").write_text(json.dumps({"format": "sapiens-animation", "version": "1.0", "fps": fps,
                                                    "frames": n_frames, "convention": convention}))
    return out


def _rename(skeleton: RestSkeleton, convention: str) -> list[str]:
    """The bones' names in another convention (bones it has no name for keep theirs)."""
    _, parts = detect(skeleton.names)
    torso, limbs, (left, right), _ = CONVENTIONS[convention]
    new = {}
    for part, bone in parts.items():
        side = "left" if part.startswith("left") else "right" if part.startswith("right") else None
        tpl = torso.get(part) if side is None else limbs.get(part[len(side):])
        if tpl is None:
            continue
        tpl = tpl[0] if isinstance(tpl, tuple) else tpl
        new[bone] = tpl.replace("{S}", left if side == "left" else right) if side else tpl
    prefix = "mixamorig:" if convention == "mixamo" else ""
    return [prefix + new[n] if n in new else f"extra_{n}" for n in skeleton.names]


def character(source: RestSkeleton, *, rest_pose: str = "same", roll_seed: int | None = None,
              scale: float = 1.0, arm_scale: float = 1.0, shin_scale: float = 1.0,
              names: str | None = None) -> RestSkeleton:
    """A target made from `source`'s rest skeleton.

    rest_pose: "same", "tpose" (arms out sideways, legs straight down) or "apose" (arms 45 degrees
    down), reached by turning each limb bone at its head, children following;
    roll_seed: every bone's axes turned about the bone by a random angle (other roll conventions);
    scale: every length times this; arm_scale: arm bones (shoulder to finger tips) also times
    this; shin_scale: the shins also times this (legs proportioned unlike the source's); names: a
    convention (CONVENTIONS) to rename the bones into."""
    _, parts = detect(source.names)
    B = len(source.names)
    parents = source.parents
    rest = source.rest.copy()
    tails = source.tails.copy() if source.tails is not None else source.heads.copy()
    local = source.rest_local()
    tail_local = np.einsum("bji,bj->bi", rest[:, :3, :3], tails - rest[:, :3, 3])   # tail in bone axes
    arm = np.zeros(B, bool)
    for s in ("left", "right"):
        for part in [s + p for p in ("UpperArm", "LowerArm", "Hand")]:
            if part in parts:
                arm[source.names.index(parts[part])] = True
    for b in range(B):   # the hands' descendants (fingers, palms) are arm too
        if parents[b] >= 0 and arm[parents[b]]:
            arm[b] = True
    shin = np.isin(np.arange(B), [source.names.index(parts[p]) for p in ("leftLowerLeg", "rightLowerLeg") if p in parts])
    # new world rotations: pose the limbs, parents first
    turn = {}
    if rest_pose in ("tpose", "apose"):
        down = -45.0 if rest_pose == "apose" else 0.0
        for s, sign in (("left", 1.0), ("right", -1.0)):
            out = np.array([sign * np.cos(np.radians(down)), np.sin(np.radians(down)), 0.0])
            for part, child, direction in ((f"{s}UpperArm", f"{s}LowerArm", out), (f"{s}LowerArm", f"{s}Hand", out),
                                           (f"{s}UpperLeg", f"{s}LowerLeg", np.array([0, -1.0, 0])),
                                           (f"{s}LowerLeg", f"{s}Foot", np.array([0, -1.0, 0]))):
                turn[source.names.index(parts[part])] = (source.names.index(parts[child]), direction)
    elif rest_pose != "same":
        raise ValueError(f"unknown rest pose {rest_pose!r}")
    world = np.zeros_like(rest)
    lengths = scale * np.where(arm, arm_scale, 1.0) * np.where(shin, shin_scale, 1.0)   # each bone's own
    for b in range(B):                                        # parents first: children follow
        p = parents[b]
        m = local[b].copy()
        m[:3, 3] *= scale * (arm_scale if p >= 0 and arm[b] and arm[p] else 1.0) * (
            shin_scale if p >= 0 and shin[p] else 1.0)
        world[b] = m if p < 0 else world[p] @ m
        if b in turn:
            child, direction = turn[b]
            world[b, :3, :3] = swing(world[b, :3, :3] @ local[child, :3, 3], direction) @ world[b, :3, :3]
    new_tails = world[:, :3, 3] + np.einsum("bij,bj->bi", world[:, :3, :3], tail_local * lengths[:, None])
    if roll_seed is not None:
        angles = np.random.default_rng(roll_seed).uniform(-np.pi, np.pi, B)
        world[:, :3, :3] = world[:, :3, :3] @ Rotation.from_rotvec(np.outer(angles, [0, 1.0, 0])).as_matrix()
    bone_names = _rename(source, names) if names else list(source.names)
    return RestSkeleton(bone_names, parents.copy(), world, new_tails)


def humanoid_parts(skeleton: RestSkeleton) -> dict[str, int]:
    """humanoid part -> bone index of a skeleton (by its detected convention)."""
    convention, parts = detect(skeleton.names)
    return {p: skeleton.names.index(b) for p, b in convention_map(convention, skeleton.names).items()}


def without_parts(skeleton: RestSkeleton, parts: tuple[str, ...]) -> RestSkeleton:
    """The skeleton without the bones that play `parts` (their children hang from their parent):
    a character with fewer spine bones, no shoulders, fewer finger joints."""
    _, found = detect(skeleton.names)
    drop = {skeleton.names.index(found[p]) for p in parts if p in found}
    keep = [b for b in range(len(skeleton.names)) if b not in drop]
    new_index = {b: i for i, b in enumerate(keep)}
    parents = []
    for b in keep:
        p = int(skeleton.parents[b])
        while p in drop:
            p = int(skeleton.parents[p])
        parents.append(new_index[p] if p >= 0 else -1)
    tails = skeleton.tails[keep] if skeleton.tails is not None else None
    return RestSkeleton([skeleton.names[b] for b in keep], np.array(parents), skeleton.rest[keep], tails)
