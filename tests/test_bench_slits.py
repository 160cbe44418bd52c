"""bench/bench_slits.py's figures on meshes whose answer is known: two boxes 1 mm apart face each
other across a slit, 2 cm apart they do not; a box has no crease, a flattened tetrahedron has three."""

from __future__ import annotations

import sys
from itertools import product
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import bench_slits as B  # noqa: E402


def box(lo, hi):
    """A closed box's 8 corners and 12 triangles, each wound to face away from the centre."""
    corners = np.array([[(lo[0], hi[0])[i], (lo[1], hi[1])[j], (lo[2], hi[2])[k]]
                        for i, j, k in product((0, 1), repeat=3)], np.float64)
    faces = []
    for axis in range(3):
        for side in (0, 1):
            quad = [c for c in range(8) if (c >> (2 - axis)) & 1 == side]  # the 4 corners on this side
            a, b, c, d = quad  # bits of the two other axes: 00, 01, 10, 11
            faces += [[a, b, d], [a, d, c]]
    faces = np.array(faces, np.int64)
    normals, _ = B.face_normals_areas(corners, faces)
    outward = np.einsum("ij,ij->i", normals, corners[faces].mean(1) - corners.mean(0)) > 0
    faces[~outward] = faces[~outward][:, ::-1]
    return corners, faces


def two_boxes(gap_m: float):
    va, fa = box((0.0, 0.0, 0.0), (0.1, 0.1, 0.1))
    vb, fb = box((0.1 + gap_m, 0.0, 0.0), (0.2 + gap_m, 0.1, 0.1))
    return np.concatenate([va, vb]), np.concatenate([fa, fb + len(va)])


def slits(vertices, faces, gap_m=B.GAP_M):
    normals, areas = B.face_normals_areas(vertices, faces)
    return B.slit_faces(vertices, faces, normals, areas, gap_m)


def test_boxes_a_millimetre_apart_face_each_other_across_a_slit():
    v, f = two_boxes(0.001)
    found = slits(v, f)
    assert found.sum() == 4  # the two triangles of each box's side that faces the other
    sides = np.sort(v[f[found]][:, 0, 0])
    assert np.allclose(np.ptp(v[f[found]][:, :, 0], axis=1), 0.0) and np.allclose(sides, [0.1, 0.1, 0.101, 0.101])


def test_boxes_two_centimetres_apart_have_no_slit():
    v, f = two_boxes(0.02)
    assert slits(v, f).sum() == 0
    assert slits(v, f, gap_m=0.03).sum() == 4


def test_a_box_has_no_crease_a_flattened_tetrahedron_has_three():
    v, f = box((0.0, 0.0, 0.0), (0.1, 0.1, 0.1))
    normals, _ = B.face_normals_areas(v, f)
    assert B.crease_edges(B.welded(v, f), normals) == 0
    tetra = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.03, 0.03, 0.002]])
    faces = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [2, 0, 3]])
    normals, _ = B.face_normals_areas(tetra, faces)
    assert B.crease_edges(B.welded(tetra, faces), normals) == 3  # the base's edges turn ~180 deg


def test_a_parted_cut_a_tenth_of_a_millimetre_wide_counts_as_cut_walls_not_slits(tmp_path):
    """A rigged avatar's parted arm keeps its cut's two walls 0.1 mm apart on purpose
    (engine/geometry/arm_parting.py): measure() counts them apart from the slits; 1 mm apart they
    are a slit."""
    import trimesh

    for gap, walls, slit in ((0.0001, True, False), (0.001, False, True)):
        v, f = two_boxes(gap)
        normals, areas = B.face_normals_areas(v, f)
        found = B.cut_wall_faces(v, f, normals, areas)
        assert found.sum() == (4 if walls else 0)
        out = tmp_path / f"gap{gap}"
        out.mkdir()
        trimesh.Trimesh(v.astype(np.float32), f, process=False).export(out / "mesh.ply")
        m = B.measure(out)
        assert (m["cut_wall_cm2"] > 0) == walls and (m["slit_cm2"] > 0) == slit
        assert abs(m["cut_wall_cm2"] + m["slit_cm2"] - 200.0) < 1e-3   # the two facing 10 x 10 cm sides
