"""Motions with real ground contact: stance feet stay put, so foot skate has a true zero.

Each motion gives, per time, the joint rotations, which feet stand ("L", "R", "LR", or "" in
flight) and how high the body is lifted in flight. `ground_motion` turns a sampled sequence of
those into root translations frame by frame: a standing foot keeps the ankle position it landed
with (horizontally) and its sole on the ground (vertically), so the body is carried by its feet.
Stance feet are kept flat (the ankle undoes the hip's and knee's pitch) and, on a turn, keep
their heading (the hip undoes the pelvis's yaw), so nothing of a standing foot slides.

Contact labels come from the resulting geometry: a foot is in contact when its sole is within
CONTACT_HEIGHT_M of the ground and its ankle moves less than CONTACT_SPEED_M_S horizontally.
Body frame of skeleton.py: metres, y up, z the person's front, the ground at y = 0.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from engine.synthetic.skeleton import X, Y, Z, Skeleton, _rv

GROUNDED_MOTIONS = ("walk_line", "turn", "squat", "jump", "side_step")
CONTACT_HEIGHT_M = 0.01
CONTACT_SPEED_M_S = 0.05


def _compose(*rotvecs) -> np.ndarray:
    """The rotation vector of applying rotvecs[0] first, then [1] ... (world-fixed axes)."""
    r = Rotation.identity()
    for v in rotvecs:
        r = Rotation.from_rotvec(np.asarray(v, float)) * r
    return r.as_rotvec()


def _leg(side: str, forward_deg: float, knee_deg: float, *, out_deg: float = 0.0, yaw_deg: float = 0.0,
         flat: bool = True) -> dict:
    """Hip flexion forward (and abduction out, yaw about the vertical), knee flexion, and the ankle
    that keeps the foot flat on the ground (the sagittal pitches cancel)."""
    s = 1.0 if side == "L" else -1.0
    pose = {f"hip_{side}": _compose(_rv(Y, yaw_deg), _rv(Z, s * out_deg), _rv(X, -forward_deg)),
            f"knee_{side}": _rv(X, knee_deg)}
    if flat:
        pose[f"ankle_{side}"] = _rv(X, forward_deg - knee_deg)
    return pose


def grounded_pose(motion: str, time_s: float, *, turn_deg: float = 0.0) -> tuple[dict, str, float]:
    """(joint rotations, standing feet, extra lift in flight, metres) of a grounded motion."""
    if motion == "walk_line":
        # 0.9 strides/s: the left foot stands while its leg sweeps back (phase pi/2 .. 3pi/2)
        phase = 2 * np.pi * 0.9 * time_s
        amp = 20.0
        pose = {}
        for side, offset in (("L", 0.0), ("R", np.pi)):
            p = (phase + offset) % (2 * np.pi)
            forward = amp * np.sin(p)
            swinging = p < np.pi / 2 or p >= 3 * np.pi / 2
            u = ((p + np.pi / 2) % (2 * np.pi)) / np.pi      # 0 -> 1 over the swing
            knee = 55.0 * np.sin(np.pi * u) if swinging else 3.0
            pose.update(_leg(side, forward, knee))
        stance = "L" if np.pi / 2 <= phase % (2 * np.pi) < 3 * np.pi / 2 else "R"
        arm = amp * np.sin(phase)
        pose.update({"shoulder_L": _rv(X, arm) + _rv(Z, 8), "shoulder_R": _rv(X, -arm) + _rv(Z, -8),
                     "elbow_L": _rv(X, -15), "elbow_R": _rv(X, -15)})
        return pose, stance, 0.0
    if motion == "side_step":
        # step to the person's left and close: the right foot stands while the left one moves out
        # (0 - 0.5 s), the left stands while the right closes (0.5 - 1 s); 1 s per step
        u = time_s % 1.0
        half = u < 0.5
        v = (u if half else u - 0.5) / 0.5
        lift = np.sin(np.pi * v)
        spread = 12.0 * (v if half else 1.0 - v)               # degrees each leg leans out
        pose = {}
        pose.update(_leg("L", 0.0, 30.0 * lift if half else 0.0, out_deg=spread + (8.0 * lift if half else 0.0)))
        pose.update(_leg("R", 0.0, 0.0 if half else 30.0 * lift, out_deg=spread + (0.0 if half else 8.0 * lift)))
        for side in "LR":   # the ankle also rolls to keep the sole flat when the leg leans out
            s = 1.0 if side == "L" else -1.0
            out = spread + (8.0 * lift if (side == "L") == half else 0.0)
            knee = pose[f"knee_{side}"][0]
            pose[f"ankle_{side}"] = _compose(_rv(X, -np.degrees(knee)), _rv(Z, -s * out))
        pose.update({"shoulder_L": _rv(Z, 15), "shoulder_R": _rv(Z, -15)})
        return pose, ("R" if half else "L"), 0.0
    if motion == "turn":
        # a quarter turn to the left on the spot in four steps (0.5 s each), the pelvis yawing
        # steadily; the standing foot keeps its heading while the other lifts and turns with it
        step = int(time_s // 0.5)
        v = (time_s % 0.5) / 0.5
        lifting = "L" if step % 2 == 0 else "R"
        stance = "R" if lifting == "L" else "L"
        start_yaw = turn_deg_at(step * 0.5)
        pose = {"pelvis": _rv(Y, turn_deg)}
        pose.update(_leg(lifting, 15.0 * np.sin(np.pi * v), 35.0 * np.sin(np.pi * v)))
        # the standing hip undoes the pelvis's yaw since this foot landed
        pose.update(_leg(stance, 0.0, 3.0, yaw_deg=-(turn_deg - start_yaw)))
        # the lifted foot lands with the heading the pelvis will have (no yaw of its own)
        pose.update({"shoulder_L": _rv(Z, 10), "shoulder_R": _rv(Z, -10)})
        return pose, stance, 0.0
    if motion == "squat":
        # down over 1 s, up over 1 s; both feet flat throughout
        depth = 0.5 - 0.5 * np.cos(np.pi * min(time_s, 2.0))
        knee = 95.0 * depth
        hip = 80.0 * depth
        pose = {}
        for side in "LR":
            pose[f"hip_{side}"] = _rv(X, -hip)
            pose[f"knee_{side}"] = _rv(X, knee)
            pose[f"ankle_{side}"] = _rv(X, hip - knee)
        pose.update({"spine1": _rv(X, 25 * depth), "shoulder_L": _rv(X, -70 * depth), "shoulder_R": _rv(X, -70 * depth)})
        return pose, "LR", 0.0
    if motion == "jump":
        # crouch (0 - 0.4 s), take off, 0.4 s of flight, land and absorb (0.8 - 1.2 s), stand
        g = 9.81
        if time_s < 0.4:
            crouch = np.sin(np.pi / 2 * time_s / 0.4)
        elif time_s < 0.8:
            crouch = 0.0
        elif time_s < 1.2:
            crouch = np.sin(np.pi * (time_s - 0.8) / 0.4) * 0.8
        else:
            crouch = 0.0
        pose = {}
        for side in "LR":
            pose.update(_leg(side, 50.0 * crouch, 80.0 * crouch))
        pose.update({"shoulder_L": _rv(X, 40 * crouch), "shoulder_R": _rv(X, 40 * crouch)})
        if 0.4 <= time_s < 0.8:
            tf = time_s - 0.4
            return pose, "", 0.5 * g * tf * (0.4 - tf)          # 0.2 m at the top
        return pose, "LR", 0.0
    raise ValueError(f"unknown grounded motion {motion!r}; known: {', '.join(GROUNDED_MOTIONS)}")


def turn_deg_at(time_s: float) -> float:
    """The turn's pelvis yaw: a quarter turn over 2 s, eased in and out."""
    u = np.clip(time_s / 2.0, 0.0, 1.0)
    return 90.0 * (0.5 - 0.5 * np.cos(np.pi * u))


def sample_grounded(skeleton: Skeleton, motion: str, times: np.ndarray) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """(rotations per frame, N x 3 root translations, N x 2 contact labels [left, right])."""
    rotations, stances, lifts = [], [], []
    for t in times:
        pose, stance, lift = grounded_pose(motion, float(t), turn_deg=turn_deg_at(float(t)))
        rotations.append(pose)
        stances.append(stance)
        lifts.append(lift)
    idx = {n: skeleton.index(n) for n in ("ankle_L", "ankle_R", "heel_L", "heel_R", "toe_L", "toe_R")}
    rest = skeleton.pose({})
    clearance = min(rest.positions[idx[f"{p}_L"], 1] for p in ("heel", "toe"))  # sole height at rest
    translations = np.zeros((len(times), 3))
    anchors: dict[str, np.ndarray] = {}
    previous = np.zeros(3)
    soles = np.zeros((len(times), 2))
    ankles = np.zeros((len(times), 2, 3))
    for f, (pose, stance) in enumerate(zip(rotations, stances)):
        posed = skeleton.pose(pose)
        ankle = {s: posed.positions[idx[f"ankle_{s}"]] for s in "LR"}
        sole = {s: min(posed.positions[idx[f"heel_{s}"], 1], posed.positions[idx[f"toe_{s}"], 1]) for s in "LR"}
        t = previous.copy()
        if stance:
            for s in stance:   # a foot that just landed keeps where it is now
                if s not in anchors:
                    anchors[s] = (ankle[s] + previous)[[0, 2]]
            for s in list(anchors):
                if s not in stance:
                    del anchors[s]
            t[[0, 2]] = np.mean([anchors[s] - ankle[s][[0, 2]] for s in stance], axis=0)
            t[1] = clearance - min(sole[s] for s in stance)
        else:
            anchors.clear()
            t[1] = clearance - min(sole.values()) + lifts[f]
        translations[f] = previous = t
        soles[f] = [sole[s] + t[1] - clearance for s in "LR"]
        ankles[f] = [ankle[s] + t for s in "LR"]
    return rotations, translations, contact_labels(ankles, soles, times)


def contact_labels(ankles: np.ndarray, sole_heights: np.ndarray, times: np.ndarray) -> np.ndarray:
    """N x 2 bool: sole on the ground and the ankle (N x 2 x 3) still horizontally."""
    dt = np.gradient(times) if len(times) > 1 else np.ones(1)
    speed = np.linalg.norm(np.gradient(ankles[:, :, [0, 2]], axis=0), axis=-1) / dt[:, None] \
        if len(times) > 1 else np.zeros(ankles.shape[:2])
    return (sole_heights < CONTACT_HEIGHT_M) & (speed < CONTACT_SPEED_M_S)
