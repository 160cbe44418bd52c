"""poisson_solid's repair of a marching-cubes solid (watertight._repaired): holes whose rims
touch themselves at a vertex are closed, not looped on."""

import numpy as np
import pytest

from engine.geometry import watertight
from engine.geometry.cleanup import clean_mesh

o3d = pytest.importorskip("open3d")


def _sphere():
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=0.05, resolution=16)
    return np.asarray(mesh.vertices), np.asarray(mesh.triangles, np.int64)


def _volume(vertices, faces):
    corners = np.asarray(vertices, np.float64)[faces]
    return float(np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6.0)


def _holed(vertices, faces, seed):
    """The sphere with a few faces near one vertex removed (holes that may touch at a corner),
    its faces in a shuffled order (the order the holes' rims are walked in)."""
    rng = np.random.default_rng(seed)
    centre = rng.integers(40, 400)
    # the sphere's vertices lie at equal distances in pairs: rounded and sorted stably, the
    # nearest 12 are the same on every CPU (unrounded, the SIMD kernels' last bits picked them)
    distance = np.round(np.linalg.norm(vertices - vertices[centre], axis=1), 9)
    near = np.argsort(distance, kind="stable")[:12]
    candidates = np.nonzero(np.isin(faces, near).all(1))[0]
    drop = rng.choice(candidates, size=min(len(candidates), rng.integers(2, 6)), replace=False)
    keep = np.ones(len(faces), bool)
    keep[drop] = False
    kept = faces[keep][rng.permutation(int(keep.sum()))]
    return clean_mesh(vertices, kept, min_island_faces=200, min_island_fraction=0.01, area_eps=None)


def test_pinched_rim_faces_are_the_faces_at_a_vertex_two_holes_share():
    vertices, faces = _sphere()
    vertex = 100
    fan = np.nonzero((faces == vertex).any(1))[0]
    # two faces of the vertex's fan that share only that vertex: two holes touching there
    a, b = next((i, j) for i in fan for j in fan if len(set(faces[i]) & set(faces[j])) == 1)
    keep = np.ones(len(faces), bool)
    keep[[a, b]] = False
    flagged = watertight._pinched_rim_faces(faces[keep])
    assert set(np.nonzero(flagged)[0]) == set(np.nonzero((faces[keep] == vertex).any(1))[0])
    assert not watertight._pinched_rim_faces(faces).any()
    one_hole = np.ones(len(faces), bool)
    one_hole[a] = False
    assert not watertight._pinched_rim_faces(faces[one_hole]).any()


def _pinched_seeds(count=9):
    """The first `count` seeds whose holes touch at a vertex (chosen by that test, not listed:
    a listed seed's holes depended on the CPU the list was made on)."""
    vertices, faces = _sphere()
    seeds = [s for s in range(251, 2000) if watertight._pinched_rim_faces(_holed(vertices, faces, s).faces).any()]
    return seeds[:count]


@pytest.mark.parametrize("seed", _pinched_seeds())
def test_holes_touching_at_a_vertex_are_closed_outward(seed):
    # such holes were looped on before the faces at a pinched rim vertex were removed first:
    # every round gave back the same 8 open edges
    vertices, faces = _sphere()
    holed = _holed(vertices, faces, seed)
    assert watertight._pinched_rim_faces(holed.faces).any()
    assert watertight._open_edges(holed.faces) > 0
    repaired, counts = watertight._repaired(holed)
    assert counts["pinched_rim_faces_removed"] > 0
    assert watertight._open_edges(repaired.faces) == 0
    assert not watertight._misoriented_faces(repaired.faces).any()
    assert not watertight._pinched_rim_faces(repaired.faces).any()
    assert _volume(repaired.vertices, repaired.faces) == pytest.approx(_volume(vertices, faces), rel=0.02)


def test_a_closed_solid_is_left_as_it_was():
    vertices, faces = _sphere()
    cleaned = clean_mesh(vertices, faces, min_island_faces=200, min_island_fraction=0.01, area_eps=None)
    repaired, counts = watertight._repaired(cleaned)
    assert counts == {"holes_filled": 0, "misoriented_faces_removed": 0, "pinched_rim_faces_removed": 0}
    np.testing.assert_array_equal(repaired.faces, cleaned.faces)
