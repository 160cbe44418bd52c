"""refine_depth's cut given per pixel (watertight.solid_front: the fixed cut near the hands when
their crops solve them again, the prior's own cut elsewhere)."""

import numpy as np

from engine.geometry.normal_integration import RTOL_HARD, _block_max, jump_rtol_for, jump_rtol_of_noise, prior_noise, refine_depth


def _lip_scene():
    """A wall 3.3 m away (1152 px lens) with a band 1 cm nearer over its top third, every normal
    facing the camera (as tests/test_geometry_refine.py's)."""
    from engine.geometry.normal_integration import pixel_rays

    H, W = 240, 180
    K = np.array([[1152.0, 0, W / 2], [0, 1152.0, H / 2], [0, 0, 1]])
    depth = np.full((H, W), 3.3)
    depth[: H // 3] = 3.29
    points = (pixel_rays(K, (H, W)) * depth[..., None]).astype(np.float32)
    normal = np.zeros((H, W, 3), np.float32)
    normal[..., 2] = -1.0
    return points, normal, np.ones((H, W), bool), K, depth


def test_a_cut_map_of_one_value_is_that_cut():
    points, normal, mask, K, _ = _lip_scene()
    rtol = jump_rtol_for(points, mask)
    one, _ = refine_depth(points, normal, mask, K, jump_rtol=rtol)
    everywhere, _ = refine_depth(points, normal, mask, K, jump_rtol=np.full(mask.shape, rtol))
    np.testing.assert_array_equal(one, everywhere)


def test_the_fixed_cut_where_the_map_asks_for_it():
    """The lip kept with the prior's own cut everywhere; with RTOL_HARD on a few pixels along the
    step (an edge takes the larger of its pixels') the step is integrated across there, and the
    band, one region with the wall through that gap, leaves its depth as with the fixed cut."""
    points, normal, mask, K, depth = _lip_scene()
    rtol = np.full(mask.shape, jump_rtol_for(points, mask))
    kept, _ = refine_depth(points, normal, mask, K, jump_rtol=rtol)
    assert np.abs(kept[..., 2] - depth).max() < 1e-3
    rtol[75:85, :20] = RTOL_HARD   # the step lies between rows 79 and 80
    bridged, _ = refine_depth(points, normal, mask, K, jump_rtol=rtol)
    assert np.abs(bridged[..., 2] - depth).max() > 2e-3
    everywhere, _ = refine_depth(points, normal, mask, K, jump_rtol=np.full(mask.shape, RTOL_HARD))
    fixed, _ = refine_depth(points, normal, mask, K, jump_rtol=RTOL_HARD)
    np.testing.assert_array_equal(everywhere, fixed)


def test_block_max_and_the_noise_cut():
    values = np.arange(15.0).reshape(3, 5)
    np.testing.assert_array_equal(_block_max(values, 2), [[6, 8, 9], [11, 13, 14]])
    assert _block_max(values, 1) is values
    points, _, mask, _, _ = _lip_scene()
    assert jump_rtol_of_noise(prior_noise(points, mask)) == jump_rtol_for(points, mask)
    assert jump_rtol_of_noise(1.0) == RTOL_HARD
