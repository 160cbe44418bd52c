"""How far a body part may reach along the view when it is tilted toward or away from the camera.

The one-photo solid's thickness table (watertight.THICKNESS) caps each part at the largest
diameter of its cross-section: a forearm is less than 12 cm thick, an upper arm less than 15.
That is the depth a ray crosses when the limb lies across the view. A limb whose axis leaves the
image plane at an angle alpha is crossed obliquely, over D / cos(alpha) for a cross-section D,
and a forearm pointing at the camera (bent elbows, arms held forward) is crossed over much of
its length: on the held-out person bent-101 of bench/bench_closed.py the true depth through the
forearm seen end-on is 0.18-0.25 m where the table allowed 0.12. Its back then stopped short of
the true elbow behind it, and the solid's side ran through the elbow with its normals facing
into the body (the inward area of issue 13: 0.42 % of bent-101's surface at the forearm and
elbow).

The slope of the membrane (the depth stretched over the part's outline, watertight
.membrane_depth) tells the tilt: along a limb's axis its depth changes by tan(alpha) per metre
across the image, so the cap is stretched by sqrt(1 + |grad membrane|^2) = 1 / cos(alpha).
Only the limbs' caps are (LIMB_PARTS).
"""

from __future__ import annotations

import numpy as np

# the largest stretch: a limb is about three times as long as it is thick, so a ray along it
# crosses at most about three diameters; at 3 the slope is 2.8, i.e. 71 deg out of the image
# plane. (bench_closed measured 2.5, 3 and 4 within 0.001 cm of Chamfer and 0.0001 of inward.)
MAX_STRETCH = 3.0
# a membrane step steeper than this (depth per lateral metre) is the border between two of its
# regions (an arm in front of the torso), not a tilt: 1.5 x the slope MAX_STRETCH allows
JUMP_SLOPE = 1.5 * np.sqrt(MAX_STRETCH**2 - 1.0)


# the parts stretched: the limbs. A hand's crop grid (detail_solid) sees its fingers' outline at
# many depths, and stretched there the hands solved again from crops came out 1.5-3 mm further
# from the truth (bench_detail, arms_forward-7 degraded, mesh -> truth 4.8 -> 6.6-7.8 mm) and one
# was lost; a sleeve or trouser leg is labelled with the torso's clothing, which is not stretched.
LIMB_PARTS = tuple(f"{side}_{part}" for side in ("Left", "Right")
                   for part in ("Upper_Arm", "Lower_Arm", "Upper_Leg", "Lower_Leg"))


def limb_pixels(labels: np.ndarray) -> np.ndarray:
    """Pixels (bool, the shape of `labels`, class ids) of the parts in LIMB_PARTS."""
    from engine.geometry.labels import class_names

    names = class_names()
    ids = [names.index(n) for n in LIMB_PARTS if n in names]
    return np.isin(labels, ids)


def membrane_slope(membrane: np.ndarray, valid: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """|grad membrane| (depth per lateral metre, H x W, 0 outside `valid`): the mean of the
    forward and backward differences per image axis between valid neighbours, each divided by
    the pixel footprint (metres per pixel at that depth); differences steeper than JUMP_SLOPE
    are borders between membrane regions and left out."""
    m = np.where(valid, membrane, np.nan)
    foot = np.where(valid, footprint, np.nan)
    squared = np.zeros(valid.shape)
    for axis in (0, 1):
        step = np.diff(m, axis=axis) / np.fmin(np.delete(foot, -1, axis), np.delete(foot, 0, axis))
        with np.errstate(invalid="ignore"):
            step = np.where(np.abs(step) <= JUMP_SLOPE, step, np.nan)
        pad_before = [(0, 0), (0, 0)]
        pad_after = [(0, 0), (0, 0)]
        pad_before[axis], pad_after[axis] = (1, 0), (0, 1)
        backward = np.pad(step, pad_before, constant_values=np.nan)
        forward = np.pad(step, pad_after, constant_values=np.nan)
        both = np.stack([backward, forward])
        count = np.isfinite(both).sum(0)
        mean = np.where(count > 0, np.nansum(both, 0) / np.maximum(count, 1), 0.0)
        squared += mean**2
    return np.where(valid, np.sqrt(squared), 0.0)


def view_stretch(membrane: np.ndarray, valid: np.ndarray, footprint: np.ndarray,
                 max_stretch: float = MAX_STRETCH) -> np.ndarray:
    """1 / cos(tilt out of the image plane) per pixel, from the membrane's slope, in
    [1, max_stretch] (1 outside `valid`): what a part's cross-section cap is multiplied by for the
    depth a ray crosses."""
    slope = membrane_slope(membrane, valid, footprint)
    return np.where(valid, np.clip(np.sqrt(1.0 + slope**2), 1.0, max_stretch), 1.0)
