"""engine/geometry/contact_walls.py: the contact line between a hanging arm and the trunk, and
the walls along the camera rays that part a closed solid there."""

import numpy as np
import pytest

from engine.geometry import contact_walls
from engine.geometry.labels import class_ids

K = np.array([[500.0, 0.0, 20.0], [0.0, 500.0, 30.0], [0.0, 0.0, 1.0]])
TRUNK, UPPER, LOWER = (int(class_ids([name])[0]) for name in ("Upper_Clothing", "Right_Upper_Arm", "Right_Lower_Arm"))


def _maps(arm_in_front=0.0, step_row=None):
    """A trunk block (columns 10-29) with an arm hanging against its right side (upper arm rows
    5-29, forearm rows 30-54), flat 3 m away; step_row: from that row down the arm's border is
    one column further right (a staircase in the contact line)."""
    H, W = 60, 40
    seg = np.zeros((H, W), np.int64)
    seg[5:55, 10:30] = TRUNK
    seg[5:30, 30:38] = UPPER
    seg[30:55, 30:38] = LOWER
    if step_row is not None:
        seg[step_row:55, 30] = TRUNK
    valid = seg > 0
    depth = np.where(valid, 3.0, np.nan)
    depth[np.isin(seg, (UPPER, LOWER))] -= arm_in_front
    rows, cols = np.mgrid[0:H, 0:W]
    points = np.stack([(cols + 0.5 - K[0, 2]) / K[0, 0] * depth, (rows + 0.5 - K[1, 2]) / K[1, 1] * depth, depth], -1)
    upper_arms = {UPPER: np.array([[34.0, 5.0], [34.0, 30.0]])}
    return points, valid, seg, upper_arms


def _rows_walled(segments):
    """Per image row (0-59), whether a vertical wall piece covers it."""
    covered = np.zeros(60, bool)
    for x0, y0, x1, y1, _, _ in segments:
        if x0 == x1:
            covered[int(y0):int(y1)] = True
    return covered


def test_the_wall_runs_down_the_arms_border_past_the_shoulder_root():
    points, valid, seg, upper_arms = _maps()
    segments = contact_walls.contact_segments(points, valid, seg, K, upper_arms)
    vertical = segments[segments[:, 0] == segments[:, 2]]
    assert len(vertical) and np.all(vertical[:, 0] == 30)  # on the arm's border facing the trunk
    covered = _rows_walled(segments)
    root_end = 5 + contact_walls.ROOT_SHARE * 25
    assert not covered[5:int(root_end) - 1].any()  # the upper arm's root stays joined
    assert covered[int(root_end) + 1:55].all()
    assert np.all(segments[:, 4] < 3.0) and np.all(segments[:, 5] > 3.0)  # the wall spans the contact's depth


def test_the_walls_staircase_is_joined_where_the_border_steps_sideways():
    points, valid, seg, upper_arms = _maps(step_row=40)
    segments = contact_walls.contact_segments(points, valid, seg, K, upper_arms)
    covered = _rows_walled(segments)
    assert covered[20:55].all()
    across = segments[(segments[:, 1] == segments[:, 3]) & (segments[:, 1] == 40)]
    assert len(across) and across[:, 0].min() <= 30 and across[:, 2].max() >= 31


def test_an_arm_well_in_front_of_the_trunk_is_not_walled_off():
    points, valid, seg, upper_arms = _maps(arm_in_front=0.1)
    assert len(contact_walls.contact_segments(points, valid, seg, K, upper_arms)) == 0


def test_the_walls_part_a_solid_in_two_and_label_each_side_by_its_pixel():
    pytest.importorskip("manifold3d")
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    from engine.geometry.near_boolean import box_solid

    # a solid box seen over columns 20-39 (x -> pixels at 3 m), rows 10-50, 2.95-3.1 m deep, and
    # one wall down column 30 from row 0 to 60 through all its depth
    to_x = lambda px: (px - K[0, 2]) / K[0, 0] * 3.0  # noqa: E731
    to_y = lambda px: (px - K[1, 2]) / K[1, 1] * 3.0  # noqa: E731
    mesh = box_solid((to_x(20), to_y(10), 2.95), (to_x(40), to_y(50), 3.1)).to_mesh()
    vertices = np.array(mesh.vert_properties, np.float32)[:, :3].copy()  # writeable, as manifold3d takes it
    faces = np.asarray(mesh.tri_verts, np.int64).reshape(-1, 3)
    segments = np.array([[30.0, 0.0, 30.0, 60.0, 2.9, 3.2]])
    cut = contact_walls.cut_walls(vertices, faces, contact_walls.wall_solids(segments, K))
    assert cut is not None
    v, f = cut
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    graph = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(v), len(v)))
    assert connected_components(graph, directed=False)[0] == 2
    x_px = K[0, 0] * v[:, 0] / v[:, 2] + K[0, 2]
    assert np.all(np.abs(x_px - 30.0) > 0.2)  # nothing left inside the wall
    valid = np.zeros((60, 40), bool)
    valid[10:50, 20:40] = True
    seg = np.where(valid, TRUNK, 0)
    seg[:, 30:] = np.where(valid[:, 30:], UPPER, 0)
    labels = contact_walls.labels_beside_walls(v, np.full(len(v), TRUNK), segments, valid, seg, K)
    beside = np.abs(x_px - 30.0) < 1.0
    assert np.all(labels[beside & (x_px > 30)] == UPPER) and np.all(labels[beside & (x_px < 30)] == TRUNK)
