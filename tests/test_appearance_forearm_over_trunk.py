"""A forearm's back bulging past its outline over the trunk reads the forearm
(engine.avatar.appearance._in_front_of_the_trunk)."""

import numpy as np

from engine.avatar.appearance import FOREARM_OVER_TRUNK_M, _in_front_of_the_trunk
from engine.avatar.labels import class_ids

FOREARM, SHIRT, TROUSERS = (class_ids([name])[0] for name in ("Right_Lower_Arm", "Upper_Clothing", "Lower_Clothing"))


def _forearm_before_the_trunk():
    """A 200 x 60 photo: a shirt (cols 10-39, rows 0-99) over trousers (rows 100-199) at 2 m, and a
    forearm (cols 40-49) hanging 11 cm in front of their side at 1.89 m; seg, mask, pointmap."""
    seg = np.zeros((200, 60), np.uint8)
    seg[:100, 10:40], seg[100:, 10:40], seg[:, 40:50] = SHIRT, TROUSERS, FOREARM
    pointmap = np.full(seg.shape + (3,), np.nan, np.float32)
    pointmap[..., 2] = np.where(seg == FOREARM, 1.89, 2.0)
    pointmap[seg == 0] = np.nan
    return seg, seg > 0, pointmap


def _cases():
    # hidden vertices on the trunk's pixels beside the forearm: the forearm's back 6 cm in front of
    # the shirt and of the trousers, one within FOREARM_OVER_TRUNK_M of the trousers, the forearm's
    # back behind the trunk's pixel (a hand behind the hip: not this rule's), and the shirt's own back
    xy = np.array([[38.5, 50.5], [37.5, 150.5], [38.5, 160.5], [38.5, 170.5], [38.5, 60.5]])
    z = np.array([1.94, 1.94, 2.0 - 0.5 * FOREARM_OVER_TRUNK_M, 2.2, 1.94])
    labels = np.array([FOREARM, FOREARM, FOREARM, FOREARM, SHIRT], np.uint8)
    return xy, np.column_stack([np.zeros((5, 2)), z]), labels


def test_the_forearms_back_over_the_trunk_reads_the_forearm():
    seg, mask, pointmap = _forearm_before_the_trunk()
    xy, vertices, labels = _cases()
    out = _in_front_of_the_trunk(xy, vertices, labels, seg, mask, pointmap)
    rows, cols = out[:2, 1].astype(int), out[:2, 0].astype(int)
    assert (seg[rows, cols] == FOREARM).all()
    # along its row, a clean tap inside the forearm's first columns
    np.testing.assert_array_equal(out[:2, 1], xy[:2, 1])
    assert (cols > 40).all() and (cols <= 43).all()  # not its edge pixel (OWN_PART_INSIDE_PX)


def test_the_trunks_own_back_and_a_hand_behind_the_trunk_keep_their_pixel():
    seg, mask, pointmap = _forearm_before_the_trunk()
    xy, vertices, labels = _cases()
    out = _in_front_of_the_trunk(xy, vertices, labels, seg, mask, pointmap)
    np.testing.assert_array_equal(out[2:], xy[2:])
