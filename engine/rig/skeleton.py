"""Joint centres -> a DCC-agnostic skeleton (skeleton.json content) in a chosen convention.

A convention is a table in assets/rigs/NAME.json: for each bone its name, parent, head and tail
(named rig points computed here from the joints), body part and side (for skin weights), a roll
rule, and optional Rigify metadata. Adding a convention is adding a table.

Bone orientation is explicit: every bone gets a unit `z_axis` (avatar frame) from its roll rule,
so that rotating a bone about its local +X always does the natural thing: limbs flex (elbows and
knees bend the way they bend), fingers curl toward the palm on both hands, jaws open. `roll` is
the same orientation as Blender's edit-bone roll once the avatar's Y-up frame is turned into
Blender's Z-up one ((x, y, z) -> (x, -z, y)), so Blender needs no further maths.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from engine.errors import EngineError
from engine.paths import asset

SKELETON_FORMAT = "sapiens-skeleton"
SKELETON_VERSION = "1.0"
MIN_LIMB_BEND_DEG = 3.0    # Rigify's IK needs elbows and knees slightly bent to know their pole


def available_conventions() -> list[str]:
    return sorted(p.stem for p in asset("rigs").glob("*.json"))


@lru_cache(maxsize=None)
def load_convention(name: str) -> dict:
    path = asset("rigs", f"{name}.json")
    if not path.exists():
        raise EngineError(f"unknown rig convention '{name}': no table {path} "
                          f"(available: {', '.join(available_conventions())})")
    table = json.loads(path.read_text())
    names = [b["name"] for b in table["bones"]]
    seen = set()
    for b in table["bones"]:   # parents must come first so every walk is one pass
        if b["parent"] is not None and b["parent"] not in seen:
            raise EngineError(f"{path}: bone '{b['name']}' lists parent '{b['parent']}' before it is defined")
        seen.add(b["name"])
    if len(set(names)) != len(names):
        raise EngineError(f"{path}: bone names repeat")
    return table


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 1e-12, n, 1.0)


def _lerp(a, b, t):
    return a + (b - a) * t


def body_frame(j: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, up, forward) unit vectors of the body (avatar frame: left ~ +X, up ~ +Y, fwd ~ +Z)."""
    pelvis = 0.5 * (j["hip_L"] + j["hip_R"])
    up = _unit(j["neck"] - pelvis)
    left = _unit((j["hip_L"] - j["hip_R"]) + (j["shoulder_L"] - j["shoulder_R"]))
    left = _unit(left - up * (left @ up))
    forward = np.cross(left, up)
    return left, up, forward


def rig_points(j: dict[str, np.ndarray], height: float) -> dict[str, np.ndarray]:
    """Named points every convention's bones run between (avatar frame, metres)."""
    left, up, fwd = body_frame(j)
    p = dict(j)
    pelvis = 0.5 * (j["hip_L"] + j["hip_R"])
    neck = j["neck"]
    p["pelvis"] = pelvis
    for k in (1, 2, 3):
        p[f"spine{k}"] = _lerp(pelvis, neck, k / 4)
    # head centre: midway between the ears (inside the skull); else behind the eyes
    head_c = 0.5 * (j["ear_L"] + j["ear_R"])
    eyes = 0.5 * (j["eye_L"] + j["eye_R"])
    if np.linalg.norm(head_c - eyes) > 0.25 * height or np.linalg.norm(head_c - neck) < 0.02 * height:
        head_c = eyes - fwd * 0.05 * height
    p["head_center"] = head_c
    p["head_base"] = _lerp(neck, head_c, 0.7)
    p["neck_mid"] = _lerp(neck, p["head_base"], 0.5)
    p["head_top"] = head_c + (head_c - neck) * 0.9
    p["face_top"] = _lerp(p["head_base"], p["head_top"], 0.5)
    p["jaw_hinge"] = p["head_base"] + fwd * 0.01 * height
    chin = j.get("chin")
    if chin is None or np.linalg.norm(chin - p["jaw_hinge"]) > 0.12 * height \
            or np.linalg.norm(chin - p["jaw_hinge"]) < 0.02 * height:
        chin = p["jaw_hinge"] + fwd * 0.05 * height - up * 0.03 * height
    p["chin"] = chin
    p["ground"] = np.array([pelvis[0], 0.0, pelvis[2]])
    p["ground_fwd"] = p["ground"] + fwd * 0.1 * height
    for s, sgn in (("L", 1.0), ("R", -1.0)):
        p[f"eye_{s}"] = j[f"eye_{s}"] - fwd * 0.007 * height     # eyeball centre behind the cornea
        p[f"eye_tip_{s}"] = p[f"eye_{s}"] + fwd * 0.015 * height
        p[f"shoulder_root_{s}"] = _lerp(neck, j[f"shoulder_{s}"], 0.15) - up * 0.01 * height
        p[f"hand_tip_{s}"] = _lerp(j[f"wrist_{s}"], j[f"middle1_{s}"], 0.5)
        for i, f in enumerate(("index", "middle", "ring", "pinky"), start=1):
            p[f"palm{i}_{s}"] = _lerp(j[f"wrist_{s}"], j[f"{f}1_{s}"], 0.3)
        toe = 0.5 * (j[f"big_toe_{s}"] + j[f"small_toe_{s}"])
        p[f"ball_{s}"] = _lerp(j[f"ankle_{s}"], toe, 0.72)
        p[f"toe_{s}"] = toe
        heel = j[f"heel_{s}"]
        half = 0.025 * height
        p[f"heel_in_{s}"] = heel - sgn * left * half
        p[f"heel_out_{s}"] = heel + sgn * left * half
    return p


def _palm_normal(p: dict, s: str) -> np.ndarray:
    """Unit vector out of the palm (the side fingers curl toward), for either hand."""
    a = p[f"index1_{s}"] - p[f"wrist_{s}"]
    b = p[f"pinky1_{s}"] - p[f"wrist_{s}"]
    n = np.cross(a, b)
    return _unit(-n if s == "L" else n)


def _chain_flex(p: dict, a: str, b: str, c: str, default_dir: np.ndarray) -> np.ndarray:
    """Direction the lower bone of a - b - c flexes toward, perpendicular to the upper bone."""
    u = p[b] - p[a]
    v = p[c] - p[b]
    perp = v - u * (v @ u) / max(u @ u, 1e-12)
    if np.linalg.norm(perp) < np.sin(np.radians(2.0)) * np.linalg.norm(v):
        perp = default_dir - u * (default_dir @ u) / max(u @ u, 1e-12)
    return _unit(perp)


def _ensure_bend(p: dict, a: str, b: str, c: str, flex: np.ndarray) -> None:
    """Move the middle joint back a little when a limb is straighter than Rigify can generate."""
    u, v = p[b] - p[a], p[c] - p[b]
    cosang = (u @ v) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-12)
    if cosang > np.cos(np.radians(MIN_LIMB_BEND_DEG)):
        total = np.linalg.norm(p[c] - p[a])
        p[b] = p[b] - flex * total * np.tan(np.radians(MIN_LIMB_BEND_DEG)) * 0.5


def bone_z_axis(rule: str, side: str, part: str, head: np.ndarray, tail: np.ndarray, p: dict,
                frame: tuple) -> np.ndarray:
    left, up, fwd = frame
    y = _unit(tail - head)
    if rule == "forward":
        want = fwd
    elif rule == "up":
        want = up if abs(y @ up) < 0.95 else fwd
    elif rule == "down":
        want = -up if abs(y @ up) < 0.95 else -fwd
    elif rule == "arm":   # both arm bones share the elbow's hinge as their X axis
        want = _chain_flex(p, f"shoulder_{side}", f"elbow_{side}", f"wrist_{side}", fwd)
        if part == "forearm":   # the forearm's Z: the flex direction carried past the elbow
            want = np.cross(np.cross(p[f"elbow_{side}"] - p[f"shoulder_{side}"], want), y)
    elif rule == "leg":
        want = _chain_flex(p, f"hip_{side}", f"knee_{side}", f"ankle_{side}", -fwd)
        if part == "shin":
            want = np.cross(np.cross(p[f"knee_{side}"] - p[f"hip_{side}"], want), y)
    elif rule in ("palm", "finger", "thumb"):
        want = _palm_normal(p, side)
    else:
        raise EngineError(f"unknown roll rule '{rule}' in a rig convention table")
    z = want - y * (want @ y)
    if np.linalg.norm(z) < 1e-6:   # want parallel to the bone: any perpendicular, chosen stably
        z = np.cross(y, left if abs(y @ left) < 0.9 else up)
    return _unit(z)


# --- Blender roll -------------------------------------------------------------------------------
def avatar_to_blender(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return np.stack([v[..., 0], -v[..., 2], v[..., 1]], -1)


def roll_zero_z_axis(y: np.ndarray) -> np.ndarray:
    """Z axis Blender gives a bone along unit y (Blender frame) at roll 0.

    Blender builds the bone matrix with the shortest rotation taking +Y to y; a bone pointing
    almost exactly along -Y is the degenerate case, resolved as Blender does (a flip about Z)."""
    y = _unit(np.asarray(y, np.float64))
    c = y[1]
    if c < -1 + 1e-6:
        return np.array([0.0, 0.0, 1.0])
    # Rodrigues with k = (0,1,0) x y = (y_z, 0, -y_x), applied to e_z
    k = np.array([y[2], 0.0, -y[0]])
    ez = np.array([0.0, 0.0, 1.0])
    kx_ez = np.cross(k, ez)
    return ez + kx_ez + np.cross(k, kx_ez) / (1.0 + c)


def blender_roll(head: np.ndarray, tail: np.ndarray, z_axis: np.ndarray) -> float:
    """Blender edit-bone roll giving z_axis (all in the avatar frame)."""
    y = _unit(avatar_to_blender(tail - head))
    z = _unit(avatar_to_blender(z_axis))
    z0 = _unit(roll_zero_z_axis(y))
    return float(np.arctan2(np.cross(z0, z) @ y, z0 @ z))


# --- skeleton -----------------------------------------------------------------------------------
def build_skeleton(joints_avatar: dict[str, np.ndarray], *, convention: str = "rigify",
                   height: float = 1.7, confidence: dict[str, float] | None = None,
                   status: dict[str, str] | None = None) -> dict:
    """skeleton.json content from joint centres in the avatar frame."""
    table = load_convention(convention)
    p = rig_points({k: np.asarray(v, np.float64) for k, v in joints_avatar.items()}, height)
    frame = body_frame(p)
    left, up, fwd = frame
    for s in "LR":
        _ensure_bend(p, f"shoulder_{s}", f"elbow_{s}", f"wrist_{s}",
                     _chain_flex(p, f"shoulder_{s}", f"elbow_{s}", f"wrist_{s}", fwd))
        _ensure_bend(p, f"hip_{s}", f"knee_{s}", f"ankle_{s}",
                     _chain_flex(p, f"hip_{s}", f"knee_{s}", f"ankle_{s}", -fwd))
    bones = []
    for b in table["bones"]:
        head, tail = p[b["head"]], p[b["tail"]]
        if np.linalg.norm(tail - head) < 1e-4:   # degenerate (a joint filled on top of another)
            tail = head + up * 0.01
        z = bone_z_axis(b["roll"], b.get("side", ""), b["part"], head, tail, p, frame)
        bone = {
            "name": b["name"], "parent": b["parent"],
            "head": [round(float(x), 6) for x in head], "tail": [round(float(x), 6) for x in tail],
            "roll": round(blender_roll(head, tail, z), 6), "z_axis": [round(float(x), 6) for x in z],
            "connect": bool(b.get("connect", False)), "deform": bool(b.get("deform", True)),
            "part": b["part"], "side": b.get("side", ""),
        }
        if "rigify_type" in b:
            bone["rigify_type"] = b["rigify_type"]
            bone["rigify_parameters"] = b.get("rigify_parameters", {})
        if "collection" in b:
            bone["collection"] = b["collection"]
        bones.append(bone)
    _snap_connected(bones)
    joints = {k: [round(float(x), 6) for x in v] for k, v in joints_avatar.items()}
    extra = {"rigify_collections": table["rigify_collections"]} if "rigify_collections" in table else {}
    return {**extra,
        "format": SKELETON_FORMAT, "version": SKELETON_VERSION, "convention": convention,
        "units": "metres", "frame": "avatar (glTF: +Y up, person faces +Z)",
        "height": round(float(height), 4),
        "bones": bones,
        "joints3d": {"positions": joints,
                     "confidence": {k: round(float(v), 4) for k, v in (confidence or {}).items()},
                     "status": dict(status or {})},
    }


def _snap_connected(bones: list[dict]) -> None:
    """A connected bone starts exactly at its parent's tail (Blender enforces it; so do we)."""
    by_name = {b["name"]: b for b in bones}
    for b in bones:
        if b["connect"] and b["parent"]:
            b["head"] = list(by_name[b["parent"]]["tail"])


def skeleton_arrays(skeleton: dict) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(names, parent index (-1 root), heads B x 3, tails B x 3, z axes B x 3)."""
    names = [b["name"] for b in skeleton["bones"]]
    idx = {n: i for i, n in enumerate(names)}
    parents = np.array([idx[b["parent"]] if b["parent"] else -1 for b in skeleton["bones"]])
    heads = np.array([b["head"] for b in skeleton["bones"]], np.float64)
    tails = np.array([b["tail"] for b in skeleton["bones"]], np.float64)
    zs = np.array([b["z_axis"] for b in skeleton["bones"]], np.float64)
    return names, parents, heads, tails, zs


def bone_matrices(heads: np.ndarray, tails: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """B x 4 x 4 bone-to-avatar matrices: columns x, y (head->tail), z, origin at the head."""
    y = _unit(tails - heads)
    z = _unit(zs - y * (zs * y).sum(1, keepdims=True))
    x = np.cross(y, z)
    m = np.zeros((len(heads), 4, 4))
    m[:, :3, 0], m[:, :3, 1], m[:, :3, 2], m[:, :3, 3] = x, y, z, heads
    m[:, 3, 3] = 1.0
    return m
