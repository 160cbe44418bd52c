"""Which front pixels a closed surface may trust, and the front made of them.

A screened Poisson solve trusts every oriented point it is given: a rim of flying silhouette
pixels a metre in front of the person becomes a sheet of surface a metre in front of the
person, with normals that no longer agree with anything. So before the surface is closed, each
pixel of the front must earn its place:

- support: enough pixels of its 5 x 5 neighbourhood lie at its depth, within a tolerance that
  grows with the pixel footprint and the slope its normal announces (a flying pixel, pulled
  along its ray, has no neighbour at its depth; a finger in front of the torso has its own);
- normal agreement: the predicted normal faces the camera and agrees with the normal of the
  surface its supported neighbours span (a pixel whose point disagrees with its normal is off);
- grazing pixels (normal almost perpendicular to the view) keep their place but lose their
  normal: the surface's own normal replaces it.

Pixels that fail are refilled: their depth comes from the nearest trusted pixels (so the
silhouette keeps its extent: the mask is trusted, the depth there is not), their normal from
the filled surface. If too little survives, the closed surface is refused in words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from engine.errors import BundleError
from engine.geometry.normal_integration import pixel_rays, ray_axes

SUPPORT_RADIUS = 2  # 5 x 5 neighbourhood
MIN_SUPPORT = 5  # of 24 neighbours at the pixel's depth
DEPTH_TOLERANCE_M = 0.02  # plus the slope allowance below
MAX_SLOPE = 4.0  # tan of the steepest slope a normal may announce (~76 deg)
GRAZING_COS = 0.15  # |n . view| below this: the normal is not trusted (~81 deg)
NORMAL_AGREEMENT_COS = 0.5  # predicted vs surface normal: within 60 deg
MIN_TRUSTED_FRACTION = 0.5  # of the person's pixels, else the closed surface is refused
OWN_NORMAL_SIGMA_PX = 1.5  # depth smoothing before the surface's own normals are taken
# depth smoothing before the normals a predicted normal must agree with: per-pixel depth noise of
# a few millimetres on 2-4 mm pixels tilts raw finite-difference normals by tens of degrees (a
# 3 x 3 average of them left 30 % of the bench's 1024 x 768 person untrusted, and 1.5 cm of noise
# at 3.7 m 20 %, refused from 50 %)
AGREEMENT_SIGMA_PX = 2.0


@dataclass
class TrustedFront:
    trusted: np.ndarray  # H x W bool: pixels whose point is kept as measured
    points: np.ndarray  # H x W x 3: trusted points, refilled elsewhere on `valid`; NaN outside
    normals: np.ndarray  # H x W x 3 unit, facing the camera; NaN outside `valid`
    valid: np.ndarray  # H x W bool: the person pixels the front covers (holes refilled)
    stats: dict


def _dot(a, b) -> np.ndarray:
    """Per-pixel dot product of two H x W x 3 maps: (a * b).sum(-1)'s values (the same sums in the
    same order, but for the sign of an all-zero one), without its slow reduction over the last axis.
    Either map may be given as a sequence of its three H x W channels."""
    a0, a1, a2 = (a[..., 0], a[..., 1], a[..., 2]) if isinstance(a, np.ndarray) else a
    b0, b1, b2 = (b[..., 0], b[..., 1], b[..., 2]) if isinstance(b, np.ndarray) else b
    return a0 * b0 + a1 * b1 + a2 * b2


def _length(a: np.ndarray) -> np.ndarray:
    """Per-pixel length of an H x W x 3 map, keeping its last axis: np.linalg.norm(a, axis=-1,
    keepdims=True)'s values (squares summed in the same order), several times faster."""
    return np.sqrt(a[..., 0] * a[..., 0] + a[..., 1] * a[..., 1] + a[..., 2] * a[..., 2])[..., None]


def _neighbour_offsets(radius: int):
    return [(di, dj) for di in range(-radius, radius + 1) for dj in range(-radius, radius + 1) if (di, dj) != (0, 0)]


def depth_normals(points: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Unit normals of a pointmap over valid pixels (float32), facing the camera; NaN elsewhere.

    Central differences where both neighbours are valid, one-sided where only one is."""
    return _interleaved(_planar_normals([points[..., c] for c in range(3)], valid))


def _interleaved(channels) -> np.ndarray:
    """H x W x 3 from three H x W maps."""
    out = np.empty(channels[0].shape + (3,), channels[0].dtype)
    for c in range(3):
        out[..., c] = channels[c]
    return out


def _planar_normals(channels, valid: np.ndarray):
    """depth_normals of the point map given as its three H x W channels (x, y, z; float32, or
    float64 rounded to float32 as depth_normals does), returned as three H x W float32 maps: the
    same values, each step made on one contiguous channel at a time (the interleaved map's
    strided passes cost 2-3x more), np.cross's products and differences in its order."""
    H, W = valid.shape
    centre, du, dv = [], [], []
    for values in channels:
        padded = np.full((H + 2, W + 2), np.nan, np.float32)
        np.copyto(padded[1:-1, 1:-1], values, casting="same_kind", where=valid)
        middle = padded[1:-1, 1:-1]
        centre.append(middle)
        for out, after, before in ((du, padded[1:-1, 2:], padded[1:-1, :-2]), (dv, padded[2:, 1:-1], padded[:-2, 1:-1])):
            d = after - before
            forward = after - middle
            one_sided = np.where(np.isfinite(forward), forward, middle - before)
            out.append(np.where(np.isfinite(d), d, one_sided))
    # n = dv x du (np.cross(dv, du): a1 b2 - a2 b1, a2 b0 - a0 b2, a0 b1 - a1 b0)
    n = [dv[1] * du[2], dv[2] * du[0], dv[0] * du[1]]
    n[0] -= dv[2] * du[1]
    n[1] -= dv[0] * du[2]
    n[2] -= dv[1] * du[0]
    length = np.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2])
    with np.errstate(invalid="ignore", divide="ignore"):
        for c in range(3):
            n[c] /= length
    toward = (n[0] * centre[0] + n[1] * centre[1] + n[2] * centre[2]) > 0
    off = ~valid | ~(length > 1e-12)
    for c in range(3):
        np.negative(n[c], out=n[c], where=toward)  # toward the camera
        n[c][off] = np.nan
    return n


def trusted_front(points: np.ndarray, person: np.ndarray, normal: np.ndarray | None, K: np.ndarray) -> TrustedFront:
    """Trust each front pixel or refill it (module docstring); BundleError when too few are left.

    person (H x W bool): the pixels the front must cover; those without a point (holes in the
    pointmap) are refilled like untrusted ones."""
    trusted, normal_ok, stats = trust_pixels(points, person, normal, K)
    out_points, normals = refill_front(points, person, trusted, normal, K, normal_ok)
    return TrustedFront(trusted, out_points, normals, person.copy(), stats)


def trust_pixels(points: np.ndarray, person: np.ndarray, normal: np.ndarray | None, K: np.ndarray):
    """(trusted H x W bool, normal_ok H x W bool: the predicted normal may be used, stats);
    BundleError when fewer than MIN_TRUSTED_FRACTION of the person's pixels are trusted."""
    from engine.geometry.grid_mesh import finite_pixels, valid_pixels

    H, W = person.shape
    valid = valid_pixels(points, person)
    # the rays and unit view directions as three H x W maps each (pixel_rays and rays / _length(rays),
    # channel by channel: the same values, without the strided H x W x 3 passes)
    x, y = ray_axes(K, (H, W))
    ray_length = np.sqrt((x * x)[None, :] + (y * y)[:, None] + 1.0)
    view = (x[None, :] / ray_length, y[:, None] / ray_length, 1.0 / ray_length)
    depth = np.where(valid, points[..., 2], np.nan).astype(np.float64)
    footprint = depth / np.sqrt(K[0, 0] * K[1, 1])
    has_normal = valid if normal is None else valid & finite_pixels(normal)
    if normal is None:
        cos_view = np.ones((H, W))
    else:
        normal_view = _dot(normal, view)  # (normal * view).sum(-1), once for both tests below
        cos_view = np.abs(np.nan_to_num(normal_view))
    cos_view = np.where(has_normal, cos_view, 0.5)  # no normal: assume a moderate slope
    # the slope and the tolerance it gives, over the valid pixels only (the footprint is NaN on the
    # others, and so was their tolerance)
    cos_view = cos_view[valid]
    slope = np.minimum(np.sqrt(np.maximum(1.0 - cos_view**2, 0.0)) / np.maximum(cos_view, 1e-3), MAX_SLOPE)

    support = np.zeros((H, W), np.uint8)  # at most 24
    r = SUPPORT_RADIUS
    padded = np.full((H + 2 * r, W + 2 * r), np.nan, np.float32)
    padded[r:-r, r:-r] = depth
    depth32 = padded[r:-r, r:-r]
    reach = np.full((H, W), np.nan, np.float32)  # tolerance per pixel of distance
    reach[valid] = (1.0 + slope) * footprint[valid]
    difference = np.empty((H, W), np.float32)
    near = np.empty((H, W), bool)
    tolerance = {}  # per neighbour distance (5 distinct among the 24): made once, not per neighbour
    for di, dj in _neighbour_offsets(r):
        np.subtract(padded[r + di : r + di + H, r + dj : r + dj + W], depth32, out=difference)
        np.abs(difference, out=difference)
        distance = float(np.hypot(di, dj))
        if distance not in tolerance:
            tolerance[distance] = DEPTH_TOLERANCE_M + distance * reach
        with np.errstate(invalid="ignore"):
            np.less_equal(difference, tolerance[distance], out=near)
        support += near
    supported = valid & (support >= MIN_SUPPORT)
    # islands of supported pixels too small to be a part (a clump of flying pixels) go too
    labels, n = ndimage.label(supported)
    if n > 1:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        supported &= sizes[labels] >= max(20, 0.0005 * valid.sum())

    # normals of the surface the supported pixels span, from their depth smoothed over a few
    # pixels; predicted normals must agree with them
    if normal is None:
        agrees = supported
        normal_ok = np.zeros((H, W), bool)
    else:
        # the normals of the points along the rays at the smoothed depth (depth_normals), channel
        # by channel (the z channel is the smoothed depth itself: rays' z is 1)
        smoothed = _smoothed_depth(depth, supported, AGREEMENT_SIGMA_PX)
        smooth_normal = _planar_normals((x[None, :] * smoothed, y[:, None] * smoothed, smoothed), supported)
        facing = np.nan_to_num(-normal_view) > GRAZING_COS
        agreement = np.nan_to_num(_dot(normal, smooth_normal), nan=1.0)
        normal_ok = has_normal & facing
        agrees = supported & (~normal_ok | (agreement > NORMAL_AGREEMENT_COS))
    trusted = agrees
    fraction = float(trusted.sum() / max(person.sum(), 1))
    stats = {
        "person_pixels": int(person.sum()),
        "pixels_without_point": int((person & ~valid).sum()),
        "trusted_pixels": int(trusted.sum()),
        "unsupported_pixels": int((valid & ~supported).sum()),
        "normal_disagreement_pixels": int((supported & ~agrees).sum()),
        "grazing_or_missing_normal_pixels": int((valid & ~normal_ok).sum()),
    }
    if fraction < MIN_TRUSTED_FRACTION:
        raise BundleError(
            f"cannot close the surface: only {fraction:.0%} of the person's {int(person.sum())} pixels have a depth that "
            f"agrees with their neighbours and their normal (the pointmap is too noisy or strewn with flying pixels); "
            f"build the open front surface instead (--no-watertight; watertight: false in the protocol or a batch "
            f"list) or check the predictions"
        )

    stats["trusted_fraction"] = round(fraction, 4)
    return trusted, normal_ok, stats


def _smoothed_depth(depth, valid, sigma):
    """The depth Gaussian-averaged over `valid` pixels only (float32, NaN elsewhere)."""
    weight = ndimage.gaussian_filter(valid.astype(np.float32), sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = ndimage.gaussian_filter(np.where(valid, depth, 0.0).astype(np.float32), sigma) / weight
    return np.where(valid, smoothed, np.nan)


def refill_front(points, person, trusted, normal, K, normal_ok=None):
    """The front over all `person` pixels: trusted points as they are, the others at the depth
    of the nearest trusted pixels (softened), along their own rays; normals: the predicted one
    where `normal_ok` (default: finite and not grazing) and trusted, else the surface's own."""
    H, W = person.shape
    rays = pixel_rays(K, (H, W))
    if normal is not None and normal_ok is None:
        view = rays / _length(rays)
        normal_ok = np.nan_to_num(-_dot(normal, view)) > GRAZING_COS
    depth = np.where(trusted, points[..., 2], np.nan).astype(np.float64)
    # refill: depth of the nearest trusted pixel, along the pixel's own ray
    _, (near_r, near_c) = ndimage.distance_transform_edt(~trusted, return_indices=True)
    filled_depth = np.where(trusted, depth, depth[near_r, near_c])
    # soften the refilled band so it does not step (a few passes of neighbour averaging)
    refill = person & ~trusted
    if refill.any():
        weight = ndimage.uniform_filter(person.astype(np.float64), 3)
        for _ in range(3):
            blurred = ndimage.uniform_filter(np.where(person, filled_depth, 0.0), 3)
            with np.errstate(invalid="ignore", divide="ignore"):
                filled_depth = np.where(refill, blurred / weight, filled_depth)
    out_points = (rays * filled_depth[..., None]).astype(np.float64)
    out_points[trusted] = points[trusted]
    out_points[~person] = np.nan

    # the surface's own normals, from a lightly smoothed depth (pixel noise would tilt them)
    weight = ndimage.gaussian_filter(person.astype(np.float64), OWN_NORMAL_SIGMA_PX)
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = ndimage.gaussian_filter(np.where(person, filled_depth, 0.0), OWN_NORMAL_SIGMA_PX) / weight
    own = depth_normals(rays * np.where(person, smoothed, np.nan)[..., None], person)
    normals = own if normal is None else np.where((normal_ok & trusted)[..., None], np.nan_to_num(normal), own)
    normals[~person] = np.nan
    return out_points, normals
