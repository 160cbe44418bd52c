"""Realistic prediction errors applied to exact ground-truth maps.

Tests and bench/ use this to check that the normal refinement brings a degraded pointmap closer
to the true surface. A predicted pointmap is typically off by a smooth field (a few centimetres
over the body), noisy at the pixel level and blurred across edges; predicted normals are a few
degrees off. Seeded, vectorised, no loops over pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from engine.geometry.grid_mesh import valid_pixels


def _masked_blur(values: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of an H x W (x C) map using only valid pixels (normalised convolution)."""
    weight = ndimage.gaussian_filter(valid.astype(np.float64), sigma)
    filled = np.where(valid[(...,) + (None,) * (values.ndim - 2)], values, 0.0)
    axes_sigma = (sigma, sigma) + (0,) * (values.ndim - 2)
    blurred = ndimage.gaussian_filter(filled.astype(np.float64), axes_sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        return blurred / weight[(...,) + (None,) * (values.ndim - 2)]


def degrade_pointmap(
    pointmap: np.ndarray,
    mask: np.ndarray,
    *,
    smooth_m: float = 0.02,
    noise_m: float = 0.01,
    blur_px: float = 2.0,
    seed: int = 0,
    centred: bool = False,
) -> np.ndarray:
    """Move each point along its viewing ray by smooth error + pixel noise, after a blur.

    smooth_m: amplitude (std) of a low-frequency depth error (correlation ~1/8 of the image);
    its mean over the person is whatever the random field gives (an offset of the whole person
    along the view, centimetres for some seeds) unless centred=True, which removes that mean;
    noise_m: std of independent per-pixel depth noise; blur_px: Gaussian blur of the depth over
    the person (rounds edges and smears small occlusion gaps, as network outputs do).
    """
    rng = np.random.default_rng(seed)
    valid = valid_pixels(pointmap, mask)
    H, W = mask.shape
    depth = pointmap[..., 2].astype(np.float64)
    if blur_px > 0:
        depth = np.where(valid, _masked_blur(depth, valid, blur_px), np.nan)
    field_sigma = max(H, W) / 8.0
    smooth = ndimage.gaussian_filter(rng.standard_normal((H, W)), field_sigma)
    smooth *= smooth_m / max(smooth[valid].std() if valid.any() else 1.0, 1e-12)
    if centred and valid.any():
        smooth -= smooth[valid].mean()
    depth = depth + smooth + noise_m * rng.standard_normal((H, W))
    with np.errstate(invalid="ignore", divide="ignore"):
        rays = pointmap / pointmap[..., 2:3]
    out = (rays * depth[..., None]).astype(np.float32)
    out[~valid] = np.nan
    return out


def degrade_normals(normal: np.ndarray, mask: np.ndarray, *, noise_deg: float = 3.0, blur_px: float = 1.0, seed: int = 1) -> np.ndarray:
    """Blur the normals over the person and tilt them by ~noise_deg of random error."""
    rng = np.random.default_rng(seed)
    valid = mask & np.isfinite(normal).all(-1)
    out = _masked_blur(normal, valid, blur_px) if blur_px > 0 else normal.astype(np.float64)
    out = out + np.radians(noise_deg) * rng.standard_normal(out.shape)
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    out = out.astype(np.float32)
    out[~valid] = np.nan
    return out


def fly_rim(
    pointmap: np.ndarray,
    mask: np.ndarray,
    *,
    width_px: float = 2.0,
    fraction: float = 0.6,
    max_pull: float = 0.4,
    seed: int = 2,
) -> np.ndarray:
    """Flying pixels: a share of the silhouette rim pulled toward the camera along their rays.

    Dense networks blend the person with what lies beyond the outline; on a pointmap that shows
    as a rim of points strewn between the body and the camera. `fraction` of the pixels within
    `width_px` of the outline move to depth * (1 - u), u uniform in [0.02, max_pull] (at 3 m and
    0.4, up to 1.2 m toward the camera). Normals are left as they were.
    """
    rng = np.random.default_rng(seed)
    valid = valid_pixels(pointmap, mask)
    inside = ndimage.distance_transform_edt(np.pad(valid, 1))[1:-1, 1:-1]
    rim = valid & (inside <= width_px) & (rng.random(valid.shape) < fraction)
    pull = rng.uniform(0.02, max_pull, valid.shape)
    out = pointmap.astype(np.float32, copy=True)
    out[rim] *= (1.0 - pull[rim])[:, None].astype(np.float32)
    return out
