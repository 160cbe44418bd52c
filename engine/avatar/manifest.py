"""avatar.json: the avatar directory's description (format "sapiens-avatar", docs/avatar.md).

`avatar_manifest` assembles it; `read_avatar_manifest` reads one back, checking the version and
that every file it lists is there, for tools (and tests) that consume avatars.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.errors import BundleError

FORMAT_NAME = "sapiens-avatar"
FORMAT_VERSION = "1.0"

AXES = {
    "convention": "glTF",
    "up": "+Y",
    "person_faces": "+Z",
    "person_left": "+X",
    "handedness": "right",
    "description": "the person faces +Z (toward where the camera was), +Y is up, +X is the person's left; "
    "a camera-frame point p maps to camera_to_avatar @ [p, 1]",
}
CAMERA_CONVENTION = (
    "pinhole, OpenCV axes (x right, y down, z forward); K maps camera points to photo pixel "
    "coordinates with pixel (col, row) centred at (col + 0.5, row + 0.5)"
)


def _matrix(m) -> list[list[float]]:
    return np.asarray(m, np.float64).round(9).tolist()


def avatar_manifest(
    *,
    name: str,
    camera_to_avatar: np.ndarray,
    origin: str,
    K: np.ndarray,
    K_source: str,
    photo_size: tuple[int, int],
    mesh: dict,
    textures: dict,
    labels: list[dict],
    label_groups: dict,
    material_slots: list[str],
    files: dict,
    options: dict,
    rig: dict | None,
    provenance: dict,
    timings: dict,
) -> dict:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "name": name,
        "units": "metres",
        "axes": AXES,
        "camera_to_avatar": _matrix(camera_to_avatar),
        "origin": origin,
        "camera": {"K": _matrix(K), "K_source": K_source, "photo_size": list(photo_size), "convention": CAMERA_CONVENTION},
        "mesh": mesh,
        "textures": textures,
        "label_attribute": "_LABEL",
        "labels": labels,
        "label_groups": label_groups,
        "material_slots": material_slots,
        "files": files,
        "options": options,
        "rig": rig,
        "provenance": provenance,
        "timings_s": {k: round(float(v), 4) for k, v in timings.items()},
    }


def read_avatar_manifest(avatar_dir: str | Path) -> dict:
    """avatar.json of an avatar directory, after checking its version and listed files."""
    path = Path(avatar_dir) / "avatar.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not a readable avatar description ({exc})") from exc
    if data.get("format") != FORMAT_NAME:
        raise BundleError(f"{path}: not a {FORMAT_NAME} (format is {data.get('format')!r})")
    major = str(data.get("version", "")).split(".")[0]
    if major != FORMAT_VERSION.split(".")[0]:
        raise BundleError(
            f"{path}: avatar version {data.get('version')} is not readable by this engine (reads "
            f"{FORMAT_VERSION.split('.')[0]}.x); use the sapiens-engine release that wrote it or a newer one"
        )
    missing = [rel for rel in data.get("files", {}).values() if not (path.parent / rel).is_file()]
    if missing:
        raise BundleError(f"{path}: lists files that are missing: {', '.join(missing)}")
    return data
