"""mesh.obj + mesh.mtl: positions, texture coordinates and normals sharing one index per vertex
(each corner written `i/i/i`), one material referencing the albedo and normal textures.

The text is built by obj_text (numpy over whole columns, the same bytes as one str.format per
line, ~2x faster on a 300k-vertex mesh: 1.07 -> 0.51 s for 284k vertices / 468k faces).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.formats import obj_text
from engine.formats.scene import Scene, uv_opengl

AVATAR_FILE = "mesh.obj"


def _python_lines(template: str, columns: np.ndarray) -> str:
    return "\n".join(map(template.format, *columns.T.tolist()))


def _float_lines(prefix: str, columns: np.ndarray, decimals: int) -> bytes:
    """`prefix x y z` lines, each number as format(v, ".{decimals}f"), newline-terminated."""
    columns = np.asarray(columns, np.float64)
    if len(columns) == 0:
        return b"\n"  # what joining no lines gave: an empty line
    fields = [obj_text.fixed_field(columns[:, k], decimals) for k in range(columns.shape[1])]
    if any(f is None for f in fields):  # non-finite or huge values: Python formats them
        template = prefix + " " + " ".join(f"{{:.{decimals}f}}" for _ in fields)
        return (_python_lines(template, columns) + "\n").encode()
    pieces = [prefix.encode()]
    for field in fields:
        pieces += [b" ", field]
    return obj_text.lines(pieces, len(columns))


def _face_lines(faces: np.ndarray) -> bytes:
    """`f a/a/a b/b/b c/c/c` lines (1-based), newline-terminated."""
    if len(faces) == 0:
        return b"\n"
    pieces = [b"f"]
    for k in range(3):
        corner = obj_text.integer_field(faces[:, k] + 1)
        pieces += [b" ", corner, b"/", corner, b"/", corner]
    return obj_text.lines(pieces, len(faces))


def write_mesh_obj(path: Path, mesh, *, albedo: str | None, normal: str | None) -> str:
    """OBJ of a scene.Mesh (OBJ's v is up: 1 - glTF v) and its .mtl; returns the .mtl name.

    albedo / normal: texture paths relative to the directory, or None."""
    mtl_name = path.with_suffix(".mtl").name
    header = "\n".join(["# sapiens-avatar mesh (metres, avatar frame: +Y up, the person faces +Z)", f"mtllib {mtl_name}", "o avatar"])
    with open(path, "wb") as out:
        out.write(header.encode() + b"\n")
        out.write(_float_lines("v", mesh.vertices, 6))
        out.write(_float_lines("vt", uv_opengl(mesh.uv), 6))
        out.write(_float_lines("vn", mesh.normals, 5))
        out.write(b"usemtl avatar\ns 1\n")
        out.write(_face_lines(np.asarray(mesh.faces, np.int64)))
    mtl = [
        "# sapiens-avatar: base colour and tangent-space normal map (OpenGL, +Y up)",
        "newmtl avatar",
        "Ka 1.000 1.000 1.000",
        "Kd 1.000 1.000 1.000",
        "Ks 0.000 0.000 0.000",
        "d 1.0",
        "illum 1",
    ]
    if albedo:
        mtl.append(f"map_Kd {albedo}")
    if normal:
        mtl.append(f"map_Bump -bm 1.000 {normal}")
        mtl.append(f"norm {normal}")
    (path.parent / mtl_name).write_text("\n".join(mtl) + "\n")
    return mtl_name


def write_avatar(scene: Scene, out_dir: Path) -> dict[str, str]:
    albedo, normal = scene.texture("albedo"), scene.texture("normal")
    mtl = write_mesh_obj(
        Path(out_dir) / AVATAR_FILE, scene.mesh, albedo=albedo and albedo.path, normal=normal and normal.path
    )
    return {"obj": AVATAR_FILE, "mtl": mtl}
