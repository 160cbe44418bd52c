"""avatar.json: the avatar directory's description (format "sapiens-avatar", docs/avatar.md).

`avatar_manifest` assembles it; `read_avatar_manifest` reads one back, checking the version and
that every file it lists is there, for tools (and tests) that consume avatars.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from engine.errors import BundleError
from engine.versions import check_format_version

FORMAT_NAME = "sapiens-avatar"
# 1.1: the files follow the formats option (usd, usdz added; glb/obj/ply optional)
# 1.2: an avatar fused from several views has a "views" table and one UV island per view
FORMAT_VERSION = "1.2"

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


def mesh_summary(mesh, framed, built, *, closed: bool) -> dict:
    """avatar.json's "mesh": sizes, bounds, UV islands, the surface's own statistics."""
    return {
        "vertices": int(len(mesh.vertices)),
        "faces": int(len(mesh.faces)),
        "closed": bool(closed),
        "bounds": [np.round(mesh.vertices.min(axis=0), 5).tolist(), np.round(mesh.vertices.max(axis=0), 5).tolist()],
        "height": round(float(np.ptp(mesh.vertices[:, 1])), 5),
        "uv_islands": int(framed.vertex_island.max()) + 1,
        "hidden_faces": int((framed.face_island != 0).sum()),
        "surface": getattr(built, "stats", None) or {},
    }


def textures_summary(appearance) -> dict:
    """avatar.json's "textures": size, colour source and spaces, the normal map, the atlas layout."""
    layout = appearance.layout
    return {
        "size": [layout.width, layout.height],
        "albedo_source": appearance.albedo_source,
        "albedo_note": None
        if appearance.albedo_source == "albedo"
        else "the bundle has no albedo: the base colour is the photo itself, lighting included",
        "colour_space": {"albedo_png": "sRGB", "albedo_exr": "linear Rec.709, half float"},
        "normal_map": None
        if appearance.normal_rgb8 is None
        else {"space": "tangent", "convention": "glTF / OpenGL (+Y up), MikkTSpace-style tangents", "baked_fraction": round(appearance.stats["normal_baked_fraction"], 4)},
        "layout": {
            "crop_photo_px": [float(c) for c in layout.crop],
            "islands": ["front", "hidden"][: layout.n_islands],
            "island_width": layout.island_width,
            "gutter": layout.gutter if layout.n_islands > 1 else 0,
        },
        "fill": round(appearance.stats["texture_fill"], 4),
    }


def rig_summary(rig, convention: str) -> dict:
    return {
        "convention": convention,
        "bones": len(rig.skeleton.get("bones", [])),
        "deform_bones": len(rig.joint_names),
        "rest_pose_applied": rig.rest_vertices is not None,
    }


def provenance(bundle, bundle_dir, engine: str) -> dict:
    from datetime import datetime, timezone

    return {
        "engine": engine,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bundle": {
            "path": str(bundle_dir),
            "format": bundle.meta.get("format"),
            "version": bundle.meta.get("version"),
            "provenance": bundle.meta.get("provenance"),
            "source": bundle.meta.get("source"),
            "notes": bundle.meta.get("notes"),
        },
    }


def read_avatar_manifest(avatar_dir: str | Path) -> dict:
    """avatar.json of an avatar directory, after checking its version and listed files."""
    path = Path(avatar_dir) / "avatar.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not a readable avatar description ({exc})") from exc
    check_format_version(data, name=FORMAT_NAME, version=FORMAT_VERSION, source=path, what="avatar")
    missing = [rel for rel in data.get("files", {}).values() if not (path.parent / rel).is_file()]
    if missing:
        raise BundleError(f"{path}: lists files that are missing: {', '.join(missing)}")
    return data
