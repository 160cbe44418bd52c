"""mesh.ply: binary PLY with positions, normals, the class label and texture coordinates.

Written with numpy records, little-endian, in the layout trimesh writes and reads back
(importing trimesh alone costs about half a second)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.formats.scene import Scene, uv_opengl

AVATAR_FILE = "mesh.ply"

_VERTEX = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4"), ("label", "u1"), ("s", "<f8"), ("t", "<f8")]
)
_FACE = np.dtype([("count", "u1"), ("vertex_indices", "<i4", (3,))])


def write_mesh_ply(path: Path, mesh) -> None:
    """Binary PLY of a scene.Mesh: texture coordinates as s, t (OpenGL, v up), label as uchar."""
    header = "\n".join(
        [
            "ply",
            "format binary_little_endian 1.0",
            "comment sapiens-avatar mesh (metres, avatar frame: +Y up)",
            f"element vertex {len(mesh.vertices)}",
            *(f"property float {name}" for name in ("x", "y", "z", "nx", "ny", "nz")),
            "property uchar label",
            "property double s",
            "property double t",
            f"element face {len(mesh.faces)}",
            "property list uchar int vertex_indices",
            "end_header",
        ]
    )
    vertex = np.empty(len(mesh.vertices), _VERTEX)
    for k, name in enumerate(("x", "y", "z")):
        vertex[name] = mesh.vertices[:, k]
    for k, name in enumerate(("nx", "ny", "nz")):
        vertex[name] = mesh.normals[:, k]
    vertex["label"] = mesh.labels
    uv = uv_opengl(mesh.uv)
    vertex["s"], vertex["t"] = uv[:, 0], uv[:, 1]
    face = np.empty(len(mesh.faces), _FACE)
    face["count"] = 3
    face["vertex_indices"] = mesh.faces
    with open(path, "wb") as out:
        out.write(header.encode() + b"\n")
        out.write(vertex.tobytes())
        out.write(face.tobytes())


def write_avatar(scene: Scene, out_dir: Path) -> dict[str, str]:
    write_mesh_ply(Path(out_dir) / AVATAR_FILE, scene.mesh)
    return {"ply": AVATAR_FILE}
