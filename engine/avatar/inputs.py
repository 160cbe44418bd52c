"""What building an avatar needs from a bundle, checked up front with messages that name the problem.

read_bundle already checks the format (shapes, dtypes, sizes against the photo); this checks
that the bundle holds enough to build a surface: a person in the mask, a pointmap with depth
over most of it, camera intrinsics.
"""

from __future__ import annotations

import numpy as np

from engine.errors import BundleError
from engine.intrinsics import intrinsics_from_pointmap

# the pointmap must give depth on at least this share of the mask's pixels
MIN_POINTMAP_COVERAGE = 0.5
# a person smaller than this (pixels) gives no usable surface
MIN_PERSON_PIXELS = 64


def check_buildable(bundle, source, *, detail: str, rig: str | None = None) -> None:
    h, w = bundle.image.shape[:2]
    for name in ("mask", "pointmap", "normal", "albedo", "seg"):
        arr = getattr(bundle, name)
        if arr is not None and arr.shape[:2] != (h, w):
            raise BundleError(f"{source}: {name} is {arr.shape[1]} x {arr.shape[0]} but the photo is {w} x {h}")
    person = int(bundle.mask.sum())
    if person == 0:
        raise BundleError(f"{source}: the person mask is empty (no person was found in the photo)")
    if person < MIN_PERSON_PIXELS:
        raise BundleError(f"{source}: the person mask has only {person} pixels; too small to build a surface")
    if bundle.pointmap is None:
        raise BundleError(f"{source}: the bundle has no pointmap; run predict with the pointmap task")
    if detail == "normals" and bundle.normal is None:
        raise BundleError(f"{source}: --detail normals needs the normal map, which the bundle lacks "
                          "(run predict with the normal task, or build with --detail none)")
    if rig and bundle.keypoints is None:
        raise BundleError(f"{source}: a rig needs the pose keypoints, which the bundle lacks "
                          "(run predict with the pose task, or build without --rig)")
    if np.isinf(bundle.pointmap).any():
        raise BundleError(f"{source}: the pointmap holds infinite values")
    with np.errstate(invalid="ignore"):
        depth_ok = _finite_vectors(bundle.pointmap) & (bundle.pointmap[..., 2] > 0)
    coverage = float((depth_ok & bundle.mask).sum() / person)
    if coverage < MIN_POINTMAP_COVERAGE:
        raise BundleError(f"{source}: the pointmap is NaN or behind the camera on {1 - coverage:.0%} of the "
                          "person's pixels; it does not describe this person")
    if bundle.normal is not None:
        normal_ok = _finite_vectors(bundle.normal)
        normal_coverage = float((normal_ok & bundle.mask).sum() / person)
        if normal_coverage < MIN_POINTMAP_COVERAGE:
            raise BundleError(f"{source}: the normal map is NaN on {1 - normal_coverage:.0%} of the person's pixels")
    if bundle.albedo is not None and not np.isfinite(bundle.albedo[bundle.mask]).all():
        raise BundleError(f"{source}: the albedo map holds NaN or infinite values on the person")


def _finite_vectors(maps: np.ndarray) -> np.ndarray:
    """np.isfinite(maps).all(axis=-1) of an H x W x 3 map, channel by channel (numpy's
    reductions over a 3-long last axis cost several times more)."""
    return np.isfinite(maps[..., 0]) & np.isfinite(maps[..., 1]) & np.isfinite(maps[..., 2])


def camera_matrix(bundle, source) -> tuple[np.ndarray, str]:
    """The bundle's K, or one fitted to its pointmap; and where it came from."""
    if bundle.K is not None:
        K = np.asarray(bundle.K, np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise BundleError(f"{source}: K is not a valid pinhole intrinsics matrix: {K.tolist()}")
        return K, "bundle"
    fitted = intrinsics_from_pointmap(bundle.pointmap, bundle.mask)
    if fitted is None:
        raise BundleError(f"{source}: the bundle has no K and its pointmap is too sparse to fit one")
    return fitted.K, f"fitted to the pointmap (rms {fitted.rms_px:.2f} px)"
