"""The rig's joint set: which Sapiens keypoint each joint comes from and how it is lifted.

Joint names are the engine's own (side suffix `_L` = the person's left = Sapiens `left_*`).
Every skeleton convention (assets/rigs/*.json) places its bones between these joints.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from engine.bundle.format import keypoint_index  # noqa: F401 - the rig's lift reads it from here

# Segmentation class ids (assets/seg_classes.json).
APPAREL, FACE_NECK, HAIR = 1, 3, 4
L_FOOT, L_HAND, L_LOWER_ARM, L_LOWER_LEG, L_SHOE, L_SOCK, L_UPPER_ARM, L_UPPER_LEG = 5, 6, 7, 8, 9, 10, 11, 12
LOWER_CLOTHING = 13
R_FOOT, R_HAND, R_LOWER_ARM, R_LOWER_LEG, R_SHOE, R_SOCK, R_UPPER_ARM, R_UPPER_LEG = 14, 15, 16, 17, 18, 19, 20, 21
TORSO, UPPER_CLOTHING = 22, 23
MOUTH = (24, 25, 26, 27, 28)  # lips, teeth, tongue
N_CLASSES = 29

SIDE_LABELS = {
    "L": dict(upper_arm=L_UPPER_ARM, lower_arm=L_LOWER_ARM, hand=L_HAND, upper_leg=L_UPPER_LEG,
              lower_leg=L_LOWER_LEG, foot=L_FOOT, shoe=L_SHOE, sock=L_SOCK),
    "R": dict(upper_arm=R_UPPER_ARM, lower_arm=R_LOWER_ARM, hand=R_HAND, upper_leg=R_UPPER_LEG,
              lower_leg=R_LOWER_LEG, foot=R_FOOT, shoe=R_SHOE, sock=R_SOCK),
}


@dataclass(frozen=True)
class JointSpec:
    name: str
    keypoint: str            # Sapiens keypoint name
    parent: str | None       # joint it hangs from when filled in from a bone length
    axis: tuple[str, str]    # joints whose image direction is the limb axis at this joint
    labels: frozenset[int]   # body-part classes that belong to this joint's surface
    depth: str               # how far the centre lies behind the surface: "limb", "surface"
    width_at: float = 0.0    # where along axis the limb width is measured (0 = at the joint)
    inward: float = 1.0      # centre depth behind the surface, in limb half-widths
    typical_length: float = 0.0  # parent->joint length as a fraction of body height (anthropometry)


def _side(side: str) -> list[JointSpec]:
    s = SIDE_LABELS[side]
    sl = side.lower()
    other = "R" if side == "L" else "L"
    arm = frozenset({s["upper_arm"], s["lower_arm"], UPPER_CLOTHING, APPAREL})
    forearm = frozenset({s["lower_arm"], s["hand"], s["upper_arm"], UPPER_CLOTHING, APPAREL})
    hand = frozenset({s["hand"], s["lower_arm"]})
    leg = frozenset({s["upper_leg"], s["lower_leg"], LOWER_CLOTHING, APPAREL})
    shin = frozenset({s["lower_leg"], s["sock"], s["shoe"], s["foot"], LOWER_CLOTHING, APPAREL})
    foot = frozenset({s["foot"], s["shoe"], s["sock"], s["lower_leg"]})
    full = "left" if side == "L" else "right"
    j = [
        # Shoulder and hip centres sit deeper than the limb's own radius (deltoid, pelvis).
        JointSpec(f"shoulder_{side}", f"{full}_shoulder", "neck", (f"shoulder_{side}", f"elbow_{side}"),
                  arm | {TORSO}, "limb", width_at=0.3, inward=1.35, typical_length=0.13),
        JointSpec(f"elbow_{side}", f"{full}_elbow", f"shoulder_{side}", (f"shoulder_{side}", f"wrist_{side}"),
                  arm | forearm, "limb", typical_length=0.186),
        JointSpec(f"wrist_{side}", f"{full}_wrist", f"elbow_{side}", (f"elbow_{side}", f"wrist_{side}"),
                  forearm | hand, "limb", typical_length=0.146),
        JointSpec(f"hip_{side}", f"{full}_hip", f"hip_{other}", (f"hip_{side}", f"knee_{side}"),
                  leg | {TORSO, UPPER_CLOTHING}, "limb", width_at=0.25, inward=1.05, typical_length=0.10),
        JointSpec(f"knee_{side}", f"{full}_knee", f"hip_{side}", (f"hip_{side}", f"ankle_{side}"),
                  leg | shin, "limb", typical_length=0.245),
        JointSpec(f"ankle_{side}", f"{full}_ankle", f"knee_{side}", (f"knee_{side}", f"ankle_{side}"),
                  shin | foot, "limb", typical_length=0.246),
        JointSpec(f"big_toe_{side}", f"{full}_big_toe", f"ankle_{side}", (f"ankle_{side}", f"big_toe_{side}"),
                  foot, "limb", typical_length=0.13),
        JointSpec(f"small_toe_{side}", f"{full}_small_toe", f"ankle_{side}", (f"ankle_{side}", f"small_toe_{side}"),
                  foot, "limb", typical_length=0.12),
        JointSpec(f"heel_{side}", f"{full}_heel", f"ankle_{side}", (f"heel_{side}", f"big_toe_{side}"),
                  foot, "limb", inward=0.5, typical_length=0.06),
        JointSpec(f"eye_{side}", f"{full}_eye", "neck", (f"eye_{side}", f"eye_{other}"),
                  frozenset({FACE_NECK}), "surface", typical_length=0.12),
        JointSpec(f"ear_{side}", f"{full}_ear", "neck", (f"ear_{side}", f"ear_{other}"),
                  frozenset({FACE_NECK, HAIR}), "surface", typical_length=0.1),
    ]
    # Fingers: Sapiens numbers each finger from the tip (4) to the knuckle (third_joint).
    finger_kp = {"thumb": "thumb", "index": "forefinger", "middle": "middle_finger",
                 "ring": "ring_finger", "pinky": "pinky_finger"}
    lengths = {"thumb": (0.03, 0.025, 0.02, 0.018), "index": (0.055, 0.025, 0.015, 0.012),
               "middle": (0.055, 0.028, 0.017, 0.013), "ring": (0.052, 0.026, 0.016, 0.012),
               "pinky": (0.05, 0.02, 0.012, 0.011)}
    for finger, kp in finger_kp.items():
        kps = [f"{full}_{kp}_third_joint", f"{full}_{kp}2", f"{full}_{kp}3", f"{full}_{kp}4"]
        names = [f"{finger}{i}_{side}" for i in range(1, 5)]
        for i, (name, kpn) in enumerate(zip(names, kps)):
            parent = f"wrist_{side}" if i == 0 else names[i - 1]
            nxt = names[i + 1] if i < 3 else name
            j.append(JointSpec(name, kpn, parent, (parent, nxt), hand, "limb", typical_length=lengths[finger][i]))
    return j


def _centre() -> list[JointSpec]:
    head = frozenset({FACE_NECK, HAIR, *MOUTH})
    return [
        JointSpec("neck", "neck", None, ("neck", "nose"),
                  frozenset({FACE_NECK, UPPER_CLOTHING, TORSO, APPAREL}), "limb", typical_length=0.0),
        JointSpec("nose", "nose", "neck", ("neck", "nose"), head, "surface", typical_length=0.12),
        JointSpec("chin", "tip_of_chin", "neck", ("neck", "nose"), head, "surface", typical_length=0.08),
    ]


@lru_cache(maxsize=1)
def joint_specs() -> tuple[JointSpec, ...]:
    return tuple(_centre() + _side("L") + _side("R"))


@lru_cache(maxsize=1)
def joint_names() -> list[str]:
    return [s.name for s in joint_specs()]


def mirror_name(name: str) -> str:
    if name.endswith("_L"):
        return name[:-2] + "_R"
    if name.endswith("_R"):
        return name[:-2] + "_L"
    return name
