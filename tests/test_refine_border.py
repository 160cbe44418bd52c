"""engine.geometry.refine_border: the head's face/hair border, the collar, the hems and the shoes'
tops split fine, the mesh kept closed."""

from __future__ import annotations

import numpy as np

from engine.geometry.labels import class_names
from engine.geometry.refine_border import Photo, border_faces, refine_border

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


def _flat_grid(n: int = 6):
    """An n x n grid of vertices 10 cm across facing the camera at z = 1, two triangles a quad."""
    xs, ys = np.meshgrid(np.linspace(-0.05, 0.05, n), np.linspace(-0.05, 0.05, n))
    vertices = np.column_stack([xs.ravel(), ys.ravel(), np.ones(n * n)])
    idx = np.arange(n * n).reshape(n, n)
    quads = np.stack([idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]], -1).reshape(-1, 4)
    return vertices, np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])


def test_seen_midpoints_read_the_photo_and_a_surface_behind_is_not_read():
    """A flat grid facing the camera at z = 1 with a coarse border: the photo's segmentation line
    sits between the vertices; seen midpoints take its class, and a pointmap 5 cm behind (the
    vertex not seen) leaves them to the vote."""
    vertices, faces = _flat_grid()
    labels = np.where(vertices[:, 0] < 0.0, HAIR, FACE).astype(np.uint8)  # the coarse border: x in (-0.01, 0.01)
    f, size = 1000.0, 200
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    cols = np.arange(size) + 0.5
    seg = np.broadcast_to(np.where((cols - size / 2) / f < 0.005, HAIR, FACE), (size, size)).astype(np.uint8)
    pointmap = np.zeros((size, size, 3), np.float32)
    pointmap[..., 2] = 1.0
    out_v, out_f, out_l = refine_border(vertices, faces, labels, photos=[Photo(seg, pointmap, K)], rounds=1)
    new = np.arange(len(vertices), len(out_v))
    between = new[np.abs(out_v[new, 0]) < 0.009]
    assert len(between)
    expected = np.where(out_v[between, 0] < 0.005, HAIR, FACE)
    np.testing.assert_array_equal(out_l[between], expected)
    pointmap[..., 2] = 1.05
    _, _, behind = refine_border(vertices, faces, labels, photos=[Photo(seg, pointmap, K)], rounds=1)
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
    fine = refine_border(vertices, faces, labels, photos=[Photo(seg, pointmap, np.diag([2000.0, 2000.0, 1.0]))])
    coarse = refine_border(vertices, faces, labels, photos=[Photo(seg, pointmap, np.diag([20.0, 20.0, 1.0]))])
    assert len(fine[1]) == len(refine_border(vertices, faces, labels)[1])
    assert len(coarse[1]) == len(faces)


def _seam_case():
    """The sphere all Hair (the head) with a visibility weight rising across x = 0.023 (the seen
    side at larger x); the faces' own weight and the vertices' (as engine.avatar.islands makes them)."""
    from engine.avatar.islands import faces_to_vertices

    vertices, faces = _sphere()
    labels = np.full(len(vertices), HAIR, np.uint8)
    centre = vertices[faces].mean(axis=1)
    face_weight = np.clip(0.5 + (centre[:, 0] - 0.023) / 0.05, 0.0, 1.0)
    return vertices, faces, labels, face_weight, faces_to_vertices(vertices, faces) @ face_weight


def test_the_island_seam_is_split_and_the_mesh_stays_a_closed_oriented_manifold():
    from engine.geometry.refine_border import refine_seam

    vertices, faces, labels, face_weight, vertex_weight = _seam_case()
    out_v, out_f, out_l, out_fw, out_vw, head = refine_seam(vertices, faces, labels, face_weight, vertex_weight)
    counts, directed = _edge_uses(out_f)
    assert (counts == 2).all() and (directed == 1).all()
    assert len(out_v) - len(counts) + len(out_f) == 2
    assert len(out_f) > len(faces) and head.all()
    # old vertices keep their weight, but for those a crossing lay close to (moved onto them)
    moved = out_vw[: len(vertices)] != vertex_weight
    assert (out_vw[: len(vertices)][moved] == 0.5).all() and moved.sum() < 0.05 * len(vertices)
    # the weight is linear along the edges; a crossed edge is split where it is one half, so
    # the new vertices on the seam carry exactly one half
    new = np.arange(len(vertices), len(out_v))
    assert out_vw[new].min() >= vertex_weight.min() and out_vw[new].max() <= vertex_weight.max()
    assert np.isclose(out_vw[new], 0.5).sum() > 0.5 * len(new)
    # afterwards no triangle has corners on both sides of one half: every piece lies on one side
    corner = out_vw[out_f]
    assert not ((corner.min(axis=1) < 0.5 - 1e-9) & (corner.max(axis=1) > 0.5 + 1e-9)).any()
    # each piece carries its source face's own weight
    assert len(out_fw) == len(out_f) and set(np.round(out_fw, 12)) <= set(np.round(face_weight, 12))
    # the line leaves the head (Torso below y = 0): faces off it sharing a split edge are halved,
    # none is split through otherwise, and the mesh stays closed
    half = np.where(vertices[:, 1] > 0.0, HAIR, TORSO).astype(np.uint8)
    part = refine_seam(vertices, faces, half, face_weight, vertex_weight)
    counts, directed = _edge_uses(part[1])
    assert (counts == 2).all() and (directed == 1).all()
    assert len(faces) < len(part[1]) < len(out_f)
    # not on the head (no Hair or face corner): nothing split
    torso = np.full(len(vertices), TORSO, np.uint8)
    still = refine_seam(vertices, faces, torso, face_weight, vertex_weight)
    assert len(still[1]) == len(faces) and not still[5].any()


def test_the_island_cut_on_the_head_follows_its_line_finer():
    """islands.cut_islands reading the split head's weight at the corners: the border between
    the seen and hidden faces lies on the weight's half-way line (x = 0.023; 0.44 mm off it on
    average when written, the vertex weight being an average of the faces') where the cut along
    whole triangles lies 4.1 mm off it, and the seen side keeps its area."""
    from engine.avatar.islands import cut_islands
    from engine.geometry.refine_border import refine_seam

    vertices, faces, labels, face_weight, vertex_weight = _seam_case()
    coarse = cut_islands(face_weight, vertices, faces)
    out_v, out_f, _, out_fw, out_vw, head = refine_seam(vertices, faces, labels, face_weight, vertex_weight)
    fine = cut_islands(out_fw, out_v, out_f, out_vw, at_corners=head)

    def border_offset(v, f, seen):
        edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        side = np.tile(seen, 3)
        key = np.sort(edges, axis=1) @ np.array([len(v), 1])
        both = np.intersect1d(key[side], key[~side])
        ends = np.unique(np.stack([both // len(v), both % len(v)]))
        return float(np.abs(v[ends, 0] - 0.023).mean())

    assert border_offset(out_v, out_f, fine) < 0.25 * border_offset(vertices, faces, coarse)
    area = lambda v, f: 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    seen_area = lambda v, f, s: area(v, f)[s].sum()
    np.testing.assert_allclose(seen_area(out_v, out_f, fine), seen_area(vertices, faces, coarse), rtol=0.15)


CLOTH, TROUSERS, LEG = (class_names().index(n) for n in ("Upper_Clothing", "Lower_Clothing", "Left_Upper_Leg"))
SHIN, SOCK, SHOE = (class_names().index(n) for n in ("Left_Lower_Leg", "Left_Sock", "Left_Shoe"))


def test_the_collar_is_split_as_the_hairline_and_skin_against_skin_is_not():
    """Skin above a tilted plane, the shirt below: the skin/clothing border is split the same way
    (closed, oriented, finer); the neck against the torso and a thigh against its shin (one
    slot) and the shirt against the trousers (one slot) are left whole."""
    vertices, faces = _sphere()
    height = vertices[:, 1] + 0.3 * vertices[:, 0]
    collar = np.where(height > 0.0, FACE, CLOTH).astype(np.uint8)
    assert border_faces(faces, collar).any()
    out_v, out_f, out_l = refine_border(vertices, faces, collar)
    counts, directed = _edge_uses(out_f)
    assert (counts == 2).all() and (directed == 1).all()
    assert len(out_v) - len(counts) + len(out_f) == 2
    def border_edge(v, f, lab):
        tri = v[f[border_faces(f, lab)]]
        return np.median(np.linalg.norm(tri[:, 1] - tri[:, 0], axis=1))
    assert border_edge(out_v, out_f, out_l) < 0.3 * border_edge(vertices, faces, collar)
    for one, other in ((FACE, TORSO), (LEG, SHIN), (CLOTH, TROUSERS)):
        plain = np.where(height > 0.0, one, other).astype(np.uint8)
        assert not border_faces(faces, plain).any()
        assert len(refine_border(vertices, faces, plain)[1]) == len(faces)


def _collar_grid():
    """A flat grid facing the camera at z = 1: the neck left of x = 0, the shirt right of it."""
    vertices, faces = _flat_grid()
    labels = np.where(vertices[:, 0] < 0.0, FACE, CLOTH).astype(np.uint8)
    f, size = 1000.0, 200
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    pointmap = np.zeros((size, size, 3), np.float32)
    pointmap[..., 2] = 1.0
    return vertices, faces, labels, K, pointmap, size


def test_collar_midpoints_read_the_photo_but_not_a_single_ragged_pixel_nor_a_class_off_the_border():
    vertices, faces, labels, K, pointmap, size = _collar_grid()
    photo_of = lambda seg: [Photo(seg, pointmap, K)]
    no_photo = refine_border(vertices, faces, labels, rounds=1)[2]
    new = np.arange(len(vertices), len(no_photo))
    # the photo's shirt reaches left to x = -0.03 (pixel column 70): the midpoints right of it read it
    seg = np.full((size, size), FACE, np.uint8)
    seg[:, 70:] = CLOTH
    out_v, _, out_l = refine_border(vertices, faces, labels, photos=photo_of(seg), rounds=1)
    pixel_col = np.floor(out_v[new, 0] * 1000.0 + size / 2).astype(int)
    inside = np.abs(pixel_col - 70) > 1
    np.testing.assert_array_equal(out_l[new][inside], np.where(pixel_col[inside] >= 70, CLOTH, FACE))
    # a lone shirt pixel under each midpoint in a skin photo is not read: the vote stands...
    speck = np.full((size, size), FACE, np.uint8)
    speck[np.floor(out_v[new, 1] * 1000.0 + size / 2).astype(int), pixel_col] = CLOTH
    skin_photo = refine_border(vertices, faces, labels, photos=photo_of(np.full((size, size), FACE, np.uint8)),
                               rounds=1)[2]
    np.testing.assert_array_equal(refine_border(vertices, faces, labels, photos=photo_of(speck), rounds=1)[2], skin_photo)
    assert (skin_photo[new] == FACE).all() and (no_photo[new] == CLOTH).any()
    # ...and a class of no border the edge lies on (the trousers) is not taken either
    trousers = refine_border(vertices, faces, labels, photos=photo_of(np.full((size, size), TROUSERS, np.uint8)),
                             rounds=1)[2]
    np.testing.assert_array_equal(trousers, no_photo)


def test_past_the_budget_the_collar_is_left_out_before_the_hairline():
    vertices, faces = _sphere()
    height = vertices[:, 1] + 0.3 * vertices[:, 0]
    both = np.where(height > 0.04, HAIR, np.where(height > -0.04, FACE, CLOTH)).astype(np.uint8)
    hair_only = np.where(height > 0.04, HAIR, FACE).astype(np.uint8)
    full = refine_border(vertices, faces, both, rounds=1)[1]
    hairline = refine_border(vertices, faces, hair_only, rounds=1)[1]
    assert len(hairline) < len(full)
    kept = refine_border(vertices, faces, both, rounds=1, max_faces=len(full) - 1)
    np.testing.assert_array_equal(kept[1], hairline)
    assert (kept[2][: len(vertices)] == both).all()


def _hems_and_shoe(vertices):
    """Down a tilted sphere: the trousers, a bare shin below their hem, a sock, a shoe."""
    height = vertices[:, 1] + 0.3 * vertices[:, 0]
    return np.select([height > 0.04, height > -0.01, height > -0.05], [TROUSERS, SHIN, SOCK], SHOE).astype(np.uint8)


def test_the_hems_and_the_shoes_top_are_split_as_the_collar():
    """The trousers' hem on the bare shin, the shin against the sock and the sock against the
    shoe: each border's triangles split the same way (closed, oriented, the shape unchanged,
    four times finer), and each border alone is found."""
    vertices, faces = _sphere()
    labels = _hems_and_shoe(vertices)
    out_v, out_f, out_l = refine_border(vertices, faces, labels)
    counts, directed = _edge_uses(out_f)
    assert (counts == 2).all() and (directed == 1).all()
    assert len(out_v) - len(counts) + len(out_f) == 2
    np.testing.assert_array_equal(out_v[: len(vertices)], vertices)
    area = lambda v, f: 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum()
    np.testing.assert_allclose(area(out_v, out_f), area(vertices, faces), rtol=1e-12)
    for one, other in ((TROUSERS, SHIN), (SHIN, SOCK), (SOCK, SHOE), (TROUSERS, SHOE), (SHIN, SHOE)):
        pair = np.where(vertices[:, 1] + 0.3 * vertices[:, 0] > 0.0, one, other).astype(np.uint8)
        assert border_faces(faces, pair).any(), (one, other)
        split = refine_border(vertices, faces, pair)
        tri = lambda v, f, lab: v[f[border_faces(f, lab)]]
        edge = lambda t: np.median(np.linalg.norm(t[:, 1] - t[:, 0], axis=1))
        assert edge(tri(*split)) < 0.3 * edge(tri(vertices, faces, pair)), (one, other)


def test_past_the_budget_the_shoes_go_first_then_the_hems_and_the_collar_before_the_hairline():
    vertices, faces = _sphere()
    height = vertices[:, 1] + 0.3 * vertices[:, 0]
    every = np.select([height > 0.06, height > 0.02, height > -0.02, height > -0.06], [HAIR, FACE, CLOTH, TROUSERS],
                      SHOE).astype(np.uint8)
    without_shoes = np.where(every == SHOE, TROUSERS, every).astype(np.uint8)  # the last border gone
    full = refine_border(vertices, faces, every, rounds=1)
    fewer = refine_border(vertices, faces, without_shoes, rounds=1)
    assert len(fewer[1]) < len(full[1])
    kept = refine_border(vertices, faces, every, rounds=1, max_faces=len(full[1]) - 1)
    np.testing.assert_array_equal(kept[1], fewer[1])  # the same triangles split: the shoes' left out
    assert (kept[2][: len(vertices)] == every).all()
    # the shoe's top was left at the solid's triangles: no face split there
    shoe_top = border_faces(faces, every) & ~border_faces(faces, without_shoes)
    assert shoe_top.any()
    whole = {tuple(row) for row in kept[1].tolist()}
    assert all(tuple(row) in whole for row in faces[shoe_top].tolist())
    assert not any(tuple(row) in {tuple(r) for r in full[1].tolist()} for row in faces[shoe_top].tolist())


def test_hem_midpoints_read_the_photos_hem():
    """A flat grid facing the camera: the bare thigh left of x = 0, the shorts right of it, and
    the photo's hem at x = -0.03 (pixel column 70): the midpoints right of it read the shorts."""
    vertices, faces, _, K, pointmap, size = _collar_grid()
    labels = np.where(vertices[:, 0] < 0.0, LEG, TROUSERS).astype(np.uint8)
    seg = np.full((size, size), LEG, np.uint8)
    seg[:, 70:] = TROUSERS
    out_v, _, out_l = refine_border(vertices, faces, labels, photos=[Photo(seg, pointmap, K)], rounds=1)
    new = np.arange(len(vertices), len(out_v))
    assert len(new)
    pixel_col = np.floor(out_v[new, 0] * 1000.0 + size / 2).astype(int)
    inside = np.abs(pixel_col - 70) > 1
    np.testing.assert_array_equal(out_l[new][inside], np.where(pixel_col[inside] >= 70, TROUSERS, LEG))
    vote = refine_border(vertices, faces, labels, rounds=1)[2]
    assert (vote[new] == LEG).any() and (out_l[new] != vote[new]).any()  # the photo moved the hem
