"""The back a hand crop's own solve gets (engine.geometry.detail_solid.hand_solid_samples): capped
behind a smoothed front, with the normals of the capped back."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry.detail_solid import (HAND_MAX_THICKNESS_M, WRIST_CLEAR_M, WRIST_STEP_M, _back_clear_of_the_arm,
                                          _hand_back_normals, _smoothed_along_rays, _thinned_hand_back)

HAND = 14
FOREARM = 16
F = 2000.0          # focal length, pixels: at 2 m a pixel is 1 mm


def _camera(h: int, w: int) -> np.ndarray:
    return np.array([[F, 0, w / 2], [0, F, h / 2], [0, 0, 1]], np.float64)


def _points(depth: np.ndarray, K: np.ndarray, factor: int = 1) -> np.ndarray:
    """The points at `depth` (h x w) along the rays through the pixel centres of K's grid
    coarsened `factor` times."""
    h, w = depth.shape
    rows, cols = np.mgrid[0:h, 0:w]
    u, v = (cols + 0.5) * factor, (rows + 0.5) * factor
    return np.stack([(u - K[0, 2]) * depth / K[0, 0], (v - K[1, 2]) * depth / K[1, 1], depth], -1)


def test_the_back_normals_are_the_backs_own_and_face_away():
    # back samples on a plane tilted 30 deg about the vertical axis, one per pixel of a grid
    # coarsened 2x; the normals given are wrong (toward the camera)
    K = _camera(80, 80)
    h, w = 40, 40
    rows, cols = np.mgrid[0:h, 0:w]
    x = ((cols + 0.5) * 2 - K[0, 2]) / F
    depth = 2.0 / (1.0 - np.tan(np.radians(30)) * x)            # z = 2 + tan(30) x: a plane
    back = _points(depth, K, factor=2).reshape(-1, 3)
    given = np.tile([0.0, 0.0, -1.0], (len(back), 1))
    normals = _hand_back_normals(back, given, K, 2, (80, 80))
    plane = np.array([-np.sin(np.radians(30)), 0.0, np.cos(np.radians(30))])   # away from the camera
    assert np.abs(normals - plane).max() < 1e-6
    # a lone sample (no neighbours on the grid) keeps the normal it was given
    lone = np.array([[0.3, 0.3, 2.0]])
    assert np.allclose(_hand_back_normals(lone, np.array([[0.0, 0.0, 1.0]]), K, 2, (80, 80)), [[0.0, 0.0, 1.0]])


def test_a_back_capped_behind_the_smoothed_front_is_not_dented_behind_the_fingers():
    # four fingers, 18 mm wide, bulging 8 mm toward the camera, side by side; a back far behind
    # (the mirrored bulge of a whole-photo blob): the cap brings it to HAND_MAX_THICKNESS_M
    K = _camera(60, 72)
    h, w = 60, 72
    cols = np.arange(w)
    offset = (cols % 18 - 8.5) / 9.0
    front_depth = np.tile(2.0 - 0.008 * np.sqrt(np.clip(1.0 - offset**2, 0.0, 1.0)), (h, 1))
    front = _points(front_depth, K).astype(np.float32)
    on = np.ones((h, w), bool)
    back = _points(np.full((h, w), 2.2), K).reshape(-1, 3)
    labels = np.full(len(back), HAND, np.uint8)
    dented = _thinned_hand_back(back, labels, front, K, np.array([HAND]))[:, 2].reshape(h, w)
    smooth = _smoothed_along_rays(front, on, 15.0)          # 15 mm, as the crops' CAP_SMOOTH_M
    capped = _thinned_hand_back(back, labels, smooth, K, np.array([HAND]))[:, 2].reshape(h, w)
    middle = capped[30, 18:54]
    assert dented[30, 18:54].max() - dented[30, 18:54].min() > 0.005      # the fingers' relief, behind
    assert middle.max() - middle.min() < 0.001
    assert middle.mean() == pytest.approx(front_depth[30].mean() + HAND_MAX_THICKNESS_M, abs=0.002)


def test_no_back_sample_near_a_forearm_behind_the_hand():
    # a crop grid: hand pixels on the left, the forearm's from column 50 on, background above
    # row 10; one back sample behind each pixel. With the forearm's front WRIST_STEP_M and more
    # behind the hand's (a forearm pointing at the camera), only samples farther than
    # WRIST_CLEAR_M (across the image, at their depth) from its pixels stay, however near the
    # background; a forearm that continues the hand at its depth takes none away
    K = _camera(60, 80)
    seg = np.full((60, 80), HAND, np.uint8)
    seg[:, 50:] = FOREARM
    seg[:10] = 0
    on = seg != 0
    cols = np.arange(80)
    for depth in (2.0, 4.0):                          # a pixel is 1 mm at 2 m, 2 mm at 4 m
        front_depth = np.where(seg == FOREARM, depth + WRIST_STEP_M + 0.03, depth)
        front = np.where(on[..., None], _points(front_depth, K), np.nan)
        back = _points(np.full((60, 80), depth + 0.02), K).reshape(-1, 3)
        keep = _back_clear_of_the_arm(back, front, on, seg, K, np.array([HAND])).reshape(60, 80)
        far = (50 - cols) * (depth + 0.02) / F > WRIST_CLEAR_M
        assert far.any() and not far.all()
        assert (keep[10] == far).all() and (keep[30] == far).all()   # row 10 borders the background
        level = np.where(on[..., None], _points(np.full((60, 80), depth), K), np.nan)
        assert _back_clear_of_the_arm(back, level, on, seg, K, np.array([HAND])).all()
    # a crop with no forearm pixels keeps every sample
    assert _back_clear_of_the_arm(back, front, on, np.where(seg == FOREARM, HAND, seg), K, np.array([HAND])).all()
