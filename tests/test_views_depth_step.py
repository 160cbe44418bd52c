"""A fused avatar's colour read across a view's depth step (engine/avatar/views.py read_across_step).

At the head's outline the front photo shows, past the face's last skin pixels, the back of the
head's hair some centimetres behind; the fused solid's side of the face lies a pixel or so past
those skin pixels. A point the view's ray passes in front of the surface its pixel shows takes the
colour of the pixel around whose point lies nearest it on the near side of the step, not the
colour of the surface behind (nor the unseen fill's)."""

from __future__ import annotations

import numpy as np

from engine.avatar import views as mv

SKIN = np.array([0.6, 0.4, 0.3], np.float32)
HAIR = np.array([0.05, 0.04, 0.03], np.float32)
SIZE, F, NEAR, FAR = 40, 400.0, 1.0, 1.06  # a 6 cm step at column 20


def stepped_view() -> mv.ViewMaps:
    """One camera at the origin: columns < 20 a skin plane at 1.00 m, the others a hair plane at 1.06 m."""
    K = np.array([[F, 0, SIZE / 2], [0, F, SIZE / 2], [0, 0, 1]])
    cols, rows = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5)
    depth = np.where(cols < SIZE / 2, NEAR, FAR)
    pointmap = np.stack([(cols - K[0, 2]) / F * depth, (rows - K[1, 2]) / F * depth, depth], axis=-1).astype(np.float32)
    colour = np.where((cols < SIZE / 2)[..., None], SKIN, HAIR).astype(np.float32)
    mask = np.ones((SIZE, SIZE), bool)
    return mv.ViewMaps("front", np.eye(4), K, pointmap, mask, colour, "albedo", np.full((SIZE, SIZE), 20.0, np.float32), None)


def point_at(col: float, depth: float) -> np.ndarray:
    return np.array([[(col - SIZE / 2) / F * depth, 0.5 / F * depth, depth]])


FACING = np.array([[0.0, 0.0, -1.0]])


def test_a_point_past_the_step_reads_the_near_side():
    view = stepped_view()
    # 1.5 pixels past the skin's last column, at the skin's depth: 6 cm in front of the hair there
    colour, _, best, read_across = mv.blend_views(point_at(21.5, NEAR), FACING, [view])
    assert best[0] == 0 and read_across[0]
    np.testing.assert_allclose(colour[0], SKIN, atol=1e-6)


def test_points_on_either_surface_keep_their_own_pixel():
    view = stepped_view()
    points = np.concatenate([point_at(22.5, FAR), point_at(17.5, NEAR)])
    colour, _, best, read_across = mv.blend_views(points, np.repeat(FACING, 2, axis=0), [view])
    assert (best == 0).all() and not read_across.any()
    np.testing.assert_allclose(colour, [HAIR, SKIN], atol=1e-6)


def test_a_point_behind_the_surface_stays_hidden():
    """Only a ray that passed the point moves it: one behind the skin (occluded) is not seen."""
    weight, _, _, across = mv.view_weights(point_at(10.5, NEAR + 0.05), FACING, stepped_view())
    assert weight[0] == 0 and not across[0]


def test_a_point_far_from_every_near_pixel_is_not_moved():
    """Past the step but 4 cm in front of the skin's plane too: nothing around lies near it."""
    _, _, _, across = mv.view_weights(point_at(21.5, NEAR - 0.04), FACING, stepped_view())
    assert not across[0]


def test_the_unseen_fill_does_not_copy_colours_read_across_a_step():
    points = np.array([[0.0, 0, 0], [0.01, 0, 0], [0.05, 0, 0]], np.float32)
    albedo = np.array([SKIN, HAIR * 0, HAIR], np.float32)  # the first read across a step, the last seen directly
    seen = np.array([True, False, True])
    mv._colour_unseen_from_nearest_seen(albedo, np.arange(3), points, seen, np.array([False, False, True]))
    np.testing.assert_allclose(albedo[1], HAIR)
    mv._colour_unseen_from_nearest_seen(albedo, np.arange(3), points, seen)
    np.testing.assert_allclose(albedo[1], SKIN)
