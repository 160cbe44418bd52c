"""The one-photo solid's back behind a forearm hanging in front of the trunk's side takes the class of
the trunk behind it (watertight._behind_the_hands; docs/avatar.md, fourteenth session).

A forearm hanging in front of the torso's side hides the trunk's side, and the solid's back behind
it, deeper than the forearm is thick, lies in the trunk: labelled by the forearm's pixel, the shirt's
side was the forearm in the mesh's labels (material slots, skin weights, the texture's reads). The
labels change, the samples do not.
"""

from __future__ import annotations

import numpy as np

from engine.geometry import watertight
from engine.geometry.labels import class_ids
from engine.geometry.watertight import _behind_the_hands
from geometry_truth import true_classes_at

SHIRT, TROUSERS, FOREARM, HAND = (int(i) for i in class_ids(["Upper_Clothing", "Lower_Clothing", "Right_Lower_Arm",
                                                            "Right_Hand"]))


def _grid(limb_depth=2.89, limb_thickness=0.20, limb_class=FOREARM):
    """A trunk block (columns 10-39; Upper_Clothing, Lower_Clothing in rows 20-29) at 3 m, 20 cm
    thick, and a forearm strip 8 px wide over its side (columns 6-13), 11 cm in front of it; 1 cm
    pixels."""
    h, w = 30, 50
    cls = np.zeros((h, w), np.int64)
    valid = np.zeros((h, w), bool)
    cls[:, 10:40], valid[:, 10:40] = SHIRT, True
    cls[20:, 10:40] = TROUSERS
    cls[:, 6:14], valid[:, 6:14] = limb_class, True
    depth = np.where(valid, 3.0, np.nan)
    depth[:, 6:14] = limb_depth
    thickness = np.where(valid, 0.2, 0.0)
    thickness[:, 6:14] = limb_thickness
    footprint = np.full((h, w), 0.01)
    return cls, valid, depth, thickness, footprint


def _relabelled(cls, valid, depth, thickness, footprint, stretch=None):
    stretch = np.ones(cls.shape) if stretch is None else stretch
    return _behind_the_hands(cls.copy(), cls, valid, depth, thickness, footprint, stretch)


def test_the_back_behind_a_forearm_over_the_trunks_side_is_the_trunks():
    cls, valid, depth, thickness, footprint = _grid()
    out = _relabelled(cls, valid, depth, thickness, footprint)
    limb = cls == FOREARM
    # 20 cm behind a forearm 8 cm wide, 9 cm behind the shirt's front: the trunk's class, row by row
    assert (out[:20, 6:14] == SHIRT).all()
    assert (out[20:, 6:14] == TROUSERS).all()
    np.testing.assert_array_equal(out[~limb], cls[~limb])
    # a hand there too
    cls, valid, depth, thickness, footprint = _grid(limb_class=HAND)
    assert (_relabelled(cls, valid, depth, thickness, footprint)[:20, 6:14] == SHIRT).all()


def test_a_forearms_own_back_keeps_its_class():
    # 9 cm behind a forearm 8 cm wide: not deeper than its width plus 2 cm
    cls, valid, depth, thickness, footprint = _grid(limb_thickness=0.09)
    np.testing.assert_array_equal(_relabelled(cls, valid, depth, thickness, footprint), cls)


def test_a_forearm_behind_the_trunk_or_held_toward_the_camera_keeps_its_class():
    # an arm hanging behind the hip: its front deeper than the trunk's pixel beside it
    cls, valid, depth, thickness, footprint = _grid(limb_depth=3.2)
    np.testing.assert_array_equal(_relabelled(cls, valid, depth, thickness, footprint), cls)
    # a forearm crossed obliquely (its view stretch over BEHIND_HAND_MAX_STRETCH)
    cls, valid, depth, thickness, footprint = _grid()
    stretch = np.where(cls == FOREARM, 1.1 * watertight.BEHIND_HAND_MAX_STRETCH, 1.0)
    np.testing.assert_array_equal(_relabelled(cls, valid, depth, thickness, footprint, stretch), cls)


def test_the_trunks_depth_is_read_off_the_blended_edge():
    # the refined front's ramp: the shirt's pixel next to the forearm 7 cm in front of the shirt; the
    # forearm's back 1 cm behind that pixel plus the margin, but not behind the shirt further in
    cls, valid, depth, thickness, footprint = _grid(limb_thickness=0.13)
    depth[:, 14] = 2.92
    np.testing.assert_array_equal(_relabelled(cls, valid, depth, thickness, footprint), cls)
    # without the edge it would have been taken for the trunk
    try:
        edge, watertight.BEHIND_HAND_EDGE_M = watertight.BEHIND_HAND_EDGE_M, 0.0
        assert (_relabelled(cls, valid, depth, thickness, footprint)[:, 6:14] != FOREARM).any()
    finally:
        watertight.BEHIND_HAND_EDGE_M = edge


def test_the_closed_solid_labels_the_trunk_behind_a_hanging_forearm_as_the_truth_has_it(monkeypatch):
    """An engine.synthetic person whose right forearm hangs in front of the torso's side
    (bench_hands_before_trunk's seed 212): the closed solid's vertices are the same with and
    without the relabelling, and the vertices whose label changes go from a forearm or a hand to
    the trunk's classes, mostly where the nearest true surface is the trunk's or a thigh's."""
    from engine.geometry import build_surface
    from engine.synthetic import make_person
    from engine.synthetic.skeleton import X, Z, _rv

    pose = {"shoulder_R": _rv(X, -10) + _rv(Z, 15), "elbow_R": _rv(X, -20), "shoulder_L": _rv(Z, 20)}
    person = make_person(212, pose=pose, width=384, height=512)
    built = {}
    for on in (False, True):
        monkeypatch.setattr(watertight, "BEHIND_HANDS", on)
        built[on] = build_surface(person.pointmap, person.normal, person.mask, person.seg, person.K,
                                  detail="normals", resolution="full", watertight=True)
    np.testing.assert_array_equal(built[False].vertices, built[True].vertices)
    np.testing.assert_array_equal(built[False].faces, built[True].faces)
    before, after = built[False].vertex_labels, built[True].vertex_labels
    changed = before != after
    assert changed.sum() > 100
    assert np.isin(before[changed], class_ids(watertight.BEHIND_HAND_PARTS)).all()
    assert np.isin(after[changed], class_ids(watertight.TRUNK_CLASSES)).all()
    truth = true_classes_at(person, built[True].vertices[changed])
    assert np.isin(truth, class_ids(watertight.TRUNK_CLASSES + ("Left_Upper_Leg", "Right_Upper_Leg"))).mean() > 0.7
