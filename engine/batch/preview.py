"""Small front and back previews of an avatar, rendered without Blender or a GPU.

A numpy z-buffer: the mesh's triangles are sampled densely enough that every covered pixel gets
a sample (more samples for larger triangles), the samples are projected orthographically, and
the nearest sample per pixel wins (one lexsort, no loop over pixels). Colour is the albedo
texture at the sample's UV, shaded by the facing ratio so that the shape reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BACKGROUND = np.array([240, 240, 240], dtype=np.uint8)
MAX_SAMPLES = 4_000_000


PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
             "float": "f4", "double": "f8"}


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices, triangles, per-vertex uv or None) of a binary little-endian triangle PLY such as
    the avatar's mesh.ply (the header's properties decide the record layout)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"{path}: not a binary little-endian PLY")
    elements, current = [], None
    for line in header:
        words = line.split()
        if words[:1] == ["element"]:
            current = (words[1], int(words[2]), [])
            elements.append(current)
        elif words[:2] == ["property", "list"]:
            count, item = PLY_TYPES[words[2]], PLY_TYPES[words[3]]
            current[2].append((words[4] + "_n", "<" + count))
            current[2].append((words[4], "<" + item, (3,)))   # triangles: 3 indices per face
        elif words[:1] == ["property"]:
            current[2].append((words[2], "<" + PLY_TYPES[words[1]]))
    offset, arrays = end, {}
    for name, count, fields in elements:
        records = np.frombuffer(data, dtype=np.dtype(fields), count=count, offset=offset)
        offset += records.nbytes
        arrays[name] = records
    vertex, face = arrays["vertex"], arrays["face"]
    vertices = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=-1).astype(np.float64)
    uv = np.stack([vertex["s"], vertex["t"]], axis=-1).astype(np.float64) if "s" in vertex.dtype.names else None
    return vertices, face["vertex_indices"].astype(np.int64), uv


def load_textured_mesh(avatar_dir: Path):
    """(vertices V x 3, faces F x 3, uv V x 2 or None, albedo H x W x 3 uint8 or None) of an avatar:
    its mesh.ply and textures/albedo.png (else, slower, its glb or obj through trimesh)."""
    from PIL import Image

    albedo_path = avatar_dir / "textures" / "albedo.png"
    albedo = np.asarray(Image.open(albedo_path).convert("RGB")) if albedo_path.is_file() else None
    if (avatar_dir / "mesh.ply").is_file():
        vertices, faces, uv = read_ply(avatar_dir / "mesh.ply")
        return vertices, faces, uv, albedo
    import trimesh

    for name in ("avatar.glb", "mesh.obj"):
        if (avatar_dir / name).is_file():
            loaded = trimesh.load(avatar_dir / name, process=False)
            break
    else:
        raise FileNotFoundError(f"{avatar_dir}: no mesh.ply, avatar.glb or mesh.obj to preview")
    meshes = list(loaded.geometry.values()) if isinstance(loaded, trimesh.Scene) else [loaded]
    mesh = trimesh.util.concatenate(meshes) if len(meshes) > 1 else meshes[0]
    uv = getattr(getattr(mesh, "visual", None), "uv", None)
    uv = np.asarray(uv, dtype=np.float64) if uv is not None and len(uv) == len(mesh.vertices) else None
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64), uv, albedo


def render(vertices, faces, uv, albedo, *, back: bool = False, height: int = 256, width: int = 128) -> np.ndarray:
    """height x width x 3 uint8: the mesh seen from the front (+Z, glTF axes) or the back."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    scale = 0.92 * min(height / max(hi[1] - lo[1], 1e-9), width / max(hi[0] - lo[0], 1e-9))
    centre = (lo + hi) / 2
    side = -1.0 if back else 1.0
    px = (side * (vertices[:, 0] - centre[0])) * scale + width / 2
    py = -(vertices[:, 1] - centre[1]) * scale + height / 2
    depth = -side * vertices[:, 2]               # smaller is nearer the viewer
    tri = np.stack([px, py], axis=-1)[faces]     # F x 3 x 2
    edge1, edge2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area = 0.5 * np.abs(edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0])
    # samples per triangle: enough for ~2 per covered pixel, capped overall
    per = np.clip(np.ceil(2 * area), 1, None).astype(np.int64)
    if per.sum() > MAX_SAMPLES:
        per = np.maximum(1, (per * MAX_SAMPLES // per.sum())).astype(np.int64)
    owner = np.repeat(np.arange(len(faces)), per)
    rng = np.random.default_rng(0)
    a, b = rng.random(len(owner)), rng.random(len(owner))
    flip = a + b > 1
    a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
    bary = np.stack([1 - a - b, a, b], axis=-1)
    bary[np.cumsum(per) - per] = 1 / 3             # every triangle's first sample: its centroid
    corners = faces[owner]
    sx = (bary * px[corners]).sum(axis=1)
    sy = (bary * py[corners]).sum(axis=1)
    sz = (bary * depth[corners]).sum(axis=1)
    col, row = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    pixel = row[inside] * width + col[inside]
    order = np.lexsort((sz[inside], pixel))
    first = np.unique(pixel[order], return_index=True)[1]
    winner = np.flatnonzero(inside)[order[first]]
    # colour: albedo at the sample's UV (nearest texel), else grey; shaded by the facing ratio
    if uv is not None and albedo is not None:
        suv = (bary[winner, :, None] * uv[corners[winner]]).sum(axis=1)
        th, tw = albedo.shape[:2]
        tx = np.clip((suv[:, 0] * tw).astype(np.int64), 0, tw - 1)
        ty = np.clip(((1 - suv[:, 1]) * th).astype(np.int64), 0, th - 1)
        colour = albedo[ty, tx].astype(np.float64)
    else:
        colour = np.full((len(winner), 3), 180.0)
    v0, v1, v2 = (vertices[faces[owner[winner]], k] for k in range(3))
    normal = np.cross(v1 - v0, v2 - v0)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    facing = np.abs(normal[:, 2])
    image = np.empty((height * width, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    image[pixel[order[first]]] = np.clip(colour * (0.35 + 0.65 * facing[:, None]), 0, 255).astype(np.uint8)
    return image.reshape(height, width, 3)


def write_preview(avatar_dir: Path, out_path: Path, height: int = 256) -> Path:
    """Front and back side by side as a PNG."""
    from PIL import Image

    vertices, faces, uv, albedo = load_textured_mesh(Path(avatar_dir))
    width = height // 2
    both = np.concatenate([render(vertices, faces, uv, albedo, height=height, width=width),
                           render(vertices, faces, uv, albedo, back=True, height=height, width=width)], axis=1)
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    Image.fromarray(both).save(tmp, format="PNG")
    tmp.replace(out_path)
    return out_path
