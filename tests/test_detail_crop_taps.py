"""The crops' normals in the texels' frames read the crop's grid at each texel's four taps only
(engine.avatar.detail._Taps) and take the outline's distance on a window around them
(_outline_distance): the values of _bilinear over the whole grid and of the whole grid's
distance transform, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from engine.avatar import detail


def _blobs(shape, seed, fraction=0.55):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 6)
    return field > np.quantile(field, 1 - fraction)


def _positions(shape, n, seed, margin=3.0):
    rng = np.random.default_rng(seed)
    h, w = shape
    # past the grid's edges too (_bilinear clips the taps there)
    return rng.uniform(-margin, w + margin, n), rng.uniform(-margin, h + margin, n)


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_taps_read_bilinears_values(channels):
    shape = (57, 83)
    rng = np.random.default_rng(1)
    grid = rng.standard_normal(shape + (() if channels is None else (channels,))).astype(np.float32)
    valid = _blobs(shape, 2)
    u, v = _positions(shape, 5000, 3)
    values = grid[..., None] if channels is None else grid
    expected, ok = detail._bilinear(values, valid, u, v)
    taps = detail._Taps(shape, u, v)
    corners = taps.corners(grid)
    got = taps.blend(*((c[:, None] if channels is None else c) for c in corners))
    assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()
    assert np.array_equal(np.logical_and.reduce(taps.corners(valid)), ok)
    some = np.nonzero(rng.random(len(u)) < 0.3)[0]
    part = taps.subset(some)
    got = part.blend(*((c[:, None] if channels is None else c) for c in part.corners(grid)))
    assert got.tobytes() == expected[some].tobytes()


@pytest.mark.parametrize("factor", [2, 4])
@pytest.mark.parametrize("case", ["blobs", "inner", "all_seen"])
def test_outline_distance_is_the_whole_grids_where_the_fade_reads_it(factor, case):
    shape = (260, 190)
    seen = _blobs(shape, 5 + factor) if case != "all_seen" else np.ones(shape, bool)
    if case == "all_seen":   # no unseen pixel near the taps: the whole grid's transform
        u, v = np.random.default_rng(4).uniform(80, 110, 400), np.random.default_rng(5).uniform(100, 160, 400)
    elif case == "inner":    # taps well inside the grid: a window clear of its edges
        u, v = np.random.default_rng(6).uniform(60, 130, 3000), np.random.default_rng(7).uniform(70, 190, 3000)
    else:
        u, v = _positions(shape, 6000, 8)
    taps = detail._Taps(shape, u, v)
    whole = ndimage.distance_transform_edt(np.pad(seen, 1))[1:-1, 1:-1]
    window = detail._outline_distance(seen, taps, factor)

    def fade(d):
        return np.clip((d / factor - 0.5) / detail.NORMAL_FADE_PX, 0.0, 1.0)

    for near, full in zip(taps.corners(window), taps.corners(whole)):
        assert fade(near).tobytes() == fade(full).tobytes()
        within = full <= (detail.NORMAL_FADE_PX + 0.5) * factor
        assert within.any() or case == "all_seen"
        assert np.array_equal(near[within], full[within])
