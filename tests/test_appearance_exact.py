"""engine.avatar.appearance's channel-by-channel and bounding-box forms give the bytes of the plain
broadcast forms they replaced (the default build's output must not change by a bit)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.avatar import appearance as ap
from engine.avatar import textures as tx


def _continue_along_rows_reference(colour, source, allowed):
    """_continue_along_rows as first written: full-map int64 indices, fancy gathers, a broadcast blend."""
    h, w = source.shape
    cols = np.broadcast_to(np.arange(w), (h, w))
    left = np.maximum.accumulate(np.where(source, cols, -1), axis=1)
    right = np.minimum.accumulate(np.where(source, cols, w)[:, ::-1], axis=1)[:, ::-1]
    breaks = np.cumsum(~allowed, axis=1)
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
    both = (left >= 0) & (right < w)
    left_c, right_c = np.clip(left, 0, w - 1), np.clip(right, 0, w - 1)
    both &= breaks[rows, left_c] == breaks[rows, right_c]
    out = tx.push_pull_fill(colour, source)
    if both.any():
        span = np.maximum(right_c - left_c, 1).astype(np.float32)
        towards_right = ((cols - left_c) / span).astype(np.float32)[..., None]
        across = (1.0 - towards_right) * colour[rows, left_c] + towards_right * colour[rows, right_c]
        out = np.where(both[..., None], across, out)
    return out


def _row_ends_reference(region, band_px):
    w = region.shape[1]
    cols = np.arange(w)
    first = np.argmax(region, axis=1)[:, None]
    last = (w - 1 - np.argmax(region[:, ::-1], axis=1))[:, None]
    return region & ((cols - first <= band_px) | (last - cols <= band_px))


def _fade_band_reference(tangent_normals, fade):
    band_rows, band_cols, w = fade
    band = tangent_normals[band_rows, band_cols]
    baked = (band != 0).any(-1)
    band_rows, band_cols, band, w = band_rows[baked], band_cols[baked], band[baked], w[baked]
    faded = w * band
    faded[:, 2] += 1.0 - w[:, 0]
    tangent_normals[band_rows, band_cols] = faded


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_continue_along_rows_gives_the_broadcast_form_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    h, w = 23, 41
    colour = rng.normal(0.5, 0.3, (h, w, 3)).astype(np.float32)
    colour[::4, ::3] = -0.0
    source = rng.random((h, w)) < 0.15
    source[3] = False  # a row with no source
    source[5, 7] = True
    source[5, 8:] = False  # a row with one source only
    allowed = rng.random((h, w)) < 0.9
    expected = _continue_along_rows_reference(colour, source, allowed)
    got = ap._continue_along_rows(colour, source, allowed)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()
    # rows blended between two sources exist (the case is not trivially push-pull only)
    assert not np.array_equal(got, tx.push_pull_fill(colour, source))
    # a window of a larger map (not contiguous)
    window = (slice(2, None), slice(3, None))
    assert ap._continue_along_rows(colour[window], source[window], allowed[window]).tobytes() == \
        _continue_along_rows_reference(colour[window], source[window], allowed[window]).tobytes()


@pytest.mark.parametrize("band_px", [2.0, 2.5, 3.0, 7.999, 15.36])
def test_row_ends_gives_the_difference_form(band_px):
    rng = np.random.default_rng(int(band_px * 10))
    region = rng.random((30, 50)) < 0.4
    region[4] = False
    region[6, 20:23] = True
    assert np.array_equal(ap._row_ends(region, band_px), _row_ends_reference(region, band_px))


def test_box_is_the_true_pixels_bounding_box():
    mask = np.zeros((12, 9), bool)
    mask[3, 5] = mask[7, 2] = True
    assert ap._box(mask) == (slice(3, 8), slice(2, 6))
    r, c = np.nonzero(mask)
    assert ap._box(mask) == (slice(r.min(), r.max() + 1), slice(c.min(), c.max() + 1))


@pytest.mark.parametrize("all_baked", [True, False])
def test_fade_band_gives_the_broadcast_form_bit_for_bit(all_baked):
    rng = np.random.default_rng(7)
    normals = rng.normal(0.0, 1.0, (20, 30, 3)).astype(np.float32)
    if not all_baked:
        normals[rng.random((20, 30)) < 0.3] = 0.0  # texels with no baked normal stay zero
    rows, cols = np.nonzero(rng.random((20, 30)) < 0.5)
    w = rng.random((len(rows), 1)).astype(np.float32)
    expected = normals.copy()
    _fade_band_reference(expected, (rows, cols, w))
    got = normals.copy()
    ap._fade_band(got, (rows, cols, w))
    assert got.tobytes() == expected.tobytes()
    assert not np.array_equal(got, normals)
    # a non-contiguous map is faded through a contiguous copy, the same bytes
    wide = np.zeros((20, 31, 3), np.float32)
    wide[:, :30] = normals
    view = wide[:, :30]
    ap._fade_band(view, (rows, cols, w))
    assert view.tobytes() == expected.tobytes()


def test_lengths_give_linalg_norm_bit_for_bit():
    rng = np.random.default_rng(3)
    v = rng.normal(0.0, 1.0, (64, 80, 3)).astype(np.float32)
    v[0, :10] = 0.0  # zero vectors: the 1e-12 floor
    v[1, :10] *= np.float32(1e-20)
    v[2, :10] *= np.float32(1e18)
    v[3, 0] = -0.0
    expected = np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)[..., 0]
    got = ap._lengths(v)
    assert got.dtype == expected.dtype == np.float32
    assert got.tobytes() == expected.tobytes()
    a, b = v.copy(), v.copy()
    a /= np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b /= tx._per_channel(ap._lengths(b), 3)
    assert a.tobytes() == b.tobytes()


def test_all_finite_is_isfinite_all():
    rng = np.random.default_rng(4)
    a = rng.normal(0.0, 1.0, (10, 12, 3)).astype(np.float32)
    a[rng.random(a.shape) < 0.1] = np.nan
    a[1, 1, 2] = np.inf
    a[2, 2, 0] = -np.inf
    expected = np.isfinite(a).all(axis=-1)
    assert np.array_equal(ap._all_finite(a), expected)
    assert not expected.all() and expected.any()


def test_both_islands_give_the_sum_of_the_two_resampled_maps_bit_for_bit():
    rng = np.random.default_rng(5)
    front = rng.normal(0.0, 1.0, (40, 30, 3)).astype(np.float32)
    hidden = rng.normal(0.0, 1.0, (40, 30, 3)).astype(np.float32)
    front[:, :12] = -0.0  # negative zeros: the sum turns them 0.0
    hidden[:, 18:] = -0.0
    mask = np.zeros((40, 30), bool)
    mask[5:35, 8:22] = True
    layout = tx.plan_layout(mask, np.empty((0, 2)), 128, 2)
    origin = (2, 3)
    expected = tx.resample_crop(front, layout, tx.FRONT, origin) + tx.resample_crop(hidden, layout, tx.HIDDEN, origin)
    got = ap._both_islands(front, hidden, layout, origin)
    assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()
    front_only = tx.resample_crop(front, layout, tx.FRONT, origin)
    assert ((front_only == 0) & np.signbit(front_only)).any()  # the case has -0.0 to turn
    assert not np.signbit(got[got == 0]).any()
