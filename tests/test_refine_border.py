"""engine.geometry.refine_border: the head's face/hair border split fine, the mesh kept closed."""

from __future__ import annotations

import numpy as np

from engine.geometry.labels import class_names
from engine.geometry.refine_border import border_faces, refine_border

HAIR, FACE, TORSO = (class_names().index(n) for n in ("Hair", "Face_Neck", "Torso"))


def _sphere(subdivisions=3):
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.1)
    return np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)


def _edge_uses(faces):
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, counts = np.unique(undirected, axis=0, return_counts=True)
    _, directed_counts = np.unique(directed, axis=0, return_counts=True)
    return counts, directed_counts


def _labels(vertices):
    """Hair above a tilted plane, face below, torso at the bottom."""
    height = vertices[:, 1] + 0.3 * vertices[:, 0]
    return np.where(height > 0.01, HAIR, np.where(height > -0.06, FACE, TORSO)).astype(np.uint8)


def test_the_border_is_split_and_the_mesh_stays_a_closed_oriented_manifold():
    vertices, faces = _sphere()
    labels = _labels(vertices)
    out_v, out_f, out_l = refine_border(vertices, faces, labels)
    counts, directed = _edge_uses(out_f)
    assert (counts == 2).all()  # closed, no T-junction (an unsplit edge beside a split one is used once)
    assert (directed == 1).all()  # consistently oriented
    euler = len(out_v) - len(counts) + len(out_f)
    assert euler == 2
    np.testing.assert_array_equal(out_v[: len(vertices)], vertices)
    np.testing.assert_array_equal(out_l[: len(vertices)], labels)
    # the midpoints lie on the old surface's edges: on the sphere's chords, inside it
    assert (np.linalg.norm(out_v, axis=1) <= 0.1 + 1e-12).all()
    # the border's triangles: four times finer in edge length after two rounds
    def border_edge(v, f, lab):
        tri = v[f[border_faces(f, lab)]]
        return np.median(np.linalg.norm(tri[:, 1] - tri[:, 0], axis=1))
    assert border_edge(out_v, out_f, out_l) < 0.3 * border_edge(vertices, faces, labels)
    # faces away from the border are untouched
    far = ~np.isin(faces, np.nonzero(border_faces(faces, labels))[0]).any(axis=1)
    assert len(out_f) < len(faces) + 40 * border_faces(faces, labels).sum()
    total_area = lambda v, f: 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    np.testing.assert_allclose(total_area(out_v, out_f), total_area(vertices, faces), rtol=1e-12)


def test_the_finer_border_follows_the_true_line_closer():
    """Hidden (no photo): the new vertices vote from their neighbours, which knows no more than
    the coarse labels: the border's triangles lie only somewhat closer to the true line (0.77 x
    the coarse mesh's mean distance when written)."""
    vertices, faces = _sphere()
    labels = _labels(vertices)
    out_v, out_f, out_l = refine_border(vertices, faces, labels)

    def spread(v, f, lab):
        centre = v[f[border_faces(f, lab)]].mean(axis=1)
        return np.abs(centre[:, 1] + 0.3 * centre[:, 0] - 0.01).mean()
    assert spread(out_v, out_f, out_l) < 0.9 * spread(vertices, faces, labels)


def test_seen_midpoints_read_the_photo_and_a_surface_behind_is_not_read():
    """A flat grid facing the camera at z = 1 with a coarse border: the photo's segmentation line
    sits between the vertices; seen midpoints take its class, and a pointmap 5 cm behind (the
    vertex not seen) leaves them to the vote."""
    n = 6
    xs, ys = np.meshgrid(np.linspace(-0.05, 0.05, n), np.linspace(-0.05, 0.05, n))
    vertices = np.column_stack([xs.ravel(), ys.ravel(), np.ones(n * n)])
    idx = np.arange(n * n).reshape(n, n)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1, 4)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    labels = np.where(vertices[:, 0] < 0.0, HAIR, FACE).astype(np.uint8)  # the coarse border: x in (-0.01, 0.01)
    f, size = 1000.0, 200
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    cols = np.arange(size) + 0.5
    seg = np.broadcast_to(np.where((cols - size / 2) / f < 0.005, HAIR, FACE), (size, size)).astype(np.uint8)
    pointmap = np.zeros((size, size, 3), np.float32)
    pointmap[..., 2] = 1.0
    out_v, out_f, out_l = refine_border(vertices, faces, labels, seg=seg, pointmap=pointmap, K=K, rounds=1)
    new = np.arange(len(vertices), len(out_v))
    between = new[np.abs(out_v[new, 0]) < 0.009]
    assert len(between)
    expected = np.where(out_v[between, 0] < 0.005, HAIR, FACE)
    np.testing.assert_array_equal(out_l[between], expected)
    pointmap[..., 2] = 1.05
    _, _, behind = refine_border(vertices, faces, labels, seg=seg, pointmap=pointmap, K=K, rounds=1)
    assert (behind[between] != expected).any()


def test_the_same_bytes_run_to_run_and_nothing_to_do_is_a_no_op():
    vertices, faces = _sphere()
    labels = _labels(vertices)
    a = refine_border(vertices, faces, labels)
    b = refine_border(vertices.copy(), faces.copy(), labels.copy())
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()
    plain = np.full(len(vertices), TORSO, np.uint8)
    v, f, lab = refine_border(vertices, faces, plain)
    assert len(v) == len(vertices) and (f == faces).all()


def test_a_face_budget_is_kept():
    vertices, faces = _sphere()
    labels = _labels(vertices)
    full = refine_border(vertices, faces, labels)[1]
    one_round = refine_border(vertices, faces, labels, rounds=1)[1]
    assert len(one_round) < len(full)
    kept = refine_border(vertices, faces, labels, max_faces=len(full) - 1)[1]
    np.testing.assert_array_equal(kept, one_round)
    assert len(refine_border(vertices, faces, labels, max_faces=len(faces))[1]) == len(faces)


def test_no_round_finer_than_a_photo_pixel():
    """Seen from 1 m through a lens of focal length f, a pixel covers 1/f m: border edges of
    ~2 cm (the sphere's) are split while a pixel is smaller than them, not once it is larger."""
    vertices, faces = _sphere()
    vertices = vertices + [0.0, 0.0, 1.0]
    labels = _labels(vertices)
    seg = np.zeros((4, 4), np.uint8)
    pointmap = np.full((4, 4, 3), np.nan, np.float32)  # nothing seen: the vote decides
    fine = refine_border(vertices, faces, labels, seg=seg, pointmap=pointmap, K=np.diag([2000.0, 2000.0, 1.0]))
    coarse = refine_border(vertices, faces, labels, seg=seg, pointmap=pointmap, K=np.diag([20.0, 20.0, 1.0]))
    assert len(fine[1]) == len(refine_border(vertices, faces, labels)[1])
    assert len(coarse[1]) == len(faces)
