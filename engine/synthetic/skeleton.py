"""A parametric human skeleton: named joint centres from a height and a pose.

Body frame: metres, x = the person's left, y = up, z = the person's front; the origin is on the
ground between the feet. Joint names follow ../shared/samples (`shoulder_L`, `forefinger0_L` ...
`forefinger3_L` from knuckle to tip; `_L` is the person's left).

A pose is a dict joint -> rotation vector (axis * angle, radians, body-frame axes at rest). A
joint's rotation turns every bone below it, so {"elbow_L": [pi/2, 0, 0]} bends the left forearm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

FINGERS = ("thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")


def _rest_offsets(height: float) -> list[tuple[str, str | None, tuple[float, float, float]]]:
    """(joint, parent, offset from parent at rest in the body frame), in metres, parents first.

    Proportions are those of an average adult (fractions of the height); arms hang beside the
    body with the palms facing the thighs.
    """
    h = height
    j: list[tuple[str, str | None, tuple[float, float, float]]] = [
        ("pelvis", None, (0.0, 0.53 * h, 0.0)),
        ("spine1", "pelvis", (0.0, 0.09 * h, -0.005 * h)),
        ("chest", "spine1", (0.0, 0.11 * h, 0.0)),
        ("neck", "chest", (0.0, 0.10 * h, -0.005 * h)),
        ("head", "neck", (0.0, 0.035 * h, 0.005 * h)),
        ("head_center", "head", (0.0, 0.045 * h, 0.008 * h)),
        ("head_top", "head_center", (0.0, 0.07 * h, -0.005 * h)),
    ]
    for side, s in (("L", 1.0), ("R", -1.0)):
        j += [
            (f"shoulder_{side}", "chest", (s * 0.11 * h, 0.085 * h, -0.01 * h)),
            (f"elbow_{side}", f"shoulder_{side}", (s * 0.012 * h, -0.186 * h, -0.005 * h)),
            (f"wrist_{side}", f"elbow_{side}", (s * 0.004 * h, -0.146 * h, 0.01 * h)),
            (f"hand_{side}", f"wrist_{side}", (0.0, -0.05 * h, 0.0)),
            (f"hip_{side}", "pelvis", (s * 0.052 * h, -0.03 * h, 0.0)),
            (f"knee_{side}", f"hip_{side}", (s * 0.005 * h, -0.225 * h, 0.004 * h)),
            (f"ankle_{side}", f"knee_{side}", (0.0, -0.23 * h, -0.012 * h)),
            (f"heel_{side}", f"ankle_{side}", (0.0, -0.035 * h, -0.03 * h)),
            (f"toe_{side}", f"ankle_{side}", (s * 0.01 * h, -0.038 * h, 0.105 * h)),
        ]
        # fingers: knuckles across the palm's end (front to back), segments down from there;
        # the thumb leaves the palm forward and down.
        knuckles = {
            "thumb": (0.0, -0.015 * h, 0.018 * h),
            "forefinger": (0.0, -0.055 * h, 0.014 * h),
            "middle_finger": (0.0, -0.057 * h, 0.004 * h),
            "ring_finger": (0.0, -0.055 * h, -0.006 * h),
            "pinky_finger": (0.0, -0.05 * h, -0.015 * h),
        }
        lengths = {"thumb": 0.038, "forefinger": 0.05, "middle_finger": 0.055, "ring_finger": 0.051,
                   "pinky_finger": 0.041}
        for finger in FINGERS:
            base = f"{finger}0_{side}"
            j.append((base, f"wrist_{side}", knuckles[finger]))
            direction = np.array([0.0, -1.0, 0.35 if finger == "thumb" else 0.0])
            direction /= np.linalg.norm(direction)
            parent = base
            for k, share in enumerate((0.45, 0.3, 0.25), start=1):
                off = direction * lengths[finger] * h * share
                j.append((f"{finger}{k}_{side}", parent, tuple(off)))
                parent = f"{finger}{k}_{side}"
    return j


@dataclass
class Skeleton:
    names: list[str]
    parents: list[int]          # index of the parent, -1 for the root
    rest_offsets: np.ndarray    # J x 3
    height: float

    @classmethod
    def for_height(cls, height: float = 1.75) -> "Skeleton":
        table = _rest_offsets(height)
        names = [name for name, _, _ in table]
        index = {n: i for i, n in enumerate(names)}
        parents = [index[p] if p is not None else -1 for _, p, _ in table]
        return cls(names, parents, np.array([o for _, _, o in table], dtype=np.float64), height)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def pose(self, rotations: dict[str, np.ndarray] | None = None,
             root_translation=(0.0, 0.0, 0.0), root_rotation=None) -> "PosedSkeleton":
        """Forward kinematics: joint positions and each joint's global rotation (J x 3 x 3)."""
        rotations = rotations or {}
        unknown = set(rotations) - set(self.names)
        if unknown:
            raise ValueError(f"pose names unknown joints: {sorted(unknown)}")
        J = len(self.names)
        local = np.tile(np.eye(3), (J, 1, 1))
        for name, rotvec in rotations.items():
            local[self.index(name)] = Rotation.from_rotvec(np.asarray(rotvec, float)).as_matrix()
        world_rot = np.empty((J, 3, 3))
        positions = np.empty((J, 3))
        root_r = np.eye(3) if root_rotation is None else Rotation.from_rotvec(root_rotation).as_matrix()
        for i, parent in enumerate(self.parents):  # J ~ 70: a loop over joints, not over pixels
            if parent < 0:
                world_rot[i] = root_r @ local[i]
                positions[i] = root_r @ self.rest_offsets[i] + np.asarray(root_translation, float)
            else:
                world_rot[i] = world_rot[parent] @ local[i]
                positions[i] = positions[parent] + world_rot[parent] @ self.rest_offsets[i]
        return PosedSkeleton(self, positions, world_rot)


@dataclass
class PosedSkeleton:
    skeleton: Skeleton
    positions: np.ndarray   # J x 3 body frame
    rotations: np.ndarray   # J x 3 x 3 global rotation of each joint's frame

    def __getitem__(self, name: str) -> np.ndarray:
        return self.positions[self.skeleton.index(name)]

    def as_dict(self) -> dict[str, np.ndarray]:
        return dict(zip(self.skeleton.names, self.positions))


# ---- poses ----------------------------------------------------------------------------------


def _rv(axis, degrees: float) -> np.ndarray:
    a = np.asarray(axis, float)
    return a / np.linalg.norm(a) * np.radians(degrees)


X, Y, Z = (1, 0, 0), (0, 1, 0), (0, 0, 1)


def named_pose(name: str) -> dict[str, np.ndarray]:
    """A few canonical poses. Abduction of the left arm is a rotation about +z, of the right about -z."""
    if name == "rest":
        return {}
    if name == "apose":
        return {"shoulder_L": _rv(Z, 40), "shoulder_R": _rv(Z, -40)}
    if name == "tpose":
        return {"shoulder_L": _rv(Z, 88), "shoulder_R": _rv(Z, -88)}
    if name == "bent":  # elbows and knees bent, arms a little forward: webbing and occlusion cases
        return {"shoulder_L": _rv(Z, 25) + _rv(X, -20), "shoulder_R": _rv(Z, -25) + _rv(X, -30),
                "elbow_L": _rv(X, -70), "elbow_R": _rv(X, -95),
                "hip_L": _rv(X, -25), "knee_L": _rv(X, 40), "hip_R": _rv(Z, -6)}
    if name == "step":
        return {"hip_L": _rv(X, -25), "knee_L": _rv(X, 20), "hip_R": _rv(X, 15),
                "shoulder_L": _rv(Z, 15) + _rv(X, 20), "shoulder_R": _rv(Z, -15) + _rv(X, -20),
                "elbow_L": _rv(X, -20), "elbow_R": _rv(X, -30)}
    if name == "arms_forward":  # forearms in front of the torso
        return {"shoulder_L": _rv(X, -50) + _rv(Z, 10), "shoulder_R": _rv(X, -45) + _rv(Z, -10),
                "elbow_L": _rv(X, -60), "elbow_R": _rv(X, -70)}
    raise ValueError(f"unknown pose {name!r}; known: rest, apose, tpose, bent, step, arms_forward")


POSES = ("rest", "apose", "tpose", "bent", "step", "arms_forward")


def random_pose(seed: int) -> dict[str, np.ndarray]:
    """A plausible random pose: limbs within comfortable ranges, slight torso and head turn."""
    rng = np.random.default_rng(seed)
    u = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
    pose = {
        "spine1": _rv(Y, u(-15, 15)) + _rv(X, u(-8, 8)),
        "head": _rv(Y, u(-25, 25)) + _rv(X, u(-10, 15)),
        "shoulder_L": _rv(Z, u(10, 80)) + _rv(X, u(-40, 30)),
        "shoulder_R": _rv(Z, -u(10, 80)) + _rv(X, u(-40, 30)),
        "elbow_L": _rv(X, -u(0, 100)),
        "elbow_R": _rv(X, -u(0, 100)),
        "hip_L": _rv(X, -u(-10, 35)) + _rv(Z, u(0, 12)),
        "hip_R": _rv(X, -u(-10, 35)) + _rv(Z, -u(0, 12)),
        "knee_L": _rv(X, u(0, 50)),
        "knee_R": _rv(X, u(0, 50)),
    }
    for side in "LR":
        # fingers hang down with the palm toward the body: curling turns them about the
        # front-back axis, toward -x on the left hand and +x on the right
        palm_axis = (0, 0, -1) if side == "L" else Z
        for finger in FINGERS[1:]:
            curl = u(0, 40)
            for k in (0, 1, 2):
                pose[f"{finger}{k}_{side}"] = _rv(palm_axis, curl)
    return pose
