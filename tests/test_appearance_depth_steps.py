"""A seen vertex on an occluding edge inside the person reads no colour across it
(engine.avatar.appearance._off_the_depth_steps)."""

import numpy as np

from engine.avatar.appearance import STEP_TAP_M, _off_the_depth_steps
from engine.avatar.labels import class_ids

HAND, TROUSERS, SHIRT = (class_ids([name])[0] for name in ("Left_Hand", "Lower_Clothing", "Upper_Clothing"))


def _hip_before_a_hand(hand_behind_m=0.25):
    """A 40 x 40 photo: trousers (cols 0-19) at 2 m, a hand (cols 20-29) `hand_behind_m` behind
    them, background beyond; the trousers' last column a slope 4 cm deeper than the rest (an
    edge-on side, one surface); seg, mask, pointmap."""
    seg = np.zeros((40, 40), np.uint8)
    seg[:, :20], seg[:, 20:30] = TROUSERS, HAND
    pointmap = np.full(seg.shape + (3,), np.nan, np.float32)
    pointmap[..., 2] = np.where(seg == HAND, 2.0 + hand_behind_m, 2.0)
    pointmap[:, 19, 2] = 2.04
    pointmap[seg == 0] = np.nan
    return seg, seg > 0, pointmap


def test_a_read_on_the_edge_moves_a_pixel_into_its_own_part():
    seg, mask, pointmap = _hip_before_a_hand()
    # on the trousers' last pixel, right of its centre and on it (its texels reach col 20 both
    # ways), and on the pixel before it (no texel reaches the hand: it stays)
    xy = np.array([[19.9, 10.5], [19.5, 12.5], [18.5, 14.5]])
    out = _off_the_depth_steps(xy, seg, mask, pointmap)
    np.testing.assert_array_equal(out[:2], [[18.5, 10.5], [18.5, 12.5]])   # col 18's centre, on its row
    np.testing.assert_array_equal(out[2], xy[2])


def test_the_hands_side_moves_off_the_trousers_too():
    seg, mask, pointmap = _hip_before_a_hand()
    out = _off_the_depth_steps(np.array([[20.2, 5.5]]), seg, mask, pointmap)
    np.testing.assert_array_equal(out, [[21.5, 5.5]])


def test_no_step_no_move():
    # the hand only a little behind the trousers (a contact, one depth), a slope within one part,
    # and a read far from any other part: all read where they project
    seg, mask, pointmap = _hip_before_a_hand(hand_behind_m=0.5 * STEP_TAP_M)
    xy = np.array([[19.9, 10.5], [18.9, 10.5], [5.2, 30.7]])
    np.testing.assert_array_equal(_off_the_depth_steps(xy, seg, mask, pointmap), xy)


def test_a_one_pixel_part_reads_its_own_pixels_centre():
    # a shirt one pixel wide between the trousers and the hand, 25 cm in front of the hand:
    # its pixel's neighbour away from the hand is the trousers, so it keeps its own centre
    seg, mask, pointmap = _hip_before_a_hand()
    seg[:, 19] = SHIRT
    pointmap[:, 19, 2] = 2.0
    out = _off_the_depth_steps(np.array([[19.9, 3.5]]), seg, mask, pointmap)
    np.testing.assert_array_equal(out, [[19.5, 3.5]])
