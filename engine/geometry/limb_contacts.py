"""Where an arm lies against the torso in the photo: the border between them that the depth alone
does not show.

The one-photo solid (watertight.back_surface) splits the front into regions at depth jumps (a
neighbour more than RTOL_HARD, 2 %, deeper: ~7 cm at 3.5 m) and gives each region its own
membrane, so an arm seen in front of the torso gets an arm's thickness. An arm hanging against
the torso's side is in front of it by less than that: on the shared sample person_102 the right
arm meets the shirt with a step of 0-2 mm (rows 290-415), and arm and torso were one region,
one membrane and one bulge: the solid's back ran from the arm's back straight to the torso's,
a web where the true body has a notch (the render: skin on the back right of the shirt).

The body-part labels see that border: an arm label next to a torso or clothing label. Not every
such border is a contact, and on the labels alone the cut made the solid worse: the mannequins'
upper arm joins the shirt over 100-130 px with one continuous front (both sides facing the
camera, no step), and cut there person_101 / 103's solids went 0.52 -> 0.58 cm. So a border
pair counts when
- it steps across the arm, not along it (a sleeve's hem crosses the arm; the arm's axis is the
  principal axis of its part's connected pixels), and
- the arm's normal there turns toward the torso's side (its image-plane component along the step
  over TOWARD_MIN) with the torso's pixel not in front of the arm's: the arm's surface runs
  away from the camera into the border, an occluding contact rather than a crease.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from engine.geometry.labels import ARM_CLASSES, TRUNK_CLASSES, class_ids

# a border step counts as across the arm when |cos| of its angle with the arm's axis is below
# this (within 60 deg of the arm's cross-section)
ALONG_COS = 0.5
# the arm's unit normal's component along the step toward the torso. On the shared samples
# (exact maps, one-photo solid, Chamfer person_101 / 102 / 103): no cut 0.518 / 0.659 / 0.508 cm;
# 0.7: 0.518 / 0.648 / 0.508; 0.4: 0.520 / 0.627 / 0.510; no normal test: 0.581 / 0.643 / 0.579
TOWARD_MIN = 0.4


def arm_axes(labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per pixel (H x W x 2, image x and y), the unit principal axis of the connected pixels of
    its arm part; NaN off the arms."""
    H, W = labels.shape
    component = np.zeros((H, W), np.int64)
    count = 0
    for part in class_ids(ARM_CLASSES):
        found, n = ndimage.label(valid & (labels == part))
        component = np.where(found > 0, found + count, component)
        count += n
    axes = np.full((H, W, 2), np.nan)
    if count == 0:
        return axes
    rows, cols = np.nonzero(component)
    ids = component[rows, cols]
    size = np.maximum(np.bincount(ids, minlength=count + 1), 1).astype(np.float64)
    mean_x, mean_y = np.bincount(ids, cols, count + 1) / size, np.bincount(ids, rows, count + 1) / size
    dx, dy = cols - mean_x[ids], rows - mean_y[ids]
    cxx, cyy, cxy = (np.bincount(ids, w, count + 1) for w in (dx * dx, dy * dy, dx * dy))
    angle = 0.5 * np.arctan2(2.0 * cxy, cxx - cyy)
    axes[rows, cols] = np.stack([np.cos(angle), np.sin(angle)], -1)[ids]
    return axes


def arm_contacts(labels: np.ndarray, valid: np.ndarray, normal: np.ndarray,
                 depth: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image axis (right, down), pairing neighbours as watertight._jumps does: the pairs where
    an arm lies against the torso (module docstring), and whether the first of each pair is the
    arm's pixel. labels: class ids; normal: unit, camera frame, facing the camera; depth: NaN
    off `valid`."""
    labels = np.asarray(labels, np.int64)
    arm = valid & np.isin(labels, class_ids(ARM_CLASSES))
    body = valid & np.isin(labels, class_ids(TRUNK_CLASSES))
    axes = arm_axes(labels, valid)
    normal = np.nan_to_num(np.asarray(normal, np.float64))
    H, W = labels.shape
    out = []
    for di, dj in ((0, 1), (1, 0)):
        first, second = (slice(0, H - di), slice(0, W - dj)), (slice(di, H), slice(dj, W))
        arm_first = arm[first]
        pair = (arm_first & body[second]) | (body[first] & arm[second])
        axis = np.where(arm_first[..., None], axes[first], axes[second])
        along = np.abs(axis[..., 0] * dj + axis[..., 1] * di)
        # the arm's normal along the step from the arm's pixel to the torso's
        toward = np.where(arm_first, normal[first][..., 0] * dj + normal[first][..., 1] * di,
                          -(normal[second][..., 0] * dj + normal[second][..., 1] * di))
        with np.errstate(invalid="ignore"):
            not_in_front = np.where(arm_first, depth[second] >= depth[first], depth[first] >= depth[second])
            contact = pair & (along < ALONG_COS) & (toward > TOWARD_MIN) & not_in_front
        out.append((contact, arm_first))
    return out
