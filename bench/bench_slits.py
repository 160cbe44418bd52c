"""Slits and creases in built avatars' surfaces: the dark cracks a clay render shows.

    .venv/bin/python bench/bench_slits.py AVATAR_DIR [AVATAR_DIR ...] [--gap-mm 3] [--crease-deg 120]

A closed avatar can be watertight, never run into itself, and still show dark zig-zag cracks: two
sheets of its surface facing each other across a gap far narrower than the body has anywhere (a
slit cut into the solid, a fold laid back over its neighbour), or an edge where the surface turns
back on itself. Per avatar directory (mesh.ply, as `sapiens-engine avatar` / `build` writes it):

    slit faces   faces whose outward normal, cast from the face's centre, meets the surface again
                 within --gap-mm (default 3 mm): the surface faces itself across a crack; with
                 their area in cm2. A real body's narrowest gaps (the armpit, between the
                 fingers) are the one-photo solid's Poisson cells wide, about 1.5 cm, and close.
    cut walls    of those, the faces facing another face of the opposite way within CUT_WALL_M (0.5
                 mm): a rigged avatar's parted arm (engine/geometry/arm_parting.py) has the two sides
                 of its cut 0.1 mm apart, closed to a crack under a pixel on purpose; counted apart
                 from the slit faces (anything else facing itself that closely would count here too).
    creases      edges (the mesh welded by position: mesh.ply splits vertices at UV seams) whose
                 two faces' normals differ by more than --crease-deg (default 120): a fold or a
                 slit's lip.

The fifteenth session's lead look avatars (built while the arm-trunk walls of
engine/geometry/contact_walls.py were wired into close_surface, 6e801c0) showed the walls' 2.5 mm
slits as cracks at the upper arms (docs/avatar.md, "Fifteenth session, slits at the upper arm").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.batch.preview import read_ply  # noqa: E402

GAP_M = 0.003
CUT_WALL_M = 0.0005
CREASE_DEG = 120.0
WELD_M = 1e-6  # mesh.ply's copies of one vertex at a UV seam have the same position to the bit


def welded(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """`faces` re-indexed onto one vertex per distinct position (WELD_M grid)."""
    key = np.round(np.asarray(vertices, np.float64) / WELD_M).astype(np.int64)
    _, first = np.unique(key, axis=0, return_inverse=True)
    return first.ravel()[np.asarray(faces, np.int64)]


def face_normals_areas(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(vertices, np.float64)[faces]
    cross = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    length = np.linalg.norm(cross, axis=1)
    return cross / np.maximum(length, 1e-30)[:, None], 0.5 * length


def crease_edges(faces_welded: np.ndarray, normals: np.ndarray, crease_deg: float = CREASE_DEG) -> int:
    """Edges shared by two faces whose normals turn by more than crease_deg."""
    edges = np.sort(np.concatenate([faces_welded[:, [0, 1]], faces_welded[:, [1, 2]], faces_welded[:, [2, 0]]]), axis=1)
    face = np.tile(np.arange(len(faces_welded)), 3)
    order = np.lexsort((edges[:, 1], edges[:, 0]))
    edges, face = edges[order], face[order]
    pair = np.all(edges[1:] == edges[:-1], axis=1)
    a, b = face[:-1][pair], face[1:][pair]
    cos = np.einsum("ij,ij->i", normals[a], normals[b])
    return int((cos < np.cos(np.radians(crease_deg))).sum())


def _casts(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distance, the face hit) of each face's outward normal cast from just off its centre (so the
    face itself, and its flat neighbours, are not hit)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(faces, np.uint32)))
    centres = np.asarray(vertices, np.float64)[faces].mean(axis=1)
    origins = centres + 1e-5 * normals
    rays = np.concatenate([origins, normals], axis=1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    return hit["t_hit"].numpy(), hit["primitive_ids"].numpy().astype(np.int64)


def slit_faces(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, areas: np.ndarray,
               gap_m: float = GAP_M, casts=None) -> np.ndarray:
    """Faces (F bool) whose outward normal meets the surface again within gap_m of the face's centre."""
    distance, _ = _casts(vertices, faces, normals) if casts is None else casts
    usable = areas > 1e-12  # a zero-area face has no normal to cast along
    return usable & (distance < gap_m)


def cut_wall_faces(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, areas: np.ndarray,
                   casts=None) -> np.ndarray:
    """Faces (F bool) whose outward normal meets a face of the opposite way within CUT_WALL_M: a
    parted arm's cut (module docstring)."""
    distance, other = _casts(vertices, faces, normals) if casts is None else casts
    walls = np.zeros(len(faces), bool)
    near = np.flatnonzero((areas > 1e-12) & (distance < CUT_WALL_M))
    walls[near] = (normals[near] * normals[other[near]]).sum(axis=1) < -0.5
    return walls


def measure(avatar_dir: Path, gap_m: float = GAP_M, crease_deg: float = CREASE_DEG) -> dict:
    vertices, faces, _ = read_ply(Path(avatar_dir) / "mesh.ply")
    normals, areas = face_normals_areas(vertices, faces)
    casts = _casts(vertices, faces, normals)
    walls = cut_wall_faces(vertices, faces, normals, areas, casts)
    slits = slit_faces(vertices, faces, normals, areas, gap_m, casts) & ~walls
    return {"faces": int(len(faces)), "slit_faces": int(slits.sum()), "slit_cm2": float(areas[slits].sum() * 1e4),
            "cut_wall_cm2": float(areas[walls].sum() * 1e4),
            "creases": crease_edges(welded(vertices, faces), normals, crease_deg)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("avatars", nargs="+", type=Path, help="avatar directories (mesh.ply)")
    parser.add_argument("--gap-mm", type=float, default=GAP_M * 1e3, help="widest gap counted as a slit (mm)")
    parser.add_argument("--crease-deg", type=float, default=CREASE_DEG, help="sharpest turn not counted a crease")
    args = parser.parse_args(argv)
    print(f"{'avatar':40s} {'faces':>8s} {'slit faces':>10s} {'slit cm2':>9s} {'cut walls cm2':>13s} {'creases':>8s}")
    for avatar in args.avatars:
        m = measure(avatar, args.gap_mm * 1e-3, args.crease_deg)
        print(f"{str(avatar):40s} {m['faces']:8d} {m['slit_faces']:10d} {m['slit_cm2']:9.2f} {m['cut_wall_cm2']:13.2f} "
              f"{m['creases']:8d}")


if __name__ == "__main__":
    main()
