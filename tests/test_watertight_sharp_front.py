"""The one-photo solid's front refined with the cut at its prior's noise, and its back's scale
from that noise (engine/geometry/watertight.py: SOLID_JUMP_RTOL, back_scale, _near_hands)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry.labels import class_ids, class_names
from engine.geometry.normal_integration import JUMP_RTOL_FLOOR
from engine.synthetic import degrade, make_person


def test_back_scale_follows_the_noise():
    from engine.geometry import watertight as wt

    assert wt.back_scale(None) == wt.PREDICTION_SCALE                 # not refined: as before
    assert wt.back_scale(wt.NOISY_NOISE) == wt.PREDICTION_SCALE
    assert wt.back_scale(10 * wt.NOISY_NOISE) == wt.PREDICTION_SCALE
    clean = wt.back_scale(0.0)
    assert len(clean) == len(class_names())
    parts = class_ids(wt.CLEAN_PARTS)
    others = np.setdiff1d(np.arange(len(clean)), parts)
    np.testing.assert_array_equal(clean[parts], wt.CLEAN_PREDICTION_SCALE)
    np.testing.assert_array_equal(clean[others], wt.PREDICTION_SCALE)
    np.testing.assert_array_equal(wt.back_scale(wt.CLEAN_NOISE), clean)
    half = wt.back_scale(0.5 * (wt.CLEAN_NOISE + wt.NOISY_NOISE))
    np.testing.assert_allclose(half[parts], 0.5 * (wt.CLEAN_PREDICTION_SCALE + wt.PREDICTION_SCALE))
    table = wt._thickness_table(clean)
    np.testing.assert_allclose(table[:, 0], wt._thickness_table(1.0)[:, 0] * clean)


def test_near_hands_reaches_the_forearm_by_its_reach_only():
    from engine.geometry import watertight as wt

    names = class_names()
    seg = np.full((40, 200), names.index("Torso"), np.uint8)
    seg[10:30, :100] = names.index("Left_Lower_Arm")
    seg[10:30, 100:120] = names.index("Left_Hand")
    focal, z = 1000.0, 3.0   # 3 mm a pixel: 5 cm is ~16.7 pixels
    K = np.array([[focal, 0, 100], [0, focal, 20], [0, 0, 1.0]])
    points = np.zeros((40, 200, 3))
    points[..., 2] = z
    near = wt._near_hands(points, seg, K, ("Left_Hand", "Right_Hand", "Left_Lower_Arm", "Right_Lower_Arm"))
    assert near[10:30, 100:120].all()                      # the hand
    assert near[15, 84:100].all() and not near[15, :82].any()   # the forearm within ~16.7 px of it
    assert not near[seg == names.index("Torso")].any()     # not a part asked for
    assert not wt._near_hands(points, np.full_like(seg, names.index("Torso")), K, ("Left_Hand",)).any()


@pytest.fixture(scope="module")
def person():
    return make_person(101, pose="bent", width=288, height=384)


def test_a_clean_front_is_cut_at_its_noise_and_gets_the_clean_back(person, monkeypatch):
    """Exact maps: the prior's noise is far below CLEAN_NOISE, the refinement's cut the floor
    (the fringe's lip kept), and the trunk's back mirrored at CLEAN_PREDICTION_SCALE: shallower
    than the same front's back at PREDICTION_SCALE (the sharp front's outline sits deeper than the
    fixed cut's, bench_closed exact volume 1.07-1.11 of the truth with the old scale)."""
    from engine.geometry import watertight as wt

    args = (person.pointmap, person.mask, person.seg, person.K, person.normal)
    solid = wt.close_surface(*args, refine=True)
    assert solid.stats["prior_noise"] < wt.CLEAN_NOISE
    assert solid.stats["refine_jump_rtol"] == JUMP_RTOL_FLOOR
    monkeypatch.setattr(wt, "CLEAN_PREDICTION_SCALE", wt.PREDICTION_SCALE)
    thicker = wt.close_surface(*args, refine=True)
    assert len(thicker.back_points) == len(solid.back_points)
    np.testing.assert_array_equal(thicker.front_points, solid.front_points)
    deeper = thicker.back_points[:, 2] - solid.back_points[:, 2]
    assert deeper.min() >= -1e-6 and np.median(deeper) > 0.002


def test_a_noisy_front_keeps_the_scale_and_a_wider_cut(person):
    from engine.geometry import watertight as wt

    noisy = degrade(person, seed=101, flying_rim_px=2.0, centred=True)
    front = wt.solid_front(noisy.pointmap, noisy.mask, noisy.seg, noisy.K, noisy.normal, refine=True, jump_rtol="auto")
    assert front.noise > wt.NOISY_NOISE and wt.back_scale(front.noise) == wt.PREDICTION_SCALE
    assert front.stats["refine_jump_rtol"] > 2 * JUMP_RTOL_FLOOR


def test_the_head_keeps_the_fixed_cut(person, monkeypatch):
    """Cut at the noise, a hair cap's overhang stayed on the coarse solid as a ragged step across
    the forehead and, mirrored, a ledge across the back of the head: the head's pixels are cut at
    RTOL_HARD, the rest at the clean front's floor."""
    from engine.geometry import normal_integration
    from engine.geometry import watertight as wt

    seen = {}
    refine = normal_integration.refine_depth

    def capture(points, normal, valid, K, *, jump_rtol=None, **kw):
        seen["rtol"] = jump_rtol
        return refine(points, normal, valid, K, jump_rtol=jump_rtol, **kw)

    monkeypatch.setattr(normal_integration, "refine_depth", capture)
    front = wt.solid_front(person.pointmap, person.mask, person.seg, person.K, person.normal, refine=True,
                           jump_rtol="auto")
    rtol = np.asarray(seen["rtol"])
    assert rtol.shape == front.seg.shape
    head = np.isin(front.seg, class_ids(wt.HEAD_HARD_CUT_PARTS)) & front.valid
    trunk = np.isin(front.seg, class_ids(("Upper_Clothing", "Torso"))) & front.valid
    assert head.any() and trunk.any()
    assert (rtol[head] == wt.RTOL_HARD).all()
    assert (rtol[trunk] == JUMP_RTOL_FLOOR).all()
