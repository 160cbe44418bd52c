"""The upper arms' pose from the photo's keypoints: whether an arm hangs beside the torso.

The one-photo solid's back behind an upper arm lying against the torso is as deep as the torso's
beside it (no depth step parts them), and whose back that is one photo's depth does not say: on
engine.synthetic's people whose arms hang a little forward over the torso's side, or whose elbows
come toward the camera, it is the trunk (the torso's side, the sleeve behind the arm's near end);
on the shared people, whose arms hang beside the torso, the arm's own back (docs/avatar.md,
fourteenth and fifteenth sessions). The keypoints tell the two apart: an arm whose elbow lies
out from its shoulder, away from the other shoulder (abducted), and not toward the camera, hangs
beside the torso with nothing of the trunk behind it. watertight._behind_the_limbs (labels) and
engine.avatar.appearance._off_the_limb (the hidden side's reads) ask it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from engine.bundle.format import keypoint_index
from engine.geometry.labels import class_ids

# keypoints scored this or more are used (shared person_102's left shoulder is scored 0.3, its
# place right)
MIN_SCORE = 0.25
# beside the torso: the elbow out from the shoulder by at least this sine of the arm's angle to
# the perpendicular of the shoulder line (shared people 0.13-0.74; bench_hands_before_trunk's arms
# over the torso's side -0.19-0.06)
ABDUCTION_MIN = 0.1
# and its elbow's front not nearer the camera than its shoulder's by more than this share of the
# two's distance in the image (shared people 0.15 at most; bench_closed's bent and arms-forward
# people 0.43-1.14: their upper arms run back from the elbow, the sleeve behind its near end)
TOWARD_MAX = 0.3
ARMS = (("left", "Left_Upper_Arm"), ("right", "Right_Upper_Arm"))


def upper_arm_axes(keypoints, K, min_score: float = MIN_SCORE) -> dict[int, np.ndarray] | None:
    """{upper arm class id: 2 x 2 normalised image points (x/z, y/z) of its shoulder and elbow}
    from the photo's 308 keypoints (x, y, score; pixels of the photo K is of); an arm whose two
    keypoints are not both scored min_score or more is left out. None without keypoints.
    Normalised, they hold on any grid of the photo (to_pixels)."""
    if keypoints is None:
        return None
    index = keypoint_index()
    keypoints = np.asarray(keypoints, np.float64)
    K_inv = np.linalg.inv(np.asarray(K, np.float64))
    axes = {}
    for side, part in ARMS:
        ends = keypoints[[index[f"{side}_shoulder"], index[f"{side}_elbow"]]]
        if np.isfinite(ends).all() and (ends[:, 2] >= min_score).all():
            rays = np.c_[ends[:, :2], np.ones(2)] @ K_inv.T
            axes[int(class_ids([part])[0])] = rays[:, :2] / rays[:, 2:]
    return axes


def to_pixels(axis, K) -> np.ndarray:
    """2 x 2 (x, y) pixels of K's grid of normalised image points (x/z, y/z)."""
    K = np.asarray(K, np.float64)
    return np.asarray(axis, np.float64) @ K[:2, :2].T + K[:2, 2]


def depth_at(point, depth, valid, reach: int = 2) -> float:
    """The median of `depth` over the `valid` pixels within `reach` pixels of (x, y), else the
    nearest valid pixel's."""
    c, r = np.clip(np.round(point).astype(int), 0, np.array(depth.shape[::-1]) - 1)
    window = (slice(max(r - reach, 0), r + reach + 1), slice(max(c - reach, 0), c + reach + 1))
    if valid[window].any():
        return float(np.median(depth[window][valid[window]]))
    _, (near_r, near_c) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return float(depth[near_r[r, c], near_c[r, c]])


def arms_beside_the_torso(axes, depth, valid, K) -> set[int]:
    """The upper arms (class ids of `axes`, upper_arm_axes') hanging beside the torso: the elbow
    out from the shoulder, away from the other shoulder, by ABDUCTION_MIN or more (the sine of
    the arm's angle to the shoulder line's perpendicular, in the image), and its front (`depth`
    on the grid K is of, `valid` pixels) not nearer the camera than the shoulder's by more than
    TOWARD_MAX times the two's distance in the image. An arm without the other arm's shoulder
    (both arms' keypoints) is not known to be."""
    if not axes or len(axes) < 2:
        return set()
    K = np.asarray(K, np.float64)
    pixels = {part: to_pixels(axis, K) for part, axis in axes.items()}
    focal = 0.5 * (K[0, 0] + K[1, 1])
    beside = set()
    for part, (shoulder, elbow) in pixels.items():
        other_shoulder = next(p[0] for q, p in pixels.items() if q != part)
        outward = shoulder - other_shoulder
        arm = elbow - shoulder
        if np.hypot(*outward) < 1.0 or np.hypot(*arm) < 1.0:
            continue
        abduction = float(arm @ outward) / (np.hypot(*arm) * np.hypot(*outward))
        z_shoulder, z_elbow = depth_at(shoulder, depth, valid), depth_at(elbow, depth, valid)
        apart_m = np.hypot(*arm) * 0.5 * (z_shoulder + z_elbow) / focal
        if abduction >= ABDUCTION_MIN and z_shoulder - z_elbow <= TOWARD_MAX * apart_m:
            beside.add(part)
    return beside
