"""A back view's turn about the vertical and its place across the view from the two silhouettes
(engine/geometry/fusion.py refine_on_silhouettes): the outline bands' depths, which a predicted
depth map's smooth error tilts, leave it turned; where the contour points land in the other
photo does not depend on their depth."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from engine.geometry.fusion import (_turn_about_vertical, _view_circles, outline_points, reaching_outline,
                                    refine_on_outline, refine_on_silhouettes)
from engine.geometry.watertight import solid_front
from engine.synthetic import degrade, make_person, render

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_fusion import true_back_to_front, view_of  # noqa: E402


def _errors(T, truth, points):
    """(degrees between the rotations, mean mm of the back's points across the back camera's view)."""
    angle = np.degrees(np.arccos(np.clip((np.trace(T[:3, :3].T @ truth[:3, :3]) - 1) / 2, -1, 1)))
    offset = (points @ T[:3, :3].T + T[:3, 3]) - (points @ truth[:3, :3].T + truth[:3, 3])
    return angle, 1000 * np.linalg.norm(offset @ truth[:3, :3][:, :2], axis=1).mean()


def _pair(seed, pose, size, degraded):
    front = make_person(seed, pose=pose, width=size[0], height=size[1])
    back = render(front.posed, size[0], size[1], yaw_deg=180.0)
    truth = true_back_to_front(front, back)
    if degraded:
        front = degrade(front, seed=seed, flying_rim_px=2.0, centred=True)
        back = degrade(back, seed=seed + 1000, flying_rim_px=2.0, centred=True)
    return view_of(front), view_of(back), truth, back.pointmap[back.mask]


def _contours(views):
    circles = [_view_circles(v) for v in views]
    return [c.contour[reaching_outline(c, v)] for c, v in zip(circles, views)]


def test_a_turned_and_shifted_back_is_brought_back_on_exact_maps():
    ref, view, truth, points = _pair(102, "arms_forward", (384, 512), degraded=False)
    ref_contour, view_contour = _contours([ref, view])
    centre = np.nanmean(view.points[view.mask], axis=0)
    off = _turn_about_vertical(np.radians(1.5), truth[:3, :3] @ centre + truth[:3, 3], 0.01, -0.008) @ truth
    before = _errors(off, truth, points)
    T, info = refine_on_silhouettes(off, view_contour, ref_contour, view, ref, centre)
    after = _errors(T, truth, points)
    assert before[0] > 1.4 and before[1] > 8.0
    assert after[0] < 0.4, (after, info)
    assert after[1] < 2.0, (after, info)
    assert info["silhouette_off_px"][1] < info["silhouette_off_px"][0]


def test_degraded_maps_the_silhouettes_turn_the_back_nearer_than_the_outline_bands():
    # arms_forward-102 at the size: from the true pose refine_on_outline turns the back
    # 1.15 deg off (the smooth depth error), the silhouettes bring it nearer
    ref, view, truth, points = _pair(102, "arms_forward", (768, 1024), degraded=True)
    fronts = [solid_front(v.points, v.mask, v.seg, v.K, v.normal, refine=True) for v in (ref, view)]  # as fuse_views
    centre = np.nanmean(view.points[view.mask], axis=0)
    T_outline, _ = refine_on_outline(truth, outline_points(fronts[1]), outline_points(fronts[0]), centre)
    ref_contour, view_contour = _contours([ref, view])
    T, info = refine_on_silhouettes(T_outline, view_contour, ref_contour, view, ref, centre)
    outline_error, silhouette_error = _errors(T_outline, truth, points), _errors(T, truth, points)
    assert outline_error[0] > 0.8
    assert silhouette_error[0] < 0.6 * outline_error[0], (outline_error, silhouette_error, info)
    assert silhouette_error[1] < 4.0, (outline_error, silhouette_error, info)


def test_the_grid_scored_as_arrays_matches_each_candidate_moved_by_its_own_matrix():
    # refine_on_silhouettes scores its turn/shift grid through _SilhouetteCost (per-point terms
    # times each candidate's cos, sin and shifts); the placement it stands for is
    # _turn_about_vertical's 4 x 4 (the view's points moved by it, the reference's moved back by
    # its inverse and the view's inverse registration)
    from scipy import ndimage

    from engine.geometry.fusion import SILHOUETTE_CLIP_PX, _SilhouetteCost, outline_distance

    rng = np.random.default_rng(3)
    H, W = 120, 90
    K = np.array([[150.0, 0.0, 45.0], [0.0, 150.0, 60.0], [0.0, 0.0, 1.0]])
    rows, cols = np.mgrid[:H, :W]
    mask = ((cols - 45) / 25.0) ** 2 + ((rows - 60) / 45.0) ** 2 < 1.0
    # a back view: turned half round about the vertical, 2 m in front of either camera
    T = _turn_about_vertical(np.pi + 0.02, np.array([0.0, 0.0, 2.0]), 0.01, -0.005)
    view_contour = rng.normal([0.0, 0.0, 2.0], [0.15, 0.3, 0.1], (500, 3))
    ref_contour = rng.normal([0.0, 0.0, 2.0], [0.15, 0.3, 0.1], (400, 3))
    ref_contour[:5, 2] = -1.0  # behind the view's camera once moved back: clipped
    pivot = np.array([0.01, 0.02, 2.05])
    fields = (outline_distance(mask), K), (outline_distance(mask[:, ::-1]), K)
    placed = view_contour @ T[:3, :3].T + T[:3, 3]
    cost = _SilhouetteCost(placed, ref_contour, pivot, np.linalg.inv(T), *fields)

    def off(points, field, K):
        u = K[0, 0] * points[:, 0] / points[:, 2] + K[0, 2]
        v = K[1, 1] * points[:, 1] / points[:, 2] + K[1, 2]
        at = np.abs(ndimage.map_coordinates(field, [v - 0.5, u - 0.5], order=1, mode="nearest"))
        return np.where(points[:, 2] > 0, np.minimum(at, SILHOUETTE_CLIP_PX), SILHOUETTE_CLIP_PX).mean()

    thetas, shifts_x, shifts_y = rng.uniform(-0.05, 0.05, 40), rng.uniform(-0.04, 0.04, 40), rng.uniform(-0.04, 0.04, 40)
    cost.CHUNK = 3000  # several chunks
    got = cost(thetas, shifts_x, shifts_y)
    for theta, sx, sy, value in zip(thetas, shifts_x, shifts_y, got):
        S = _turn_about_vertical(theta, pivot, sx, sy)
        back = np.linalg.inv(T) @ np.linalg.inv(S)
        expected = off(placed @ S[:3, :3].T + S[:3, 3], *fields[0]) + off(ref_contour @ back[:3, :3].T + back[:3, 3], *fields[1])
        assert abs(value - expected) < 1e-9, (theta, sx, sy, value, expected)
    assert np.ptp(got) > 0.05  # the candidates do score differently
