"""Retargeting's files and data without bpy: the armature as the engine's skeleton JSON, the
engine's per-bone curves as bone tracks, and bone-map presets (docs/retarget.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .animation import BoneTrack

BONE_MAP_FORMAT = "sapiens-bone-map"
BONE_MAP_VERSION = "1.0"


def skeleton_document(names: list[str], parents: list[int], heads: np.ndarray, tails: np.ndarray,
                      z_axes: np.ndarray) -> dict:
    """An armature's rest bones (armature space) as a sapiens-skeleton document the engine's
    `retarget` job takes as its target (docs/rig.md: head, tail, z_axis per bone)."""
    bones = []
    for b, name in enumerate(names):
        bones.append({"name": name, "parent": names[parents[b]] if parents[b] >= 0 else None,
                      "head": [float(v) for v in heads[b]], "tail": [float(v) for v in tails[b]],
                      "z_axis": [float(v) for v in z_axes[b]]})
    return {"format": "sapiens-skeleton", "version": "1.0", "bones": bones}


def tracks_from_curves(curves: dict) -> list[BoneTrack]:
    """The `curves` of a retarget result -> one BoneTrack per moving bone (rotation w x y z)."""
    frames = int(curves["frames"])
    if curves.get("quaternion_order", "xyzw") != "xyzw":
        raise ValueError(f"unexpected quaternion order {curves.get('quaternion_order')!r}")
    tracks = []
    for bone, c in curves["bones"].items():
        rotation = np.tile([1.0, 0.0, 0.0, 0.0], (frames, 1))
        if "rotation" in c:
            xyzw = np.asarray(c["rotation"], np.float64).reshape(frames, 4)
            rotation = xyzw[:, [3, 0, 1, 2]]
        location = np.asarray(c["location"], np.float64).reshape(frames, 3) if "location" in c else np.zeros((frames, 3))
        tracks.append(BoneTrack(bone, location, rotation, np.ones((frames, 3))))
    return tracks


def bone_map_document(rows: list[tuple[str, str]]) -> dict:
    """Rows (armature bone, humanoid part or motion bone) -> a bone-map JSON document."""
    return {"format": BONE_MAP_FORMAT, "version": BONE_MAP_VERSION, "bones": {b: p for b, p in rows if b and p}}


def rows_from_result(result: dict) -> list[tuple[str, str]]:
    """The map the engine used (a retarget result): bone -> humanoid part, else -> motion bone."""
    parts = result.get("parts", {})
    return sorted(((bone, parts.get(bone, source)) for bone, source in result.get("bone_map", {}).items()),
                  key=lambda r: r[0])


def _preset_file(directory: Path, name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._ -]+", "_", name).strip() or "bone map"
    return Path(directory) / f"{safe}.json"


def save_preset(directory: Path, name: str, rows: list[tuple[str, str]]) -> Path:
    path = _preset_file(directory, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(bone_map_document(rows), indent=1))
    tmp.replace(path)
    return path


def read_preset(path: Path) -> list[tuple[str, str]]:
    """A saved bone map -> rows; ValueError in words when it is not one."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable bone map ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != BONE_MAP_FORMAT or not isinstance(doc.get("bones"), dict):
        raise ValueError(f"{path}: not a {BONE_MAP_FORMAT} file")
    return sorted((str(b), str(p)) for b, p in doc["bones"].items())


def list_presets(directory: Path) -> list[Path]:
    return sorted(Path(directory).glob("*.json")) if Path(directory).is_dir() else []


# --- rigs whose controls hang under constraint-driven bones (a generated Rigify rig) -------------
def quaternion_matrices(xyzw: np.ndarray) -> np.ndarray:
    """... x 4 quaternions (x, y, z, w) -> ... x 3 x 3 rotation matrices."""
    q = np.asarray(xyzw, np.float64)
    x, y, z, w = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
                     np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
                     np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def poses_from_curves(curves: dict) -> dict[str, np.ndarray]:
    """Where the engine means each keyed bone to be: bone -> T x 4 x 4 matrices in the armature's
    space (Blender's pose space), from the curves' `pose` entries."""
    frames = int(curves["frames"])
    out = {}
    for bone, c in curves["bones"].items():
        if "pose" not in c:
            continue
        m = np.tile(np.eye(4), (frames, 1, 1))
        m[:, :3, :3] = quaternion_matrices(np.asarray(c["pose"]["rotation"], np.float64).reshape(frames, 4))
        m[:, :3, 3] = np.asarray(c["pose"]["location"], np.float64).reshape(frames, 3)
        out[bone] = m
    return out


def continuous_wxyz(q: np.ndarray) -> np.ndarray:
    """T x 4 quaternions with each frame's sign chosen nearest the previous one (no flips in the curve)."""
    q = np.asarray(q, np.float64)
    flips = np.where(np.einsum("ti,ti->t", q[1:], q[:-1]) < 0, -1.0, 1.0)
    return q * np.concatenate([[1.0], np.cumprod(flips)])[:, None]
