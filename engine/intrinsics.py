"""Camera intrinsics from a pointmap: the pinhole K that best projects each point onto its pixel.

For a pixel with centre (u, v) = (col + 0.5, row + 0.5) holding camera point (X, Y, Z):
    u = f X / Z + cx,   v = f Y / Z + cy
which is linear in (f, cx, cy): one least-squares solve over all valid pixels, then one refit
without the points whose reprojection error is far above the rest (edges where the network
blends foreground and background).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_POINTS = 16
MIN_DEPTH = 1e-6


@dataclass
class Intrinsics:
    K: np.ndarray            # 3 x 3 float64
    rms_px: float            # RMS reprojection error of the points used, pixels
    points_used: int

    def as_dict(self) -> dict:
        return {"fx": float(self.K[0, 0]), "fy": float(self.K[1, 1]), "cx": float(self.K[0, 2]),
                "cy": float(self.K[1, 2]), "rms_px": self.rms_px, "points_used": self.points_used,
                "method": "least squares f, cx, cy from the pointmap (square pixels, no skew)"}


def _solve(xz: np.ndarray, yz: np.ndarray, u: np.ndarray, v: np.ndarray):
    n = xz.size
    a = np.zeros((2 * n, 3))
    a[:n, 0], a[:n, 1] = xz, 1.0
    a[n:, 0], a[n:, 2] = yz, 1.0
    b = np.concatenate([u, v])
    params, *_ = np.linalg.lstsq(a, b, rcond=None)
    residual = (a @ params - b).reshape(2, n)
    return params, np.hypot(residual[0], residual[1])


def intrinsics_from_pointmap(pointmap: np.ndarray, mask: np.ndarray | None = None,
                             max_points: int = 200_000, seed: int = 0) -> Intrinsics | None:
    """Least-squares K from an H x W x 3 camera-frame pointmap; None when too few points are valid."""
    h, w = pointmap.shape[:2]
    valid = np.isfinite(pointmap).all(axis=-1) & (pointmap[..., 2] > MIN_DEPTH)
    if mask is not None:
        valid &= mask
    rows, cols = np.nonzero(valid)
    if rows.size < MIN_POINTS:
        return None
    if rows.size > max_points:  # a fixed random subset: same answer every run, bounded cost
        pick = np.random.default_rng(seed).choice(rows.size, max_points, replace=False)
        rows, cols = rows[pick], cols[pick]
    p = pointmap[rows, cols].astype(np.float64)
    xz, yz = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    u, v = cols + 0.5, rows + 0.5
    params, err = _solve(xz, yz, u, v)
    keep = err <= max(3.0 * np.median(err), 1e-9)
    if MIN_POINTS <= keep.sum() < keep.size:
        params, err = _solve(xz[keep], yz[keep], u[keep], v[keep])
    f, cx, cy = params
    if not np.isfinite(params).all() or f <= 0:
        return None
    K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    return Intrinsics(K=K, rms_px=float(np.sqrt(np.mean(err ** 2))), points_used=int(err.size))
