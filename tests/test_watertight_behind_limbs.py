"""The one-photo solid's back behind an upper arm takes the class of the trunk behind it
(watertight._behind_the_limbs; docs/avatar.md, thirteenth session).

An upper arm lying against the torso's side is one region with the torso, and the solid's back
behind it is the torso's: labelled by the arm's pixel, the shirt's back was the arm in the mesh's
labels (material slots, the texture's reads). The labels change, the samples do not.
"""

from __future__ import annotations

import numpy as np

from engine.geometry import watertight
from engine.geometry.labels import class_ids
from engine.geometry.watertight import _behind_the_limbs
from geometry_truth import closed_labels_toggled, true_classes_at

SHIRT, TORSO, UPPER, FOREARM = (int(i) for i in class_ids(["Upper_Clothing", "Torso", "Left_Upper_Arm",
                                                          "Left_Lower_Arm"]))


def _grid(arm_class=UPPER, arm_thickness=0.16, arm_cols=(40, 48), gap=False):
    """A trunk block (columns 10-39, Upper_Clothing; Torso in rows 0-4) and an arm strip 8 px
    wide beside it; 1 cm pixels at 3 m, the arm 1 cm in front of the trunk."""
    h, w = 30, 60
    cls = np.zeros((h, w), np.int64)
    valid = np.zeros((h, w), bool)
    cls[:, 10:40], valid[:, 10:40] = SHIRT, True
    cls[:5, 10:40] = TORSO
    a0, a1 = arm_cols
    cls[:, a0:a1], valid[:, a0:a1] = arm_class, True
    if gap:   # background between the trunk and the arm
        cls[:, 40:a0], valid[:, 40:a0] = 0, False
    depth = np.where(valid, 3.0, np.nan)
    depth[:, a0:a1] = 2.99
    thickness = np.where(valid, 0.2, 0.0)
    thickness[:, a0:a1] = arm_thickness
    footprint = np.full((h, w), 0.01)
    return cls, valid, depth, thickness, footprint


def test_the_back_behind_an_upper_arm_against_the_torso_is_the_trunks():
    cls, valid, depth, thickness, footprint = _grid()
    out = _behind_the_limbs(cls, valid, depth, thickness, footprint, np.ones(cls.shape))
    arm = cls == UPPER
    # 16 cm behind an arm 8 cm wide: the trunk's nearest pixel's class, row by row
    assert (out[5:, 40:48] == SHIRT).all()
    assert (out[:5, 40:48] == TORSO).all()
    # nothing else changes
    np.testing.assert_array_equal(out[~arm], cls[~arm])


def test_an_arms_own_back_keeps_its_class():
    # 7 cm behind an arm 8 cm wide: within its width plus the margin
    cls, valid, depth, thickness, footprint = _grid(arm_thickness=0.07)
    np.testing.assert_array_equal(_behind_the_limbs(cls, valid, depth, thickness, footprint, np.ones(cls.shape)), cls)


def test_a_limb_tilted_toward_the_camera_keeps_its_class():
    # the same 16 cm, but the membrane's slope says the arm is crossed obliquely (limb_depth's stretch)
    cls, valid, depth, thickness, footprint = _grid()
    stretch = np.where(cls == UPPER, 2.0, 1.0)
    np.testing.assert_array_equal(_behind_the_limbs(cls, valid, depth, thickness, footprint, stretch), cls)


def test_forearms_and_arms_apart_from_the_trunk_keep_their_class():
    cls, valid, depth, thickness, footprint = _grid(arm_class=FOREARM)
    np.testing.assert_array_equal(_behind_the_limbs(cls, valid, depth, thickness, footprint, np.ones(cls.shape)), cls)
    # an upper arm 12 px from the trunk (background between): more than its width away
    cls, valid, depth, thickness, footprint = _grid(arm_cols=(52, 60), gap=True)
    np.testing.assert_array_equal(_behind_the_limbs(cls, valid, depth, thickness, footprint, np.ones(cls.shape)), cls)


def test_a_back_in_front_of_the_trunk_keeps_its_class():
    # the arm 30 cm in front of the trunk, its back 16 cm behind it: still in front of the trunk
    cls, valid, depth, thickness, footprint = _grid()
    depth[:, 40:48] = 2.70
    np.testing.assert_array_equal(_behind_the_limbs(cls, valid, depth, thickness, footprint, np.ones(cls.shape)), cls)


def test_the_closed_solid_labels_the_trunk_behind_the_arms_as_the_truth_has_it(monkeypatch):
    """engine.synthetic's bent-101 (bench_closed's held-out person; its arms hang against the
    torso): the closed solid's vertices are the same with and without the relabelling, and the
    vertices whose label changes go from an upper arm to the trunk's classes, mostly where the
    nearest true outer surface is the trunk's."""
    person, before, after, vertices = closed_labels_toggled(monkeypatch, "BEHIND_LIMBS")
    changed = before != after
    assert changed.sum() > 100
    assert np.isin(before[changed], [UPPER, int(class_ids(["Right_Upper_Arm"])[0])]).all()
    trunk = class_ids(watertight.TRUNK_CLASSES)
    assert np.isin(after[changed], trunk).all()
    truth = true_classes_at(person, vertices[changed])  # the true mesh's class nearest each
    assert np.isin(truth, trunk).mean() > 0.7


def test_an_upper_arm_hanging_beside_the_torso_keeps_its_back():
    """Posed beside the torso by the keypoints (arm_pose.arms_beside_the_torso), the arm's deep back is
    its own (docs/avatar.md, fifteenth session): the same 16 cm, half a centimetre in front of the trunk."""
    cls, valid, depth, thickness, footprint = _grid()
    depth[:, 40:48] = 2.995
    stretch = np.ones(cls.shape)
    assert (_behind_the_limbs(cls, valid, depth, thickness, footprint, stretch)[5:, 40:48] == SHIRT).all()
    np.testing.assert_array_equal(_behind_the_limbs(cls, valid, depth, thickness, footprint, stretch,
                                                    beside={UPPER}), cls)


def test_an_upper_arm_beside_the_torso_but_in_front_of_it_gives_its_back_to_the_trunk():
    # the arm's front 5 cm in front of the trunk's: the trunk goes on behind it
    cls, valid, depth, thickness, footprint = _grid()
    depth[:, 40:48] = 2.95
    out = _behind_the_limbs(cls, valid, depth, thickness, footprint, np.ones(cls.shape), beside={UPPER})
    assert (out[5:, 40:48] == SHIRT).all()


def test_an_upper_arm_beside_the_torso_whose_middle_bulges_in_front_keeps_its_back():
    """A round arm against the torso: its outline at the trunk's depth, its middle 4 cm in front by
    its own roundness (shared person_102's right arm, docs/avatar.md). The depth step that gives its
    back to the trunk is asked at the arm's outline nearest the trunk pixel, not at the deep pixel
    (_over_the_trunk): the middle 4 cm in front is no step."""
    cls, valid, depth, thickness, footprint = _grid()
    across = np.arange(40, 48) - 43.5
    depth[:, 40:48] = 3.0 - 0.04 * (1.0 - (across / 4.0) ** 2)   # 3.0 at the outline's rim, 2.96 at the middle
    stretch = np.ones(cls.shape)
    assert (depth[:, 41:47] < 2.99).all()   # in front of the trunk beside it by more than a centimetre
    np.testing.assert_array_equal(_behind_the_limbs(cls, valid, depth, thickness, footprint, stretch,
                                                    beside={UPPER}), cls)
    # not posed beside the torso, the same arm gives its deep back to the trunk
    assert (_behind_the_limbs(cls, valid, depth, thickness, footprint, stretch)[5:, 40:48] == SHIRT).all()


def test_over_the_trunk_asks_the_step_at_the_arms_outline():
    from engine.geometry.watertight import BEHIND_LIMB_STEP_M, _over_the_trunk

    arm = np.zeros((3, 6), bool)
    arm[:, 3:] = True
    depth = np.full((3, 6), 3.0)
    depth[:, 4:] = 2.90                      # the middle of the arm 10 cm in front of the trunk
    trunk_rows, trunk_cols = np.array([0, 1, 2]), np.array([2, 2, 2])
    assert not _over_the_trunk(arm, depth, trunk_rows, trunk_cols).any()   # the outline (column 3) at the trunk's depth
    depth[1, 3] = 3.0 - 2 * BEHIND_LIMB_STEP_M                             # a step at row 1's outline
    np.testing.assert_array_equal(_over_the_trunk(arm, depth, trunk_rows, trunk_cols), [False, True, False])
