"""appearance._smooth_hem_edges: the front island's texels across a sock top follow the seg's
border smoothed, not its staircase of whole pixels (issue 13's teeth at the sock tops)."""

import numpy as np

from engine.avatar import appearance
from engine.avatar import textures as tx
from engine.avatar.labels import class_ids

SKIN, SOCK = (0.6, 0.35, 0.25), (0.85, 0.85, 0.85)


def _sock_top(w=60, h=40, slope=0.2):
    """A photo whose sock top is the line y = 15 + slope * x (pixel edges), rasterised by pixel
    centres: a staircase a pixel high every 1 / slope pixels."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    sock = yy > 15 + slope * xx
    seg = np.where(sock, class_ids(["Left_Sock"])[0], class_ids(["Left_Lower_Leg"])[0]).astype(np.int64)
    colour = np.where(sock[..., None], np.array(SOCK, np.float32), np.array(SKIN, np.float32)).astype(np.float32)
    layout = tx.AtlasLayout(crop=(0.0, 0.0, float(w), float(h)), width=2 * 3 * w + 16, height=3 * h,
                            island_width=3 * w, n_islands=2)
    return colour, seg, layout


def _crossing_rows(albedo, layout):
    """Per texel column of the front island, the photo row (px) where the texture is halfway
    between the skin's and the sock's colours."""
    front = albedo[:, : layout.island_width, 0]
    t = (front - SKIN[0]) / (SOCK[0] - SKIN[0]) - 0.5
    row = np.argmax(t[:-1] * t[1:] <= 0, axis=0)
    cols = np.arange(t.shape[1])
    a, b = t[row, cols], t[row + 1, cols]
    texel_row = row + 0.5 + a / np.where(a == b, 1.0, a - b)
    return texel_row * layout.crop[3] / layout.height


def test_the_sock_tops_texels_follow_the_smooth_border_not_the_pixels_staircase():
    colour, seg, layout = _sock_top()
    person = np.ones(seg.shape, bool)
    before = tx.resample_crop(colour, layout, tx.FRONT)
    after = before.copy()
    appearance._smooth_hem_edges(after, colour, seg, person, layout, (0, 0))
    x = (np.arange(layout.island_width) + 0.5) * layout.crop[2] / layout.island_width
    true_row = 15 + 0.2 * x
    middle = (x > 8) & (x < 52)  # away from the photo's sides
    off_before = np.abs(_crossing_rows(before, layout) - true_row)[middle]
    off_after = np.abs(_crossing_rows(after, layout) - true_row)[middle]
    assert off_before.max() > 0.4  # the staircase: up to half a pixel off the line
    assert off_after.max() < 0.5 * off_before.max()
    # far from the border the texels keep their colours
    rows_px = (np.arange(layout.height) + 0.5) * layout.crop[3] / layout.height
    far = np.abs(rows_px[:, None] - (15 + 0.2 * x)[None, :]) > 4
    assert np.array_equal(after[:, : layout.island_width][far], before[:, : layout.island_width][far])


def test_without_a_hem_in_the_seg_nothing_changes():
    colour, seg, layout = _sock_top()
    seg[:] = class_ids(["Left_Lower_Leg"])[0]
    before = tx.resample_crop(colour, layout, tx.FRONT)
    after = before.copy()
    appearance._smooth_hem_edges(after, colour, seg, np.ones(seg.shape, bool), layout, (0, 0))
    assert np.array_equal(after, before)
