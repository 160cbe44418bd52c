"""Feet that stay planted: the ground levelled, the body kept above it, feet locked while they
stand, legs re-solved by two-bone IK. Tracks are T x J x 3 joints in the avatar frame (+Y up).

1. The ground plane (contacts.fit_ground) becomes y = 0 (one rotation and a shift of everything).
2. A frame whose lower sole dips below the ground (more than SINK_TOLERANCE_M, the fit's own
   noise) lifts the whole body by that much (the root never sinks through the floor).
3. Per contact run of a foot, the foot's joints move rigidly onto one spot: the run's median
   ankle position; over EASE_FRAMES before and after a run the shift fades, so nothing pops.
4. Each leg whose ankle moved is re-solved with its thigh and shin lengths (the sequence medians)
   and its knee bending the way it bent: the knee is where the two spheres meet, on the side of
   the old knee. An ankle out of reach stops at the straight leg. All frames at once.
Foot skate (contacts.foot_skate_mm) is reported before and after.
"""

from __future__ import annotations

import numpy as np

from engine.motion.contacts import (SIDES, contact_runs, detect_contacts, fit_ground, foot_indices, foot_skate_mm,
                                    skate_mm, soles)

FEET_MODES = ("lock", "off")
EASE_FRAMES = 3
SINK_TOLERANCE_M = 0.02   # soles this far below the fitted ground are its noise, not sinking


def _rotation_to_up(normal: np.ndarray) -> np.ndarray:
    """The smallest rotation taking `normal` to +Y."""
    up = np.array([0.0, 1.0, 0.0])
    v = np.cross(normal, up)
    s, c = np.linalg.norm(v), float(normal @ up)
    if s < 1e-9:
        return np.eye(3)
    K = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]]) / s
    angle = np.arctan2(s, c)
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def lock_feet(tracks: np.ndarray, names: list[str], fps: float
              ) -> tuple[np.ndarray, dict, np.ndarray, np.ndarray]:
    """(cleaned tracks, report for animation.json, T x 2 contacts [left, right], T x 2 frames
    whose foot was moved)."""
    normal, d = fit_ground(tracks, names, fps)
    R = _rotation_to_up(normal)
    out = tracks @ R.T
    out[..., 1] -= d
    lowest = soles(out, names)[..., 1].min(1)                        # T
    sinking = np.maximum(0.0, -lowest - SINK_TOLERANCE_M)
    out[..., 1] += sinking[:, None]
    sunk = int((sinking > 0).sum())
    up = np.array([0.0, 1.0, 0.0])
    contact = detect_contacts(out, names, fps, up, 0.0)
    before = foot_skate_mm(out, names, contact)
    moved_feet = np.zeros(contact.shape, bool)
    for k, side in enumerate(SIDES):
        foot = foot_indices(names, side)                            # ankle first
        target, weight = _foot_targets(out[:, foot], contact[:, k])
        moved = moved_feet[:, k] = weight > 0
        if not moved.any():
            continue
        # blend toward each joint's spot, never into the floor
        goal = out[:, foot] + weight[:, None, None] * (target - out[:, foot])
        goal[..., 1] -= np.minimum(goal[..., 1].min(1), 0.0)[:, None]
        hip, knee, ankle = (names.index(f"{j}_{side}") for j in ("hip", "knee", "ankle"))
        new_knee, reached = _two_bone_ik(out[:, hip], out[:, knee], out[:, ankle], goal[:, 0])
        short = reached - goal[:, 0]                                # out of reach: the foot stops short
        out[moved, knee] = new_knee[moved]
        out[np.ix_(moved, foot)] = (goal + short[:, None, :])[moved]
    after = foot_skate_mm(out, names, contact)
    report = {
        "mode": "lock",
        "ground": {"normal": [round(float(v), 5) for v in normal], "offset_m": round(d, 4),
                   "note": "fitted to the feet's slow, low frames; the output's ground is y = 0"},
        "contact_frames": {side: [[int(a), int(b)] for a, b in contact_runs(contact[:, k])]
                           for k, side in enumerate(SIDES)},
        "frames_lifted_out_of_the_ground": sunk,
        "skate_mm_per_frame": {"before": _rounded(before), "after": _rounded(after)},
    }
    return out, report, contact, moved_feet


def bone_skate_mm(world: np.ndarray, skeleton: dict, contact: np.ndarray) -> float:
    """Foot skate of an animation's own foot and toe bones (heads and tails; world: T x B x 4 x 4
    frames of skeleton's bones, whose Y axis runs head to tail), mm per frame."""
    feet = []
    for side in SIDES:
        points = []
        for b, bone in enumerate(skeleton["bones"]):
            if bone.get("side") == side and bone.get("part") in ("foot", "toe"):
                length = float(np.linalg.norm(np.subtract(bone["tail"], bone["head"])))
                points += [world[:, b, :3, 3], world[:, b, :3, 3] + world[:, b, :3, 1] * length]
        if not points:
            return float("nan")
        feet.append(np.stack(points, 1))
    return skate_mm(feet, contact)


def _foot_targets(foot: np.ndarray, contact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T x F x 3 spot of each foot joint, T weight): during a contact run every joint of the foot
    sits on its median position over the run (weight 1); the weight fades over EASE_FRAMES on
    either side, toward the nearer run's spot."""
    T = len(foot)
    target = foot.copy()
    weight = np.zeros(T)
    for a, b in contact_runs(contact):
        spot = np.median(foot[a:b], axis=0)
        target[a:b] = spot
        weight[a:b] = 1.0
        for i in range(1, EASE_FRAMES + 1):
            w = 1 - i / (EASE_FRAMES + 1)
            for t in (a - i, b - 1 + i):
                if 0 <= t < T and not contact[t] and w > weight[t]:
                    target[t], weight[t] = spot, w
    return target, weight


def plant_leg_bones(world: np.ndarray, parents: np.ndarray, skeleton: dict, ankle_targets: np.ndarray,
                    moved: np.ndarray) -> np.ndarray:
    """Local rotations (T x B x 3 x 3) with each leg re-solved so its foot bone's head reaches
    ankle_targets (T x 2 x 3, [left, right]) in the frames where moved (T x 2) says so, with the
    animation's own (fixed) bone lengths: the thigh and shin swing by the smallest rotations that
    put the knee and ankle there, the foot keeps its world rotation. world: T x B x 4 x 4."""
    world = world.copy()
    bones = skeleton["bones"]
    part = {(b.get("side"), b.get("part")): i for i, b in enumerate(bones)}
    for k, side in enumerate(SIDES):
        try:
            th, sh, ft = (part[(side, p)] for p in ("thigh", "shin", "foot"))
        except KeyError:
            continue   # a convention without a leg chain keeps its rotations
        m = moved[:, k]
        if not m.any():
            continue
        H, K, A = (world[m, i, :3, 3] for i in (th, sh, ft))
        S1, S21, new_knee, reached = leg_turns(H, K, A, ankle_targets[m, k])
        foot_rot = world[m, ft, :3, :3].copy()
        world[m, th, :3, :3] = S1 @ world[m, th, :3, :3]
        world[m, sh, :3, :3] = S21 @ world[m, sh, :3, :3]
        world[m, sh, :3, 3] = new_knee
        world[m, ft, :3, :3] = foot_rot
        world[m, ft, :3, 3] = reached
    rot = world[:, :, :3, :3]
    local = rot.copy()
    has = parents >= 0
    local[:, has] = np.swapaxes(rot[:, parents[has]], -1, -2) @ rot[:, has]
    return local


def leg_turns(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, goal: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-bone leg IK as world-space turns (T x 3 each point): (thigh turn, shin turn (T x 3 x 3
    each, left-multiplying the bones' world rotations), new knee, ankle reached). The thigh and
    shin keep their lengths and the knee bends the way it bent; a goal out of reach stops at the
    straight leg."""
    new_knee, reached = _two_bone_ik(hip, knee, ankle, goal)
    S1 = _swing(knee - hip, new_knee - hip)
    S2 = _swing(np.einsum("tij,tj->ti", S1, ankle - hip) - (new_knee - hip), reached - new_knee)
    return S1, S2 @ S1, new_knee, reached


def lock_planted(points: np.ndarray, contact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T x 3 goal, T bool moved) for one foot's point (T x 3): held on its median spot through
    each contact run, easing in and out over EASE_FRAMES."""
    target, weight = _foot_targets(points[:, None], contact)
    return points + weight[:, None] * (target[:, 0] - points), weight > 0


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """T x 3 x 3: the smallest rotations taking the directions a to b (T x 3 each)."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    v = np.cross(a, b)
    c = (a * b).sum(1)
    K = np.zeros((len(a), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 0] = -v[:, 2], v[:, 1], v[:, 2]
    K[:, 1, 2], K[:, 2, 0], K[:, 2, 1] = -v[:, 0], -v[:, 1], v[:, 0]
    # Rodrigues with the half-angle form; a and b never point opposite here (legs bend < 180 deg)
    return np.eye(3) + K + K @ K / np.maximum(1.0 + c, 1e-9)[:, None, None]


def _rounded(v: float):
    return None if not np.isfinite(v) else round(float(v), 2)


def _two_bone_ik(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, target: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(knee, ankle reached) per frame (T x 3 each): thigh and shin keep their median lengths, the
    knee bends toward where it was."""
    l1 = float(np.median(np.linalg.norm(knee - hip, axis=1)))
    l2 = float(np.median(np.linalg.norm(ankle - knee, axis=1)))
    to = target - hip
    r = np.linalg.norm(to, axis=1)
    u = to / np.maximum(r, 1e-9)[:, None]
    r = np.clip(r, abs(l1 - l2) + 1e-6, (l1 + l2) * 0.9999)
    reached = hip + u * r[:, None]
    a = (l1 * l1 - l2 * l2 + r * r) / (2 * r)
    h = np.sqrt(np.maximum(l1 * l1 - a * a, 0.0))
    pole = knee - hip
    pole = pole - (pole * u).sum(1, keepdims=True) * u
    n = np.linalg.norm(pole, axis=1)
    fallback = np.cross(u, np.array([1.0, 0.0, 0.0]))                # straight leg: bend forward (+Z side)
    fallback *= np.sign(fallback[:, 2:3] + 1e-12)
    pole = np.where((n > 1e-6)[:, None], pole / np.maximum(n, 1e-9)[:, None],
                    fallback / np.maximum(np.linalg.norm(fallback, axis=1, keepdims=True), 1e-9))
    return hip + a[:, None] * u + h[:, None] * pole, reached
