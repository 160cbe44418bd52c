"""The face/hair border on the seen side of the head (issue 13): the head's labels voted smooth
over the surface, and seen vertices beside an occluding edge reading their own surface's colour."""

from __future__ import annotations

import numpy as np

from engine.avatar.appearance import LAYER_REACH_M, _onto_its_own_layer
from engine.avatar.labels import HAIRLINE_VOTE_M, class_ids, smooth_hairline

HAIR, FACE, TORSO = (int(i) for i in class_ids(["Hair", "Face_Neck", "Torso"]))
SPACING = 0.003  # a closed avatar's head has edges of a few millimetres


def _grid(n=41):
    """Vertices of a flat patch, n x n at SPACING (metres), and their (column, row) indices."""
    cols, rows = np.meshgrid(np.arange(n), np.arange(n))
    vertices = np.stack([cols * SPACING, rows * SPACING, np.full(cols.shape, 1.0)], axis=-1).reshape(-1, 3)
    return vertices, cols.reshape(-1), rows.reshape(-1)


def test_the_vote_irons_out_teeth_and_keeps_a_lock_of_hair():
    vertices, col, row = _grid()
    border = 20 + (col % 2) * 2  # a saw-tooth: every other column reaches two rows further
    labels = np.where(row < border, HAIR, FACE).astype(np.uint8)
    lock = (col >= 28) & (col < 36) & (row >= border)  # a lock 2.4 cm wide hanging over the face
    labels[lock] = HAIR
    labels[row == 40] = TORSO  # not the head: never changes
    out = smooth_hairline(labels, vertices, np.ones(len(labels), bool))
    # the teeth are gone: every column away from the lock ends its hair on the same row
    plain = col < 24
    last_hair_row = [row[plain & (col == c) & (out == HAIR)].max() for c in range(2, 22)]
    assert max(last_hair_row) - min(last_hair_row) <= 1, last_hair_row
    assert (np.diff(np.array(last_hair_row)) != 0).sum() <= 2
    # the lock stays hair, the torso row stays torso, the rest of the face stays face
    inner_lock = lock & (col >= 30) & (col < 34) & (row < 39)
    assert (out[inner_lock] == HAIR).all()
    assert (out[row == 40] == TORSO).all()
    assert (out[(row > 26) & (col < 24) & (row < 40)] == FACE).all()
    # the lock is wider than the vote reaches; teeth of one column are narrower
    assert 2 * HAIRLINE_VOTE_M < 8 * SPACING and 2 * SPACING < 2 * HAIRLINE_VOTE_M


def test_the_vote_leaves_vertices_it_is_not_given_alone():
    vertices, col, row = _grid(21)
    labels = np.where(row < 10, HAIR, FACE).astype(np.uint8)
    labels[(row == 12) & (col == 10)] = HAIR  # a lone speck in the face
    where = col < 10  # the speck is not among them
    out = smooth_hairline(labels, vertices, where)
    assert out[(row == 12) & (col == 10)][0] == HAIR
    cleaned = smooth_hairline(labels, vertices, np.ones(len(labels), bool))
    assert cleaned[(row == 12) & (col == 10)][0] == FACE


def test_a_head_all_hair_or_all_face_is_left_as_it_is():
    vertices, _, _ = _grid(11)
    for cls in (HAIR, FACE):
        labels = np.full(len(vertices), cls, np.uint8)
        assert (smooth_hairline(labels, vertices, np.ones(len(labels), bool)) == cls).all()


def _step_pointmap(h=40, w=40, split=20, near=1.0, far=1.07, f=500.0):
    """A face (z = near) on the left of column `split` in front of hair (z = far) on its right."""
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    z = np.where(cols < split, near, far)
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    points = np.stack([(cols - K[0, 2]) / f * z, (rows - K[1, 2]) / f * z, z], axis=-1).astype(np.float32)
    return points, K


def test_a_vertex_in_front_of_its_pixel_reads_the_nearest_point_of_its_own_surface():
    pointmap, K = _step_pointmap()
    # the face's edge-on side: a vertex of the face (z = 1.0) just past the step, where the
    # photo shows the hair 7 cm behind it
    on_face_edge = np.array([[(21.5 - 20) / 500 * 1.0, 0.0, 1.0]])
    on_hair = np.array([[(30.5 - 20) / 500 * 1.07, 0.0, 1.07]])
    far_in_front = np.array([[(30.5 - 20) / 500 * 0.9, 0.0, 0.9]])  # nothing the photo saw near it
    vertices = np.concatenate([on_face_edge, on_hair, far_in_front])
    xy = vertices[:, :2] / vertices[:, 2:] * 500 + 20
    out = _onto_its_own_layer(vertices, xy, pointmap)
    assert out[0, 0] < 20 and abs(out[0, 0] - 19.5) < 1.0  # the last face pixel, not the hair
    assert abs(out[0, 1] - xy[0, 1]) < 1.0
    np.testing.assert_array_equal(out[1:], xy[1:])  # on its own surface, or nothing near: unchanged
    assert np.linalg.norm(pointmap[int(out[0, 1]), int(out[0, 0])] - on_face_edge[0]) < LAYER_REACH_M
