"""The upper arms' pose from the photo's keypoints (engine.geometry.arm_pose; docs/avatar.md,
fifteenth session): an arm hanging beside the torso keeps its own back's label and colour.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.geometry import arm_pose
from engine.geometry.arm_pose import arms_beside_the_torso, to_pixels, upper_arm_axes
from engine.geometry.labels import class_ids
from engine.rig.joints import keypoint_index

LEFT, RIGHT = (int(i) for i in class_ids(["Left_Upper_Arm", "Right_Upper_Arm"]))
K = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])


def _keypoints(left_shoulder, left_elbow, right_shoulder, right_elbow, score=1.0):
    """308 x 3 keypoints (x, y, score), the four arm joints placed, every other one unscored."""
    kp = np.zeros((308, 3))
    index = keypoint_index()
    for name, xy in (("left_shoulder", left_shoulder), ("left_elbow", left_elbow),
                     ("right_shoulder", right_shoulder), ("right_elbow", right_elbow)):
        kp[index[name]] = (*xy, score)
    return kp


def _flat(depth_m=3.0, shape=(80, 100)):
    return np.full(shape, depth_m), np.ones(shape, bool)


# the person faces the camera: their left shoulder on the image's right
HANGING_OUT = _keypoints((60, 20), (68, 40), (40, 20), (32, 40))
HANGING_IN = _keypoints((60, 20), (58, 40), (40, 20), (42, 40))


def test_axes_are_normalised_image_points_any_grid_maps_back():
    axes = upper_arm_axes(HANGING_OUT, K)
    assert set(axes) == {LEFT, RIGHT}
    np.testing.assert_allclose(to_pixels(axes[LEFT], K), [[60, 20], [68, 40]])
    # a grid at half the photo's size
    half = K.copy()
    half[:2] *= 0.5
    np.testing.assert_allclose(to_pixels(axes[RIGHT], half), [[20, 10], [16, 20]])


def test_unscored_arms_and_missing_keypoints_give_no_axes():
    assert upper_arm_axes(None, K) is None
    weak = HANGING_OUT.copy()
    weak[keypoint_index()["left_elbow"], 2] = 0.1
    assert set(upper_arm_axes(weak, K)) == {RIGHT}


def test_arms_out_from_the_shoulders_hang_beside_the_torso():
    depth, valid = _flat()
    assert arms_beside_the_torso(upper_arm_axes(HANGING_OUT, K), depth, valid, K) == {LEFT, RIGHT}


def test_arms_in_over_the_torso_do_not():
    depth, valid = _flat()
    assert arms_beside_the_torso(upper_arm_axes(HANGING_IN, K), depth, valid, K) == set()


def test_an_elbow_toward_the_camera_does_not():
    # the left elbow's front 30 cm nearer than its shoulder's, the two 0.6 m apart in the image
    depth, valid = _flat()
    depth[35:46, 63:74] = 2.7
    assert arms_beside_the_torso(upper_arm_axes(HANGING_OUT, K), depth, valid, K) == {RIGHT}


def test_one_arm_alone_is_not_known_to_hang_beside():
    depth, valid = _flat()
    axes = upper_arm_axes(HANGING_OUT, K)
    assert arms_beside_the_torso({LEFT: axes[LEFT]}, depth, valid, K) == set()


@pytest.mark.parametrize("abduction_min, expected", [(0.3, {LEFT, RIGHT}), (0.5, set())])
def test_the_abduction_bound_decides(monkeypatch, abduction_min, expected):
    # both elbows 8 px out over 20 px down: sine 0.37
    monkeypatch.setattr(arm_pose, "ABDUCTION_MIN", abduction_min)
    depth, valid = _flat()
    assert arms_beside_the_torso(upper_arm_axes(HANGING_OUT, K), depth, valid, K) == expected


def test_the_build_hands_the_bundles_keypoints_to_the_closed_solid(monkeypatch):
    """build_surface of a bundle with keypoints gives close_surface the arms' axes."""
    from engine.geometry import build_surface, watertight
    from engine.synthetic import make_person, to_bundle

    person = make_person(3, pose="bent", width=192, height=256)
    given = {}

    class Stop(Exception):
        pass

    def close_surface(*args, arm_axes=None, **kwargs):
        given["arm_axes"] = arm_axes
        raise Stop

    monkeypatch.setattr(watertight, "close_surface", close_surface)
    with pytest.raises(Stop):
        build_surface(to_bundle(person), detail="none", resolution="full", watertight=True)
    expected = upper_arm_axes(person.keypoints, person.K)
    assert set(given["arm_axes"]) == {LEFT, RIGHT}
    for part in expected:
        np.testing.assert_allclose(given["arm_axes"][part], expected[part])


def test_the_hidden_side_of_an_arm_beside_the_torso_reads_the_arm():
    """engine.avatar.appearance._off_the_limb moves the reads of an arm's far back onto the trunk
    only for the arms not posed beside the torso."""
    from types import SimpleNamespace

    from engine.avatar.appearance import UPPER_ARM_CLASSES, _arms_off_the_side

    depth, valid = _flat()
    pointmap = np.dstack([np.zeros_like(depth), np.zeros_like(depth), depth])
    bundle = SimpleNamespace(keypoints=HANGING_OUT, pointmap=pointmap, mask=valid)
    assert _arms_off_the_side(bundle, K) == ()
    bundle.keypoints = HANGING_IN
    assert _arms_off_the_side(bundle, K) == UPPER_ARM_CLASSES
    bundle.keypoints = None
    assert _arms_off_the_side(bundle, K) == UPPER_ARM_CLASSES
