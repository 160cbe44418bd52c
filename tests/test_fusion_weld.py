"""The fused solid's micrometre edges are collapsed (engine/geometry/cleanup.py weld_short_edges):
marching cubes leaves a few hundred where the surface passes beside a grid corner, and once the
avatar's positions were float32 the two ends of such an edge became one vertex and the closed
mesh read as open (engine.synthetic person 2 at 288 x 384 with crops: a 0.025 deg / 0.25 mm
registration change, the one refine_on_silhouettes' no-move rule was added against)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from engine.geometry.cleanup import WELD_M, weld_short_edges

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))


def _edges(faces):
    f = np.asarray(faces, np.int64)
    return np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1), axis=0)


def _closed_in_float32(vertices, faces, offset=(0.3, 1.2, 0.1)):
    """Closed once written as float32 (in a frame shifted as the avatar's is) and merged by position."""
    mesh = trimesh.Trimesh((np.asarray(vertices, np.float64) + offset).astype(np.float32), faces, process=False)
    mesh.merge_vertices()
    return mesh.is_watertight


def _sphere_with_tiny_edges():
    """An icosphere (radius 0.1 m) with three of its edges split a nanometre from a corner."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.1)
    vertices, faces = np.asarray(sphere.vertices, np.float64), np.asarray(sphere.faces, np.int64)
    added = []
    for k in (0, 40, 200):  # faces far apart
        a, b, c = faces[k]
        other = np.flatnonzero((np.isin(faces, [a, b]).sum(1) == 2) & (np.arange(len(faces)) != k))[0]
        row = list(faces[other])
        b_at = row.index(b)
        assert row[(b_at + 1) % 3] == a  # the neighbour runs b -> a (consistent winding)
        d = row[(b_at + 2) % 3]
        p = len(vertices) + len(added)
        direction = (vertices[b] - vertices[a]) / np.linalg.norm(vertices[b] - vertices[a])
        added.append(vertices[a] + 1e-9 * direction)
        faces[k], faces[other] = [a, p, c], [b, p, d]
        faces = np.vstack([faces, [p, b, c], [p, a, d]])
    return np.vstack([vertices, added]), faces


def test_micrometre_edges_are_collapsed_and_the_mesh_stays_closed():
    vertices, faces = _sphere_with_tiny_edges()
    assert trimesh.Trimesh(vertices, faces, process=False).is_watertight  # closed as built, in float64
    assert not _closed_in_float32(vertices, faces)  # the split corners collide in float32
    labels = np.arange(len(vertices)) % 7
    welded, welded_faces, welded_labels, collapsed = weld_short_edges(vertices, faces, labels)
    assert collapsed == 3
    assert len(welded) == len(vertices) - 3 and len(welded_faces) == len(faces) - 6 and len(welded_labels) == len(welded)
    mesh = trimesh.Trimesh(welded, welded_faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    edges = _edges(welded_faces)
    assert np.linalg.norm(welded[edges[:, 0]] - welded[edges[:, 1]], axis=1).min() > WELD_M
    assert _closed_in_float32(welded, welded_faces)
    # nothing short: the same mesh back
    same, same_faces, same_labels, none = weld_short_edges(welded, welded_faces, welded_labels)
    assert none == 0 and np.array_equal(same, welded) and np.array_equal(same_faces, welded_faces)


@pytest.mark.parametrize("move_mm", [0.1, 0.5])
def test_a_fused_avatar_with_crops_stays_closed_when_its_registration_moves(tmp_path, monkeypatch, move_mm):
    """The back view's registration moved by a fraction of a millimetre (across the reference's
    view and in height) after refine_on_silhouettes: the avatar is closed once merged by position."""
    from test_fused_avatar import front_and_back_with_crops

    from engine.geometry import fusion
    from engine.jobs import run_job

    _, dirs = front_and_back_with_crops(tmp_path, 288, 384)
    refine = fusion.refine_on_silhouettes

    def moved(T, *args, **kwargs):
        T, info = refine(T, *args, **kwargs)
        T = T.copy()
        T[:2, 3] += move_mm / 1000.0 * np.array([0.6, 0.8])
        return T, info

    monkeypatch.setattr(fusion, "refine_on_silhouettes", moved)
    out = Path(run_job("build", {"bundle_dir": str(dirs[0]), "views": [str(dirs[1])], "out_dir": str(tmp_path / "avatar"),
                                 "texture_size": 256, "formats": ["ply"]})["avatar_dir"])
    mesh = trimesh.load(out / "mesh.ply", process=False)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    assert mesh.is_watertight
    edges = _edges(mesh.faces)
    assert np.linalg.norm(mesh.vertices[edges[:, 0]] - mesh.vertices[edges[:, 1]], axis=1).min() > 1e-6
