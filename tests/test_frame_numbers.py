"""The frame stage's faster forms give the numbers of the plain ones, byte for byte (issue 13):
the seam weld of seamless_normals (np.unique over rows), split_islands (np.unique's inverse),
project and apply_transform (a matrix product), the islands' areas and visibility weights."""

from __future__ import annotations

import numpy as np

from engine.avatar import islands
from engine.avatar.frame import apply_transform, camera_to_avatar
from engine.geometry import cleanup
from engine.avatar.stages import seamless_normals
from engine.geometry.surface import vertex_normals


def _mesh(seed=0, n=400):
    rng = np.random.default_rng(seed)
    vertices = rng.normal(size=(n, 3))
    vertices[:, 2] += 4.0
    faces = rng.integers(0, n, size=(3 * n, 3))
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    return vertices, faces


def _reference_seamless(vertices, faces):
    unique, weld = np.unique(np.asarray(vertices), axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    return vertex_normals(unique, weld[faces])[weld]


def test_seamless_normals_weld_copies_as_np_unique_does():
    vertices, faces = _mesh()
    island = (np.arange(len(faces)) % 3 == 0).astype(np.int8)
    faces, source, _ = islands.split_islands(faces, island)
    split = vertices[source]
    split[:5, 0] = 0.0
    split[5:10] = split[:5] * np.array([-1.0, 1.0, 1.0])  # -0.0 beside 0.0: one position
    for v in (split, split.astype(np.float32)):
        got, want = seamless_normals(v, faces), _reference_seamless(v, faces)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    group, first = cleanup.same_rows(split, as_numbers=True)
    assert len(first) == len(np.unique(split, axis=0)) < len(split)
    assert np.array_equal(split[first][group], split)


def test_seamless_normals_and_the_border_fall_back_on_a_hash_clash(monkeypatch):
    from engine.avatar.appearance import _on_the_border

    vertices, faces = _mesh(1)
    hidden = np.arange(len(vertices)) % 2 == 0
    vertices[1::2] = vertices[::2]
    want = _reference_border(vertices, hidden)
    monkeypatch.setattr(cleanup, "_ROW_HASH", np.zeros(4, np.uint64))  # every row's code 0
    assert cleanup.same_rows(vertices, as_numbers=True) is None
    assert seamless_normals(vertices, faces).tobytes() == _reference_seamless(vertices, faces).tobytes()
    assert np.array_equal(_on_the_border(vertices, hidden), want)


def _reference_border(vertices, hidden):
    rows = np.ascontiguousarray(vertices).view(np.dtype((np.void, vertices.dtype.itemsize * vertices.shape[1])))[:, 0]
    return np.where(hidden, np.isin(rows, rows[~hidden]), np.isin(rows, rows[hidden]))


def test_the_islands_border_compares_bytes_as_np_isin():
    """appearance._on_the_border: a vertex whose position (its bytes: -0 is not 0 there, a NaN
    row equals its copy) a vertex of the other island has too."""
    from engine.avatar.appearance import _on_the_border

    rng = np.random.default_rng(6)
    vertices = rng.integers(0, 12, (3000, 3)).astype(np.float64)
    vertices[::7, 0] = -0.0
    vertices[::11] = np.nan
    hidden = rng.random(len(vertices)) < 0.5
    for v in (vertices, vertices.astype(np.float32), vertices[:, :2].copy()):
        got, want = _on_the_border(v, hidden), _reference_border(v, hidden)
        assert np.any(got) and np.array_equal(got, want)
    assert not np.all(_on_the_border(vertices, hidden))


def test_split_islands_numbers_as_np_unique():
    _, faces = _mesh(2)
    for n_islands in (2, 3):
        island = np.random.default_rng(n_islands).integers(0, n_islands, len(faces)).astype(np.int8)
        new_faces, source, vertex_island = islands.split_islands(faces, island, n_islands)
        key = faces.astype(np.int64) * n_islands + np.repeat(island.astype(np.int64), 3).reshape(-1, 3)
        keys, inverse = np.unique(key.reshape(-1), return_inverse=True)
        assert new_faces.dtype == np.int64 and np.array_equal(new_faces, inverse.reshape(-1, 3))
        assert np.array_equal(source, keys // n_islands) and np.array_equal(vertex_island, keys % n_islands)


def test_project_and_apply_transform_give_the_matrix_products_numbers():
    vertices, faces = _mesh(3, 2000)
    vertices[:4] = [[np.inf, 1.0, 1.0], [1.0, np.nan, 2.0], [0.0, 1.0, 0.0], [-0.0, -0.0, 1.0]]
    with np.errstate(all="ignore"):
        for K in (np.array([[900.5, 0, 300.25], [0, 901.0, 410.5], [0, 0, 1]]),
                  np.array([[900.5, 2.0, 300.25], [0, 901.0, 410.5], [0, 0, 1]])):  # skew: the product itself
            p = np.asarray(vertices, np.float64)
            xy = p[:, :2] / p[:, 2:3]
            want = xy @ K[:2, :2].T + K[:2, 2]
            assert islands.project(vertices, K).tobytes() == want.tobytes()
        labels = np.zeros(len(vertices), np.uint8)
        matrix, _ = camera_to_avatar(vertices[4:], labels[4:])
        for m in (matrix, np.eye(4)):  # the identity's zero shift: the product itself
            want = vertices @ m[:3, :3].T + m[:3, 3]
            assert apply_transform(m, vertices).tobytes() == want.tobytes()


def _reference_depth_range(depth):
    from scipy import ndimage

    finite = np.isfinite(depth)
    low, high = np.full(depth.shape, np.nan), np.full(depth.shape, np.nan)
    if not finite.any():
        return low, high
    r, c = np.nonzero(finite)
    box = (slice(max(r.min() - 1, 0), r.max() + 2), slice(max(c.min() - 1, 0), c.max() + 2))
    near = ndimage.minimum_filter(np.where(finite[box], depth[box], np.inf), size=3, mode="nearest")
    far = ndimage.maximum_filter(np.where(finite[box], depth[box], -np.inf), size=3, mode="nearest")
    low[box] = np.where(np.isfinite(near), near, np.nan)
    high[box] = np.where(np.isfinite(far), far, np.nan)
    return low, high


def test_depth_range_as_ndimage_filters():
    rng = np.random.default_rng(5)
    for case in range(6):
        depth = rng.normal(3.0, 0.2, (37, 29)).astype(np.float32)
        depth[rng.random(depth.shape) < 0.5] = np.nan
        if case == 1:
            depth[:] = np.nan
            depth[0, 0] = 2.0  # a box at the photo's corner
        if case == 2:
            depth[:] = np.nan  # nothing seen
        if case == 3:
            depth[:, -1] = 2.5  # reaching the last column
        row, col = rng.integers(-3, 40, 500), rng.integers(-3, 32, 500)
        row, col = np.clip(row, 0, 36), np.clip(col, 0, 28)
        low, high = _reference_depth_range(depth.astype(np.float64))
        got = islands._depth_range_at(depth, row, col)
        assert got[0].tobytes() == low[row, col].tobytes() and got[1].tobytes() == high[row, col].tobytes()


def _reference_weights(vertices_camera, faces, pointmap, K):
    """visibility_weights as it was written before (rows of corners, np.cross, np.linalg.norm)."""
    corners = vertices_camera[faces].astype(np.float64)
    centre = corners.mean(axis=1)
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.einsum("ij,ij->i", normal, -centre) / (np.linalg.norm(normal, axis=1) * np.linalg.norm(centre, axis=1))
    facing = np.clip((np.nan_to_num(cos, nan=-1.0) - islands.GRAZING_COS[0]) / (islands.GRAZING_COS[1] - islands.GRAZING_COS[0]), 0.0, 1.0)
    h, w = pointmap.shape[:2]
    p = centre
    xy = p[:, :2] / p[:, 2:3] @ K[:2, :2].T + K[:2, 2]
    inside = np.isfinite(xy).all(axis=1) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    col = np.clip(np.nan_to_num(xy[:, 0]).astype(np.int64), 0, w - 1)
    row = np.clip(np.nan_to_num(xy[:, 1]).astype(np.int64), 0, h - 1)
    low, high = _reference_depth_range(pointmap[..., 2].astype(np.float64))
    z = centre[:, 2]
    outside_range = np.maximum(low[row, col] - z, z - high[row, col])
    tolerance = np.maximum(islands.SEEN_DEPTH_TOLERANCE_M, islands.SEEN_DEPTH_TOLERANCE_REL * z)
    on_surface = np.clip(2.0 - np.nan_to_num(outside_range, nan=np.inf) / tolerance, 0.0, 1.0)
    return np.where(inside, facing * on_surface, 0.0)


def test_face_areas_and_visibility_weights_as_the_row_forms():
    vertices, faces = _mesh(4)
    corners = vertices[faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    assert islands._face_areas(vertices, faces).tobytes() == area.tobytes()
    K = np.array([[60.0, 0, 32.5], [0, 60.0, 24.5], [0, 0, 1]])
    pointmap = np.full((48, 64, 3), np.nan, np.float32)
    pointmap[10:40, 10:50] = [0.0, 0.0, 4.0]
    pointmap[20:30, 20:30, 2] = 3.5
    weights = islands.visibility_weights(vertices, faces, pointmap, K)
    assert np.any(weights > 0) and np.any((weights > 0) & (weights < 1))
    assert weights.tobytes() == _reference_weights(vertices, faces, pointmap, K).tobytes()


def test_place_takes_the_hair_labels_beside_the_frame_and_places_again_if_the_feet_change(monkeypatch):
    """stages.place decides the hair's labels in a thread beside the move to the avatar frame,
    which reads the feet's labels only: the same Framed as one after the other; a relabelling
    that touched the feet places the frame again from the new labels."""
    from engine.avatar import stages
    from engine.avatar.labels import FOOT_CLASSES_LEFT, FOOT_CLASSES_RIGHT, class_ids

    vertices, faces = _mesh(7, 600)
    labels = np.zeros(len(vertices), np.uint8)
    low = np.argsort(vertices[:, 1])[-40:]  # the lowest vertices (camera y down) are feet
    labels[low[:20]], labels[low[20:]] = class_ids(FOOT_CLASSES_LEFT)[0], class_ids(FOOT_CLASSES_RIGHT)[0]
    face_island = np.zeros(len(faces), np.int8)
    vertex_island = np.zeros(len(vertices), np.int8)
    hair = labels.copy()
    hair[:10] = 2  # not feet
    monkeypatch.setattr(stages, "_hair_labels", lambda labels, views: hair)
    framed = stages.place(vertices, faces, labels, face_island, vertex_island, hair_views=[object()])
    serial = stages._placed(vertices, faces, hair, face_island, vertex_island)
    assert np.array_equal(framed.labels, hair)
    for name in ("vertices_avatar", "normals_avatar", "camera_to_avatar"):
        assert getattr(framed, name).tobytes() == getattr(serial, name).tobytes()
    moved = labels.copy()
    moved[low[:20]] = 0  # the left foot's labels gone: the origin moves
    monkeypatch.setattr(stages, "_hair_labels", lambda labels, views: moved)
    framed = stages.place(vertices, faces, labels, face_island, vertex_island, hair_views=[object()])
    serial = stages._placed(vertices, faces, moved, face_island, vertex_island)
    assert not np.array_equal(framed.camera_to_avatar, stages._placed(vertices, faces, labels, face_island, vertex_island).camera_to_avatar)
    assert framed.camera_to_avatar.tobytes() == serial.camera_to_avatar.tobytes() and framed.origin == serial.origin
