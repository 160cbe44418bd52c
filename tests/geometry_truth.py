"""Ground-truth helpers for the geometry tests: load a shared sample, measure against its mesh."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_sample(samples: Path, name: str) -> dict:
    with np.load(samples / name / "gt_maps.npz") as data:
        return {k: data[k] for k in data.files}


def true_surface(samples: Path, name: str):
    """Open3D raycasting scene of the sample's closed true mesh (fast point-to-mesh distances)."""
    import open3d as o3d

    mesh = o3d.io.read_triangle_mesh(str(samples / name / "gt_mesh.ply"))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    return scene, mesh


def distances(scene, points: np.ndarray) -> np.ndarray:
    import open3d as o3d

    return scene.compute_distance(o3d.core.Tensor(np.asarray(points, np.float32))).numpy()


def mesh_scene(vertices: np.ndarray, faces: np.ndarray):
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, np.float32)), o3d.core.Tensor(np.asarray(faces, np.uint32)))
    return scene


def map_normals(points: np.ndarray) -> np.ndarray:
    """Normals of a pointmap by forward differences (toward the camera), NaN at the border."""
    dx = np.full_like(points, np.nan)
    dy = np.full_like(points, np.nan)
    dx[:, :-1] = points[:, 1:] - points[:, :-1]
    dy[:-1] = points[1:] - points[:-1]
    n = np.cross(dy, dx)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def closed_labels_toggled(monkeypatch, flag: str):
    """engine.synthetic's bent-101 (bench_closed's held-out person) built closed with the
    watertight module's `flag` off and on: (person, labels off, labels on, vertices). The two
    solids must be the same (a label rule moves no point): asserted here."""
    from engine.geometry import build_surface, watertight
    from engine.synthetic import make_person

    person = make_person(101, pose="bent", width=384, height=512)
    built = {}
    for on in (False, True):
        monkeypatch.setattr(watertight, flag, on)
        built[on] = build_surface(person.pointmap, person.normal, person.mask, person.seg, person.K,
                                  detail="normals", resolution="full", watertight=True)
    np.testing.assert_array_equal(built[False].vertices, built[True].vertices)
    np.testing.assert_array_equal(built[False].faces, built[True].faces)
    return person, built[False].vertex_labels, built[True].vertex_labels, built[True].vertices


def true_classes_at(person, points: np.ndarray) -> np.ndarray:
    """The class of the synthetic person's true mesh at its triangle nearest each point."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(person.mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(person.mesh.faces, np.uint32)))
    nearest = scene.compute_closest_points(o3d.core.Tensor(np.asarray(points, np.float32)))
    return np.asarray(person.face_labels)[nearest["primitive_ids"].numpy()]
