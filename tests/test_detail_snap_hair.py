"""The face crop's snap leaves the hair where the closed solid has it (engine.geometry.detail:
SNAP_KEEP_CLASSES), fading in over FEATHER_PX photo pixels from it: the solid smooths a hair
cap's overhang away, and snapping the cap inside the face's region alone drew a ragged patch and
a slot across the forehead (crops-102's hairline render)."""

from __future__ import annotations

import numpy as np
import pytest

import engine.geometry.detail as detail
from engine.bundle.crops import DetailCrop
from engine.geometry.labels import class_ids

HAIR, SKIN = (int(i) for i in class_ids(("Hair", "Face_Neck")))
K = np.array([[1000.0, 0.0, 50.0], [0.0, 1000.0, 50.0], [0.0, 0.0, 1.0]])
DEPTH = 2.0
HAIRLINE_Y = 45.0          # photo rows above it are hair in the crop
BOX, FACTOR = (20, 20, 80, 80), 4


def _plane():
    """A grid of vertices one photo pixel apart at DEPTH, facing the camera."""
    xs, ys = np.meshgrid(np.arange(10, 91) + 0.5, np.arange(10, 91) + 0.5)
    n = xs.shape[1]
    v = np.stack([(xs - K[0, 2]) / K[0, 0] * DEPTH, (ys - K[1, 2]) / K[1, 1] * DEPTH, np.full(xs.shape, DEPTH)], -1)
    i = np.arange(xs.size).reshape(xs.shape)[:-1, :-1].ravel()
    faces = np.concatenate([np.stack([i, i + n, i + 1], 1), np.stack([i + 1, i + n, i + n + 1], 1)])
    return v.reshape(-1, 3), faces, xs.ravel(), ys.ravel()


def _aligned(hair_in_front_m=0.008, skin_in_front_m=0.001):
    """A face crop whose hair (rows above HAIRLINE_Y) stands hair_in_front_m before the plane and
    whose skin skin_in_front_m."""
    x0, y0, x1, y1 = BOX
    h, w = (y1 - y0) * FACTOR, (x1 - x0) * FACTOR
    u, t = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    px, py = x0 + u / FACTOR, y0 + t / FACTOR
    hair = py < HAIRLINE_Y
    depth = DEPTH - np.where(hair, hair_in_front_m, skin_in_front_m)
    points = np.stack([(px - K[0, 2]) / K[0, 0] * depth, (py - K[1, 2]) / K[1, 1] * depth, depth], -1).astype(np.float32)
    seg = np.where(hair, HAIR, SKIN).astype(np.uint8)
    crop = DetailCrop(name="face", box=BOX, factor=FACTOR, mask=np.ones((h, w), bool), pointmap=points, seg=seg)
    region = detail.inner_region(BOX, (100, 100))
    return detail.AlignedCrop(crop, 1.0, np.zeros(3), 1000, 1.0, 0.0, points, region)


def _moves(monkeypatch=None, keep=None, hair_in_front_m=0.008):
    v, faces, x, y = _plane()
    if keep is not None:
        monkeypatch.setattr(detail, "SNAP_KEEP_CLASSES", keep)
    snapped, stats = detail.snap_to_crops(v, faces, [_aligned(hair_in_front_m)], K)
    return (DEPTH - snapped[:, 2].astype(np.float64)), x, y, v, snapped, faces, stats


def test_the_hair_stays_and_the_skin_fades_in_from_it():
    move, x, y, v, snapped, faces, stats = _moves()
    rx0, ry0, rx1, ry1 = _aligned().region
    inside = (x > rx0 + detail.FEATHER_PX) & (x < rx1 - detail.FEATHER_PX) & (y > ry0 + detail.FEATHER_PX) & (y < ry1 - detail.FEATHER_PX)
    hair = inside & (y < HAIRLINE_Y)
    assert hair.sum() > 100
    assert np.abs(move[hair]).max() < 1e-7                       # the hair where the solid has it
    far_skin = inside & (y > HAIRLINE_Y + detail.FEATHER_PX + 1)
    assert far_skin.sum() > 100
    np.testing.assert_allclose(move[far_skin], 0.001, atol=2e-6)  # the skin on the crop
    # below the hairline the skin's move rises from nothing to the whole millimetre, row by row
    column = inside & (np.abs(x - 50.5) < 0.1) & (y > HAIRLINE_Y) & (y < HAIRLINE_Y + detail.FEATHER_PX + 2)
    order = np.argsort(y[column])
    rising = move[column][order]
    assert rising[0] < 0.0005 and rising[-1] > 0.00099
    assert (np.diff(rising) >= -1e-9).all()
    assert stats[0]["faces_flipped"] == 0


def test_the_rule_is_what_keeps_the_hair(monkeypatch):
    """The same crop with its hair 3 mm before the plane (the guards let that move): kept with the
    rule, snapped onto the crop without it."""
    kept, x, y, *_ = _moves(hair_in_front_m=0.003)
    moved, *_ = _moves(monkeypatch, keep=(), hair_in_front_m=0.003)
    rx0, ry0, rx1, ry1 = _aligned().region
    hair = (x > rx0 + detail.FEATHER_PX) & (x < rx1 - detail.FEATHER_PX) & (y > ry0 + detail.FEATHER_PX) & (y < HAIRLINE_Y)
    assert hair.sum() > 100
    assert np.abs(kept[hair]).max() < 1e-7
    assert np.median(moved[hair]) > 0.0029


@pytest.mark.parametrize("seg", [None, "skin"])
def test_a_crop_without_hair_snaps_as_before(seg, monkeypatch):
    """No seg, or no hair in it: every vertex reads the crop as before the rule (the hands' crops)."""
    v, faces, x, y = _plane()
    a = _aligned()
    a.crop.seg = None if seg is None else np.full_like(a.crop.seg, SKIN)
    now, _ = detail.snap_to_crops(v, faces, [a], K)
    monkeypatch.setattr(detail, "SNAP_KEEP_CLASSES", ())
    a.crop.seg = None
    before, _ = detail.snap_to_crops(v, faces, [a], K)
    np.testing.assert_array_equal(now, before)
    assert (now[:, 2] < DEPTH - 1e-4).sum() > 100
