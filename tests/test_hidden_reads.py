"""Where a closed avatar's hidden vertices read the photo (engine.avatar.appearance._through_the_front)
on degraded maps: a flying outline pixel must not send them across the picture."""

from __future__ import annotations

import numpy as np
import pytest

from engine.avatar import appearance
from engine.avatar.islands import project
from engine.synthetic import degrade, make_person


@pytest.fixture(scope="module")
def person():
    return make_person(102, pose="arms_forward", width=288, height=384)


def back_points(person, depth_m: float = 0.15):
    """A stand-in for the hidden side: each person pixel's point pushed `depth_m` further from the
    camera (it projects a little toward the photo's centre, as a back vertex does); and its pixel."""
    rows, cols = np.nonzero(person.mask)
    points = person.pointmap[rows, cols].astype(np.float64)
    keep = np.isfinite(points).all(1)
    points, rows, cols = points[keep], rows[keep], cols[keep]
    points[:, 2] += depth_m
    return points, np.stack([cols + 0.5, rows + 0.5], 1)


def test_front_points_line_up_on_exact_maps(person):
    points, pixel = back_points(person)
    plain = project(points, person.K)
    read = appearance._through_the_front(points, plain.copy(), person.pointmap, person.K)
    # the plain projection of a point behind the front slants off its pixel; the front point at
    # its x and y lands back on it
    assert np.median(np.linalg.norm(plain - pixel, axis=1)) > 2.0
    assert np.median(np.linalg.norm(read - pixel, axis=1)) < 0.5


def test_a_flying_outline_pixel_does_not_send_a_read_across_the_photo(person, monkeypatch):
    flying = degrade(person, seed=102, flying_rim_px=2.0, centred=True)
    points, pixel = back_points(person)
    plain = project(points, person.K)
    read = appearance._through_the_front(points, plain.copy(), flying.pointmap, person.K)
    off = np.linalg.norm(read - pixel, axis=1)
    # measured (288 x 384, 13402 points): with the check 3 reads land more than 15 px off their
    # pixel, at most 28 px; without it 134, up to 52 px (the outline's flying pixels, their depth
    # pulled toward the camera by up to a metre). Exact maps: at most 10 px (an outline's slant).
    assert (off > 15.0).sum() <= 6 and off.max() < 40.0 and np.median(off) < 0.5
    monkeypatch.setattr(appearance, "THROUGH_DEPTH_TOLERANCE", (np.inf, np.inf))
    unchecked = appearance._through_the_front(points, plain.copy(), flying.pointmap, person.K)
    assert (np.linalg.norm(unchecked - pixel, axis=1) > 15.0).sum() > 60


def test_a_short_move_stays_a_long_one_must_land_on_its_own_depth():
    """The rule itself on a made-up photo: a person 1000 px tall (outline band 15 px), a plane at
    2 m whose columns from 95 on are a surface at 2.5 m (a thigh behind a hand, say)."""
    K = np.array([[500.0, 0, 0], [0, 500.0, 500.0], [0, 0, 1]])
    rows, cols = np.mgrid[0:1000, 0:300]
    depth = np.where(cols < 95, 2.0, 2.5)
    pointmap = np.stack([(cols + 0.5) * depth / 500, (rows + 0.5 - 500) * depth / 500, depth], -1).astype(np.float32)
    pointmap[:, 200:] = np.nan
    behind = np.array([[0.4, 0.0, 2.2],   # plain col 90.9 on the plane; its front point lands 9 px on, at col 100
                       [0.4, 0.0, 3.0]])  # plain col 66.7; the front point lands 33 px on, at col 100
    plain = project(behind, K)
    read = appearance._through_the_front(behind, plain.copy(), pointmap, K)
    # the short move is kept though col 100 shows the farther surface; the long one is not
    np.testing.assert_allclose(read[:, 0], [100.0, plain[1, 0]], atol=1e-6)
    # where the landing pixel shows the front point's own depth, a long move is kept too
    flat = pointmap.copy()
    flat[:, :200, 2] = 2.0
    read = appearance._through_the_front(behind, plain.copy(), flat, K)
    np.testing.assert_allclose(read[:, 0], [100.0, 100.0], atol=1e-6)
